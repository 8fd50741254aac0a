"""Cold start: import, and import + first training step, each in a fresh interpreter.

asv's timeraw_* runs the returned code in a new process.  The kernels are
cached on disk (cache=True); setup_cache-like warming happens in the first
repeat, and asv reports the median, i.e. the warm-cache start a user sees on
every run after the first.
"""


class ColdStart:
    repeat = (3, 7, 30.0)
    number = 1

    def timeraw_import(self):
        return "import backprop_numba"

    def timeraw_import_and_first_step(self):
        return """
import numpy as np
from backprop_numba import MLP
net = MLP([784, 16, 10], loss="mse", output_activation="identity", seed=0)
X = np.random.default_rng(0).standard_normal((32, 784))
net.fit(X, X[:, :10], epochs=1, batch_size=32, progress=False)
"""
