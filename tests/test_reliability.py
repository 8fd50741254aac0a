"""Reliability, second round (issue 12): hangs, memory, data loss and unchecked values.

Files that are not regular files, zip bombs, saves through symbolic links and
onto read-only targets, forged checkpoints, numbers too large for a float,
layer sizes that cannot fit in memory, inputs of other libraries, CSV column
matching and TOML typing.  Cases that can hang or exhaust memory run in a
subprocess with a timeout (and a memory limit); permission cases run as the
unprivileged user ``nobody``, since root bypasses file permissions.
"""

import json
import re
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import zipfile

import numpy as np
import pytest

from backprop_numba import MLP, io

PACKAGE_DIR = os.path.dirname(os.path.abspath(io.__file__))
ROOT_DIR = os.path.dirname(PACKAGE_DIR)

# Import backprop_numba.io in a child without the package __init__ (no numba): a fast start.
STUB_IMPORT = textwrap.dedent(f"""
    import sys, types
    pkg = types.ModuleType("backprop_numba")
    pkg.__path__ = [{PACKAGE_DIR!r}]
    sys.modules["backprop_numba"] = pkg
    from backprop_numba import io
""")


def _child(code, *args, timeout=60, env=None):
    """Run code (after STUB_IMPORT) in a fresh interpreter; return the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", STUB_IMPORT + textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})})


def _net(seed=0, dtype=np.float64, sizes=(5, 4, 3)):
    return MLP(list(sizes), activation="tanh", loss="cross_entropy", seed=seed, dtype=dtype)


# -- 1. loading refuses anything that is not a regular file ---------------------------------

FIFO_CHILD = """
    import os
    path = sys.argv[1]
    os.mkfifo(path)
    try:
        io.load_arrays(path)
    except ValueError as exc:
        print("refused:", exc)
    else:
        print("loaded")
