"""What a new user hits (issue 13): read-only installs, resume, first-use compile, CLI defaults, docs."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import backprop_numba

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.dirname(os.path.abspath(backprop_numba.__file__))
ENV = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR",)}
ENV["PYTHONWARNINGS"] = "ignore"


def cli(*args, env=None, timeout=300, module="backprop_numba.cli"):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          env=env or ENV, timeout=timeout)


# -- 2. import with no writable cache location ---------------------------------------------

# Runs as an unprivileged user (root ignores permissions): as root the child drops to
# nobody (65534) after importing what it needs from the standard library, because this
# interpreter may live in a folder only root can read.
UNPRIVILEGED_CHILD = r"""
import os, sys, tempfile, runpy, argparse, json, stat, platform, csv, glob, gzip, dataclasses, hashlib, zipfile
import math, time, textwrap, gettext, shutil, importlib.util, io, struct, contextlib, signal, warnings, shlex, threading
import ctypes, importlib.metadata
import numpy as np, numba
numba.njit(lambda x: x + 1)(1.0)  # numba imports parts of the standard library lazily: load them now
from numba.np.ufunc import parallel
parallel._launch_threads()  # and its threading layer, a library beside it
package_copy, tmp, what = sys.argv[1:4]
if os.getuid() == 0:
    try:
        os.setgid(65534)
        os.setuid(65534)
    except PermissionError:  # a container without CAP_SETUID: root here would bypass the permissions
        sys.exit(77)
os.environ["HOME"] = "/nonexistent"
os.environ.pop("NUMBA_CACHE_DIR", None)
tempfile.tempdir = tmp
sys.path.insert(0, package_copy)
if what == "import":
    import backprop_numba
    assert backprop_numba.__file__.startswith(package_copy), backprop_numba.__file__
    net = backprop_numba.MLP([2, 3, 1], seed=0)
    print("forward", float(net.forward(np.ones(2))[0]))
    print("NUMBA_CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR"))
else:
    sys.argv = ["backprop_numba", "--help"]
    runpy.run_module("backprop_numba", run_name="__main__", alter_sys=True)
