import os
import sys

# tests import their oracles as a plain module: `from oracles import ...`
sys.path.insert(0, os.path.dirname(__file__))
