"""First-use compilation: know when kernels must be compiled, say so, and time it apart.

The kernels (``_kernels.py``) compile lazily, once per dtype, the first time
they are called; with ``cache=True`` a later process loads them from Numba's
on-disk cache in a fraction of a second.  The first use after an install (or
after the kernels changed) compiles for about a minute per dtype, which looks like
a very slow first run unless something says so.

``notice_if_compiling(dtype)`` prints one line on stderr when the kernels of a
job are neither compiled in this process nor in the on-disk cache for this
CPU, and returns whether it did.  ``warm_up(run, dtype)`` calls ``run()`` (a
throwaway call that makes the kernels ready, e.g. one step on a copy of the
network) after that check and returns the seconds it took, so a caller can
report compile time apart from training time (the CLI's ``compile_time_s``).
"""

import hashlib
import sys
import time

import numpy as np

#: Top-level kernels each job calls (their callees are compiled into them).  Names that
#: do not exist in ``_kernels`` are skipped (``_train_batches`` is the chunked epoch's name).
FIT_KERNELS = ("_train_epoch", "_train_batches", "_predict", "_loss_value")
PREDICT_KERNELS = ("_predict", "_loss_value")

SECONDS_PER_DTYPE = 60  # measured: 62.9 s for a digits run's float64 kernels on a 2-core machine, idle (README)


def _first_arg_dtype(sig):
    first = sig[0] if len(sig) else None
    return str(getattr(first, "dtype", ""))


def _in_process(disp, dtype):
    return any(_first_arg_dtype(sig) == dtype for sig in disp.signatures)


def _on_disk(disp, dtype):
    """True when numba's cache index holds an entry of `disp` for this dtype, source and CPU.

    Reads numba's index the way ``Cache.load_overload`` does (``_index_key``:
    signature, codegen magic tuple, bytecode hash); None when that is not
    possible (numba internals moved, caching off).
    """
    try:
        cache = disp._cache
        cache_file = getattr(cache, "_cache_file", None)
        if cache_file is None:  # NullCache: caching is off
            return False
        index = cache_file._load_index()
        magic = disp.targetctx.codegen().magic_tuple()
        code = hashlib.sha256(disp.py_func.__code__.co_code).hexdigest()
    except Exception:  # pragma: no cover - another numba version
        return None
    return any(isinstance(key, tuple) and len(key) == 3 and key[1] == magic and key[2][0] == code
               and _first_arg_dtype(key[0]) == dtype for key in index)


def kernels_ready(dtype, names=FIT_KERNELS):
    """True when every kernel in `names` is compiled in this process or cached on disk for `dtype`."""
    from . import _kernels as K
    dtype = np.dtype(dtype).name
    for name in names:
        disp = getattr(K, name, None)
        if disp is None or not hasattr(disp, "signatures"):
            continue  # renamed or not a dispatcher: nothing to say about it
        if _in_process(disp, dtype):
            continue
        if _on_disk(disp, dtype) is False:
            return False
    return True


def notice_if_compiling(dtype, names=FIT_KERNELS, stream=None):
    """Print the one-line first-use notice when the kernels of `names` need compiling; return whether it did."""
    if kernels_ready(dtype, names):
        return False
    print(f"backprop-numba: compiling kernels for {np.dtype(dtype).name} (first use, ~{SECONDS_PER_DTYPE} s; "
          "cached afterwards)", file=sys.stderr if stream is None else stream, flush=True)
    return True


def warm_up(run, dtype, names=FIT_KERNELS, stream=None):
    """Say so if compiling, call run() to make the kernels ready; return (seconds, compiled)."""
    compiled = notice_if_compiling(dtype, names, stream)
    started = time.perf_counter()
    run()
    return time.perf_counter() - started, compiled
