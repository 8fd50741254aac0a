"""How many threads the kernels may use: numba's thread count, on numba's tbb layer only.

The kernels' parallel loops (``_kernels._*_slices``) follow numba's
conventions: they use ``numba.get_num_threads()`` threads, which
``numba.set_num_threads(n)`` (per calling thread) or the environment variable
``NUMBA_NUM_THREADS`` (per process, read at import) lower; 1 keeps every
kernel serial.  It runs only on numba's ``tbb`` threading layer: that layer is
safe to call from several Python threads at once and after ``fork``, and its
idle workers sleep instead of spinning.  numba's ``omp`` layer (GNU OpenMP) is
not fork-safe and spins, its ``workqueue`` layer aborts when two threads
launch parallel work at once; on either, or with no tbb, the kernels stay
serial (``kernel_threads()`` returns 1).

pip's ``tbb`` wheel puts ``libtbb.so.12`` in the environment's ``lib``
folder, which the dynamic loader does not search, so numba's default search
(tbb first) does not find it in a virtual environment.  ``_preload_tbb``
loads it by its full path, globally, before numba picks a layer; numba then
finds it by name.  A layer the user chose (``NUMBA_THREADING_LAYER``, or
``numba.config.THREADING_LAYER``) is respected.
"""

import ctypes
import threading

import numba
from numba.np.ufunc import parallel as _numba_parallel

_TBB_NAMES = ("libtbb.so.12", "libtbb.12.dylib", "tbb12.dll")
_lock = threading.Lock()
_layer_is_tbb = None  # decided once, at the first kernel_threads()
# numba.get_num_threads and numba.set_parallel_chunksize, until numba's layer has started (_fast_calls)
_get_threads, _set_chunksize = numba.get_num_threads, numba.set_parallel_chunksize


def _tbb_library():
    """Where the tbb wheel put libtbb: <prefix>/lib (a venv, conda, a system install), else from its file list."""
    import os
    import site
    import sys
    for folder in (os.path.join(sys.prefix, "lib"), os.path.join(site.getuserbase(), "lib"), sys.prefix):
        for name in _TBB_NAMES:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    import importlib.metadata  # ~30 ms to import: only when the usual places have no libtbb
    try:
        files = importlib.metadata.files("tbb") or ()
    except (importlib.metadata.PackageNotFoundError, OSError):
        return None
    return next((str(f.locate()) for f in files if f.name in _TBB_NAMES), None)


def _preload_tbb():
    """Load the tbb wheel's libtbb by its path (RTLD_GLOBAL); True if it loaded."""
    path = _tbb_library()
    if path is None:
        return False
    try:
        ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
    except OSError:
        return False
    return True


def _decide():
    """Start numba's threading layer (tbb when it can) and say whether it is tbb."""
    try:
        _numba_parallel._launch_threads()
        tbb = numba.threading_layer() == "tbb"
    except (ImportError, ValueError, OSError):  # no layer could start: stay serial
        return False
    _fast_calls()
    return tbb


def _fast_calls():
    """Bind _get_threads and _set_chunksize to the layer's C functions behind numba's public two.

    The public functions check on every call that the layer has started and
    the argument's type: 1.1 and 1.6 us against 0.13 and 0.41 (AMD EPYC,
    2026-12-02), 3.4 us of each call_kernel (which sets the chunk size twice),
    a tenth of the Python of a one-step fit.  numba binds these module
    globals when its layer starts; where its internals differ the public
    functions stay.
    """
    global _get_threads, _set_chunksize
    get, set_ = (getattr(_numba_parallel, name, None) for name in ("_get_num_threads", "_set_parallel_chunksize"))
    if callable(get) and callable(set_) and get() == numba.get_num_threads():
        _get_threads, _set_chunksize = get, set_


# Before any kernel compiles or loads from the cache: both start numba's layer.
_preload_tbb()


def call_kernel(kernel, *args):
    """kernel(*args, threads): threads = kernel_threads(), and numba's chunk size 1 for its parallel loops.

    numba otherwise deals each thread one equal run of the slices up front; a
    thread that another process keeps off its core then holds back the whole
    loop.  With chunks of one slice the other thread takes what is left.
    Measured beside one busy process (2026-12-01, two threads against one,
    run_epoch): [784,16,10] at B = 256 (~100 us a loop) 0.70x with numba's
    chunks, 0.90-0.96x with these; at B = 32 on the larger networks
    0.89-0.92x with numba's, 0.89-1.02x with these.  The chunk size is
    numba's per-thread setting: restored after the call.
    """
    threads = kernel_threads()
    if threads == 1:
        return kernel(*args, threads)
    previous = _set_chunksize(1)
    try:
        return kernel(*args, threads)
    finally:
        _set_chunksize(previous)


def kernel_threads():
    """Threads the kernels' parallel loop may use now: numba.get_num_threads() on the tbb layer, else 1."""
    global _layer_is_tbb
    if _layer_is_tbb is None:
        with _lock:
            if _layer_is_tbb is None:
                _layer_is_tbb = _decide()
    return _get_threads() if _layer_is_tbb else 1
