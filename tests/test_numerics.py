"""Numerical safety (issue 4, part 2): stable activations and losses for |z| up to 1e4 in float32
and float64, and training that diverges stops (or skips) without ever keeping NaN weights.

RuntimeWarnings (overflow, invalid value) are errors in this module.  Compiled code never
warns, so ``test_stable_forms_without_jit`` re-runs the numerical checks with
NUMBA_DISABLE_JIT=1 and ``-W error``: the kernels then run as NumPy scalar code, where an
``np.exp`` overflow in float32 would raise.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from backprop_numba import MLP, DivergenceError

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
Z = np.array([-1e4, -1e3, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 1e3, 1e4])


def _ref_softplus(z):
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def _ref_sigmoid(z):
    e = np.exp(-np.abs(z))  # never overflows; no cancellation on either side
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _ref_log_softmax(z):
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def _scalar_net(output_activation, loss, dtype):
    """z[1] = x exactly: one input, one output, W = 1, b = 0."""
    return MLP.from_weights([np.ones((1, 1))], [np.zeros(1)], output_activation=output_activation, loss=loss,
                            dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_bce_at_large_z(dtype):
    net = _scalar_net("sigmoid", "bce", dtype)
    x = Z.astype(dtype)[:, None]
    a = net.forward(x)[:, 0]
    assert np.isfinite(a).all() and (a >= 0).all() and (a <= 1).all()
    assert a[0] == 0.0 and a[-1] == 1.0 and a[Z == 0][0] == 0.5  # the limits, exactly
    assert (np.diff(a) >= 0).all()
    np.testing.assert_allclose(a, _ref_sigmoid(Z), rtol=RTOL[dtype], atol=1e-30)
    for y in (0.0, 1.0, 0.25):
        for z in Z:
            loss, grads = net.loss_and_gradients(np.array([[z]], dtype=dtype), np.array([y]))
            expected = _ref_softplus(z) - y * z  # -[y log a + (1-y) log(1-a)], finite for any z
            assert np.isfinite(loss)
            np.testing.assert_allclose(loss, expected, rtol=RTOL[dtype], atol=RTOL[dtype])
            (dW, db), = grads
            assert np.isfinite(dW).all() and np.isfinite(db).all()
            # dC/dz = a - y (seed 004), so dC/db = a - y and dC/dW = (a - y) x
            np.testing.assert_allclose(db[0], _ref_sigmoid(z) - y, rtol=RTOL[dtype], atol=RTOL[dtype])
            np.testing.assert_allclose(dW[0, 0], (_ref_sigmoid(z) - y) * z, rtol=RTOL[dtype], atol=RTOL[dtype] * abs(z))
    # the derivative of the output vanishes at saturation, it does not become NaN
    g = net.input_gradient(x)
    assert np.isfinite(g).all() and g[0, 0] == 0.0 and g[-1, 0] == 0.0


ROWS = np.array([
    [1e4, 0.0, -1e4],
    [1e4, 1e4, -1e4],
    [-1e4, -1e4, -1e4],
    [-1e4, 1e4, -1e4],
    [9999.0, 1e4, 1e4],
    [0.0, 0.0, 0.0],
])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_cross_entropy_at_large_z(dtype):
    net = MLP.from_weights([np.eye(3)], [np.zeros(3)], loss="cross_entropy", dtype=dtype)
    x = ROWS.astype(dtype)
    a = net.forward(x)
    assert np.isfinite(a).all() and (a >= 0).all()
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=10 * RTOL[dtype])
    np.testing.assert_array_equal(a[0], [1, 0, 0])
    np.testing.assert_allclose(a[1], [0.5, 0.5, 0], rtol=RTOL[dtype])
    np.testing.assert_allclose(a[2], [1 / 3] * 3, rtol=RTOL[dtype])
    np.testing.assert_allclose(a, np.exp(_ref_log_softmax(ROWS)), rtol=RTOL[dtype], atol=1e-30)
    for label in range(3):
        for i in range(len(ROWS)):
            loss, ((dW, db),) = net.loss_and_gradients(x[i:i + 1], np.array([label]))
            expected = -_ref_log_softmax(ROWS[i:i + 1])[0, label]  # up to 2e4, finite
            assert np.isfinite(loss)
            # lse - z_j of two numbers near 1e4 carries an absolute error of about eps * |z| when
            # the kernel runs in float32 arithmetic (NUMBA_DISABLE_JIT; compiled code sums in float64)
            atol = max(RTOL[dtype], 4 * np.finfo(dtype).eps * np.abs(ROWS[i]).max())
            np.testing.assert_allclose(loss, expected, rtol=RTOL[dtype], atol=atol)
            assert np.isfinite(dW).all() and np.isfinite(db).all()
            onehot = np.eye(3)[label]
            np.testing.assert_allclose(db, np.exp(_ref_log_softmax(ROWS[i:i + 1]))[0] - onehot,
                                       rtol=RTOL[dtype], atol=RTOL[dtype])
    J = net.jacobian(x)
    assert np.isfinite(J).all()
    np.testing.assert_array_equal(J[0], np.zeros((3, 3)))  # saturated: exactly zero, not NaN


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
def test_hidden_activations_at_large_z(dtype, activation):
    """A hidden layer driven to |z| = 1e4, then a sigmoid+bce output: every result finite."""
    W1 = np.array([[1.0], [-1.0]])
    net = MLP.from_weights([W1, np.array([[1e-4, 1e-4]])], [np.zeros(2), np.zeros(1)], activation=activation,
                           loss="bce", dtype=dtype)
    x = Z.astype(dtype)[:, None]
    out = net.forward(x)
    assert np.isfinite(out).all()
    loss, grads = net.loss_and_gradients(x, np.ones(len(Z)))
    assert np.isfinite(loss)
    assert all(np.isfinite(g).all() for pair in grads for g in pair)
    assert np.isfinite(net.input_gradient(x)).all()
    if activation == "tanh":
        hidden = MLP.from_weights([W1], [np.zeros(2)], output_activation="tanh", dtype=dtype).forward(x)
        np.testing.assert_array_equal(hidden[0], [-1, 1])
        np.testing.assert_array_equal(hidden[-1], [1, -1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["bce", "cross_entropy"])
def test_training_on_saturated_outputs_stays_finite(dtype, loss):
    """Large, confidently wrong logits: training moves them back without NaN."""
    n_out = 1 if loss == "bce" else 3
    rng = np.random.default_rng(0)
    W = rng.choice([-1e3, 1e3], size=(n_out, 4))
    net = MLP.from_weights([W], [np.zeros(n_out)], loss=loss, dtype=dtype)
    X = rng.choice([-10.0, 10.0], size=(16, 4)).astype(dtype)
    Y = (rng.random(16) > 0.5).astype(float) if loss == "bce" else rng.integers(0, 3, 16)
    history = net.fit(X, Y, epochs=3, batch_size=4, learning_rate=1e-3, optimizer="adam", progress=False)
    assert np.isfinite(history["loss"]).all() and np.isfinite(net.theta).all()


def test_stable_forms_without_jit():
    """The same checks with the kernels run as NumPy scalar code and RuntimeWarnings as errors."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    cmd = [sys.executable, "-W", "error::RuntimeWarning", "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           __file__, "-k", "large_z", "-W", "error::RuntimeWarning"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


