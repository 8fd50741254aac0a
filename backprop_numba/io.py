"""Model files: a documented .npz format, written atomically, loaded without pickle.

Format (version 1), one ``.npz`` archive (``numpy.savez``) holding:

==================  ============  ==============================================
key                 dtype         meaning
==================  ============  ==============================================
``format``          str           always ``"backprop_numba.MLP"``
``format_version``  int64         ``1``
``layer_sizes``     int64 (L+1,)  n[0..L]
``activations``     str (L,)      activation of layers 1..L
``loss``            str           loss name
``dtype``           str           ``"float32"`` or ``"float64"``
``theta``           dtype (P,)    all parameters: W[1], b[1], W[2], b[2], ...
                                  (each W[l] row-major, shape (n[l], n[l-1]))
``extra.<name>``    numeric, str  optional extra arrays (checkpoints, CLI preprocessing)
``checksum``        str           SHA-256 over every other entry (see _digest)
==================  ============  ==============================================

The archive's zip comment (the last bytes of the file) is
``backprop_numba-sha256:<64 hex digits>``, the SHA-256 of every byte of the
file before the comment, so a change of any byte anywhere in the file (data,
zip headers, directory, the comment itself) is detected before anything is
parsed.

Loading reads nothing but a regular file: a FIFO, a device, a socket or a
directory is refused from ``os.stat`` before it is opened (a FIFO would block
forever).  The archive is never unpickled (object arrays are refused), and it
is checked from the zip central directory before any member is decompressed:

- its members are exactly ``<key>.npy`` for the keys above (the required ones
  and ``extra.<name>``); anything else, or a name given twice, is refused;
- members are stored or deflated, and their declared decompressed sizes add
  up to at most ``MAX_EXPANSION`` (16) times the size of the file plus
  ``EXPANSION_SLACK`` (1 MiB).  ``save`` stores members uncompressed, so its
  own files are always far inside this bound; a zip bomb (a small file that
  inflates to gigabytes) is refused without decompressing anything;
- each member's ``.npy`` header must describe exactly the bytes the directory
  declares (header plus ``count * itemsize``), so no array larger than its
  member is ever allocated, and reading stops at the declared size (the
  ``zipfile`` reader never returns more than that, whatever the data
  inflates to).

Then the checksums and the entries are checked.  A file that is truncated,
altered, of another format version, or not a model is refused with a
``ValueError`` (a missing path: ``FileNotFoundError``).

Saving behaves like ``open(path, "wb")`` on the target, but atomically: a
symbolic link is written through (its target gets the new content, the link
stays a link); a target that is not writable (read-only file or folder)
raises ``PermissionError`` naming the path, and the file is left as it was;
a directory, a path ending in ``/``, or an existing FIFO/device is refused with
``ValueError``; a missing folder raises ``FileNotFoundError``.  Errors always
name the caller's path, never the temporary file.  The new content is written
to a temporary file ``.tmp-<name>-<random>.npz`` in the target's folder,
flushed to disk and renamed over the target (``os.replace`` is atomic), so a
crash mid-save leaves the old file or the new one, never a mix.  A process
killed during ``save`` (SIGKILL, power loss) can leave such a temporary file
behind; it is never read and may be deleted at any time when no save is
running.
"""

import errno
import hashlib
import os
import stat
import struct
import tempfile
import zipfile

import numpy as np

from ._validation import check_path

FORMAT = "backprop_numba.MLP"
FORMAT_VERSION = 1
REQUIRED = ("format", "format_version", "layer_sizes", "activations", "loss", "dtype", "theta", "checksum")
EXTRA_PREFIX = "extra."

# The zip comment holding the file checksum: a fixed prefix and 64 hex digits.
_COMMENT_PREFIX = b"backprop_numba-sha256:"
_COMMENT_LEN = len(_COMMENT_PREFIX) + 64
_EOCD = b"PK\x05\x06"  # end-of-central-directory signature; the record is 22 bytes plus the comment
_EOCD_LEN = 22
_CHUNK = 1 << 20

