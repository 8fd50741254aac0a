"""Checkpoints: resuming a run gives bit-identical results to an uninterrupted one."""

import numpy as np
import pytest

from backprop_numba import MLP, schedules
from backprop_numba.checkpoint import read_checkpoint


class Interrupt(Exception):
    pass


class InterruptingCosine(schedules.Cosine):
    """A cosine schedule that kills the run when epoch `at` (0-based) starts: a crash mid-run."""

    def __init__(self, at):
        super().__init__()
        self._at = at

    def params(self):
        return {}

    def lr(self, eta_0, epoch, epochs):
        if epoch == self._at:
            raise Interrupt
        return super().lr(eta_0, epoch, epochs)


def _data(n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = (np.sin(X[:, 0]) + X[:, 1] * X[:, 2] > 0).astype(np.int64)
    return X, y


OPTIONS = dict(epochs=7, batch_size=8, learning_rate=0.02, seed=11, validation_fraction=0.2, progress=False,
               weight_decay=1e-3)


def _net(dtype=np.float64, seed=3):
    return MLP([5, 7, 3], activation="tanh", loss="cross_entropy", seed=seed, dtype=dtype)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resume_equals_uninterrupted(tmp_path, optimizer, dtype):
    X, y = _data()
    full = _net(dtype)
    h_full = full.fit(X, y, optimizer=optimizer, lr_schedule="cosine", **OPTIONS)

    path = tmp_path / "run.ckpt.npz"
    crashed = _net(dtype)
    with pytest.raises(Interrupt):
        crashed.fit(X, y, optimizer=optimizer, lr_schedule=InterruptingCosine(at=5), checkpoint_every=2,
                    checkpoint_path=path, **OPTIONS)
    arrays, fields = read_checkpoint(path)
    assert fields["epoch"] == 4 and fields["optimizer"] == optimizer
    assert fields["step"] == 4 * int(np.ceil(72 / 8))

    resumed = _net(dtype, seed=999)  # different initial weights: all must come from the checkpoint
    h = resumed.fit(X, y, optimizer=optimizer, lr_schedule="cosine", resume_from=path, **OPTIONS)
    assert resumed.theta.tobytes() == full.theta.tobytes()
    assert h["loss"] == h_full["loss"] and h["val_loss"] == h_full["val_loss"] and h["lr"] == h_full["lr"]


def test_resume_with_early_stopping_state(tmp_path):
    X, y = _data(150)
    opts = dict(epochs=80, batch_size=4, learning_rate=0.05, optimizer="adam", seed=1, progress=False,
                validation_fraction=0.3, early_stopping=True, patience=5)
    full = _net()
    h_full = full.fit(X, y, **opts)
    assert h_full["stopped_epoch"] > 6
    path = tmp_path / "es.npz"
    first = _net()
    first.fit(X, y, **dict(opts, epochs=6), checkpoint_every=3, checkpoint_path=path)
    resumed = _net()
    h = resumed.fit(X, y, **opts, resume_from=path)
    assert (h["best_epoch"], h["stopped_epoch"]) == (h_full["best_epoch"], h_full["stopped_epoch"])
    assert resumed.theta.tobytes() == full.theta.tobytes()


def test_checkpoint_is_a_model_file(tmp_path):
    X, y = _data()
    net = _net()
    path = tmp_path / "c.npz"
    net.fit(X, y, epochs=3, checkpoint_every=1, checkpoint_path=path, optimizer="adam", progress=False)
    loaded = MLP.load(path)
    np.testing.assert_array_equal(loaded.theta, net.theta)
    with np.load(path, allow_pickle=False) as data:
        assert {"extra.optimizer_state", "extra.step", "extra.epoch", "extra.rng_state"} <= set(data.files)


def test_resume_refuses_mismatches(tmp_path):
    X, y = _data()
    path = tmp_path / "c.npz"
    _net().fit(X, y, epochs=2, checkpoint_every=1, checkpoint_path=path, optimizer="adam", progress=False)
    with pytest.raises(ValueError, match="optimizer must be the checkpoint's"):
        _net().fit(X, y, epochs=4, optimizer="sgd", resume_from=path, progress=False)
    with pytest.raises(ValueError, match="resume_from must be a checkpoint of this network"):
        MLP([5, 4, 3], loss="cross_entropy").fit(X, y, epochs=4, optimizer="adam", resume_from=path,
                                                 progress=False)
    model = tmp_path / "m.npz"
    _net().save(model)
    with pytest.raises(ValueError, match="not a training checkpoint"):
        _net().fit(X, y, epochs=4, resume_from=model, progress=False)
    with pytest.raises(FileNotFoundError):
        _net().fit(X, y, epochs=4, resume_from=tmp_path / "nope.npz", progress=False)
    with pytest.raises(ValueError, match="checkpoint_path must be given"):
        _net().fit(X, y, epochs=4, checkpoint_every=1, progress=False)
    # A tampered checkpoint fails its checksum like any model file.
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        _net().fit(X, y, epochs=4, optimizer="adam", resume_from=path, progress=False)


def test_resuming_a_stopped_run_changes_nothing(tmp_path):
    X, y = _data(150)
    opts = dict(epochs=80, batch_size=4, learning_rate=0.05, optimizer="adam", seed=1, progress=False,
                validation_fraction=0.3, early_stopping=True, patience=3)
    path = tmp_path / "stopped.npz"
    net = _net()
    h = net.fit(X, y, **opts, checkpoint_every=50, checkpoint_path=path)
    assert 0 < h["stopped_epoch"] < 80
    assert read_checkpoint(path)[1]["epoch"] == h["stopped_epoch"]  # written when it stopped
    again = _net(seed=5)
    h2 = again.fit(X, y, **opts, resume_from=path)
    assert (h2["best_epoch"], h2["stopped_epoch"]) == (h["best_epoch"], h["stopped_epoch"])
    assert h2["loss"] == h["loss"] and again.theta.tobytes() == net.theta.tobytes()