"""


def test_load_of_a_fifo_is_refused_without_blocking(tmp_path):
    """Before the fix open() blocked forever on a FIFO with no writer: the timeout turns that into a failure."""
    done = _child(FIFO_CHILD, tmp_path / "model.npz", timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused:"), done.stdout
    assert "FIFO (named pipe)" in done.stdout and str(tmp_path / "model.npz") in done.stdout


def test_load_refuses_devices_and_folders_and_follows_links_to_files(tmp_path):
    with pytest.raises(ValueError, match=r"/dev/null is a character device, not a backprop_numba model file"):
        MLP.load("/dev/null")
    with pytest.raises(ValueError, match="is a directory"):
        MLP.load(tmp_path)
    net = _net()
    net.save(tmp_path / "real.npz")
    os.symlink(tmp_path / "real.npz", tmp_path / "link.npz")
    np.testing.assert_array_equal(MLP.load(tmp_path / "link.npz").theta, net.theta)
    os.mkfifo(tmp_path / "pipe")
    os.symlink(tmp_path / "pipe", tmp_path / "pipe-link.npz")
    with pytest.raises(ValueError, match="FIFO"):  # stat follows the link: refused before opening
        MLP.load(tmp_path / "pipe-link.npz")
    os.symlink(tmp_path / "gone.npz", tmp_path / "dangling.npz")
    with pytest.raises(FileNotFoundError, match="model file not found"):
        MLP.load(tmp_path / "dangling.npz")


# -- 2. zip bombs and unknown members -----------------------------------------------------

def _npy_header(shape, dtype="<f8"):
    """The bytes of a version 1.0 .npy header for an array of this shape and dtype."""
    import io as _io
    buf = _io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _sealed_archive(path, arrays, extra_members=()):
    """A model archive with valid file seal: arrays as numpy.savez writes them, then extra raw members.

    extra_members: (name, header bytes, number of zero MiB after it, compression) written streaming,
    so a 1 GiB member never exists in memory here.
    """
    arrays = dict(arrays)
    arrays["checksum"] = np.array(io._digest(arrays))
    with open(path, "w+b") as f:
        with zipfile.ZipFile(f, "w") as zf:
            for key, value in arrays.items():
                with zf.open(f"{key}.npy", "w") as m:
                    np.lib.format.write_array(m, np.asarray(value), allow_pickle=False)
            zeros = bytes(1 << 20)
            for name, header, mib, compression in extra_members:
                info = zipfile.ZipInfo(name)
                info.compress_type = compression
                info._compresslevel = 1  # fast: the bomb's gigabyte of zeros deflates in about a second
                with zf.open(info, "w", force_zip64=True) as m:
                    m.write(header)
                    for _ in range(mib):
                        m.write(zeros)
        io._seal(f)


BOMB_CHILD = """
    import resource
    import numpy as np
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    limit = status("VmSize") + 300 * 2**20  # a few hundred MB beyond what the interpreter and numpy hold already
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        io.load_arrays(sys.argv[1])
    except ValueError as exc:
        print("refused:", exc)
    except MemoryError as exc:
        print("MemoryError:", exc)
    else:
        print("loaded")
    print("peak", status("VmHWM") // 1024)  # not ru_maxrss: Linux carries it over from the parent across exec
"""


def test_zip_bomb_is_refused_from_the_directory_under_a_memory_limit(tmp_path):
    """A sealed model with an extra member inflating to 1 GiB: refused before decompressing, no MemoryError."""
    path = tmp_path / "bomb.npz"
    header = _npy_header((2**27,))  # 2**27 float64 = 1 GiB, all zeros: deflates to ~1 MB
    _sealed_archive(path, _net()._to_arrays(), [("extra.bomb.npy", header, 1024, zipfile.ZIP_DEFLATED)])
    assert path.stat().st_size < 8 * 2**20
    done = _child(BOMB_CHILD, path, timeout=120)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("refused:"), done.stdout
    assert re.search(r"would decompress to 1,07\d,\d{3},\d{3} bytes", first) and "zip bomb" in first
    assert str(path) in first
    peak_kib = int(done.stdout.split("peak")[1])
    assert peak_kib < 200 * 1024  # nothing near the 1 GiB was ever held


def test_members_are_checked_before_anything_is_allocated(tmp_path):
    arrays = _net()._to_arrays()
    # An .npy header declaring 8 TB in a member of a few bytes: refused before numpy allocates it.
    path = tmp_path / "huge-header.npz"
    _sealed_archive(path, arrays, [("extra.big.npy", _npy_header((10**12,)), 0, zipfile.ZIP_STORED)])
    with pytest.raises(ValueError, match=r"entry 'extra.big.npy' declares shape \(1000000000000,\)"):
        MLP.load(path)
    # Members outside the documented keys are refused, stored or not.
    for name in ("payload.npy", "extra..npy", "theta.txt", "extra.x"):
        path = tmp_path / "unknown.npz"
        _sealed_archive(path, arrays, [(name, _npy_header((0,)), 0, zipfile.ZIP_STORED)])
        with pytest.raises(ValueError, match=f"unknown entry {name!r}"):
            MLP.load(path)
    # The same name twice (a zip may hold that; numpy would read one of them).
    path = tmp_path / "twice.npz"
    with pytest.warns(UserWarning, match="Duplicate name"):
            _sealed_archive(path, arrays, [("theta.npy", _npy_header((0,)), 0, zipfile.ZIP_STORED)])
    with pytest.raises(ValueError, match="'theta.npy' appears twice"):
        MLP.load(path)


def test_deflated_members_within_the_bound_still_load(tmp_path):
    """The bound is on the ratio, not on compression itself: a deflated model file loads."""
    net = _net()
    arrays = net._to_arrays()
    arrays["checksum"] = np.array(io._digest(arrays))
    path = tmp_path / "deflated.npz"
    with open(path, "w+b") as f:
        np.savez_compressed(f, **arrays)
        io._seal(f)
    np.testing.assert_array_equal(MLP.load(path).theta, net.theta)


# -- 3. save writes through symbolic links and refuses read-only targets ---------------------

def test_save_through_a_symlink_updates_the_target_and_keeps_the_link(tmp_path):
    first, second = _net(seed=1), _net(seed=2)
    (tmp_path / "models").mkdir()
    real = tmp_path / "models" / "real.npz"
    first.save(real)
    os.chmod(real, 0o640)
    link = tmp_path / "current.npz"
    os.symlink(os.path.relpath(real, tmp_path), link)  # a relative link, resolved from its own folder
    second.save(link)
    assert os.path.islink(link) and os.readlink(link) == os.path.relpath(real, tmp_path)
    np.testing.assert_array_equal(MLP.load(real).theta, second.theta)
    assert os.stat(real).st_mode & 0o777 == 0o640
    assert not [p for p in os.listdir(tmp_path / "models") if p.startswith(".tmp-")]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
    # A link to a file that does not exist yet creates the file, as open(link, "wb") would.
    os.symlink(tmp_path / "models" / "new.npz", tmp_path / "new-link.npz")
    first.save(tmp_path / "new-link.npz")
    assert os.path.islink(tmp_path / "new-link.npz")
    np.testing.assert_array_equal(MLP.load(tmp_path / "models" / "new.npz").theta, first.theta)
    # A chain of links is followed to the end.
    os.symlink(link, tmp_path / "chain.npz")
    first.save(tmp_path / "chain.npz")
    np.testing.assert_array_equal(MLP.load(real).theta, first.theta)
    assert os.path.islink(tmp_path / "chain.npz") and os.path.islink(link)


NOBODY = 65534

AS_NOBODY_CHILD = """
    import errno, os, zipfile, tempfile
    import numpy as np
    folder, a_path, b_path = sys.argv[1:4]
    a = io.load_arrays(a_path); a.pop("checksum")
    b = io.load_arrays(b_path); b.pop("checksum")
    os.setgroups([]); os.setgid(65534); os.setuid(65534)  # everything is imported: drop root
    assert os.geteuid() == 65534
    results = {}

    def attempt(name, path, arrays):
        try:
            io.save_arrays(path, arrays)
            results[name] = "saved"
        except OSError as exc:
            results[name] = [type(exc).__name__, str(exc)]

    def opens(path):  # what open(path, "wb") would do, without doing it to the file
        return os.access(path, os.W_OK)

    target = os.path.join(folder, "readonly.npz")
    io.save_arrays(target, a)
    os.chmod(target, 0o444)
    results["open_would_fail"] = not opens(target)
    attempt("readonly_file", target, b)
    link = os.path.join(folder, "link-to-readonly.npz")
    os.symlink(target, link)
    attempt("link_to_readonly_file", link, b)
    ro_folder = os.path.join(folder, "ro")
    os.mkdir(ro_folder)
    writable_in_ro = os.path.join(ro_folder, "m.npz")
    io.save_arrays(writable_in_ro, a)
    os.chmod(ro_folder, 0o555)
    attempt("readonly_folder", writable_in_ro, b)
    attempt("new_file_in_readonly_folder", os.path.join(ro_folder, "new.npz"), b)
    attempt("writable_file", os.path.join(folder, "ok.npz"), b)
    results["leftovers"] = sorted(p for p in os.listdir(folder) + os.listdir(ro_folder) if p.startswith(".tmp-"))
    print(json.dumps(results))
"""


@pytest.fixture
def nobody_dir():
    """A folder the user nobody can write to (tmp_path's parents are root-only)."""
    if os.geteuid() != 0:
        pytest.skip("not root: cannot switch to the user nobody to test permissions as an unprivileged user "
                    "(as a normal user, the read-only cases are covered by test_save_refuses_read_only_as_is)")
    folder = tempfile.mkdtemp(prefix="bpn-nobody-", dir="/tmp")
    os.chown(folder, NOBODY, NOBODY)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_save_refuses_read_only_targets_as_an_unprivileged_user(nobody_dir, tmp_path):
    a, b = _net(seed=1), _net(seed=2)
    a.save(tmp_path / "a.npz")
    b.save(tmp_path / "b.npz")
    for p in ("a.npz", "b.npz"):
        shutil.copy(tmp_path / p, os.path.join(nobody_dir, p))
    done = _child("import json\n" + textwrap.dedent(AS_NOBODY_CHILD), nobody_dir,
                  os.path.join(nobody_dir, "a.npz"), os.path.join(nobody_dir, "b.npz"))
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout.strip().splitlines()[-1])
    target = os.path.join(nobody_dir, "readonly.npz")
    assert r["open_would_fail"]
    # Like open(path, "wb"): PermissionError naming the user's path, and the file left as it was.
    assert r["readonly_file"][0] == "PermissionError" and repr(target) in r["readonly_file"][1]
    assert r["link_to_readonly_file"][0] == "PermissionError"
    assert repr(os.path.join(nobody_dir, "link-to-readonly.npz")) in r["link_to_readonly_file"][1]
    np.testing.assert_array_equal(MLP.load(target).theta, a.theta)
    assert os.path.islink(os.path.join(nobody_dir, "link-to-readonly.npz"))
    # A writable file in a read-only folder cannot be replaced atomically: refused, named, unchanged.
    assert r["readonly_folder"][0] == "PermissionError" and "not writable" in r["readonly_folder"][1]
    assert repr(os.path.join(nobody_dir, "ro", "m.npz")) in r["readonly_folder"][1]
    np.testing.assert_array_equal(MLP.load(os.path.join(nobody_dir, "ro", "m.npz")).theta, a.theta)
    assert r["new_file_in_readonly_folder"][0] == "PermissionError"
    assert ".tmp-" not in json.dumps(r)
    assert r["writable_file"] == "saved" and r["leftovers"] == []


def test_save_refuses_read_only_as_is(tmp_path):
    """Whoever runs the tests: save fails exactly when open(path, "wb") would, and leaves the file."""
    a, b = _net(seed=1), _net(seed=2)
    path = tmp_path / "m.npz"
    a.save(path)
    os.chmod(path, 0o444)
    try:
        with open(path, "r+b"):
            open_fails = False
    except PermissionError:
        open_fails = True
    if open_fails:
        with pytest.raises(PermissionError, match=str(path)):
            b.save(path)
        np.testing.assert_array_equal(MLP.load(path).theta, a.theta)
    else:  # root: open() would write, and so does save, keeping the mode
        b.save(path)
        np.testing.assert_array_equal(MLP.load(path).theta, b.theta)
        assert os.stat(path).st_mode & 0o777 == 0o444


# -- 4. save errors name the user's path, never the temporary file -------------------------------

@pytest.mark.parametrize("name, exc, match", [
    ("newdir/", ValueError, r"path must be a file path, got '.*newdir/', which names a folder"),
    ("missing/m.npz", FileNotFoundError, r"folder does not exist: .*missing \(saving .*missing/m.npz\)"),
    ("missing/deeper/m.npz", FileNotFoundError, r"folder does not exist"),
    ("afile.txt/m.npz", NotADirectoryError, r"Not a directory: '.*afile.txt/m.npz'"),
    (".", ValueError, r"got a directory"),
])
def test_save_errors_name_the_users_path(tmp_path, monkeypatch, name, exc, match):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile.txt").write_text("x")
    for path in (name, os.path.join(str(tmp_path), name)):
        with pytest.raises(exc, match=match) as info:
            _net().save(path)
        assert ".tmp-" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["afile.txt"]  # nothing created, no temporary left


def test_save_refuses_fifos_and_devices_without_replacing_them(tmp_path):
    os.mkfifo(tmp_path / "pipe.npz")
    with pytest.raises(ValueError, match="path must be a regular file .*FIFO"):
        _net().save(tmp_path / "pipe.npz")
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe.npz").st_mode)
    with pytest.raises(ValueError, match="character device"):
        _net().save("/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_output_path_is_checked_like_save(tmp_path, monkeypatch):
    from backprop_numba._validation import check_output_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "old.npz").write_bytes(b"x")
    os.symlink(tmp_path / "sub" / "target.npz", tmp_path / "link.npz")
    for ok in ("new.npz", "old.npz", "sub/new.npz", "link.npz", tmp_path / "new.npz"):
        assert check_output_path("checkpoint_path", ok) == os.fspath(ok)
    os.mkfifo(tmp_path / "pipe")
    for bad, exc, match in [
        ("sub", ValueError, r"checkpoint_path must be a file path, got a directory: sub\."),
        ("sub/", ValueError, r"checkpoint_path must be a file path, got 'sub/', which names a folder"),
        ("nowhere/c.npz", FileNotFoundError, r"checkpoint_path must be in an existing folder, got nowhere/c.npz"),
        ("pipe", ValueError, r"checkpoint_path must be a regular file \(or a new one\), got pipe"),
        ("", ValueError, r"checkpoint_path must be a non-empty file path"),
        (3, TypeError, r"checkpoint_path must be a file path"),
    ]:
        with pytest.raises(exc, match=match):
            check_output_path("checkpoint_path", bad)
    assert sorted(os.listdir(tmp_path)) == ["link.npz", "old.npz", "pipe", "sub"]  # nothing written


OUTPUT_PATH_AS_NOBODY = """
    import os
    from backprop_numba._validation import check_output_path
    folder = sys.argv[1]
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    ro_file = os.path.join(folder, "ro.npz")
    open(ro_file, "w").close()
    os.chmod(ro_file, 0o444)
    ro_folder = os.path.join(folder, "ro")
    os.mkdir(ro_folder, 0o555)
    for path in (ro_file, os.path.join(ro_folder, "new.npz"), os.path.join(folder, "fine.npz")):
        try:
            check_output_path("checkpoint_path", path)
            print("ok")
        except OSError as exc:
            print(type(exc).__name__, exc)
"""


def test_output_path_read_only_cases_as_an_unprivileged_user(nobody_dir):
    done = _child(OUTPUT_PATH_AS_NOBODY, nobody_dir)
    assert done.returncode == 0, done.stderr
    ro_file, ro_folder, fine = done.stdout.splitlines()
    assert ro_file == f"PermissionError checkpoint_path must be a writable file, got {nobody_dir}/ro.npz, which is read-only."
    assert ro_folder.startswith("PermissionError checkpoint_path must be in a writable folder")
    assert fine == "ok"


# -- 6. check_gradients never returns rel_error=nan ---------------------------------------

def _huge_net(value):
    return MLP.from_weights([np.full((4, 3), value), np.full((1, 4), value)], [np.zeros(4), np.zeros(1)],
                            activation="identity", output_activation="identity", loss="mse")


def test_check_gradients_refuses_non_finite_gradients_and_differences():
    from backprop_numba import check_gradients

    X = np.random.default_rng(0).normal(size=(6, 3))
    Y = X[:, :1]
    with pytest.raises(ValueError, match=r"the loss and its gradient must be finite to be checked, got loss inf "
                                         r"and 21 non-finite gradient entries of 21"):
        check_gradients(_huge_net(1e200), X, Y)
    net = MLP([3, 4, 1], activation="tanh", loss="mse", seed=0)
    with pytest.raises(ValueError, match=r"the finite difference for theta\[\d+\] must be finite, got nan .*"
                                         r"eps=1e\+300\): use a smaller eps"):
        check_gradients(net, X, Y, eps=1e300)
    # Neighbours: finite but enormous gradients give a number, not NaN (the norms are scaled) ...
    result = check_gradients(_huge_net(1e50), X, Y)
    assert np.isfinite(result.rel_error) and not result
    # ... and an ordinary check still passes.
    assert check_gradients(net, X, Y)


# -- 7. numbers too large for a float, layer sizes, other libraries' arrays ----------------------

def _estimator(cls, **kw):
    est = pytest.importorskip("backprop_numba.estimators")
    return getattr(est, cls)(hidden_layer_sizes=(3,), max_iter=1, random_state=0, **kw)


XH = np.random.default_rng(1).normal(size=(8, 3))
YH = XH[:, 0] > 0


def _fit_with(**kw):
    return MLP([3, 2, 1], loss="mse", seed=0).fit(XH, XH[:, :1], epochs=1, progress=False, **kw)


def _check_gradients(**kw):
    from backprop_numba import check_gradients
    return check_gradients(MLP([3, 2, 1], loss="mse", seed=0), XH, XH[:, :1], **kw)


def _schedule(name, **kw):
    from backprop_numba import schedules
    return getattr(schedules, name)(**kw)


HUGE = 10**400


@pytest.mark.parametrize("name, call", [
    ("learning_rate", lambda: _fit_with(learning_rate=HUGE)),
    ("momentum", lambda: _fit_with(momentum=HUGE, optimizer="momentum")),
    ("weight_decay", lambda: _fit_with(weight_decay=HUGE)),
    ("min_delta", lambda: _fit_with(min_delta=HUGE)),
    ("beta2", lambda: _fit_with(beta2=-HUGE)),
    ("eps", lambda: _check_gradients(eps=HUGE)),
    ("tolerance", lambda: _check_gradients(tolerance=HUGE)),
    ("gamma", lambda: _schedule("Step", gamma=HUGE)),
    ("gamma", lambda: _schedule("Exponential", gamma=HUGE)),
    ("eta_min", lambda: _schedule("Cosine", eta_min=HUGE)),
    ("alpha", lambda: _estimator("MLPRegressor", alpha=HUGE).fit(XH, XH[:, 0])),
    ("learning_rate_init", lambda: _estimator("MLPClassifier", learning_rate_init=HUGE).fit(XH, YH)),
    ("tol", lambda: _estimator("MLPClassifier", tol=HUGE).fit(XH, YH)),
])
def test_integers_too_large_for_a_float_are_a_value_error(name, call):
    with pytest.raises(ValueError, match=rf"^{name} must be a finite number within the float range "
                                         r"\(about 1.8e308\), got an integer of 401 digits\.$"):
        call()


def test_huge_integers_in_arrays():
    net = MLP([3, 2, 1], loss="mse", seed=0)
    with pytest.raises(ValueError, match=r"X must hold numbers within the float range"):
        net.forward([[HUGE, 1, 2]])
    with pytest.raises(ValueError, match=r"Y must hold numbers within the float range"):
        net.loss_value(XH[:1], [[HUGE]])
    # Integers beyond int64 that a float holds are numbers like any other (converted, not refused).
    np.testing.assert_array_equal(net.forward([[10**20, 1, 2]]), net.forward([[1e20, 1.0, 2.0]]))
    with pytest.raises(TypeError, match=r"X must hold real numbers"):  # mixed objects: still refused
        net.forward(np.array([[10**20, "a", 2]], dtype=object))


@pytest.mark.parametrize("sizes, exc, match", [
    ({3, 4, 1}, TypeError, r"layer_sizes must be an ordered sequence of integers \(list, tuple or 1-D array\), "
                           r"got a set \{1, 3, 4\}, which has no defined order\."),
    (frozenset({3, 4}), TypeError, r"got a frozenset"),
    ({3: 1, 4: 2}, TypeError, r"got a dict"),
    ({3: 1, 4: 2}.keys(), TypeError, r"got a dict_keys"),
    (np.array(3), TypeError, r"layer_sizes must be a sequence of integers \(list, tuple or 1-D array, e\.g\. "
                             r"\[3, 4, 1\]\), got a 0-d array array\(3\)\."),
    (np.array([[3, 4], [4, 1]]), ValueError, r"layer_sizes must be a 1-D sequence of integers, got an array of "
                                             r"shape \(2, 2\)\."),
    ([10**6, 10**6, 1], ValueError, r"layer_sizes must describe a network whose parameters fit in memory, got "
                                    r"\[1000000, 1000000, 1\]: 1,000,002,000,001 parameters need at least 3\.6 TiB"),
    ([3, 150_000_000_000, 2], ValueError, r"900,000,000,002 parameters need at least 3\.3 TiB \(4 bytes each\)"),
])
def test_layer_sizes_refused(sizes, exc, match):
    with pytest.raises(exc, match=match):
        MLP(sizes)


@pytest.mark.parametrize("sizes", [(3, 4, 1), range(3, 5), np.array([3, 4, 1]), np.array([3, 4, 1], np.uint8)])
def test_layer_sizes_ordered_sequences_accepted(sizes):
    assert MLP(sizes).layer_sizes == [int(n) for n in sizes]


def test_layer_sizes_memory_check_uses_available_memory(monkeypatch):
    from backprop_numba import _validation

    monkeypatch.setattr(_validation, "_available_memory", lambda: 20 * 2**20)
    with pytest.raises(ValueError, match=r"got \[3000, 3000, 1\]: 9,006,001 parameters need at least 34\.4 MiB "
                                         r"\(4 bytes each\), and 20\.0 MiB is available\."):
        MLP([3000, 3000, 1])
    assert _validation.check_layer_sizes([1000, 1000, 1], itemsize=8)  # 8 MB: below the check, never refused
    with pytest.raises(ValueError, match=r"4,504,501 parameters need at least 34\.4 MiB \(8 bytes each\)"):
        _validation.check_layer_sizes([1500, 1500, 1500, 1], itemsize=8)
    monkeypatch.setattr(_validation, "_available_memory", lambda: None)  # the system does not say: no check
    assert _validation.check_layer_sizes([3000, 3000, 1]) == [3000, 3000, 1]


def test_available_memory_is_read():
    from backprop_numba._validation import _available_memory

    available = _available_memory()
    assert available is None or 0 <= available < 2**50


def test_masked_arrays_are_refused():
    net = MLP([3, 2, 1], loss="mse", seed=0)
    masked = np.ma.masked_array(XH, mask=XH > 1)
    with pytest.raises(TypeError, match=r"X must be a plain array, got a numpy masked array \(\d+ masked values\)"
                                        r".*Pass X\.filled\(value\), or drop the masked rows"):
        net.forward(masked)
    with pytest.raises(TypeError, match=r"Y must be a plain array, got a numpy masked array \(0 masked values\)"):
        net.fit(XH, np.ma.masked_array(XH[:, :1]), epochs=1, progress=False)
    net.forward(masked.filled(0.0))


def test_torch_tensors():
    torch = pytest.importorskip("torch")
    net = MLP([3, 2, 1], loss="mse", seed=0)
    t = torch.tensor(XH, requires_grad=True)
    with pytest.raises(TypeError, match=r"X must be an array of numbers, got a torch tensor with "
                                        r"requires_grad=True \(shape \(8, 3\)\): pass X\.detach\(\)\.cpu\(\)\.numpy\(\)\."):
        net.forward(t)
    np.testing.assert_array_equal(net.forward(t.detach()), net.forward(XH))  # a plain tensor converts


def test_scipy_sparse_matrices():
    sparse = pytest.importorskip("scipy.sparse")
    net = MLP([3, 2, 1], loss="mse", seed=0)
    for matrix in (sparse.csr_matrix(XH), sparse.coo_array(XH)):
        with pytest.raises(TypeError, match=rf"X must be a dense array, got a scipy\.sparse {type(matrix).__name__} "
                                            r"of shape \(8, 3\): convert it with X\.toarray\(\)"):
            net.forward(matrix)


class _FakeFrame:
    """What _validation sees of a pandas DataFrame (pandas itself may not be installed)."""

    __module__ = "pandas.core.frame"

    def __init__(self, columns, dtypes):
        self._columns, self.dtypes = columns, dtypes

    def __array__(self, dtype=None, copy=None):
        return np.array(list(zip(*self._columns)), dtype=object)

    def isna(self):
        return _Plain(np.array([[v is None for v in c] for c in self._columns]).T)

    def to_numpy(self, dtype=None):
        return np.array(list(zip(*self._columns)), dtype=dtype)


_FakeFrame.__name__ = "DataFrame"


class _Plain:
    def __init__(self, arr):
        self._arr = arr

    def __array__(self, dtype=None, copy=None):
        return self._arr


class _Kind:
    def __init__(self, kind, name):
        self.kind, self._name = kind, name

    def __str__(self):
        return self._name


def test_pandas_like_frames_without_pandas():
    net = MLP([3, 2, 1], loss="mse", seed=0)
    Int64, Float64, Str = _Kind("i", "Int64"), _Kind("f", "Float64"), _Kind("O", "str")
    cols = [[1, 2], [0.5, 1.5], [3, 4]]
    with pytest.raises(ValueError, match=r"X must hold numbers only, got a pandas DataFrame with missing values "
                                         r"\(pd\.NA/None\): drop or fill them first, e\.g\. X\.dropna\(\) or "
                                         r"X\.fillna\(0\)"):
        net.forward(_FakeFrame([[1, None], [0.5, 1.5], [3, 4]], [Int64, Float64, Int64]))
    # Nullable numeric columns without missing values are numbers: converted.
    np.testing.assert_array_equal(net.forward(_FakeFrame(cols, [Int64, Float64, Int64])),
                                  net.forward(np.array(cols, dtype=float).T))
    with pytest.raises(TypeError, match=r"got a pandas DataFrame with column dtypes \['Float64', 'Int64', 'str'\]"):
        net.forward(_FakeFrame([[1, 2], [0.5, 1.5], ["a", "b"]], [Int64, Float64, Str]))


def test_pandas_frames():
    pd = pytest.importorskip("pandas")
    net = MLP([3, 2, 1], loss="mse", seed=0)
    frame = pd.DataFrame({"a": pd.array([1, None, 3], dtype="Int64"), "b": [1.0, 2.0, 3.0], "c": [0, 1, 2]})
    with pytest.raises(ValueError, match=r"X must hold numbers only, got a pandas DataFrame with missing values"):
        net.forward(frame)
    filled = frame.fillna(0)
    np.testing.assert_array_equal(net.forward(filled), net.forward(filled.to_numpy(dtype=float)))
    for dtype in ("Int64", "Float64"):  # a nullable Series reaches NumPy as float with NaN: the usual message
        with pytest.raises(ValueError, match=r"Y must be finite, got NaN"):
            net.loss_value(np.ones((3, 3)), pd.Series(pd.array([1, None, 2], dtype=dtype)))


def test_other_libraries_are_not_imported():
    done = _child("""
        from backprop_numba import _validation
        print(sorted(m for m in ("torch", "scipy", "pandas") if m in sys.modules))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- 5. forged checkpoints: every field checked, the file named --------------------------------

def _reseal(path, arrays):
    """Write arrays with valid checksums (io's own sealing): what a forger can always do."""
    arrays = {k: v for k, v in arrays.items() if k != "checksum"}
    arrays["checksum"] = np.array(io._digest(arrays))
    with open(path, "w+b") as f:
        np.savez(f, **arrays)
        io._seal(f)


CKPT_X = np.random.default_rng(3).normal(size=(40, 5))
CKPT_Y = (CKPT_X[:, 0] > 0).astype(np.int64)


def _ckpt_net(dtype=np.float64):
    return MLP([5, 4, 2], activation="tanh", loss="cross_entropy", seed=0, dtype=dtype)


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "run.npz"
    _ckpt_net().fit(CKPT_X, CKPT_Y, epochs=3, batch_size=8, optimizer="adam", validation_fraction=0.25,
                    early_stopping=True, patience=5, seed=1, checkpoint_every=1, checkpoint_path=path,
                    progress=False)
    return path


def _json_entry(value):
    return np.array(json.dumps(value))


FORGERIES = [
    # (id, {entry: new value or None to delete}, message)
    ("epoch-negative", {"extra.epoch": np.array(-5)}, r"entry 'extra.epoch' must be an integer >= 0, got -5"),
    ("epoch-float", {"extra.epoch": np.array(2.0)}, r"entry 'extra.epoch' must be an integer, got dtype float64"),
    ("epoch-vector", {"extra.epoch": np.array([3])}, r"entry 'extra.epoch' must be an integer, got .* shape \(1,\)"),
    ("step-negative", {"extra.step": np.array(-1)}, r"entry 'extra.step' must be an integer >= 0, got -1"),
    ("split-seed", {"extra.split_seed": np.array(-2)}, r"entry 'extra.split_seed' must be an integer >= -1"),
    ("best-theta-nan", {"extra.best_theta": "nan"}, r"entry 'extra.best_theta' must be finite"),
    ("best-theta-short", {"extra.best_theta": "short"}, r"entry 'extra.best_theta' must have shape \(34,\) and "
                                                        r"dtype float64"),
    ("best-theta-float32", {"extra.best_theta": "float32"}, r"'extra.best_theta' must have .* got shape \(34,\) "
                                                            r"and dtype float32"),
    ("history-null", {"extra.history": _json_entry(None)}, r"entry 'extra.history' must be a JSON object \(a dict\), "
                                                           r"got NoneType 'null'"),
    ("history-text", {"extra.history": np.array("{not json")}, r"entry 'extra.history' must be JSON text"),
    ("history-scalar", {"extra.history": _json_entry({"loss": 1.0})}, r"must map names to lists, got float"),
    ("history-length", {"extra.history": _json_entry({"loss": [1.0]})}, r"must hold one value per epoch \(3\), "
                                                                        r"got 1 for 'loss'"),
    ("history-string", {"extra.history": _json_entry({"loss": [1.0, "x", 2.0]})},
     r"must hold finite numbers \(or NaN\), got 'x' in 'loss'"),
    ("history-inf", {"extra.history": np.array('{"loss": [1.0, Infinity, 2.0]}')}, r"got inf in 'loss'"),
    ("history-bool", {"extra.history": _json_entry({"loss": [1.0, True, 2.0]})}, r"got True in 'loss'"),
    ("best-empty", {"extra.best": np.array([], dtype=np.float64)}, r"entry 'extra.best' must be 3 float64 values"),
    ("best-ints", {"extra.best": np.array([1, 2, 0])}, r"entry 'extra.best' must be 3 float64 values .* dtype int64"),
    ("best-epoch-fraction", {"extra.best": np.array([0.5, 1.5, 0.0])}, r"its epoch as an integer in \[0, 3\], got 1.5"),
    ("best-epoch-future", {"extra.best": np.array([0.5, 7.0, 0.0])}, r"its epoch as an integer in \[0, 3\], got 7.0"),
    ("best-wait-negative", {"extra.best": np.array([0.5, 1.0, -1.0])}, r"epochs since as an integer in \[0, 3\]"),
    ("best-too-many", {"extra.best": np.array([0.5, 2.0, 2.0])}, r"must count at most 3 epochs"),
    ("best-nan-loss", {"extra.best": np.array([np.nan, 1.0, 0.0])}, r"must hold a finite best val_loss"),
    ("best-inf-with-epoch", {"extra.best": np.array([np.inf, 1.0, 0.0])}, r"must hold a finite best val_loss"),
    ("best-loss-without-epoch", {"extra.best": np.array([0.5, 0.0, 0.0])}, r"must hold a finite best val_loss"),
    ("state-shape", {"extra.optimizer_state": "narrow"}, r"entry 'extra.optimizer_state' must be 2-D with 34 "
                                                         r"columns .* got shape \(2, 33\)"),
    ("partial-short", {"extra.partial_epoch": np.array([1.0, 8.0])}, r"entry 'extra.partial_epoch' must be 7 finite"),
    ("partial-old", {"extra.partial_epoch": np.array([1.0, 8.0, 1.0, 0.0, 2.0, 3.0])}, r"must be 7 finite"),
    ("partial-no-batch", {"extra.partial_epoch": np.zeros(7)}, r"'extra.partial_epoch' must be 7 finite .* got \[0.0"),
    ("partial-fraction", {"extra.partial_epoch": np.array([1.0, 8.5, 1.0, 0.0, 2.0, 3.0, 8.0])},
     r"'extra.partial_epoch'"),
    ("partial-weight", {"extra.partial_epoch": np.array([1.0, 8.0, 1.0, 0.0, 2.0, 3.0, -1.0])},
     r"weight sum >= 0\), got \[1.0, 8.0, 1.0, 0.0, 2.0, 3.0, -1.0\]"),
    ("state-1d", {"extra.optimizer_state": "flat"}, r"'extra.optimizer_state' must be 2-D .* got shape \(68,\)"),
    ("state-dtype", {"extra.optimizer_state": "float32"}, r"'extra.optimizer_state' must be .* dtype float64, got "
                                                          r"shape \(2, 34\) and dtype float32"),
    ("state-nan", {"extra.optimizer_state": "nan"}, r"'extra.optimizer_state' must not hold NaN"),
    ("rng-text", {"extra.rng_state": np.array("[1, 2]")}, r"'extra.rng_state' must be a JSON object \(a dict\)"),
    ("rng-foreign", {"extra.rng_state": _json_entry(np.random.MT19937(0).state | {"state": {"key": [1], "pos": 0}})},
     r"'extra.rng_state' must be a PCG64 state, got one NumPy refuses"),
    ("rng-garbage", {"extra.rng_state": _json_entry({"bit_generator": "PCG64", "state": {"state": "x"}})},
     r"'extra.rng_state' must be a PCG64 state"),
    ("optimizer-empty", {"extra.optimizer": np.array("")}, r"'extra.optimizer' must be an optimizer name"),
    ("optimizer-number", {"extra.optimizer": np.array(3)}, r"'extra.optimizer' must be a string"),
    ("missing", {"extra.step": None, "extra.best": None}, r"missing entries \['extra.step', 'extra.best'\]"),
    ("metadata-list", {"extra.metadata": _json_entry([1, 2])}, r"'extra.metadata' must be a JSON object \(a dict\), "
                                                               r"got list"),
    ("metadata-number", {"extra.metadata": np.array(5)}, r"'extra.metadata' must be a string"),
]


def _forged(arrays, changes):
    arrays = dict(arrays)
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        elif isinstance(value, str):  # derived from the real entry
            real = arrays[key]
            value = {"nan": lambda a: np.where(np.arange(a.size).reshape(a.shape) == 3, np.nan, a),
                     "short": lambda a: a[:-1], "float32": lambda a: a.astype(np.float32),
                     "narrow": lambda a: a[:, :-1], "flat": lambda a: a.ravel()}[value](real)
            arrays[key] = value
        else:
            arrays[key] = value
    return arrays


@pytest.mark.parametrize("changes, match", [row[1:] for row in FORGERIES], ids=[row[0] for row in FORGERIES])
def test_forged_checkpoints_are_refused(checkpoint_file, tmp_path, changes, match):
    from backprop_numba.checkpoint import read_checkpoint

    arrays = io.load_arrays(checkpoint_file)
    path = tmp_path / "forged.npz"
    _reseal(path, _forged(arrays, changes))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} is a malformed checkpoint: .*{match}"):
        read_checkpoint(path)


@pytest.mark.parametrize("changes", [
    {"extra.epoch": np.array(-5)},
    {"extra.best_theta": "nan"},
    {"extra.optimizer_state": "narrow"},
], ids=["epoch", "best-theta-nan", "state"])
def test_fit_refuses_forged_checkpoints_and_keeps_the_network(checkpoint_file, tmp_path, changes):
    path = tmp_path / "forged.npz"
    _reseal(path, _forged(io.load_arrays(checkpoint_file), changes))
    net = _ckpt_net()
    theta = net.theta.copy()
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is a malformed checkpoint"):
        net.fit(CKPT_X, CKPT_Y, epochs=5, batch_size=8, optimizer="adam", validation_fraction=0.25,
                early_stopping=True, patience=5, seed=1, resume_from=path, progress=False)
    np.testing.assert_array_equal(net.theta, theta)


def test_genuine_checkpoints_read_back(checkpoint_file, tmp_path):
    from backprop_numba.checkpoint import read_checkpoint

    arrays, fields = read_checkpoint(checkpoint_file)
    assert fields["epoch"] == 3 and fields["optimizer"] == "adam" and fields["metadata"] == {}
    assert all(len(v) == 3 for v in fields["history"].values())
    # NaN in the history (every step of an epoch skipped) is what fit can write: accepted.
    history = dict(fields["history"], loss=[float("nan")] * 3)
    path = tmp_path / "nan-history.npz"
    _reseal(path, dict(arrays, **{"extra.history": np.array(json.dumps(history))}))
    assert np.isnan(read_checkpoint(path)[1]["history"]["loss"]).all()
    # Plain SGD keeps no state vectors: (0, P) is a valid optimizer state.
    _reseal(path, dict(arrays, **{"extra.optimizer_state": np.zeros((0, arrays["theta"].size))}))
    assert read_checkpoint(path)[1]["state"].shape == (0, arrays["theta"].size)
    # A mid-epoch checkpoint's record of the epoch in progress.
    _reseal(path, dict(arrays, **{"extra.partial_epoch": np.array([2.0, 16.0, 2.0, 0.0, 1.5, 9.0, 16.0])}))
    assert read_checkpoint(path)[1]["partial"] == [2.0, 16.0, 2.0, 0.0, 1.5, 9.0, 16.0]
    assert read_checkpoint(checkpoint_file)[1]["partial"] is None
    # Without early stopping `best` stays (inf, 0, 0); older checkpoints have no metadata entry.
    plain = dict(arrays, **{"extra.best": np.array([np.inf, 0.0, 0.0])})
    del plain["extra.metadata"]
    _reseal(path, plain)
    assert read_checkpoint(path)[1]["metadata"] == {}


def test_checkpoint_metadata(tmp_path):
    from backprop_numba.checkpoint import checkpoint_arrays, read_checkpoint, save_checkpoint

    net = _ckpt_net()
    fields = dict(epoch=0, step=0, optimizer="sgd", state=np.zeros((2, net.theta.size)),
                  rng=np.random.default_rng(0), split_seed=-1, history={"loss": []}, best_theta=net.theta,
                  best=(np.inf, 0, 0))
    meta = {"run": "a", "fit_options": {"epochs": 3, "lr": 0.1, "schedule": None}, "tags": ["x", 1]}
    save_checkpoint(tmp_path / "m.npz", net, metadata=meta, **fields)
    assert read_checkpoint(tmp_path / "m.npz")[1]["metadata"] == meta
    assert str(checkpoint_arrays(net, **fields)["extra.metadata"]) == "{}"
    save_checkpoint(tmp_path / "none.npz", net, metadata=None, **fields)
    assert read_checkpoint(tmp_path / "none.npz")[1]["metadata"] == {}
    for bad, match in [([1], r"metadata must be a dict or None, got list"),
                       ({1: "a"}, r"metadata keys must be strings"),
                       ({"f": object()}, r"metadata must be JSON-serialisable")]:
        with pytest.raises(TypeError, match=match):
            save_checkpoint(tmp_path / "bad.npz", net, metadata=bad, **fields)
    assert not (tmp_path / "bad.npz").exists()


# -- 8. the command line: CSV columns by name, CSV cells, TOML types, --out up front -----------------

def _main(*argv):
    """cli.main in this process: (exit status, stdout, stderr)."""
    import contextlib
    import io as _io

    from backprop_numba import cli

    out, err = _io.StringIO(), _io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


CSV_X = np.random.default_rng(0).normal(size=(60, 3))
CSV_Y = (CSV_X[:, 0] + 0.5 * CSV_X[:, 1] - CSV_X[:, 2] > 0).astype(int)


def _write_csv(path, names, columns, target=None):
    """columns: the features to write, as indices into CSV_X, under the given names."""
    lines = [",".join(list(names) + (["target"] if target is not None else []))]
    for i, row in enumerate(CSV_X):
        cells = [f"{row[j]:.6f}" for j in columns] + ([str(target[i])] if target is not None else [])
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def csv_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("csv")
    _write_csv(folder / "abc.csv", "abc", [0, 1, 2], CSV_Y)
    status, _, err = _main("train", "--data", folder / "abc.csv", "--layers", "3,8,2", "--epochs", 60,
                           "--out", folder / "run", "--quiet", "--seed", 0)
    assert status == 0, err
    return folder, folder / "run" / "model.npz"


def test_predict_matches_csv_columns_by_name(csv_model):
    folder, model = csv_model
    # --split all: every row of each file (abc.csv is the model's own data: "auto" would take its test split)
    status, expected, err = _main("predict", "--model", model, "--data", folder / "abc.csv", "--proba",
                                  "--split", "all")
    assert status == 0, err
    # Reordered, without the target, with an extra column: the same predictions.
    _write_csv(folder / "bac.csv", "bac", [1, 0, 2])
    _write_csv(folder / "cxab.csv", ["c", "x", "a", "b"], [2, 0, 0, 1], CSV_Y)
    for name in ("bac.csv", "cxab.csv"):
        status, got, err = _main("predict", "--model", model, "--data", folder / name, "--proba", "--split", "all")
        assert status == 0, err
        assert got == expected, name
    # Before the fix the reordered file was used by position: most probabilities differ then.
    net = MLP.load(model)
    assert not np.allclose(net.predict(CSV_X[:, [1, 0, 2]]), net.predict(CSV_X))
    # evaluate matches by name too
    _write_csv(folder / "bac-t.csv", "bac", [1, 0, 2], CSV_Y)
    s1, m1, _ = _main("evaluate", "--model", model, "--data", folder / "abc.csv", "--split", "all")
    s2, m2, _ = _main("evaluate", "--model", model, "--data", folder / "bac-t.csv", "--split", "all")
    assert s1 == s2 == 0
    assert json.loads(m1)["accuracy"] == json.loads(m2)["accuracy"]
    assert json.loads(m1)["loss"] == json.loads(m2)["loss"]


def test_missing_feature_column_is_named(csv_model):
    folder, model = csv_model
    _write_csv(folder / "ab.csv", "ab", [0, 1])
    _write_csv(folder / "abd.csv", "abd", [0, 1, 2])  # the right count, a wrong name: never used by position
    for name in ("ab.csv", "abd.csv"):
        status, _, err = _main("predict", "--model", model, "--data", folder / name)
        assert status == 1
        assert err.count("\n") == 1 and err.startswith("backprop-numba: error: ")
        assert f"{name} must have the model's feature columns (matched by name), but it lacks ['c']" in err


def test_models_and_data_without_names_still_go_by_position(tmp_path):
    np.savez(tmp_path / "d.npz", X=CSV_X, target=CSV_Y)
    status, _, err = _main("train", "--data", tmp_path / "d.npz", "--layers", "3,4,2", "--epochs", 2,
                           "--out", tmp_path / "run", "--quiet")
    assert status == 0, err
    _write_csv(tmp_path / "any.csv", "pqr", [0, 1, 2])
    s_csv, by_csv, err = _main("predict", "--model", tmp_path / "run" / "model.npz", "--data", tmp_path / "any.csv")
    assert s_csv == 0, err
    np.savez(tmp_path / "x.npz", X=CSV_X)
    s_npz, by_npz, err = _main("predict", "--model", tmp_path / "run" / "model.npz", "--data", tmp_path / "x.npz")
    assert s_npz == 0, err
    assert by_csv == by_npz


@pytest.mark.parametrize("text, command, match", [
    ("a,a,c,target\n1,2,3,0\n2,3,4,1\n", "train", r"dup.csv must have unique column names \(columns are matched "
                                                  r"by name\), got 'a' 2 times in its header \['a', 'a', 'c', 'target'\]"),
    ("a,b,a\n1,2,3\n", "predict", r"got 'a' 2 times"),
    ("a,b,c,target\n1,2,3,0\n\n2,3,4,\n3,4,5,1\n", "train",
     r"dup.csv target column 'target' must be a value in every row, got an empty cell on line 4: fill it in "
     r"or drop the row"),
    ("a,b,c,target\n1,2,3,x\n2,3,4, \n3,4,5,\n", "train", r"empty cell on line 3 \(and 1 more rows\)"),
    ("a,b,c,target\n1,2,3,0.5\n2,3,4,\n", "evaluate", r"target column 'target' must be a value in every row, got an empty cell on line 3"),
    ("a,b,c,target\n1,,3,0\n2,3,4,1\n", "train", r"column 'b' must be numeric, got an empty cell on line 2"),
])
def test_csv_cells_and_headers(tmp_path, text, command, match):
    (tmp_path / "dup.csv").write_text(text)
    MLP([3, 4, 2], loss="cross_entropy").save(tmp_path / "m.npz")
    argv = {"train": ["train", "--data", tmp_path / "dup.csv", "--layers", "3,4,2", "--out", tmp_path / "o"],
            "evaluate": ["evaluate", "--model", tmp_path / "m.npz", "--data", tmp_path / "dup.csv"],
            "predict": ["predict", "--model", tmp_path / "m.npz", "--data", tmp_path / "dup.csv"]}[command]
    status, _, err = _main(*argv)
    assert status == 1 and err.count("\n") == 1, err
    assert re.search(match, err), err


def test_predict_ignores_unknown_targets(csv_model):
    """Rows whose target is not known yet (empty cells) are what predict is for: the column is left out."""
    folder, model = csv_model
    lines = (folder / "abc.csv").read_text().splitlines()
    (folder / "unknown.csv").write_text("\n".join([lines[0]] + [l.rsplit(",", 1)[0] + "," for l in lines[1:]]) + "\n")
    s1, expected, _ = _main("predict", "--model", model, "--data", folder / "abc.csv", "--split", "all")
    s2, got, err = _main("predict", "--model", model, "--data", folder / "unknown.csv", "--split", "all")
    assert s1 == s2 == 0, err
    assert got == expected


@pytest.mark.parametrize("line, match", [
    ("epochs = 3.9", r"option 'epochs' must be an integer, got 3.9"),
    ("batch-size = 8.5", r"option 'batch-size' must be an integer, got 8.5"),
    ("seed = 1.0", r"option 'seed' must be an integer, got 1.0"),
    ("patience = -2", r"option 'patience' must be an integer >= 1, got -2"),
    ("epochs = true", r"option 'epochs' must be an integer, got True"),
    ("learning-rate = false", r"option 'learning-rate' must be a number, got False"),
    ("out = 5", r"option 'out' must be a string, got 5"),
    ("data = [\"a.csv\"]", r"option 'data' must be a string, got \['a.csv'\]"),
    ("dtype = 64", r"option 'dtype' must be a string, got 64"),
    ("early-stopping = \"yes\"", r"option 'early-stopping' must be true or false, got 'yes'"),
])
def test_toml_values_are_typed(tmp_path, line, match):
    _write_csv(tmp_path / "abc.csv", "abc", [0, 1, 2], CSV_Y)
    (tmp_path / "run.toml").write_text(line + "\n")
    status, _, err = _main("train", "--data", tmp_path / "abc.csv", "--layers", "3,4,2", "--config",
                           tmp_path / "run.toml", "--out", tmp_path / "o")
    assert status == 2 and err.count("\n") == 1, err
    assert re.search(rf"run.toml: {match}", err), err
    assert not (tmp_path / "o").exists()


def test_toml_values_of_the_right_type_work(tmp_path):
    _write_csv(tmp_path / "abc.csv", "abc", [0, 1, 2], CSV_Y)
    (tmp_path / "run.toml").write_text(f'epochs = 2\nbatch-size = 8\nlearning-rate = 1\nearly-stopping = false\n'
                                       f'out = "{tmp_path / "o"}"\nquiet = true\n')
    status, _, err = _main("train", "--data", tmp_path / "abc.csv", "--layers", "3,4,2", "--config",
                           tmp_path / "run.toml")
    assert status == 0, err
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["config"]["batch_size"] == 8


def test_train_out_naming_a_file_fails_before_training(tmp_path):
    _write_csv(tmp_path / "abc.csv", "abc", [0, 1, 2], CSV_Y)
    (tmp_path / "taken").write_text("keep me")
    # The real console entry point: one line, exit status 2, no traceback, and fast: no 10**6 epochs run.
    done = subprocess.run([sys.executable, "-m", "backprop_numba.cli", "train", "--data", "abc.csv", "--layers",
                           "3,4,2", "--epochs", "1000000", "--out", "taken"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("backprop-numba: error: --out must be a folder (train writes model.npz, metrics.json "
                           "and loss.png into it), got 'taken', which is an existing file\n")
    assert (tmp_path / "taken").read_text() == "keep me"


def test_train_outputs_are_checked_before_training(tmp_path):
    _write_csv(tmp_path / "abc.csv", "abc", [0, 1, 2], CSV_Y)
    (tmp_path / "afile").write_text("x")
    status, _, err = _main("train", "--data", tmp_path / "abc.csv", "--layers", "3,4,2", "--epochs", 10**6,
                           "--out", tmp_path / "afile" / "sub")
    assert status == 2 and "--out must be a folder that can be created" in err and "afile is a file" in err
    (tmp_path / "o" / "model.npz").mkdir(parents=True)  # an output file's name taken by a folder
    status, _, err = _main("train", "--data", tmp_path / "abc.csv", "--layers", "3,4,2", "--epochs", 10**6,
                           "--out", tmp_path / "o")
    assert status == 1 and "--out must be a file path, got a directory" in err and "model.npz" in err
    assert sorted(os.listdir(tmp_path / "o")) == ["model.npz"]


def test_train_layers_too_large_for_memory(tmp_path):
    _write_csv(tmp_path / "abc.csv", "abc", [0, 1, 2], CSV_Y)
    status, _, err = _main("train", "--data", tmp_path / "abc.csv", "--layers", "3,150000000000,2",
                           "--out", tmp_path / "o")
    assert status == 1 and err.count("\n") == 1, err
    assert "layer_sizes must describe a network whose parameters fit in memory, got [3, 150000000000, 2]" in err
    assert "MemoryError" not in err and not (tmp_path / "o").exists()
