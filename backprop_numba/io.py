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

The archive is read with ``allow_pickle=False``: loading never executes code.
A file that is truncated, altered, of another format version, or not a model
is refused with a ``ValueError`` (a missing path: ``FileNotFoundError``).
Saving writes a temporary file ``.tmp-<name>-<random>.npz`` in the same
folder, flushes it to disk and renames it over the target (``os.replace`` is
atomic), so a crash mid-save leaves the old file or the new one, never a mix.
A process killed during ``save`` (SIGKILL, power loss) can leave such a
temporary file behind; it is never read and may be deleted at any time when no
save is running.
"""

import hashlib
import os
import struct
import tempfile

import numpy as np

from ._validation import check_path

FORMAT = "backprop_numba.MLP"
FORMAT_VERSION = 1
REQUIRED = ("format", "format_version", "layer_sizes", "activations", "loss", "dtype", "theta", "checksum")

# The zip comment holding the file checksum: a fixed prefix and 64 hex digits.
_COMMENT_PREFIX = b"backprop_numba-sha256:"
_COMMENT_LEN = len(_COMMENT_PREFIX) + 64
_EOCD = b"PK\x05\x06"  # end-of-central-directory signature; the record is 22 bytes plus the comment
_EOCD_LEN = 22
_CHUNK = 1 << 20


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


def save_arrays(path, arrays):
    """Write arrays (a dict of name -> ndarray) to path atomically, with checksums.

    Object arrays are refused (the format never holds pickles).  The new file
    keeps the permission bits of the file it replaces (0o644 for a new file).
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
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"path must be a file path, got a directory: {path}.")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder does not exist: {folder} (saving {path}).")
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.path.basename(path)}-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "w+b") as f:
            np.savez(f, **arrays)
            _seal(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
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


def _read_verified(f, path):
    """Every entry of the open model file f, after its file checksum has been verified."""
    try:
        _verify_seal(f, path)
        # The file is the one save wrote; still parse it defensively.
        f.seek(0)
        data = np.load(f, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single .npy array, not an .npz archive")
        with data:
            return {key: data[key] for key in data.files}
    except ValueError as exc:
        if str(exc).startswith(path):
            raise
        raise ValueError(f"{path} is not a readable backprop_numba model file "
                         f"(truncated, corrupted or not an .npz archive): {exc}") from None
    except Exception as exc:  # zipfile/zlib/struct/... errors on a damaged archive
        raise ValueError(f"{path} is not a readable backprop_numba model file "
                         f"(truncated, corrupted or not an .npz archive): {type(exc).__name__}: {exc}") from None


def load_arrays(path):
    """Read and verify a model file; return its entries as a dict of arrays.

    Raises FileNotFoundError for a missing path and ValueError for anything
    that is not an intact model file of this format version (directories,
    empty, truncated or altered files, other archives, pickles).
    """
    path = check_path("path", path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not a backprop_numba model file.")
    with open(path, "rb") as f:  # PermissionError and other OS errors pass through as they are
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
