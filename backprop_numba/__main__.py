"""``python -m backprop_numba ...``: the same command line as ``backprop-numba``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
