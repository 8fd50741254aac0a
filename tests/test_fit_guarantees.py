"""Guarantees of fit and of the network's outputs found missing by adversarial testing (issues 12, 13).

Each test is one case that used to give a silent wrong answer, and its
neighbours: extreme logits in every loss, classes of an overflowing output,
byte order, resume and checkpoint options, every step skipped, user schedules
returning nonsense, truthy strings, slowly exploding losses, and the callback
protocol fit offers.
"""

import math
import warnings

import numpy as np
import pytest

from backprop_numba import MLP, DivergenceError, schedules
from backprop_numba.training import EXPLODING

mpmath = pytest.importorskip("mpmath")
# 2,300 bits: every sum or difference of two float64 values (exponents -1074..1023) is exact
mpmath.mp.prec = 2300

# -- every loss at extreme logits, against a 2,300-bit reference -------------------

EXTREME = [1e17, 1e300, -1e300, 1e-300, 745.0, -745.0, 30.0, 0.0]


def _net_with_output_z(loss, out, n_out):
    """[n_out -> n_out] with W = I, b = 0: the output layer's z is the input."""
    return MLP.from_weights([np.eye(n_out)], [np.zeros(n_out)], activation=[], output_activation=out, loss=loss)


def _reference(loss, z, a, y):
    """The loss from the definitions in high precision.  bce and cross_entropy are
    functions of z (the library computes them from z); the squared errors are
    functions of the output a, taken as the float64 values the network returns
    (a sigmoid output of 1 - 1e-13 is only known to ~1e-16 in float64: the loss
    cannot be more exact than the a it is computed from)."""
    z = [mpmath.mpf(float(v)) for v in z]
    a = [mpmath.mpf(float(v)) for v in a]
    y = [mpmath.mpf(float(v)) for v in y]
    if loss == "cross_entropy":
        zmax = max(z)
        lse = zmax + mpmath.log(mpmath.fsum(mpmath.exp(v - zmax) for v in z))
        return mpmath.fsum(-yj * (zj - lse) for yj, zj in zip(y, z))
    if loss == "bce":  # softplus(z) - y z, the form that stays finite
        return mpmath.fsum(mpmath.log1p(mpmath.exp(zj)) - yj * zj for yj, zj in zip(y, z))
    d2 = [(aj - yj) ** 2 for aj, yj in zip(a, y)]
    return {"sse": mpmath.fsum(d2), "half_sse": mpmath.fsum(d2) / 2, "mse": mpmath.fsum(d2) / len(d2)}[loss]


@pytest.mark.parametrize("loss,out", [("cross_entropy", "softmax"), ("bce", "sigmoid"), ("sse", "sigmoid"),
                                      ("half_sse", "sigmoid"), ("mse", "sigmoid"), ("mse", "identity")])
def test_losses_at_extreme_logits_match_a_high_precision_reference(loss, out):
    rng = np.random.default_rng(0)
    cases = [[v, v, v] for v in EXTREME] + [[v, -v, 0.0] for v in EXTREME] + [list(rng.choice(EXTREME, 3))
                                                                                 for _ in range(20)]
    for z in cases:
        if out == "identity" and max(abs(v) for v in z) > 1e150:
            continue  # (a - y)^2 overflows float64 itself: refused by loss_value, not a wrong answer
        y = [1.0, 0.0, 0.0] if loss == "cross_entropy" else [1.0, 0.0, 1.0]
        net = _net_with_output_z(loss, out, 3)
        got = net.loss_value(np.array([z]), np.array([y]))
        want = float(_reference(loss, z, net.forward(np.array(z)), y))
        assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-300), (loss, out, z, got, want)


def test_equal_huge_logits_give_log_3():
    """The case found: softmax + cross_entropy at z = (1e17, 1e17, 1e17) returned 0.0."""
    net = _net_with_output_z("cross_entropy", "softmax", 3)
    for v in (1e17, 1e300, -1e300):
        assert net.loss_value(np.full((1, 3), v), np.array([[1.0, 0, 0]])) == pytest.approx(math.log(3), rel=1e-15)


# -- outputs ------------------------------------------------------------------------

def test_predict_classes_refuses_an_overflowing_output():
    net = MLP([2, 3, 2], activation="identity", output_activation="identity", seed=0)
    net.weights[0][...] = 1e200
    with pytest.raises(ValueError, match="the network output must be finite"):
        net.predict_classes(np.array([[1e200, 1e200]]))
    with pytest.raises(ValueError, match="the network output must be finite"):
        net.forward(np.array([[1e200, 1e200]]))


