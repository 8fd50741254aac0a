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
    def vm():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    limit = vm() + 300 * 2**20  # a few hundred MB beyond what the interpreter and numpy hold already
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        io.load_arrays(sys.argv[1])
    except ValueError as exc:
        print("refused:", exc)
    except MemoryError as exc:
        print("MemoryError:", exc)
    else:
        print("loaded")
    print("peak", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
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