"""


@pytest.fixture()
def read_only_install():
    """A copy of the package in a folder nobody can write, and a temporary folder for the child."""
    if not hasattr(os, "getuid"):
        pytest.skip("POSIX permissions")
    top = tempfile.mkdtemp(prefix="bpn-ro-")
    os.chmod(top, 0o755)
    shutil.copytree(PACKAGE, os.path.join(top, "site", "backprop_numba"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    tmp = os.path.join(top, "tmp")
    os.mkdir(tmp)
    os.chmod(tmp, 0o1777)
    for folder, dirs, files in os.walk(os.path.join(top, "site")):
        os.chmod(folder, 0o555)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
    yield os.path.join(top, "site"), tmp
    for folder, dirs, files in os.walk(top):
        os.chmod(folder, 0o755)
    shutil.rmtree(top, ignore_errors=True)


def _unprivileged(site, tmp, what):
    env = {k: v for k, v in ENV.items() if k not in ("PYTHONPATH", "HOME")}
    r = subprocess.run([sys.executable, "-c", UNPRIVILEGED_CHILD, site, tmp, what], capture_output=True,
                       text=True, env=env, cwd="/", timeout=600)
    if r.returncode == 77:
        pytest.skip("cannot drop root privileges here (no CAP_SETUID)")
    return r


def test_import_and_help_with_package_and_home_read_only(read_only_install):
    site, tmp = read_only_install
    r = _unprivileged(site, tmp, "import")
    assert r.returncode == 0, r.stderr
    assert "no locator available" not in r.stderr and "Traceback" not in r.stderr
    notes = [line for line in r.stderr.splitlines() if line.startswith("backprop-numba: note:")]
    assert len(notes) == 1 and "NUMBA_CACHE_DIR" in notes[0], r.stderr
    cache = os.path.join(tmp, f"backprop_numba-numba-cache-{65534 if os.getuid() == 0 else os.getuid()}")
    assert f"NUMBA_CACHE_DIR {cache}" in r.stdout
    assert any(name.endswith(".nbi") for _, _, files in os.walk(cache) for name in files)  # it was used
    assert oct(os.stat(cache).st_mode & 0o777) == oct(0o700)  # private: cache files are pickles

    r = _unprivileged(site, tmp, "help")
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "evaluate" in r.stdout and "Traceback" not in r.stderr


def test_import_and_help_with_nothing_writable(read_only_install):
    site, tmp = read_only_install
    os.chmod(tmp, 0o555)  # the temporary folder too: no cache at all, kernels compile in every process
    r = _unprivileged(site, tmp, "help")
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "Traceback" not in r.stderr
    notes = [line for line in r.stderr.splitlines() if line.startswith("backprop-numba: note:")]
    assert len(notes) == 1 and "compiled again in every process" in notes[0] and "NUMBA_CACHE_DIR" in notes[0]


def test_no_note_when_the_cache_is_writable():
    r = subprocess.run([sys.executable, "-c", "import backprop_numba"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_python_dash_m_backprop_numba():
    r = cli("--help", module="backprop_numba")
    assert r.returncode == 0 and "train" in r.stdout
    r = cli("--version", module="backprop_numba")
    assert r.returncode == 0 and backprop_numba.__version__ in r.stdout


# -- 1. train --resume -------------------------------------------------------------------------

def run_main(args, capsys):
    """The CLI's main() in this process (kernels compiled once for the module): (status, stdout, stderr)."""
    from backprop_numba.cli import main
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_checkpoint_metadata_round_trip(tmp_path):
    from backprop_numba import MLP
    from backprop_numba.checkpoint import read_checkpoint
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = X[:, :1] ** 2
    net = MLP([3, 4, 1], seed=0)
    net.fit(X, y, epochs=2, checkpoint_every=1, checkpoint_path=tmp_path / "a.npz", progress=False,
            checkpoint_metadata={"cli_options": {"seed": 3, "layers": [3, 4, 1]}})
    assert read_checkpoint(tmp_path / "a.npz")[1]["metadata"] == {"cli_options": {"seed": 3, "layers": [3, 4, 1]}}
    net.fit(X, y, epochs=1, checkpoint_every=1, checkpoint_path=tmp_path / "b.npz", progress=False)
    assert read_checkpoint(tmp_path / "b.npz")[1]["metadata"] == {}
    assert MLP.load(tmp_path / "a.npz").layer_sizes == [3, 4, 1]  # still a model file


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    """A 4-epoch digits run cut after 2 epochs (checkpoint), and the uninterrupted run."""
    pytest.importorskip("sklearn")
    from backprop_numba.cli import main
    tmp = tmp_path_factory.mktemp("resume")
    common = ["train", "--dataset", "digits", "--hidden", "16", "--schedule", "constant", "--seed", "3",
              "--quiet", "--lr", "0.02"]
    assert main(common + ["--epochs", "4", "--out", str(tmp / "full")]) == 0
    assert main(common + ["--epochs", "2", "--checkpoint-every", "1", "--out", str(tmp / "part")]) == 0
    return tmp


@pytest.mark.parametrize("option, value, recorded", [
    ("--seed", "7", "--seed 3"),
    ("--learning-rate", "0.5", "--learning-rate 0.02"),
    ("--test-fraction", "0.3", "--test-fraction 0.2"),
    ("--validation-fraction", "0", "--validation-fraction 0.1"),
    ("--batch-size", "64", "--batch-size 32"),
    ("--dtype", "float32", "--dtype float64"),
    ("--activation", "tanh", "--activation relu"),
    ("--optimizer", "sgd", "--optimizer adam"),
    ("--loss", "mse", "--loss cross_entropy"),
    ("--schedule", "cosine", "--schedule constant"),
    ("--weight-decay", "0.001", "--weight-decay 0.0"),
    ("--beta1", "0.8", "--beta1 0.9"),
    ("--scale", "standard", "--scale auto"),
    ("--dataset", "mnist5k", "--dataset digits"),
    ("--hidden", "32", "--layers 64,16,10"),
    ("--layers", "64,8,10", "--layers 64,16,10"),
])
def test_resume_refuses_a_conflicting_option(digits_checkpoint, capsys, option, value, recorded):
    ckpt = digits_checkpoint / "part" / "checkpoint.npz"
    status, out, err = run_main(["train", "--resume", ckpt, option, value, "--out", digits_checkpoint / "x"],
                                capsys)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err
    assert f"{option} {value}" in lines[0] and f"conflicts with the checkpoint's {recorded}" in lines[0]
    assert not (digits_checkpoint / "x").exists()


