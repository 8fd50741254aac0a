"""Shared setup for tests and bench: the original kernels (/work/main) and the new ones (bn)."""
import os
import sys

os.environ.setdefault("NUMBA_CACHE_DIR", "/work/scratch/small/.numba_cache")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "orig_pkg"))  # HEAD of /work/main (its work tree is being edited)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import backprop_numba._kernels as K0  # noqa: E402  the original
import bn._kernels as K1  # noqa: E402  the new
from backprop_numba.mlp import _arch_table  # noqa: E402
from backprop_numba import activations, losses, optimizers  # noqa: E402

assert "orig_pkg" in K0.__file__, K0.__file__


def make_problem(sizes, hidden="sigmoid", output="identity", loss="mse", n=257, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    L = len(sizes) - 1
    acts = [activations.CODES[hidden]] * (L - 1) + [activations.CODES[output]]
    arch, P = _arch_table(sizes, acts)
    theta = np.empty(P, dtype=dtype)
    for l in range(1, L + 1):
        bound = np.sqrt(6.0 / (sizes[l] + sizes[l - 1]))
        theta[arch[2, l]:arch[2, l] + sizes[l] * sizes[l - 1]] = rng.uniform(-bound, bound, sizes[l] * sizes[l - 1])
        theta[arch[3, l]:arch[3, l] + sizes[l]] = rng.uniform(-0.1, 0.1, sizes[l])
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    m = sizes[-1]
    if loss == "cross_entropy":
        Y = np.eye(m, dtype=dtype)[rng.integers(0, m, n)]
    elif loss == "bce":
        Y = (rng.random((n, m)) < 0.5).astype(dtype)
    else:
        Y = rng.standard_normal((n, m)).astype(dtype)
    return arch, theta, X, Y, losses.CODES[loss]


def run_epoch(K, arch, theta, X, Y, loss_code, batch_size, opt="sgd", lr=0.05, wd=0.0, shuffle_seed=7, t=0,
              skip=False, state=None, epochs=1):
    """Run `epochs` epochs of K._train_epoch on a copy of theta; returns (theta, state, results)."""
    theta = theta.copy()
    dtype = theta.dtype
    sizes = arch[0]
    size = batch_size * int(sizes.sum())
    a_buf, z_buf, d_buf = (np.empty(size, dtype=dtype) for _ in range(3))
    y_buf = np.empty(batch_size * int(sizes[-1]), dtype=dtype)
    grad = np.empty(theta.shape[0], dtype=dtype)
    perm = np.arange(X.shape[0], dtype=np.int64)
    if state is None:
        state = optimizers.new_state(theta.shape[0], dtype)
    else:
        state = state.copy()
    opts = dict(optimizers.DEFAULTS)
    opts["weight_decay"] = wd
    hyper = optimizers.hyper_array(opts)
    results = []
    for e in range(epochs):
        r = K._train_epoch(theta, arch, loss_code, X, Y, perm, shuffle_seed + e if shuffle_seed >= 0 else -1,
                           batch_size, optimizers.CODES[opt], lr, hyper, state, t, skip, a_buf, z_buf, d_buf,
                           y_buf, grad)
        t += r[2]
        results.append(r)
    return theta, state, results
