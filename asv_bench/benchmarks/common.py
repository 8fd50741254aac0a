"""Shared grid, seeds and data builders for the asv suite (append only: old results keep their meaning).

The networks and batch sizes are those of issue 5 / SPEC section 4 (the same
grid as benchmarks/compare.py): sigmoid hidden layers, identity output, mean
squared error, plain SGD.  Benchmarks use public names only (``MLP``,
``training.Workspace``, ``loops``), so old commits stay measurable.
"""

import functools

import numpy as np

SEED = 1234
CONFIGS = ["4-3-2-1", "784-16-10", "784-128-64-10", "784-512-512-10"]  # readable axis labels
BATCHES = [1, 32, 256]
DTYPES = ["float64", "float32"]
GRAD_CONFIG = "784-128-64-1"  # the single-output network of the input-gradient benchmarks
EPOCH_SAMPLES = 2048          # one asv epoch (compare.py uses 8,192; asv repeats many times)
LEARNING_RATE = 0.01


def sizes(config):
    return [int(n) for n in config.split("-")]


@functools.lru_cache(maxsize=None)
def data(config, n, dtype="float64"):
    """Seeded inputs and targets, (n, n[0]) and (n, n[L]).

    Left writeable (benchmarks must not modify them): a read-only array is a
    different Numba type and would compile a second specialisation of every
    kernel, which is not what a user's call measures.
    """
    s = sizes(config)
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((n, s[0])).astype(dtype)
    Y = rng.standard_normal((n, s[-1])).astype(dtype)
    return X, Y


def network(config, dtype="float64"):
    from backprop_numba import MLP
    return MLP(sizes(config), activation="sigmoid", output_activation="identity", loss="mse", seed=SEED,
               dtype=np.dtype(dtype).type)


def n_weights(config):
    s = sizes(config)
    return sum(s[l] * s[l - 1] for l in range(1, len(s)))


def step_flops(config, B):
    """2 x multiply-adds of one training step: forward, delta recursion (not into the input), dC/dW."""
    s = sizes(config)
    W = n_weights(config)
    return 2.0 * B * (3 * W - s[0] * s[1])


@functools.lru_cache(maxsize=None)
def matmul_peak(dtype="float64", n=1024):
    """NumPy matrix-multiply FLOP/s on this machine (best of 5), the reference for track_* fractions."""
    import time
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)).astype(dtype)
    B = rng.standard_normal((n, n)).astype(dtype)
    C = np.empty_like(A)
    np.matmul(A, B, out=C)
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        np.matmul(A, B, out=C)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def workspace(net, B):
    """The compiled epoch's low-level entry (public since the structure issue).

    Older commits have no ``backprop_numba.training``: asv skips a benchmark
    whose setup raises NotImplementedError, so their other results stay.
    """
    try:
        from backprop_numba.training import Workspace
    except ImportError:
        raise NotImplementedError("backprop_numba.training.Workspace is not in this commit") from None
    return Workspace(net, B, "sgd")


def public_loops():
    """backprop_numba.loops (the three matrix-shaped loops), or a skip on commits without it."""
    try:
        from backprop_numba import loops
    except ImportError:
        raise NotImplementedError("backprop_numba.loops is not in this commit") from None
    return loops