def test_resume_refuses_a_conflicting_option_from_a_config_file(digits_checkpoint, capsys):
    config = digits_checkpoint / "run.toml"
    config.write_text("[train]\nseed = 5\n")
    status, _, err = run_main(["train", "--config", config, "--resume", digits_checkpoint / "part" / "checkpoint.npz"],
                              capsys)
    assert status == 2 and "--seed 5 conflicts with the checkpoint's --seed 3" in err


def test_resume_refuses_fewer_epochs_than_done(digits_checkpoint, capsys):
    ckpt = digits_checkpoint / "part" / "checkpoint.npz"
    status, _, err = run_main(["train", "--resume", ckpt, "--epochs", "1"], capsys)
    assert status == 2 and "--epochs 1 is fewer than the 2 epochs" in err and str(ckpt) in err


def test_resume_takes_the_options_from_the_checkpoint(digits_checkpoint, capsys):
    """Only --resume, --epochs and --out given: the result is the uninterrupted run's, bit for bit."""
    from backprop_numba import MLP
    ckpt = digits_checkpoint / "part" / "checkpoint.npz"
    out = digits_checkpoint / "resumed"
    status, stdout, err = run_main(["train", "--resume", ckpt, "--epochs", "4", "--out", out], capsys)
    assert status == 0, err
    assert f"resuming from {ckpt}: epoch 2 done, training to epoch 4" in err
    assert "--epochs 4 instead of the 2 the run was started with" in err  # more epochs: allowed, said
    assert "2 more epochs (4 in all)" in stdout
    full = MLP.load(digits_checkpoint / "full" / "model.npz")
    assert MLP.load(out / "model.npz").theta.tobytes() == full.theta.tobytes()
    m = json.loads((out / "metrics.json").read_text())
    assert m["resumed_from"] == {"file": str(ckpt), "epoch": 2}
    assert m["config"]["seed"] == 3 and m["config"]["layers"] == [64, 16, 10]
    assert m["config"]["learning_rate"] == 0.02 and m["config"]["schedule"] == "constant"
    # The same options given again are no conflict.
    status, _, err = run_main(["train", "--resume", ckpt, "--epochs", "4", "--seed", "3", "--hidden", "16",
                               "--dataset", "digits", "--lr", "0.02", "--out", digits_checkpoint / "again",
                               "--quiet"], capsys)
    assert status == 0, err


# -- 4. first-use compile notice -------------------------------------------------------------

