"""The new _train_epoch (bn/_kernels.py) against the original (HEAD of /work/main, orig_pkg/)."""
import numpy as np
import pytest

from common import K0, K1, make_problem, run_epoch, losses, optimizers

NETS = [  # sizes, hidden, output, loss
    ([5, 4, 3, 2], "sigmoid", "identity", "mse"),
    ([6, 5, 3], "tanh", "softmax", "cross_entropy"),
    ([6, 7, 4, 1], "relu", "sigmoid", "bce"),
    ([3, 4, 2], "sigmoid", "sigmoid", "sse"),
    ([3, 5, 2], "tanh", "softmax", "half_sse"),
]


def rtol_of(dtype):
    return 1e-12 if dtype == np.float64 else 1e-5


def compare(sizes, hidden, output, loss, B, opt, wd, dtype, epochs=2, n=37, lr=0.05, shuffle=7, skip=False,
            X=None, Y=None, theta=None):
    arch, theta0, X0, Y0, lc = make_problem(sizes, hidden, output, loss, n=n, dtype=dtype)
    X = X0 if X is None else X
    Y = Y0 if Y is None else Y
    theta0 = theta0 if theta is None else theta
    lr = lr if opt != "adam" else lr / 10
    th0, st0, r0 = run_epoch(K0, arch, theta0, X, Y, lc, B, opt=opt, lr=lr, wd=wd, shuffle_seed=shuffle,
                             skip=skip, epochs=epochs)
    th1, st1, r1 = run_epoch(K1, arch, theta0, X, Y, lc, B, opt=opt, lr=lr, wd=wd, shuffle_seed=shuffle,
                             skip=skip, epochs=epochs)
    rtol = rtol_of(dtype)
    atol = rtol * max(1.0, np.abs(th0[np.isfinite(th0)]).max(initial=0.0))
    np.testing.assert_allclose(th1, th0, rtol=rtol, atol=atol)
    np.testing.assert_allclose(st1, st0, rtol=rtol, atol=atol)
    for a, b in zip(r0, r1):
        assert b[1:5] == a[1:5], (a, b)  # seen, steps, skipped, status
        np.testing.assert_allclose(b[0], a[0], rtol=rtol * 10)
    return arch, X, Y, lc, r1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [1, 3, 8, 9, 32])
@pytest.mark.parametrize("opt", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_matches_original(dtype, B, opt, wd):
    for sizes, hidden, output, loss in NETS:
        compare(sizes, hidden, output, loss, B, opt, wd, dtype)


@pytest.mark.parametrize("B", [1, 2])
def test_no_shuffle_and_larger_net(B):
    compare([30, 17, 9, 3], "sigmoid", "identity", "mse", B, "momentum", 0.001, np.float64, shuffle=-1, n=50)


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("B", [1, 3, 32])
def test_nonfinite_loss(skip, B):
    # a learning rate that overflows: NaN/inf losses appear mid-epoch
    compare([4, 6, 2], "relu", "identity", "sse", B, "sgd", 0.0, np.float64, lr=1e3, skip=skip, epochs=3)


def _overflow_problem(x_scale, y_value, dtype=np.float64):
    """Inputs [x, x] with W1 rows [1, -1] (z[1] = 0, g' = 1/4): finite loss, gradient ~ delta * x."""
    arch, theta, X, Y, lc = make_problem([2, 2, 1], "sigmoid", "identity", "sse", n=9, dtype=dtype)
    W1 = theta[arch[2, 1]:arch[2, 1] + 4]
    W1[:] = [1.0, -1.0, -1.0, 1.0]
    theta[arch[3, 1]:arch[3, 1] + 2] = 0.0
    X = np.full((9, 2), x_scale, dtype=dtype)
    X[::2] = 0.5  # some ordinary samples in between
    Y = np.full((9, 1), y_value, dtype=dtype)
    return theta, X, Y


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("B", [1, 3])
def test_nonfinite_gradient(skip, B):
    # loss finite, dC/dW[1] = delta[1] x overflows: NONFINITE_GRADIENT, no update, as in the original
    theta, X, Y = _overflow_problem(1.7e308, 100.0)
    *_, r = compare([2, 2, 1], "sigmoid", "identity", "sse", B, "sgd", 0.0, np.float64, n=9, lr=1e-320,
                    skip=skip, epochs=1, X=X, Y=Y, theta=theta, shuffle=-1)
    assert r[0][4] == K0.NONFINITE_GRADIENT or r[0][3] > 0


@pytest.mark.parametrize("B", [1, 3])
def test_bound_trips_but_gradient_finite(B):
    # huge but finite gradients: the bound cannot prove them finite, the blocked path takes those steps
    theta, X, Y = _overflow_problem(1e300, 1.0)
    *_, r = compare([2, 2, 1], "sigmoid", "identity", "sse", B, "sgd", 0.0, np.float64, n=9, lr=1e-320,
                    epochs=1, X=X, Y=Y, theta=theta, shuffle=-1)
    assert r[0][4] == K0.OK


@pytest.mark.parametrize("B", [1, 3, 32])
@pytest.mark.parametrize("net", [1, 2])
def test_correct_count(B, net):
    """correct = predictions right in the forward passes of the epoch, checked by a replay batch by batch."""
    sizes, hidden, output, loss = NETS[net]
    arch, theta, X, Y, lc = make_problem(sizes, hidden, output, loss, n=37)
    th1, _, r1 = run_epoch(K1, arch, theta, X, Y, lc, B, shuffle_seed=-1)
    th = theta.copy()
    state = optimizers.new_state(th.shape[0], th.dtype)
    expected = 0
    for start in range(0, 37, B):
        rows = np.arange(start, min(37, start + B))
        out = np.empty((rows.shape[0], sizes[-1]))
        size = 64 * sum(sizes)
        K0._predict(th, arch, X, rows, out, np.empty(size), np.empty(size), 64)
        if loss == "cross_entropy":
            expected += int((out.argmax(1) == Y[rows].argmax(1)).sum())
        else:
            expected += int(((out > 0.5) == (Y[rows] > 0.5)).sum())
        th, state, _ = run_epoch(K0, arch, th, X[rows], Y[rows], lc, B, shuffle_seed=-1, state=state, t=start // B)
    assert r1[0][5] == expected
    np.testing.assert_allclose(th1, th, rtol=1e-12, atol=1e-12)
