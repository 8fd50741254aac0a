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
``extra.<name>``    any numeric   optional extra arrays (e.g. optimizer state)
``checksum``        str           SHA-256 over every other entry (see _digest)
==================  ============  ==============================================

The archive is read with ``allow_pickle=False``: loading never executes code.
A file that is truncated, altered, of another format version, or not a model
is refused with a ``ValueError``.  Saving writes a temporary file in the same
folder, flushes it to disk and renames it over the target (``os.replace`` is
atomic), so a crash mid-save leaves the old file or the new one, never a mix.
"""

import hashlib
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "backprop_numba.MLP"
FORMAT_VERSION = 1
REQUIRED = ("format", "format_version", "layer_sizes", "activations", "loss", "dtype", "theta", "checksum")


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


def save_arrays(path, arrays):
    """Write arrays (a dict of name -> ndarray) to path atomically, with a checksum."""
    arrays = dict(arrays)
    arrays["checksum"] = np.array(_digest(arrays))
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
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


def load_arrays(path):
    """Read and verify a model file; return its entries as a dict of arrays."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zipfile.LargeZipFile) as exc:
        raise ValueError(f"{path} is not a readable backprop_numba model file "
                         f"(truncated, corrupted or not an .npz archive): {exc}") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise ValueError(f"{path} is not a backprop_numba model file: missing entries {missing}.")
    if str(arrays["format"]) != FORMAT:
        raise ValueError(f"{path} is not a backprop_numba model file: format is {str(arrays['format'])!r}, expected {FORMAT!r}.")
    version = arrays["format_version"]
    if version.shape != () or version.dtype.kind not in "iu" or int(version) != FORMAT_VERSION:
        raise ValueError(f"{path} has model format version {version!r}; this backprop_numba reads version {FORMAT_VERSION} only.")
    if str(arrays["checksum"]) != _digest(arrays):
        raise ValueError(f"{path} failed its checksum: the file was altered or corrupted after it was saved.")
    return arrays
