"""backprop-numba sweep (issue 11, item 3): a grid of train runs, one Dask task each, on a LocalCluster
of 2 worker processes with 1 thread each and no dashboard; every cluster is closed, even when a test fails."""

import csv
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from backprop_numba import cli, sweep as sweep_module  # noqa: E402
from backprop_numba.sweep import sweep  # noqa: E402

ENV = dict(os.environ, PYTHONWARNINGS="ignore")  # numba cache warnings would muddy stderr
# 4 trials; cross_entropy needs a softmax output, so trial 001 (cross_entropy, sigmoid) fails on purpose:
# a value that passes the config checks and fails in training, as a user's would.
SWEEP_TOML = """
[train]
dataset = "digits"
layers = "32"
epochs = 3
seed = 1

[grid]
loss = ["cross_entropy", "mse"]
output-activation = ["softmax", "sigmoid"]
"""
FAILING = 1
TRAIN = {"dataset": "digits", "epochs": 2, "seed": 1}


@pytest.fixture(scope="module")
def cli_sweep(tmp_path_factory):
    """The command end to end, in a subprocess that starts (and closes) its own 2-worker LocalCluster."""
    tmp = tmp_path_factory.mktemp("sweep")
    (tmp / "sweep.toml").write_text(SWEEP_TOML)
    r = subprocess.run([sys.executable, "-m", "backprop_numba", "sweep", "--config", "sweep.toml", "--out", "out",
                        "--workers", "2"], cwd=tmp, capture_output=True, text=True, env=ENV, timeout=300)
    with open(tmp / "out" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return tmp / "out", r, rows


def test_sweep_command_end_to_end(cli_sweep):
    out, r, rows = cli_sweep
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert [row["trial"] for row in rows] == ["0", "1", "2", "3"]
    assert list(rows[0]) == ["trial", "status", "loss", "output-activation", "val_loss", "val_accuracy",
                             "test_loss", "test_accuracy", "epochs", "seconds", "worker", "best", "error"]
    assert [(row["loss"], row["output-activation"]) for row in rows] == [
        ("cross_entropy", "softmax"), ("cross_entropy", "sigmoid"), ("mse", "softmax"), ("mse", "sigmoid")]
    assert [row["status"] for row in rows] == ["ok", "failed", "ok", "ok"]
    for row in rows:
        assert row["worker"].startswith("tcp://") and float(row["seconds"]) > 0
        if row["status"] == "ok":
            assert row["error"] == "" and row["epochs"] == "3"
            assert 0.8 < float(row["val_accuracy"]) <= 1 and 0.8 < float(row["test_accuracy"]) <= 1
            assert sorted(os.listdir(out / "trials" / f"{int(row['trial']):03d}")) == \
                ["loss.png", "metrics.json", "model.npz"]
    # one line per trial as it finishes, then the summary
    assert sum(line.startswith("[") and "trial 00" in line for line in r.stderr.splitlines()) == 4
    assert "sweep of 4 trials on 2 workers" in r.stdout and "3 done, 1 failed" in r.stdout
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_trial_is_recorded_not_fatal(cli_sweep):
    out, r, rows = cli_sweep
    failed = rows[FAILING]
    assert failed["val_accuracy"] == "" and failed["best"] == "false"
    assert "output_activation must be 'softmax' for loss='cross_entropy', got 'sigmoid'" in failed["error"]
    trial = out / "trials" / f"{FAILING:03d}"
    assert os.listdir(trial) == ["error.txt"]
    assert "Traceback" in (trial / "error.txt").read_text()  # the whole story is kept on file
    assert "failed on tcp://" in r.stderr


def test_best_is_the_highest_validation_accuracy_and_its_files_are_copied(cli_sweep):
    out, _, rows = cli_sweep
    done = [row for row in rows if row["status"] == "ok"]
    best = [row for row in rows if row["best"] == "true"]
    assert len(best) == 1 and float(best[0]["val_accuracy"]) == max(float(row["val_accuracy"]) for row in done)
    trial = out / "trials" / f"{int(best[0]['trial']):03d}"
    for name in ("model.npz", "loss.png"):
        assert (out / "best" / name).read_bytes() == (trial / name).read_bytes()
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert metrics["config"]["out"] == os.path.join("out", "trials", trial.name)  # not the worker's temp folder
    assert metrics["config"]["loss"] == best[0]["loss"] and metrics["epochs_run"] == 3
    # the sweep's validation metrics (the trained network on the validation rows) are fit's last epoch's
    # (fit reports accuracy for a cross_entropy trial, as trial 000)
    first = json.loads((out / "trials" / "000" / "metrics.json").read_text())
    assert float(rows[0]["val_accuracy"]) == pytest.approx(first["history"]["val_accuracy"][-1], abs=1e-12)
    assert float(rows[0]["val_loss"]) == pytest.approx(first["history"]["val_loss"][-1], rel=1e-9)
    assert float(rows[0]["test_accuracy"]) == first["test"]["accuracy"]
    model = cli.Model(str(out / "best" / "model.npz"))  # what evaluate and predict read
    assert model.net.layer_sizes == [64, 32, 10]


def test_sweep_function_on_a_client(client, tmp_path):
    rows = sweep({"layers": ["16", "64,32,10"], "lr": [0.02]}, TRAIN, out=str(tmp_path), client=client,
                 progress=False)
    assert [(row["trial"], row["status"], row["layers"], row["lr"]) for row in rows] == [
        (0, "ok", [16], 0.02), (1, "ok", [64, 32, 10], 0.02)]
    workers = set(client.scheduler_info()["workers"])
    assert all(row["worker"] in workers for row in rows)
    assert sum(row["best"] for row in rows) == 1
    for row in rows:
        config = json.loads((tmp_path / "trials" / f"{row['trial']:03d}" / "metrics.json").read_text())["config"]
        assert config["learning_rate"] == 0.02 and config["epochs"] == 2  # lr is --lr, --learning-rate
    assert client.status == "running"  # the caller's client is left open
    with pytest.raises(ValueError, match="already holds a sweep"):
        sweep({"lr": [0.01]}, TRAIN | {"layers": "16"}, out=str(tmp_path), client=client)


def test_regression_sweep_ranks_by_validation_mse_in_the_targets_units(client, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(300, 2))
    y = 50 + 20 * np.sin(3 * X[:, 0]) + 10 * X[:, 1]
    np.savez(tmp_path / "reg.npz", X=X, y=y)
    train = {"data": str(tmp_path / "reg.npz"), "target": "y", "layers": "16", "activation": "tanh", "epochs": 3}
    rows = sweep({"loss": ["mse", "huber"]}, train, out=str(tmp_path / "out"), client=client, progress=False)
    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert all("val_accuracy" not in row and {"val_mae", "test_mse", "test_mae"} <= set(row) for row in rows)
    best = min(rows, key=lambda row: row["val_mse"])
    assert best["best"] and sum(row["best"] for row in rows) == 1
    # val_mse is in the target's units: for loss mse it is the loss on the scaled targets times y_scale^2
    mse = rows[0]
    y_scale = cli.Model(str(tmp_path / "out" / "trials" / "000" / "model.npz")).y_scale
    assert mse["val_mse"] == pytest.approx(mse["val_loss"] * y_scale[0] ** 2, rel=1e-9)
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        assert "val_mse" in next(csv.reader(f))


def test_a_scheduler_without_workers_is_an_error_not_a_hang(tmp_path):
    with distributed.LocalCluster(n_workers=0, dashboard_address=None, processes=False,
                                  scheduler_kwargs={"dashboard_address": ":0"}) as empty:  # no 8787 clash
        started = time.perf_counter()
        with pytest.raises(OSError, match="has no worker after 2 s.*dask worker"):
            sweep({"lr": [0.01]}, TRAIN | {"layers": "16"}, out=str(tmp_path), scheduler=empty.scheduler_address,
                  connect_timeout=2)
        assert time.perf_counter() - started < 15


def test_an_interrupted_sweep_keeps_the_finished_trials(client, tmp_path, monkeypatch):
    record = sweep_module._record

    def ctrl_c_after_one(out, i, point, result):
        if os.path.isdir(os.path.join(out, "trials")):
            raise KeyboardInterrupt
        return record(out, i, point, result)

    monkeypatch.setattr(sweep_module, "_record", ctrl_c_after_one)
    with pytest.raises(KeyboardInterrupt):
        sweep({"lr": [0.01, 0.02, 0.03]}, TRAIN | {"layers": "16"}, out=str(tmp_path), client=client,
              progress=False)
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["best"] == "true"
    assert (tmp_path / "best" / "model.npz").is_file()


def test_every_trial_failing_is_exit_status_1(client, tmp_path, monkeypatch, capsys):
    (tmp_path / "sweep.toml").write_text('[train]\ndataset = "digits"\nlayers = "16"\nepochs = 1\n'
                                         '[grid]\nactivation = ["swish", "gelu"]\n')

    def on_the_fixture(grid, train, workers, **kw):  # the command, on this module's cluster
        return sweep(grid, train, client=client, **kw)

    monkeypatch.setattr(sweep_module, "sweep", on_the_fixture)
    status = cli.main(["sweep", "--config", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err[-1].startswith("backprop-numba: error: every one of the 2 trials failed (the first: activation "
                              "must be one of")
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["failed", "failed"]
    assert not (tmp_path / "out" / "best").exists()


def test_local_cluster_threads_and_closing():
    """Our LocalCluster: one thread per worker, NUMBA_NUM_THREADS=1 in the workers; closed on the way out."""
    with sweep_module._connect(None, 1, None, 10, n_trials=4) as c:
        assert [w["nthreads"] for w in c.scheduler_info()["workers"].values()] == [1]
        assert list(c.run(lambda: os.environ.get("NUMBA_NUM_THREADS")).values()) == ["1"]
    assert c.status == "closed"


BAD = [
    ('[grid]\nlrr = [0.1]\n', "sweep.toml [grid]: unknown option 'lrr'; options are the long names of "
                              "`backprop-numba train --help`: activation, alpha, batch-size"),
    ('[grid]\n', "the grid is empty; give [grid] at least one option with a list of values"),
    ('', "the grid is empty"),
    ('[grid]\nlr = 0.01\n', "[grid]: option 'lr' must be a non-empty list of values to try, e.g. lr = [0.01, "
                            "0.003] or layers = [\"64,32,10\", \"64,64,10\"], got 0.01"),
    ('[grid]\nlr = []\n', "option 'lr' must be a non-empty list"),
    ('[grid]\nepochs = [3, 2.5]\n', "[grid]: option 'epochs' must be an integer, got 2.5"),
    ('[grid]\nlearning-rate = [0.1]\n', "[grid] 'learning-rate' is the same option as [train] 'learning-rate'"),
    ('[grid]\nout = ["a", "b"]\n', "leave out [grid] 'out': the sweep gives each trial its folder"),
    ('[grid]\nvalidation-fraction = [0.1, 0.0]\n', "a sweep picks its best trial on the validation split"),
    ('grid = 3\n', "grid must be a table"),
    ('[grid]\ndata = ["a.csv", "b.csv"]\n', "give the data with one of dataset (e.g. \"digits\") or data"),
]


@pytest.mark.parametrize("grid, message", BAD)
def test_bad_sweep_files_give_one_line_and_status_2(tmp_path, monkeypatch, capsys, grid, message):
    train = '[train]\ndataset = "digits"\nlayers = "16"\nlr = 0.01\n' if "grid = 3" not in grid else ""
    (tmp_path / "sweep.toml").write_text(train + grid)
    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    status = cli.main(["sweep", "--config", "sweep.toml", "--out", "out"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], err
    assert time.perf_counter() - started < 5  # refused before any cluster starts
    assert not (tmp_path / "out").exists()


def test_workers_and_scheduler_are_exclusive(capsys):
    status = cli.main(["sweep", "--config", "s.toml", "--out", "o", "--workers", "2", "--scheduler", "tcp://x:1"])
    assert status == 2 and "not allowed with argument" in capsys.readouterr().err


def test_without_dask_the_message_says_what_to_install(tmp_path, monkeypatch, capsys):
    (tmp_path / "sweep.toml").write_text('[train]\ndataset = "digits"\nlayers = "16"\n[grid]\nlr = [0.01]\n')
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    status = cli.main(["sweep", "--config", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and err == ["backprop-numba: error: a sweep runs on Dask's distributed: pip install 'backprop_numba[dask]'"]
    assert not (tmp_path / "out").exists()


def test_unreachable_scheduler_times_out_with_a_message(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "sweep.toml").write_text('[train]\ndataset = "digits"\nlayers = "16"\n[grid]\nlr = [0.01]\n')
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "backprop_numba", "sweep", "--config", "sweep.toml", "--out", "out",
                        "--scheduler", f"tcp://127.0.0.1:{port}", "--connect-timeout", "2"],
                       cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 1 and time.perf_counter() - started < 20
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"backprop-numba: error: no Dask scheduler reached at tcp://127.0.0.1:{port} within 2 s"), r.stderr
    assert "dask scheduler" in lines[0]
    assert not (tmp_path / "out").exists()


def test_local_cluster_workers_go_quiet_before_the_close():
    """local_client quiets its workers' and nannies' distributed loggers before it closes them, so a heartbeat
    that meets the closing scheduler prints no traceback at the end of a sweep (test_sweep_command_end_to_end
    found one once); quiet_at_shutdown is what it runs there, importable in the worker processes."""
    import logging

    from backprop_numba._dask import local_client, quiet_at_shutdown

    def level():
        return logging.getLogger("distributed.worker").getEffectiveLevel()

    with local_client(distributed, 1) as client:
        assert set(client.run(level).values()) != {logging.CRITICAL}
        for nanny in (False, True):
            client.run(quiet_at_shutdown, nanny=nanny)
            assert set(client.run(level, nanny=nanny).values()) == {logging.CRITICAL}