# -- divergence ----------------------------------------------------------------------

def _regression(dtype=np.float64):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(24, 3)).astype(dtype)
    Y = X @ np.array([[1.0], [-2.0], [0.5]]) * 3.0
    return X, Y.astype(dtype)


def _linear_net(dtype=np.float64):
    return MLP([3, 5, 1], activation="identity", loss="mse", seed=11, dtype=dtype)


def test_divergence_stops_with_last_finite_weights():
    X, Y = _regression()
    net = _linear_net()
    bs, lr = 5, 0.4  # far too large for this problem: the loss explodes within a few epochs
    with pytest.raises(DivergenceError, match=r"epoch \d+, step \d+.*smaller learning_rate") as info:
        net.fit(X, Y, epochs=200, batch_size=bs, learning_rate=lr, shuffle=False, progress=False)
    err = info.value
    assert err.epoch >= 1 and 1 <= err.step <= -(-len(X) // bs)
    assert err.epoch > 1 and err.step > 1  # (2, 2) today: both parts of the replay below are exercised
    assert f"epoch {err.epoch}, step {err.step}" in str(err)
    assert len(err.history["loss"]) == err.epoch - 1
    assert np.isfinite(net.theta).all()
    # Replay the good steps on a fresh copy: epochs before, then the steps of the last epoch before the bad one.
    replay = _linear_net()
    if err.epoch > 1:
        replay.fit(X, Y, epochs=err.epoch - 1, batch_size=bs, learning_rate=lr, shuffle=False, progress=False)
    if err.step > 1:
        n = (err.step - 1) * bs
        replay.fit(X[:n], Y[:n], epochs=1, batch_size=bs, learning_rate=lr, shuffle=False, progress=False)
    np.testing.assert_array_equal(net.theta, replay.theta)


def _overflowing_update():
    """float32 data whose loss and gradient are finite but whose SGD step overflows theta to -inf."""
    X = np.full((4, 1), 1e18, np.float32)
    Y = np.zeros(4, np.float32)
    net = MLP.from_weights([np.array([[0.5]], np.float32)], [np.zeros(1, np.float32)], output_activation="identity",
                           loss="mse")
    return net, X, Y


def test_update_that_overflows_the_weights_is_undone():
    net, X, Y = _overflowing_update()
    loss, grads = net.loss_and_gradients(X[:2], Y[:2])
    assert np.isfinite(loss) and np.isfinite(grads[0][0]).all()
    before = net.theta.copy()
    with pytest.raises(DivergenceError, match=r"non-finite parameters after the optimizer step at epoch 1, step 1"):
        net.fit(X, Y, epochs=2, batch_size=2, learning_rate=1e4, shuffle=False, progress=False)
    np.testing.assert_array_equal(net.theta, before)


def test_skip_also_skips_updates_that_overflow():
    """Every update overflows, so every step is skipped: that is said (issue 12: an epoch of only
    skipped steps returned loss NaN without a word), and the parameters stay as they were."""
    net, X, Y = _overflowing_update()
    before = net.theta.copy()
    with pytest.raises(DivergenceError, match=r"every mini-batch of epoch 1 \(2\) had a non-finite"):
        net.fit(X, Y, epochs=2, batch_size=2, learning_rate=1e4, shuffle=False, progress=False,
                on_nonfinite="skip")
    np.testing.assert_array_equal(net.theta, before)


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov"])
def test_an_overflowing_first_step_is_undone_with_the_optimizer_state(optimizer):
    """The first step overflows theta and is skipped: theta and the velocity are restored to where they were
    (zero, before any step: not copied), so the run equals one without that batch, state included."""
    net, X, Y = _overflowing_update()
    X[2:] = 1.0  # the second batch takes a finite step
    history = net.fit(X, Y, epochs=1, batch_size=2, learning_rate=1e4, optimizer=optimizer, shuffle=False,
                      progress=False, on_nonfinite="skip")
    assert history["skipped_steps"] == [1]
    ref, _, _ = _overflowing_update()
    ref.fit(X[2:], Y[2:], epochs=1, batch_size=2, learning_rate=1e4, optimizer=optimizer, shuffle=False,
            progress=False)
    np.testing.assert_array_equal(net.theta, ref.theta)
    np.testing.assert_array_equal(net._workspace.state, ref._workspace.state)
    assert net._workspace.step == ref._workspace.step == 1


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_skip_skips_only_the_bad_batch(optimizer):
    """One sample overflows the float32 loss: with on_nonfinite='skip' only its batch is dropped."""
    X, Y = _regression(np.float32)
    X_bad = X.copy()
    X_bad[7] = 1e25  # finite in float32, but (a - y)^2 overflows
    net = _linear_net(np.float32)
    with pytest.raises(DivergenceError, match=r"non-finite loss at epoch 1, step 2"):
        net.fit(X_bad, Y, epochs=1, batch_size=4, learning_rate=0.01, optimizer=optimizer, shuffle=False,
                progress=False)
    net = _linear_net(np.float32)
    history = net.fit(X_bad, Y, epochs=3, batch_size=4, learning_rate=0.01, optimizer=optimizer, shuffle=False,
                      progress=False, on_nonfinite="skip")
    assert history["skipped_steps"] == [1, 1, 1]
    assert np.isfinite(history["loss"]).all() and np.isfinite(net.theta).all()
    if optimizer == "sgd":  # stateless: the same as training without that batch
        keep = np.r_[0:4, 8:len(X)]
        ref = _linear_net(np.float32)
        ref.fit(X[keep], Y[keep], epochs=3, batch_size=4, learning_rate=0.01, shuffle=False, progress=False)
        np.testing.assert_array_equal(net.theta, ref.theta)