# Bound on the decompressed size of all members together (see the module docstring).
MAX_EXPANSION = 16
EXPANSION_SLACK = 1 << 20


def _digest(arrays):
    """SHA-256 over the names, dtypes, shapes and bytes of every entry but the checksum."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        if key == "checksum":
            continue
        arr = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(arr.dtype.str).encode())
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _file_digest(f, size):
    """SHA-256 of the first `size` bytes of the open file f."""
    h = hashlib.sha256()
    f.seek(0)
    left = size
    while left > 0:
        block = f.read(min(_CHUNK, left))
        if not block:
            raise EOFError("file shorter than expected")
        h.update(block)
        left -= len(block)
    return h.hexdigest().encode()


def _seal(f):
    """Append the file checksum as the zip comment of the archive just written to f."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    f.seek(end - _EOCD_LEN)
    record = f.read(_EOCD_LEN)
    if record[:4] != _EOCD or record[20:22] != b"\x00\x00":
        raise RuntimeError("numpy.savez wrote an archive without a plain end record")  # pragma: no cover
    f.seek(end - 2)
    f.write(struct.pack("<H", _COMMENT_LEN))
    f.flush()
    digest = _file_digest(f, end)
    f.seek(end)
    f.write(_COMMENT_PREFIX + digest)


def _verify_seal(f, path):
    """Check the zip comment checksum of the open file f; raise ValueError if it does not hold."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    if size == 0:
        raise ValueError(f"{path} is empty: not a backprop_numba model file.")
    if size < _EOCD_LEN + _COMMENT_LEN:
        raise ValueError(f"{path} is too short ({size} bytes) to be a backprop_numba model file "
                         "(truncated, or another kind of file).")
    f.seek(size - _EOCD_LEN - _COMMENT_LEN)
    tail = f.read(_EOCD_LEN + _COMMENT_LEN)
    comment = tail[_EOCD_LEN:]
    if tail[:4] != _EOCD or tail[20:22] != struct.pack("<H", _COMMENT_LEN) \
            or not comment.startswith(_COMMENT_PREFIX):
        raise ValueError(f"{path} is not a backprop_numba model file, or it is truncated or corrupted "
                         "(its end does not hold the file checksum that save writes).")
    if _file_digest(f, size - _COMMENT_LEN) != comment[len(_COMMENT_PREFIX):]:
        raise ValueError(f"{path} failed its file checksum: the file was altered or corrupted after it was saved.")


def _file_kind(mode):
    """A word for what a non-regular file is."""
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return "not a regular file"  # pragma: no cover - door, whiteout, ...


def _os_error(exc, path):
    """The OSError exc, re-raised as open(path) would word it: naming the caller's path."""
    return OSError(exc.errno, exc.strerror, path) if exc.errno else OSError(f"{exc} (writing {path})")


def _save_target(path):
    """The file save(path) writes: path itself, or what a symbolic link at path points to.

    Raises what ``open(path, "wb")`` would raise, before anything is written.
    """
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        raise ValueError(f"path must be a file path, got {path!r}, which names a folder (it ends with "
                         f"{path[-1]!r}).")
    target = os.path.realpath(path)  # through symbolic links, like open(); the link itself stays
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:  # a symlink loop, a file where a folder should be, ...
        raise _os_error(exc, path) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise ValueError(f"path must be a file path, got a directory: {path}.")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise ValueError(f"path must be a regular file (or a new one), got {_file_kind(st.st_mode)}: {path}.")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder does not exist: {folder} (saving {path}).")
    # os.access asks the kernel with the caller's rights: root writes anyway, as open() would.
    if st is not None and not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, f"{os.strerror(errno.EACCES)} (the file is read-only)", path)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{os.strerror(errno.EACCES)} (the folder {folder} is not "
                                            "writable)", path)
    return target, (st.st_mode & 0o777 if st is not None else 0o644)


