"""Learning-rate schedules (against torch.optim.lr_scheduler), early stopping, reproducibility."""

import numpy as np
import pytest

from backprop_numba import MLP, schedules

EPOCHS = 12


def _torch_rates(make, epochs, lr=0.1):
    torch = pytest.importorskip("torch")
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(opt)
    rates = []
    for _ in range(epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return rates


@pytest.mark.parametrize("schedule, make", [
    (schedules.Step(step_size=3, gamma=0.5), lambda o: __import__("torch").optim.lr_scheduler.StepLR(o, 3, 0.5)),
    (schedules.Exponential(gamma=0.8), lambda o: __import__("torch").optim.lr_scheduler.ExponentialLR(o, 0.8)),
    (schedules.Cosine(t_max=EPOCHS, eta_min=0.001),
     lambda o: __import__("torch").optim.lr_scheduler.CosineAnnealingLR(o, EPOCHS, eta_min=0.001)),
])
def test_schedule_matches_torch(schedule, make):
    expected = _torch_rates(make, EPOCHS)
    np.testing.assert_allclose(schedule.rates(0.1, EPOCHS), expected, rtol=1e-12, atol=1e-15)


def test_constant_and_names():
    assert schedules.get_schedule(None).rates(0.3, 3) == [0.3, 0.3, 0.3]
    assert schedules.get_schedule("constant") == schedules.Constant()
    assert schedules.get_schedule("step", step_size=2, gamma=0.5).rates(1.0, 5) == [1, 1, 0.5, 0.5, 0.25]
    cos = schedules.get_schedule("cosine")  # t_max defaults to the run's epochs
    rates = cos.rates(1.0, 5)
    assert rates[0] == 1.0 and rates[-1] == pytest.approx((1 + np.cos(np.pi * 4 / 5)) / 2)


def test_bad_schedule_is_refused():
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        schedules.get_schedule("linear")
    with pytest.raises(ValueError, match="gamma must be > 0"):
        schedules.Step(gamma=0)
    with pytest.raises(TypeError, match="options must be among"):
        schedules.get_schedule("step", decay=3)


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 > 0.5).astype(np.int64)
    return X, y


def test_fit_uses_the_schedule_per_epoch():
    X, y = _data()
    net = MLP([4, 8, 2], activation="tanh", loss="cross_entropy", seed=0)
    h = net.fit(X, y, epochs=6, learning_rate=0.2, lr_schedule=schedules.Step(2, 0.1), progress=False)
    np.testing.assert_allclose(h["lr"], [0.2, 0.2, 0.02, 0.02, 0.002, 0.002])
    # An epoch at the scheduled rate equals a fit of one epoch at that rate, run after the others.
    a = MLP([4, 8, 2], activation="tanh", loss="cross_entropy", seed=0)
    b = MLP([4, 8, 2], activation="tanh", loss="cross_entropy", seed=0)
    a.fit(X, y, epochs=3, learning_rate=0.2, lr_schedule=schedules.Step(2, 0.1), shuffle=False, progress=False)
    for lr in schedules.Step(2, 0.1).rates(0.2, 3):
        b.fit(X, y, epochs=1, learning_rate=lr, shuffle=False, progress=False)
    np.testing.assert_array_equal(a.theta, b.theta)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_seed_same_weights_bit_for_bit(optimizer, dtype):
    X, y = _data()

    def run():
        net = MLP([4, 8, 2], activation="relu", loss="cross_entropy", seed=7, dtype=dtype)
        h = net.fit(X, y, epochs=4, batch_size=16, learning_rate=0.01, optimizer=optimizer, seed=3,
                    validation_fraction=0.25, lr_schedule="cosine", weight_decay=1e-3, progress=False)
        return net, h

    (a, ha), (b, hb) = run(), run()
    assert a.theta.tobytes() == b.theta.tobytes()
    assert ha["loss"] == hb["loss"] and ha["val_loss"] == hb["val_loss"]
    c = MLP([4, 8, 2], activation="relu", loss="cross_entropy", seed=7, dtype=dtype)
    c.fit(X, y, epochs=4, batch_size=16, learning_rate=0.01, optimizer=optimizer, seed=4,
          validation_fraction=0.25, lr_schedule="cosine", weight_decay=1e-3, progress=False)
    assert c.theta.tobytes() != a.theta.tobytes()  # the seed matters


def test_early_stopping_stops_at_patience_and_restores_best():
    X, y = _data(200)
    Xv, yv = _data(60, seed=1)
    net = MLP([4, 32, 2], activation="relu", loss="cross_entropy", seed=0)
    # Reference run without early stopping, one epoch at a time, recording weights.
    ref = MLP([4, 32, 2], activation="relu", loss="cross_entropy", seed=0)
    rh = ref.fit(X, y, epochs=60, batch_size=8, learning_rate=0.05, optimizer="adam", seed=1,
                 validation_data=(Xv, yv), progress=False)
    val = np.array(rh["val_loss"])
    patience, min_delta = 4, 1e-3
    best, best_epoch, wait, stop = np.inf, 0, 0, 0
    for e, v in enumerate(val, start=1):
        if v < best - min_delta:
            best, best_epoch, wait = v, e, 0
        else:
            wait += 1
        if wait >= patience:
            stop = e
            break
    assert stop, "the reference run must overfit within 60 epochs for this test to mean anything"

    h = net.fit(X, y, epochs=60, batch_size=8, learning_rate=0.05, optimizer="adam", seed=1,
                validation_data=(Xv, yv), early_stopping=True, patience=patience, min_delta=min_delta,
                progress=False)
    assert h["stopped_epoch"] == stop and h["best_epoch"] == best_epoch
    assert len(h["loss"]) == stop
    assert h["val_loss"] == rh["val_loss"][:stop]
    # The restored weights are those of the best epoch: rerun to that epoch.
    snapshots = MLP([4, 32, 2], activation="relu", loss="cross_entropy", seed=0)
    snapshots.fit(X, y, epochs=best_epoch, batch_size=8, learning_rate=0.05, optimizer="adam", seed=1,
                  validation_data=(Xv, yv), progress=False)
    np.testing.assert_array_equal(net.theta, snapshots.theta)
    assert net.evaluate(Xv, yv)["loss"] == pytest.approx(best, rel=1e-12)


def test_early_stopping_with_validation_fraction():
    X, y = _data(200)
    net = MLP([4, 16, 2], activation="relu", loss="cross_entropy", seed=0)
    h = net.fit(X, y, epochs=300, batch_size=8, learning_rate=0.05, optimizer="adam", seed=2,
                validation_fraction=0.3, early_stopping=True, patience=3, progress=False)
    assert 0 < h["best_epoch"] <= len(h["loss"]) < 300
    assert h["stopped_epoch"] == len(h["loss"]) == h["best_epoch"] + 3


def test_early_stopping_needs_validation():
    X, y = _data()
    net = MLP([4, 2], loss="cross_entropy", seed=0)
    with pytest.raises(ValueError, match="early_stopping needs validation_data or validation_fraction"):
        net.fit(X, y, early_stopping=True, progress=False)
    with pytest.raises(ValueError, match="validation_fraction must be < 1.0"):
        net.fit(X, y, validation_fraction=1.0, progress=False)
    with pytest.raises(ValueError, match="validation_fraction must be None when validation_data"):
        net.fit(X, y, validation_fraction=0.2, validation_data=(X, y), progress=False)
    with pytest.raises(ValueError, match="patience must be >= 1"):
        net.fit(X, y, validation_fraction=0.2, early_stopping=True, patience=0, progress=False)