def _small_csv(path, n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    label = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    path.write_text("a,b,c,target\n" + "".join(f"{a:.5f},{b:.5f},{c:.5f},{t}\n" for (a, b, c), t in zip(X, label)))
    return path


def test_compile_notice_on_first_use_only(tmp_path):
    """A fresh numba cache: one notice line, compile time reported apart; then from the cache: no notice."""
    data = _small_csv(tmp_path / "d.csv")
    env = dict(ENV, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    args = ["train", "--data", data, "--hidden", "4", "--epochs", "2", "--quiet"]
    r = cli(*args, "--out", tmp_path / "a", env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("backprop-numba: compiling kernels for float64 (first use") == 1, r.stderr
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["compile_time_s"] > m["train_time_s"]  # the compile is not in the training time
    r = cli(*args, "--out", tmp_path / "b", env=env)
    assert r.returncode == 0 and "compiling" not in r.stderr, r.stderr
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert "compile_time_s" in m and m["train_time_s"] > 0


def test_kernels_ready_in_process():
    from backprop_numba import MLP, _compile
    net = MLP([2, 3, 2], output_activation="softmax", loss="cross_entropy", seed=0)
    X = np.ones((4, 2))
    net.fit(X, np.array([0, 1, 0, 1]), epochs=1, progress=False, validation_data=(X, np.array([0, 1, 0, 1])))
    net.predict(X)
    assert _compile.kernels_ready("float64")
    assert not _compile.notice_if_compiling("float64")


# -- 6. the command line ---------------------------------------------------------------------

def test_hidden_and_hidden_only_layers(tmp_path, capsys):
    data = _small_csv(tmp_path / "d.csv")
    for option, value in (("--hidden", "5,4"), ("--layers", "5,4"), ("--layers", "3,5,4,2")):
        status, _, err = run_main(["train", "--data", data, option, value, "--epochs", 1, "--quiet",
                                   "--out", tmp_path / option.strip("-")], capsys)
        assert status == 0, err
        m = json.loads((tmp_path / option.strip("-") / "metrics.json").read_text())
        assert m["config"]["layers"] == [3, 5, 4, 2]


@pytest.mark.parametrize("toml, message", [
    ("layers = [3, 4.7, 2]", "'layers' must be comma-separated whole numbers"),
    ("layers = [3, true, 2]", "'layers' must be comma-separated whole numbers"),
    ("hidden = [4, 0]", "'hidden' must be sizes >= 1"),
])
def test_layer_sizes_from_toml_are_not_truncated(tmp_path, capsys, toml, message):
    data = _small_csv(tmp_path / "d.csv")
    (tmp_path / "run.toml").write_text(toml + "\n")
    status, _, err = run_main(["train", "--config", tmp_path / "run.toml", "--data", data], capsys)
    assert status == 2 and message in err, err


def test_whole_number_regression_target_suggests_task_regression(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = np.round(150 + 50 * X[:, 0])  # like the diabetes target: 151.0, 75.0, ...
    path = tmp_path / "reg.csv"
    path.write_text("a,b,target\n" + "".join(f"{a},{b},{t:.1f}\n" for (a, b), t in zip(X, y)))
    status, _, err = run_main(["train", "--data", path, "--hidden", "8", "--epochs", 1, "--out", tmp_path / "r"],
                              capsys)
    assert status == 2 and "--task regression" in err and "different whole numbers" in err, err
    status, _, err = run_main(["train", "--data", path, "--hidden", "8", "--epochs", 1, "--task", "regression",
                               "--quiet", "--out", tmp_path / "r"], capsys)
    assert status == 0, err
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["task"] == "regression"


def test_help_shows_defaults():
    from backprop_numba.cli import build_parser
    text = build_parser().train_parser.format_help()
    for default in ("(default: 30)", "(default: 32)", "(default: adam)", "(default: float64)", "(default: 0.2)"):
        assert default in text, default
    r = cli("evaluate", "--help")
    assert r.returncode == 0 and "(default: auto)" in r.stdout


def test_broken_pipe_is_not_an_error(tmp_path):
    """`backprop-numba predict ... | head -1`: the reader goes away; exit 0, nothing on stderr."""
    data = _small_csv(tmp_path / "d.csv", n=3000)
    r = cli("train", "--data", data, "--hidden", "4", "--epochs", 1, "--quiet", "--out", tmp_path / "r")
    assert r.returncode == 0, r.stderr
    p = subprocess.Popen([sys.executable, "-m", "backprop_numba", "predict", "--model", tmp_path / "r" / "model.npz",
                          "--data", data, "--split", "all", "--proba"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV)
    p.stdout.close()  # before the child writes a byte: its write meets a closed pipe
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 0, err
    assert err == "", err


def test_data_reaches_fit_in_the_runs_dtype(tmp_path, capsys, monkeypatch):
    from backprop_numba import MLP
    seen = []
    original = MLP.fit

    def spy(self, X, Y, **kwargs):
        seen.append((X.dtype, X.flags.c_contiguous, kwargs["validation_data"][0].dtype))
        return original(self, X, Y, **kwargs)

    monkeypatch.setattr(MLP, "fit", spy)
    data = _small_csv(tmp_path / "d.csv")
    status, _, err = run_main(["train", "--data", data, "--hidden", "4", "--epochs", 1, "--dtype", "float32",
                               "--quiet", "--out", tmp_path / "r"], capsys)
    assert status == 0, err
    assert seen and all(s == (np.float32, True, np.float32) for s in seen), seen


# -- 7. estimators (and issue 12's booleans and huge targets) ----------------------------------

def test_logistic_is_the_sigmoid():
    pytest.importorskip("sklearn")
    from backprop_numba.estimators import MLPClassifier
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    a = MLPClassifier(hidden_layer_sizes=(5,), activation="logistic", max_iter=5, random_state=0).fit(X, y)
    b = MLPClassifier(hidden_layer_sizes=(5,), activation="sigmoid", max_iter=5, random_state=0).fit(X, y)
    assert a.net_.activations[0] == "sigmoid"
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.get_params()["activation"] == "logistic"  # stored as given (scikit-learn's clone)


@pytest.mark.parametrize("name, value", [("early_stopping", "no"), ("nesterovs_momentum", "no"),
                                         ("verbose", "loud"), ("shuffle", "yes"), ("shuffle", 1)])
def test_estimators_refuse_truthy_strings_for_booleans(name, value):
    pytest.importorskip("sklearn")
    from backprop_numba.estimators import MLPClassifier, MLPRegressor
    X = np.random.default_rng(0).normal(size=(20, 2))
    for est, y in ((MLPClassifier, (X[:, 0] > 0).astype(int)), (MLPRegressor, X[:, 0])):
        with pytest.raises(TypeError, match=f"^{name} must be True"):
            est(max_iter=2, solver="sgd", **{name: value}).fit(X, y)


def test_regressor_on_targets_near_the_largest_float():
    pytest.importorskip("sklearn")
    from backprop_numba.estimators import MLPRegressor
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    y = 1e308 * (1.0 + 0.7 * np.tanh(X[:, 0]))  # up to 1.7e308
    reg = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=200, random_state=0,
                       n_iter_no_change=200).fit(X, y)  # every epoch (no stop on a loss plateau)
    pred = reg.predict(X)
    assert np.all(np.isfinite(pred))
    assert np.corrcoef(pred / 1e308, y / 1e308)[0, 1] > 0.9
    y2 = np.where(X[:, 0] > 0, 1.7e308, -1.7e308)  # a prediction past the ends overflows: said, not inf
    reg = MLPRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.05, max_iter=100, random_state=0).fit(X, y2)
    try:
        assert np.all(np.isfinite(reg.predict(X)))
    except ValueError as exc:
        assert "beyond the float64 range" in str(exc)


# -- 8. docs ---------------------------------------------------------------------------------

def test_readme_says_what_the_notes_are_before_citing_them():
    import re
    text = open(os.path.join(ROOT, "README.md")).read()
    start, end = text.index("**The derivation notes.**"), text.index("## Set-up")
    explained = text[start:end]
    assert "notes 000-004" in explained and "derivation" in explained and "`seed=`" in explained
    for phrase in (r"\bseeds? 00[0-4]", r"row notes", r"column notes", r"\bnotes? 00[0-4]"):
        first = re.search(phrase, text)
        assert first is None or start <= first.start() < end, phrase  # explained where first used
    assert os.path.isfile(os.path.join(ROOT, "docs", "derivation.md"))
    # The sections this issue rewrote cite them as notes.
    for heading, stop in (("## Set-up", "## Using the library"), ("### From the shell", "### From Python"),
                          ("### scikit-learn estimators", "## Model files")):
        section = text[text.index(heading):text.index(stop)]
        assert not re.search(r"\bseeds? 00[0-4]", section), heading
    for module in ("cli.py", "estimators.py", "_compile.py", "_cache.py"):
        source = open(os.path.join(PACKAGE, module)).read()
        assert not re.search(r"\bseeds? 00[0-4]", source), module


def _readme_setup_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    block = text[text.index("## Set-up"):]
    block = block[block.index("```bash") + len("```bash"):]
    return [line for line in block[:block.index("```")].strip().splitlines() if line.strip()]


def test_readme_commands_and_ci():
    """Two set-up commands; the first installs no torch/GPU framework; .ci/run runs exactly the second."""
    tomllib = pytest.importorskip("tomllib")
    install_main, run_tests = _readme_setup_commands()
    assert 'pip install -e ".[train,sklearn]" && backprop-numba train' in install_main
    assert run_tests == 'python -m pip install -e ".[test]" && python -m pytest'
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        assert run_tests in [line.strip() for line in f]
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    extras = project["optional-dependencies"]
    main_job = " ".join(project["dependencies"] + extras["train"] + extras["sklearn"]).lower()
    for heavy in ("torch", "jax", "tensorflow", "cupy", "nvidia"):
        assert heavy not in main_job, heavy
    assert "torch==2.13.0" in extras["test"]  # pinned (an unpinned torch pulls a CUDA build)
    assert "--index-url https://download.pytorch.org/whl/cpu" in open(os.path.join(ROOT, "README.md")).read()


def test_rows_moved_in_place_equal_a_copy():
    from backprop_numba.cli import _take_rows_in_place
    rng = np.random.default_rng(0)
    for n, k, chunk in ((1000, 900, 64), (1000, 1000, 64), (50, 1, 8), (300, 150, 7)):
        X = rng.normal(size=(n, 5))
        rows = np.sort(rng.choice(n, size=k, replace=False))
        expected = X[rows].copy()
        view = _take_rows_in_place(X, rows, chunk=chunk)
        assert np.shares_memory(view, X) and view.flags.c_contiguous
        assert np.array_equal(view, expected)