@pytest.mark.parametrize("order", [">", "<", "="])
def test_from_weights_keeps_float32_in_any_byte_order(order):
    W = np.ones((2, 3), dtype=np.dtype(f"{order}f4"))
    b = np.zeros(2, dtype=np.dtype(f"{order}f4"))
    net = MLP.from_weights([W], [b])
    assert net.dtype == np.float32
    np.testing.assert_array_equal(net.forward(np.ones(3)), np.full(2, 3.0, dtype=np.float32))  # mse: identity output


def test_repr_is_a_valid_constructor_call():
    for net in (MLP([4, 3, 2, 1], activation="tanh", loss="bce"),
                MLP([4, 3, 2, 3], activation=["relu", "leaky_relu"], loss="cross_entropy", dtype=np.float32),
                MLP([3, 1])):
        again = eval(repr(net), {"MLP": MLP})
        assert (again.layer_sizes, again.activations, again.loss, again.dtype) == \
            (net.layer_sizes, net.activations, net.loss, net.dtype)


# -- fit's options ---------------------------------------------------------------------

def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5])


def test_resume_with_fewer_epochs_than_the_checkpoint_is_refused(tmp_path):
    X, y = _data()
    path = str(tmp_path / "c.npz")
    MLP([3, 4, 1], seed=0).fit(X, y, epochs=5, checkpoint_every=5, checkpoint_path=path, progress=False)
    with pytest.raises(ValueError, match=r"epochs must be at least the checkpoint's epoch \(5\).*got 3"):
        MLP([3, 4, 1], seed=0).fit(X, y, epochs=3, resume_from=path, progress=False)
    history = MLP([3, 4, 1], seed=0).fit(X, y, epochs=5, resume_from=path, progress=False)
    assert len(history["loss"]) == 5  # nothing left to train: the checkpoint's run, as it was


def test_checkpoint_options_come_together(tmp_path):
    X, y = _data()
    with pytest.raises(ValueError, match="checkpoint_every must be given with checkpoint_path"):
        MLP([3, 4, 1]).fit(X, y, checkpoint_path=str(tmp_path / "c.npz"), progress=False)
    with pytest.raises(ValueError, match="checkpoint_path must be given with checkpoint_every"):
        MLP([3, 4, 1]).fit(X, y, checkpoint_every=2, progress=False)


def test_an_epoch_with_every_step_skipped_is_an_error():
    X, y = _data()
    net = MLP([3, 4, 1], activation="identity", seed=0)
    theta = net.theta.copy()
    with pytest.raises(DivergenceError, match="every mini-batch of epoch 1 .* was skipped"):
        net.fit(X * 1e200, y * 1e200, epochs=2, on_nonfinite="skip", progress=False)
    np.testing.assert_array_equal(net.theta, theta)


class _Returns(schedules.Schedule):
    def __init__(self, value):
        self.value = value

    def lr(self, eta_0, epoch, epochs):
        return self.value


@pytest.mark.parametrize("value, error, match", [
    (-0.1, ValueError, r"the learning rate of epoch 1 from lr_schedule .* must be >= 0.0, got -0.1"),
    ("0.1", TypeError, r"the learning rate of epoch 1 from lr_schedule .* must be a real number"),
    (float("nan"), ValueError, r"the learning rate of epoch 1 .* must be finite"),
    (None, TypeError, r"must be a real number, got None"),
])
def test_a_user_schedule_returning_nonsense_is_refused(value, error, match):
    X, y = _data()
    net = MLP([3, 4, 1], seed=0)
    theta = net.theta.copy()
    with pytest.raises(error, match=match):
        net.fit(X, y, epochs=2, lr_schedule=_Returns(value), progress=False)
    np.testing.assert_array_equal(net.theta, theta)


@pytest.mark.parametrize("key", ["early_stopping", "shuffle", "progress"])
@pytest.mark.parametrize("value", ["no", "yes", 1, 0.0])
def test_truthy_values_are_not_booleans(key, value):
    X, y = _data()
    options = dict(epochs=1, validation_fraction=0.2, progress=False)
    options[key] = value
    with pytest.raises(TypeError, match=f"{key} must be True"):
        MLP([3, 4, 1]).fit(X, y, **options)


