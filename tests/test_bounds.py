"""Kernels never read or write out of bounds (issue 4, part 4; STYLE R15).

``test_kernels_with_boundscheck`` runs this file as a script in a subprocess with
NUMBA_BOUNDSCHECK=1 and NUMBA_CACHE_DIR set to a fresh folder: every kernel is
compiled again with index checks (a cached unchecked build is never loaded, and
the checked build never lands in the cache that normal runs use).  The script
drives every kernel entry point over awkward shapes: width-1 layers, batch 1, a
partial last mini-batch, softmax outputs, every loss, optimizer and dtype.  Any
out-of-bounds index raises IndexError there and the script exits non-zero.
"""

import os
import subprocess
import sys

import numpy as np


def _exercise():
    from numba import config, njit

    from backprop_numba import MLP

    assert config.BOUNDSCHECK, "NUMBA_BOUNDSCHECK=1 was not picked up"

    @njit
    def _probe(x, i):
        return x[i]

    try:  # negative control: the checks are really compiled in
        _probe(np.zeros(3), 3)
    except IndexError:
        pass
    else:
        raise SystemExit("boundscheck is not active: x[3] of a length-3 array did not raise")

    rng = np.random.default_rng(0)
    cases = [
        # sizes, hidden activation, loss, output activation
        ([1, 1], "sigmoid", "mse", "identity"),
        ([3, 1, 2], "tanh", "sse", "sigmoid"),
        ([2, 5, 1, 3], "relu", "cross_entropy", None),
        ([4, 1, 1, 1], "sigmoid", "bce", None),
        ([1, 7, 2], "identity", "half_sse", "tanh"),
        ([6, 3, 4], "relu", "cross_entropy", None),
        # Above the kernels' blocking and threading thresholds (K_BLOCK 128 inputs, SAMPLE_BLOCK 64
        # samples, tiles of 4, the dot-product dC/dW from B = 16 and 64 units), with remainders everywhere.
        ([130, 67, 5, 3], "tanh", "cross_entropy", None),
        # Above PARALLEL_MIN_WORK (float32: twice) from B = 60: the parallel loops, row updates at 60, dot products at 70.
        ([150, 280, 130, 3], "sigmoid", "cross_entropy", None),
    ]
    optimizers = ["sgd", "momentum", "nesterov", "adam"]
    for dtype in (np.float64, np.float32):
        for c, (sizes, act, loss, out_act) in enumerate(cases):
            net = MLP(sizes, activation=act, loss=loss, output_activation=out_act, seed=c, dtype=dtype)
            n0, nL = sizes[0], sizes[-1]
            for B in ((1, 2, 7, 60, 70) if n0 > 100 else (1, 2, 7)):
                X = rng.normal(size=(B, n0))
                if loss == "cross_entropy":
                    Y = rng.integers(0, nL, size=B)
                elif loss == "bce":
                    Y = rng.integers(0, 2, size=(B, nL)).astype(float)
                else:
                    Y = rng.normal(size=(B, nL))
                assert net.forward(X).shape == (B, nL)
                assert net.forward(X[0]).shape == (nL,)
                net.loss_and_gradients(X, Y)
                net.loss_value(X, Y)
                net.evaluate(X, Y)
                net.vjp(X, rng.normal(size=(B, nL)))
                assert net.jacobian(X).shape == (B, nL, n0)
                if nL == 1:
                    net.input_gradient(X)
            n = (60 if n0 == 150 else 70) if n0 > 100 else 7
            X = rng.normal(size=(n, n0))
            Y = rng.integers(0, nL, size=n) if loss == "cross_entropy" else \
                rng.integers(0, 2, size=(n, nL)).astype(float)
            if loss not in ("cross_entropy", "bce"):
                Y = rng.normal(size=(n, nL))
            # batch sizes 3 (partial last batch), 1, n (one full batch) and n + 3 (capped at n)
            for bs, opt in zip((3, 1, n, n + 3), optimizers):
                net.fit(X, Y, epochs=2, batch_size=bs, optimizer=opt, learning_rate=0.01, weight_decay=0.01,
                        validation_data=(X[:2], Y[:2]), on_nonfinite="skip" if bs == 1 else "raise",
                        progress=False)
            assert np.isfinite(net.theta).all()
    # predict in chunks larger than one forward pass
    from backprop_numba import mlp as mlp_module
    mlp_module.PREDICT_CHUNK, chunk = 4, mlp_module.PREDICT_CHUNK
    try:
        net = MLP([3, 2, 2], loss="cross_entropy", seed=0)
        X = rng.normal(size=(11, 3))
        net.forward(X)
        net.evaluate(X, rng.integers(0, 2, size=11))
    finally:
        mlp_module.PREDICT_CHUNK = chunk
    print("boundscheck exercise: ok")


def test_kernels_with_boundscheck(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    env.pop("NUMBA_DISABLE_JIT", None)
    done = subprocess.run([sys.executable, "-W", "ignore", __file__], env=env, capture_output=True, text=True,
                          timeout=480)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "boundscheck exercise: ok" in done.stdout


def _cache_step(step):
    """One process of test_cached_kernels_across_processes: a network large enough for every blocked path."""
    from backprop_numba import MLP

    net = MLP([64, 96, 20, 3], activation="sigmoid", loss="cross_entropy", seed=3)
    rng = np.random.default_rng(20)
    X, Y = rng.normal(size=(300, 64)), rng.integers(0, 3, 300)
    if step == "fit":
        net.fit(X, Y, epochs=1, batch_size=300, progress=False)
    elif step == "grad":
        net.loss_and_gradients(X, Y)
    else:
        net.forward(X)
    print(f"cache step {step}: ok")


def test_cached_kernels_across_processes(tmp_path):
    """Each entry point used first in its own process, then reloaded from the on-disk cache: never a crash.

    (Guards against numba #8578/#4807, which crashed exactly this sequence while
    the kernels reached prange kernels from cached callers.)"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    env.pop("NUMBA_DISABLE_JIT", None)
    env.pop("NUMBA_BOUNDSCHECK", None)
    for step in ("fit", "grad", "grad", "predict"):
        done = subprocess.run([sys.executable, "-W", "ignore", __file__, "--cache-step", step], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"process '{step}' exited {done.returncode}\n{done.stderr[-3000:]}"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--cache-step"]:
        _cache_step(sys.argv[2])
    else:
        _exercise()
