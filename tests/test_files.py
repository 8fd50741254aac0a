"""Model files: round trips, every kind of damaged or foreign file refused, no code run on load,
and a save killed by SIGKILL at random moments never leaves a broken file (issue 4, part 3)."""

import glob
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

from backprop_numba import MLP, io

PACKAGE_DIR = os.path.dirname(os.path.abspath(io.__file__))


def _net(seed=0, dtype=np.float64, sizes=(5, 4, 3)):
    return MLP(list(sizes), activation="tanh", loss="cross_entropy", seed=seed, dtype=dtype)


@pytest.fixture
def saved(tmp_path):
    net = _net()
    path = tmp_path / "model.npz"
    net.save(path)
    return net, path


def _refused(path, match=None):
    with pytest.raises(ValueError, match=match):
        MLP.load(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip(tmp_path, dtype):
    net = MLP([3, 1, 2], activation=["relu"], output_activation="identity", loss="mse", seed=1, dtype=dtype)
    net.save(tmp_path / "m.npz")
    back = MLP.load(tmp_path / "m.npz")
    assert back.theta.dtype == dtype and back.layer_sizes == net.layer_sizes
    assert back.activations == net.activations and back.loss == net.loss
    np.testing.assert_array_equal(back.theta, net.theta)
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    np.testing.assert_array_equal(back.forward(x), net.forward(x))


def test_save_overwrites_and_keeps_permissions(saved):
    net, path = saved
    os.chmod(path, 0o640)
    other = _net(seed=5)
    other.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o640
    np.testing.assert_array_equal(MLP.load(path).theta, other.theta)
    assert not glob.glob(os.path.join(os.path.dirname(path), ".tmp-*"))


# -- damaged files ------------------------------------------------------------------

def test_truncated_files_are_refused(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "bad.npz"
    for n in sorted({0, 1, 4, 21, 22, 30, 100, len(data) // 2, len(data) - 87, len(data) - 22, len(data) - 1}):
        bad.write_bytes(data[:n])
        _refused(bad)


def test_flipped_bytes_are_refused_anywhere(saved, tmp_path):
    """One flipped bit at many positions: zip headers, npy headers, data, directory, end record, checksum."""
    _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "bad.npz"
    positions = sorted(set(range(0, len(data), max(1, len(data) // 60))) | {0, 7, 30, 60, len(data) - 1,
                                                                          len(data) - 50, len(data) - 90,
                                                                          len(data) - 100})
    for i in positions:
        for bit in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[i] ^= bit
            bad.write_bytes(bytes(damaged))
            _refused(bad)


def test_appended_garbage_is_refused(saved, tmp_path):
    _, path = saved
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes() + b"\x00")
    _refused(bad)


def _forge(path, arrays):
    """A file with valid checksums and chosen content, written past save's own checks: a forger's best effort."""
    arrays = dict(arrays)
    arrays["checksum"] = np.array(io._digest(arrays))
    with open(path, "w+b") as f:
        np.savez(f, **arrays)
        io._seal(f)


def test_mismatched_shapes_are_refused(saved, tmp_path):
    net, _ = saved
    arrays = net._to_arrays()
    arrays["theta"] = arrays["theta"][:-1]
    _forge(tmp_path / "short.npz", arrays)
    _refused(tmp_path / "short.npz", match="needs")
    arrays = net._to_arrays()
    arrays["layer_sizes"] = np.array([5, 4, 4], dtype=np.int64)
    _forge(tmp_path / "sizes.npz", arrays)
    _refused(tmp_path / "sizes.npz", match="needs")
    arrays = net._to_arrays()
    arrays["activations"] = np.array(["tanh"])
    _forge(tmp_path / "acts.npz", arrays)
    _refused(tmp_path / "acts.npz", match="invalid network")


@pytest.mark.parametrize("field, value, match", [
    ("format_version", np.array(2, dtype=np.int64), "format version"),
    ("format_version", np.array("1"), "format version"),
    ("format", np.array("keras.Model"), "format is 'keras.Model'"),
    ("dtype", np.array("float16"), "invalid network"),
    ("loss", np.array("hinge"), "invalid network"),
    ("layer_sizes", np.array([5.0, 4.0, 3.0]), "entry 'layer_sizes'"),
    ("layer_sizes", np.array([5, -4, 3]), "invalid network"),
    ("layer_sizes", np.array([2**62, 2**62]), "invalid network"),
    ("theta", np.zeros(39, dtype=np.int64), "entry 'theta'"),
])
def test_foreign_content_is_refused(saved, tmp_path, field, value, match):
    net, _ = saved
    arrays = net._to_arrays()
    arrays[field] = value
    _forge(tmp_path / "forged.npz", arrays)
    _refused(tmp_path / "forged.npz", match=match)


def test_non_finite_parameters_are_refused(saved, tmp_path):
    net, _ = saved
    arrays = net._to_arrays()
    arrays["theta"][3] = np.nan
    _forge(tmp_path / "nan.npz", arrays)
    _refused(tmp_path / "nan.npz", match="non-finite")
    with pytest.raises(ValueError, match="theta must be finite to be saved"):
        io.save_arrays(tmp_path / "nan2.npz", arrays)
    assert not (tmp_path / "nan2.npz").exists()


def test_foreign_files_are_refused(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.ones(3), b=np.arange(4))
    _refused(tmp_path / "plain.npz", match="not a backprop_numba model file")
    io.save_arrays(tmp_path / "sealed.npz", {"a": np.ones(3)})
    _refused(tmp_path / "sealed.npz", match=r"missing entries \['format'")
    np.save(tmp_path / "array.npy", np.ones(3))
    _refused(tmp_path / "array.npy")
    (tmp_path / "text.npz").write_text("layer_sizes = [1, 2]\n" * 10)
    _refused(tmp_path / "text.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    _refused(tmp_path / "empty.npz", match="empty")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("hello.txt", "hello" * 100)
    _refused(tmp_path / "other.zip")
    _refused(tmp_path, match="directory")
    with pytest.raises(FileNotFoundError):
        MLP.load(tmp_path / "missing.npz")


# -- loading never executes code ----------------------------------------------------

class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_arrays_are_never_unpickled(saved, tmp_path):
    net, _ = saved
    marker = tmp_path / "pwned"
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(str(marker))
    # 1. A plain npz with a pickled object array where theta should be.
    arrays = net._to_arrays()
    arrays["theta"] = evil
    np.savez(tmp_path / "evil1.npz", **arrays)
    _refused(tmp_path / "evil1.npz")
    # 2. The same with valid checksums (io's sealing applied by hand): still never unpickled.
    arrays = {k: v for k, v in net._to_arrays().items()}
    arrays["extra.payload"] = evil
    arrays["checksum"] = np.array("0" * 64)
    with open(tmp_path / "evil2.npz", "w+b") as f:
        np.savez(f, **arrays)
        io._seal(f)
    _refused(tmp_path / "evil2.npz", match="pickled|Object arrays")
    # 3. A raw pickle file named like a model.
    with open(tmp_path / "evil3.npz", "wb") as f:
        pickle.dump(_Payload(str(marker)), f)
    _refused(tmp_path / "evil3.npz")
    assert not marker.exists()
    # and the writer refuses object arrays outright
    with pytest.raises(TypeError, match="object array"):
        io.save_arrays(tmp_path / "x.npz", {"a": evil})
    assert not marker.exists()


# -- kill during save -----------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, types
    # Import backprop_numba.io without the package __init__ (no numba): a fast start.
    pkg = types.ModuleType("backprop_numba")
    pkg.__path__ = [sys.argv[1]]
    sys.modules["backprop_numba"] = pkg
    from backprop_numba import io
    a = io.load_arrays(sys.argv[3]); a.pop("checksum")
    b = io.load_arrays(sys.argv[4]); b.pop("checksum")
    print("ready", flush=True)
    while True:
        io.save_arrays(sys.argv[2], a)
        io.save_arrays(sys.argv[2], b)
""")

KILLS = 20
KILL_BUDGET_S = 25.0


def test_kill_during_save_leaves_old_or_new_file(tmp_path):
    sizes = (200, 200, 150, 10)  # ~72k parameters, ~0.6 MB: a save takes milliseconds
    net_a, net_b = _net(seed=1, sizes=sizes), _net(seed=2, sizes=sizes)
    target = tmp_path / "model.npz"
    net_a.save(tmp_path / "a.npz")
    net_b.save(tmp_path / "b.npz")
    net_a.save(target)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(1234)
    seen = {"a": 0, "b": 0}
    started = time.monotonic()
    kills = 0
    while kills < KILLS and time.monotonic() - started < KILL_BUDGET_S:
        child = subprocess.Popen([sys.executable, str(script), PACKAGE_DIR, str(target), str(tmp_path / "a.npz"),
                                  str(tmp_path / "b.npz")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert child.stdout.readline().strip() == b"ready", child.stderr.read().decode()
            time.sleep(rng.uniform(0.0, 0.08))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
            child.stderr.close()
        kills += 1
        loaded = MLP.load(target)  # never raises: the file is always a whole model
        if np.array_equal(loaded.theta, net_a.theta):
            seen["a"] += 1
        else:
            np.testing.assert_array_equal(loaded.theta, net_b.theta)
            seen["b"] += 1
    assert kills >= 5, f"only {kills} kills in {KILL_BUDGET_S} s"
    # Leftovers of killed saves are temporary files named after the target, never the target itself;
    # they do not disturb later saves and loads, and may be deleted (documented in io.py).
    leftovers = glob.glob(str(tmp_path / ".tmp-*"))
    assert all(os.path.basename(p).startswith(".tmp-model.npz-") for p in leftovers)
    net_b.save(target)
    np.testing.assert_array_equal(MLP.load(target).theta, net_b.theta)
    for p in leftovers:
        os.unlink(p)
    print(f"kill-during-save: {kills} kills, final file A {seen['a']}x / B {seen['b']}x, "
          f"{len(leftovers)} temporary leftovers")