def save_arrays(path, arrays):
    """Write arrays (a dict of name -> ndarray) to path atomically, with checksums.

    Object arrays are refused (the format never holds pickles).  The new file
    keeps the permission bits of the file it replaces (0o644 for a new file).
    A symbolic link is written through to its target; a read-only target
    raises PermissionError, as ``open(path, "wb")`` would.
    """
    path = check_path("path", path)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for key, arr in arrays.items():
        if arr.dtype.hasobject:
            raise TypeError(f"arrays[{key!r}] must not be an object array (model files never hold pickles), "
                            f"got dtype {arr.dtype}.")
    if "theta" in arrays and not np.isfinite(arrays["theta"]).all():
        raise ValueError("theta must be finite to be saved (load refuses non-finite parameters), got NaN or inf.")
    arrays["checksum"] = np.array(_digest(arrays))
    target, mode = _save_target(path)
    folder = os.path.dirname(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.path.basename(target)}-", suffix=".npz", dir=folder)
    except OSError as exc:
        raise _os_error(exc, path) from None
    try:
        with os.fdopen(fd, "w+b") as f:
            np.savez(f, **arrays)
            _seal(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):  # a full disk, ...: name the user's file, not the temporary one
            raise _os_error(exc, path) from None
        raise
    # Make the rename itself durable.
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _member_key(name):
    """The entry a zip member holds, or None for a name no model file has."""
    if not name.endswith(".npy"):
        return None
    key = name[:-len(".npy")]
    if key in REQUIRED or (key.startswith(EXTRA_PREFIX) and len(key) > len(EXTRA_PREFIX)):
        return key
    return None


def _check_directory(zf, path, size):
    """Member names and declared sizes from the central directory, before anything is decompressed."""
    infos = zf.infolist()
    names = [info.filename for info in infos]
    missing = [k for k in REQUIRED if f"{k}.npy" not in names]
    if missing:
        raise ValueError(f"{path} is not a backprop_numba model file: missing entries {missing}.")
    seen = set()
    for info in infos:
        if _member_key(info.filename) is None:
            raise ValueError(f"{path} is not a backprop_numba model file: it holds an unknown entry "
                             f"{info.filename!r} (model files hold only {list(REQUIRED)} and "
                             f"{EXTRA_PREFIX}<name> entries, as .npy members).")
        if info.filename in seen:
            raise ValueError(f"{path} is not a valid backprop_numba model file: entry {info.filename!r} "
                             "appears twice in the archive.")
        seen.add(info.filename)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ValueError(f"{path} is not a valid backprop_numba model file: entry {info.filename!r} uses "
                             f"zip compression method {info.compress_type} (only stored or deflated).")
    total = sum(info.file_size for info in infos)
    limit = MAX_EXPANSION * size + EXPANSION_SLACK
    if total > limit:
        raise ValueError(f"{path} is refused: its entries would decompress to {total:,} bytes, more than "
                         f"{MAX_EXPANSION} times the file's {size:,} bytes plus 1 MiB ({limit:,}); nothing was "
                         "decompressed (a model file stores its arrays uncompressed; this looks like a zip bomb).")
    return infos


def _read_member(zf, info, path):
    """One .npy member as an array, reading no more than the directory declares."""
    fmt = np.lib.format
    with zf.open(info) as m:
        version = fmt.read_magic(m)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(m)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(m)
        else:
            raise ValueError(f"{path}: entry {info.filename!r} has .npy format version {version}")
        if dtype.hasobject:
            raise ValueError(f"{path} is refused: entry {info.filename!r} is an object array (pickled Python "
                             "objects), which model files never hold; nothing was unpickled.")
        if any(n < 0 for n in shape):
            raise ValueError(f"{path}: entry {info.filename!r} declares a negative shape {shape}")
        count = 1
        for n in shape:
            count *= n
        nbytes = count * dtype.itemsize
        header = m.tell()
        if header + nbytes != info.file_size:
            raise ValueError(f"{path} is not a valid backprop_numba model file: entry {info.filename!r} "
                             f"declares shape {shape} of {dtype} ({nbytes:,} bytes) in a member of "
                             f"{info.file_size - header:,} data bytes.")
        buf = bytearray(nbytes)
        view = memoryview(buf)
        got = 0
        while got < nbytes:
            n = m.readinto(view[got:])
            if not n:
                raise ValueError(f"{path}: entry {info.filename!r} is truncated")
            got += n
    if dtype.itemsize == 0:
        arr = np.empty(count, dtype=dtype)
    else:
        arr = np.frombuffer(buf, dtype=dtype, count=count)
    if fortran:
        return arr.reshape(shape[::-1]).transpose()
    return arr.reshape(shape)


