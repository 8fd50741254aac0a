"""Data-parallel training on a 2-worker Dask LocalCluster (backprop_numba.data_parallel).

Exact oracles first: one worker is fit bit for bit (the average of one is the identity); two workers
on identical shards without shuffling are one worker (0.5 x + 0.5 x = x); two different shards follow
the documented averaging of theta and Adam's state, replayed in this process with training.Workspace.
Then accuracy: on digits and on 20,000 Fashion-MNIST images, two workers reach the single-process
test accuracy within ACCURACY_MARGIN.  The cluster is always closed, even when a test fails.
"""

import sys

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_digits  # noqa: E402

from backprop_numba import MLP, DivergenceError, datasets  # noqa: E402
from backprop_numba import data_parallel  # noqa: E402
from backprop_numba.data_parallel import fit_data_parallel  # noqa: E402
from backprop_numba.training import EpochResult, Workspace  # noqa: E402

# Two workers may end below the single process's test accuracy by at most this (a fraction: 2 points).
ACCURACY_MARGIN = 0.02


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


def net_of(sizes=(64, 32, 10), **kw):
    return MLP(list(sizes), activation="relu", loss="cross_entropy", seed=0, **kw)


def accuracy(net, X, y):
    return float(np.mean(net.predict_classes(X) == y))