def test_a_slowly_exploding_loss_warns_once():
    X, y = _data(200)
    net = MLP([3, 8, 1], activation="identity", seed=0)
    with pytest.warns(RuntimeWarning, match="training loss grew from") as record:
        try:
            net.fit(X, y, epochs=40, batch_size=200, learning_rate=0.6, shuffle=False, progress=False)
        except DivergenceError:
            pass
    assert sum("training loss grew" in str(w.message) for w in record) == 1
    assert EXPLODING >= 1e3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MLP([3, 8, 1], seed=0).fit(X, y, epochs=5, learning_rate=0.01, progress=False)  # a sane run: no warning


# -- callbacks -------------------------------------------------------------------

class _Recorder:
    def __init__(self, stop_at=None):
        self.calls, self.stop_at = [], stop_at

    def on_train_begin(self, net):
        self.calls.append(("begin", net.layer_sizes))

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch", epoch, sorted(logs)))
        return epoch == self.stop_at

    def on_train_end(self, net, history):
        self.calls.append(("end", len(history["loss"])))


def test_callbacks_see_every_epoch_and_can_stop():
    X, y = _data()
    rec = _Recorder(stop_at=3)
    history = MLP([3, 4, 1], seed=0).fit(X, y, epochs=10, validation_fraction=0.25, callbacks=[rec],
                                         progress=False)
    assert len(history["loss"]) == 3
    assert rec.calls[0] == ("begin", [3, 4, 1]) and rec.calls[-1] == ("end", 3)
    assert rec.calls[1] == ("epoch", 1, ["loss", "seconds", "val_loss"])


def test_only_on_epoch_end_is_enough_and_junk_is_refused():
    X, y = _data()

    class OnlyEpoch:
        def on_epoch_end(self, epoch, logs):
            return False

    assert len(MLP([3, 4, 1]).fit(X, y, epochs=2, callbacks=[OnlyEpoch()], progress=False)["loss"]) == 2
    with pytest.raises(TypeError, match="callbacks must be objects with on_train_begin, on_epoch_end"):
        MLP([3, 4, 1]).fit(X, y, epochs=2, callbacks=[print], progress=False)


# -- partial_fit: the optimizer state continues across calls ---------------------------

@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "rmsprop"])
def test_partial_fit_over_chunks_equals_fit_epochs(optimizer):
    """Two partial_fit calls over the same data (no shuffling) train exactly like two epochs of one fit:
    parameters, Adam's moments and its step count continue."""
    X, y = _data(48)
    a, b = MLP([3, 5, 1], seed=3), MLP([3, 5, 1], seed=3)
    a.fit(X, y, epochs=2, batch_size=8, learning_rate=0.01, optimizer=optimizer, shuffle=False, progress=False)
    for _ in range(2):
        info = b.partial_fit(X, y, batch_size=8, learning_rate=0.01, optimizer=optimizer, shuffle=False)
    assert a.theta.tobytes() == b.theta.tobytes()
    assert info["passes"] == 2 and info["optimizer_steps"] == 12 and info["samples"] == 48


def test_partial_fit_continues_the_schedule_and_refuses_a_new_optimizer():
    X, y = _data(16)
    net = MLP([3, 4, 1], seed=0)
    rates = [net.partial_fit(X, y, learning_rate=0.1, lr_schedule=schedules.Step(1, 0.5))["lr"] for _ in range(3)]
    assert rates == [0.1, 0.05, 0.025]
    with pytest.raises(ValueError, match="optimizer must stay 'sgd' across partial_fit calls"):
        net.partial_fit(X, y, optimizer="adam")
    with pytest.raises(ValueError, match="lr_schedule must know the run's length"):
        MLP([3, 4, 1]).partial_fit(X, y, lr_schedule="cosine")
    net.reset_training()
    assert net.partial_fit(X, y, optimizer="adam")["passes"] == 1


def test_checkpoint_paths_are_checked_before_the_first_epoch(tmp_path):
    X, y = _data()
    net = MLP([3, 4, 1], seed=0)
    theta = net.theta.copy()
    with pytest.raises(FileNotFoundError, match="checkpoint_path must be in an existing folder"):
        net.fit(X, y, epochs=1000, checkpoint_every=1, checkpoint_path=str(tmp_path / "no" / "c.npz"),
                progress=False)
    with pytest.raises(ValueError, match="checkpoint_path must be a file path, got a directory"):
        net.fit(X, y, epochs=1000, checkpoint_every=1, checkpoint_path=str(tmp_path), progress=False)
    with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
        net.fit(X, y, epochs=1000, checkpoint_every=1, checkpoint_path=str(tmp_path / "c.npz"),
                checkpoint_metadata={"f": object()}, progress=False)
    np.testing.assert_array_equal(net.theta, theta)  # nothing trained