def _read_verified(f, path):
    """Every entry of the open model file f, after its file checksum and zip directory have been checked."""
    try:
        _verify_seal(f, path)
        size = f.seek(0, os.SEEK_END)
        # The file is the one save wrote; still parse it defensively.
        f.seek(0)
        try:
            zf = zipfile.ZipFile(f)
        except zipfile.BadZipFile:
            raise ValueError("it is not a zip (.npz) archive") from None
        with zf:
            infos = _check_directory(zf, path, size)
            return {_member_key(info.filename): _read_member(zf, info, path) for info in infos}
    except ValueError as exc:
        if str(exc).startswith(path):
            raise
        raise ValueError(f"{path} is not a readable backprop_numba model file "
                         f"(truncated, corrupted or not an .npz archive): {exc}") from None
    except Exception as exc:  # zipfile/zlib/struct/... errors on a damaged archive
        raise ValueError(f"{path} is not a readable backprop_numba model file "
                         f"(truncated, corrupted or not an .npz archive): {type(exc).__name__}: {exc}") from None


def _open_regular(path):
    """Open path for reading if it is a regular file; refuse FIFOs, devices, sockets and folders unopened."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"model file not found: {path}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{path} is a directory, not a backprop_numba model file.")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path} is {_file_kind(st.st_mode)}, not a backprop_numba model file: model files "
                         "are regular files, and this one was not opened.")
    # O_NONBLOCK: should path be swapped for a FIFO after the stat, open() still returns at once.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # PermissionError etc. pass through
    f = os.fdopen(fd, "rb")
    mode = os.fstat(f.fileno()).st_mode
    if not stat.S_ISREG(mode):
        f.close()
        raise ValueError(f"{path} is {_file_kind(mode)}, not a backprop_numba model file.")
    return f


def load_arrays(path):
    """Read and verify a model file; return its entries as a dict of arrays.

    Raises FileNotFoundError for a missing path and ValueError for anything
    that is not an intact model file of this format version (directories,
    FIFOs and devices, empty, truncated or altered files, other archives,
    pickles, unknown entries, zip bombs).
    """
    path = check_path("path", path)
    with _open_regular(path) as f:  # PermissionError and other OS errors pass through as they are
        arrays = _read_verified(f, path)
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise ValueError(f"{path} is not a backprop_numba model file: missing entries {missing}.")
    for key in ("format", "loss", "dtype", "checksum"):
        if arrays[key].shape != () or arrays[key].dtype.kind != "U":
            raise ValueError(f"{path} is not a backprop_numba model file: entry {key!r} must be a string, "
                             f"got dtype {arrays[key].dtype} of shape {arrays[key].shape}.")
    if str(arrays["format"]) != FORMAT:
        raise ValueError(f"{path} is not a backprop_numba model file: format is {str(arrays['format'])!r}, expected {FORMAT!r}.")
    version = arrays["format_version"]
    if version.shape != () or version.dtype.kind not in "iu" or int(version) != FORMAT_VERSION:
        raise ValueError(f"{path} has model format version {version.tolist()!r}; this backprop_numba reads "
                         f"version {FORMAT_VERSION} only.")
    if str(arrays["checksum"]) != _digest(arrays):
        raise ValueError(f"{path} failed its checksum: the file was altered or corrupted after it was saved.")
    for key, ndim, kinds in (("layer_sizes", 1, "iu"), ("activations", 1, "U"), ("theta", 1, "f")):
        if arrays[key].ndim != ndim or arrays[key].dtype.kind not in kinds:
            raise ValueError(f"{path} is not a valid backprop_numba model file: entry {key!r} has dtype "
                             f"{arrays[key].dtype} and shape {arrays[key].shape}.")
    return arrays