@pytest.mark.parametrize("sync_every, optimizer, dropout", [(None, "adam", 0.0), (5, "momentum", 0.2)])
def test_one_worker_is_fit_bit_for_bit(client, digits, sync_every, optimizer, dropout):
    X, y = digits[0][:600], digits[1][:600]
    kw = dict(epochs=3, batch_size=32, learning_rate=0.01, optimizer=optimizer, seed=3)
    single, parallel = net_of(dropout=dropout), net_of(dropout=dropout)
    h1 = single.fit(X, y, progress=False, **kw)
    h2 = fit_data_parallel(parallel, X, y, client=client, n_workers=1, sync_every=sync_every, **kw)
    assert parallel.theta.tobytes() == single.theta.tobytes()
    assert h2["loss"] == h1["loss"] and h2["accuracy"] == h1["accuracy"]
    assert h2["syncs"] == [1 if sync_every is None else -(-600 // 32 // sync_every)] * 3


def test_sample_weight_as_in_fit(client, digits):
    X, y = digits[0][:300], digits[1][:300]
    w = np.random.default_rng(0).uniform(0.0, 3.0, size=len(y))
    kw = dict(epochs=2, batch_size=32, learning_rate=0.01, optimizer="adam", seed=2, sample_weight=w)
    single = net_of()
    h1 = single.fit(X, y, progress=False, **kw)
    for data in ("numpy", "dask"):
        parallel = net_of()
        if data == "dask":
            da = pytest.importorskip("dask.array")
            X_, kw_ = da.from_array(X, chunks=100), dict(kw, sample_weight=da.from_array(w, chunks=100))
        else:
            X_, kw_ = X, kw
        h2 = fit_data_parallel(parallel, X_, y, client=client, n_workers=1, sync_every=4, **kw_)
        assert parallel.theta.tobytes() == single.theta.tobytes(), data
        assert h2["loss"] == h1["loss"] and h2["accuracy"] == h1["accuracy"], data
    with pytest.raises(ValueError, match="sample_weight must not be all zero on a worker's shard"):
        fit_data_parallel(net_of(), X, y, client=client, sample_weight=np.tile([1.0, 0.0], 150), epochs=1)


@pytest.mark.parametrize("inline_bytes", [data_parallel.INLINE_BYTES, 0])  # parameters in the task / scattered
def test_identical_shards_average_to_one_worker(client, digits, monkeypatch, inline_bytes):
    monkeypatch.setattr(data_parallel, "INLINE_BYTES", inline_bytes)
    X, y = digits[0][:300], digits[1][:300]
    kw = dict(epochs=2, batch_size=16, learning_rate=0.01, optimizer="adam", shuffle=False)
    single, parallel = net_of(), net_of()
    single.fit(X, y, progress=False, **kw)
    # rows are dealt round-robin, so repeating each row gives both workers the same shard
    fit_data_parallel(parallel, np.repeat(X, 2, axis=0), np.repeat(y, 2), client=client, sync_every=4, **kw)
    assert parallel.theta.tobytes() == single.theta.tobytes()


def test_dask_arrays_are_dealt_by_blocks(client, digits):
    da = pytest.importorskip("dask.array")
    X, y = digits[0][:300], digits[1][:300]
    kw = dict(epochs=2, batch_size=32, learning_rate=0.01, optimizer="adam", seed=1, sync_every=3)
    single, parallel = net_of(), net_of()
    single.fit(X, y, progress=False, **{k: v for k, v in kw.items() if k != "sync_every"})
    fit_data_parallel(parallel, da.from_array(X, chunks=(70, 32)), y, client=client, n_workers=1, **kw)
    assert parallel.theta.tobytes() == single.theta.tobytes()  # the blocks joined in order on one worker: X
    # block b goes to worker b mod 2: blocks of 150 rows make the shards that rows dealt one by one make of Xi
    Xi, yi = np.empty_like(X), np.empty_like(y)
    Xi[0::2], Xi[1::2], yi[0::2], yi[1::2] = X[:150], X[150:], y[:150], y[150:]
    rows, blocks = net_of(), net_of()
    fit_data_parallel(rows, Xi, yi, client=client, **kw)
    fit_data_parallel(blocks, da.from_array(X, chunks=150), da.from_array(y, chunks=150), client=client, **kw)
    assert blocks.theta.tobytes() == rows.theta.tobytes()
    bad = X.copy()
    bad[200, 3] = np.nan
    with pytest.raises(ValueError, match="X must be finite, got NaN"):  # checked on the worker that holds it
        fit_data_parallel(net_of(), da.from_array(bad, chunks=100), y, client=client, **kw)
    with pytest.raises(ValueError, match="X must have at least one block of rows per worker"):
        fit_data_parallel(net_of(), da.from_array(X, chunks=300), y, client=client, **kw)


def replay(net, shards, epochs, sync_every, lr, average_state=True):
    """The documented algorithm in this process: each shard from the averaged theta and state, weights n_k."""
    wss = [Workspace(net, 32, "adam") for _ in shards]
    theta, state, t = net.theta.copy(), wss[0].state.copy(), 0
    for _ in range(epochs):
        sums = [EpochResult() for _ in shards]
        n_batches = max(ws.n_batches(X.shape[0]) for ws, (X, _) in zip(wss, shards))
        for first in range(0, n_batches, sync_every):
            outs = []
            for k, (ws, (X, Y)) in enumerate(zip(wss, shards)):
                net.theta[...], ws.state[...], ws.step = theta, state if average_state else 0, t
                carried = EpochResult(loss_sum=sums[k].loss_sum, correct=sums[k].correct,
                                      weight_sum=sums[k].weight_sum, batches=first)
                sums[k] = ws.run_epoch(X, Y, lr, -1, resume=carried, stop=first + sync_every)
                outs.append((net.theta.copy(), ws.state.copy(), sums[k].samples, sums[k].steps))
            p = np.array([o[2] for o in outs], dtype=float) / sum(o[2] for o in outs)
            theta = sum(pk * o[0] for pk, o in zip(p, outs))
            state = sum(pk * o[1] for pk, o in zip(p, outs))
            t += max(o[3] for o in outs)
    net.theta[...] = theta
    return net


def test_adam_moments_are_averaged_and_the_step_count_kept(client, digits):
    X, y = digits[0][:333], digits[1][:333]  # shards of 167 and 166 rows: unequal weights, unequal last batches
    Y = np.eye(10)[y]
    shards = [(np.ascontiguousarray(X[k::2]), np.ascontiguousarray(Y[k::2])) for k in range(2)]
    parallel = net_of()
    fit_data_parallel(parallel, X, y, client=client, epochs=2, batch_size=32, learning_rate=0.01, optimizer="adam",
                      shuffle=False, sync_every=2)
    expected = replay(net_of(), shards, epochs=2, sync_every=2, lr=0.01)
    assert parallel.theta.tobytes() == expected.theta.tobytes()  # same kernels, same sums, same order
    # the oracle can tell: moments restarted at zero each round give other parameters
    restarted = replay(net_of(), shards, epochs=2, sync_every=2, lr=0.01, average_state=False)
    assert np.abs(restarted.theta - expected.theta).max() > 1e-6


def test_digits_reaches_single_process_accuracy(client, digits):
    X, y = digits
    Xtr, ytr, Xte, yte = X[:1400], y[:1400], X[1400:], y[1400:]
    kw = dict(epochs=20, batch_size=32, learning_rate=0.01, optimizer="adam", seed=1)
    single = net_of()
    single.fit(Xtr, ytr, progress=False, **kw)
    for sync_every in (None, 8):  # once an epoch (1 average), and every 8 steps (3 averages an epoch)
        parallel = net_of()
        history = fit_data_parallel(parallel, Xtr, ytr, client=client, sync_every=sync_every, **kw)
        assert history["loss"][-1] < history["loss"][0] / 5
        assert accuracy(parallel, Xte, yte) >= accuracy(single, Xte, yte) - ACCURACY_MARGIN, sync_every
    assert accuracy(single, Xte, yte) > 0.85


@pytest.fixture(scope="module")
def fashion():
    try:  # the default folder (CI installs the package), or BACKPROP_NUMBA_FASHION_MNIST
        data = datasets.load("fashion-mnist")
    except datasets.DatasetError as exc:
        pytest.fail(f"{exc}. This test needs Fashion-MNIST: `apt-get install dataset-fashion-mnist` (.ci/run does), "
                    "or point BACKPROP_NUMBA_FASHION_MNIST at a folder holding its four IDX files.")
    return data.X[:20000] / 255, data.y[:20000], data.X_test[:5000] / 255, data.y_test[:5000]


def test_fashion_mnist_reaches_single_process_accuracy(client, fashion):
    Xtr, ytr, Xte, yte = fashion
    kw = dict(epochs=4, batch_size=32, learning_rate=0.001, optimizer="adam", seed=1)
    single, parallel = net_of((784, 64, 10)), net_of((784, 64, 10))
    single.fit(Xtr, ytr, progress=False, **kw)
    history = fit_data_parallel(parallel, Xtr, ytr, client=client, sync_every=50, validation_data=(Xte, yte), **kw)
    assert history["syncs"] == [7] * 4  # 313 mini-batches per worker, averaged every 50
    assert history["val_accuracy"][-1] == accuracy(parallel, Xte, yte)
    assert accuracy(parallel, Xte, yte) >= accuracy(single, Xte, yte) - ACCURACY_MARGIN
    assert accuracy(single, Xte, yte) > 0.8


def test_reproducible_and_saved_like_any_model(client, digits, tmp_path):
    X, y = digits[0][:400], digits[1][:400]
    kw = dict(epochs=2, learning_rate=0.01, optimizer="adam", seed=7, sync_every=3)
    a, b = net_of(), net_of()
    fit_data_parallel(a, X, y, client=client, **kw)
    fit_data_parallel(b, X, y, n_workers=2, **kw)  # its own LocalCluster, started and closed
    assert a.theta.tobytes() == b.theta.tobytes()
    a.save(tmp_path / "dp.npz")
    loaded = MLP.load(tmp_path / "dp.npz")
    np.testing.assert_array_equal(loaded.predict(X), a.predict(X))


def test_divergence_keeps_the_last_average(client, digits):
    X, y = digits[0][:200], digits[1][:200]
    net = net_of()
    with pytest.raises(DivergenceError, match="training diverged on worker") as caught:
        fit_data_parallel(net, X * 1e150, y, client=client, epochs=2, learning_rate=1e10, sync_every=1)
    assert np.isfinite(net.theta).all() and caught.value.history["loss"] == [] and caught.value.epoch == 1


@pytest.mark.parametrize("kw, error, match", [
    (dict(sync_every=0), ValueError, "sync_every must be >= 1, got 0"),
    (dict(sync_every=1.5), TypeError, "sync_every must be an integer"),
    (dict(n_workers=0), ValueError, "n_workers must be >= 1, got 0"),
    (dict(epochs=0), ValueError, "epochs must be >= 1"),
    (dict(optimizer="lbfgs"), ValueError, "optimizer must be one of"),
    (dict(scheduler="tcp://127.0.0.1:1"), ValueError, "scheduler must be None when client is given"),
    (dict(n_workers=3, timeout=1.0), TimeoutError, "n_workers must be at most the cluster's workers"),
    (dict(rows=1), ValueError, "X must have at least one row per worker"),
    (dict(rows="mismatch"), ValueError, r"Y must have shape \(50, 10\)"),
    (dict(validation_data=[1, 2, 3]), TypeError, "validation_data must be a tuple"),
])
def test_bad_input(client, digits, kw, error, match):
    X, y = digits[0][:50], digits[1][:50]
    rows = kw.pop("rows", None)
    if rows == "mismatch":
        y = y[:40]
    elif rows is not None:
        X, y = X[:rows], y[:rows]
    with pytest.raises(error, match=match):
        fit_data_parallel(net_of(), X, y, client=client, **kw)


def test_unreachable_scheduler_and_missing_dask(monkeypatch, digits):
    X, y = digits[0][:50], digits[1][:50]
    with pytest.raises(TimeoutError, match="no Dask scheduler reached at tcp://127.0.0.1:1 within 1 s"):
        fit_data_parallel(net_of(), X, y, scheduler="tcp://127.0.0.1:1", timeout=1.0)
    with pytest.raises(TypeError, match="net must be a backprop_numba.MLP"):
        fit_data_parallel("net", X, y)
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install 'backprop_numba\[dask\]'"):
        fit_data_parallel(net_of(), X, y)


def test_a_cluster_without_workers_times_out(digits):
    cluster = distributed.LocalCluster(n_workers=0, dashboard_address=None,
                                       scheduler_kwargs={"dashboard_address": ":0"})
    try:
        c = distributed.Client(cluster)
        try:
            with pytest.raises(TimeoutError, match="the cluster must have a worker; waited 1 s, got none"):
                fit_data_parallel(net_of(), digits[0][:50], digits[1][:50], client=c, timeout=1.0)
        finally:
            c.close()
    finally:
        cluster.close()
