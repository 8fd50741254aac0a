"""Where Numba keeps the compiled kernels, chosen before any kernel is defined.

The kernels use ``cache=True``.  Numba writes its cache into the package's
``__pycache__/``, or, when that is read-only, into a user-wide folder
(``~/.cache/numba`` on Linux), or into ``$NUMBA_CACHE_DIR`` when that is set.
When none of them is writable (a non-editable install used by another user, a
Docker ``USER nobody`` without a home, a read-only root filesystem), Numba
raises ``RuntimeError: cannot cache function ... no locator available`` at the
first ``@njit(cache=True)``, i.e. at ``import backprop_numba``.

``ensure_cache_location()`` runs first thing in ``backprop_numba/__init__.py``
and, only in that case, points ``NUMBA_CACHE_DIR`` at a private folder under
the temporary directory (``<tmp>/backprop_numba-numba-cache-<uid>``), or, if
nothing at all is writable, turns caching off for functions that have no
place to cache (they then compile in every process).  Either way it prints one
line on stderr saying what it did, what it costs and how to choose the folder.
"""

import os
import sys
import tempfile

#: What ensure_cache_location() did: None (numba had a place), "tempdir", "disabled".
fallback = None


def _writable_dir(path):
    """True when `path` exists or can be created, and a file can be written in it (numba's own test)."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _user_wide_dir():
    """The folder numba's UserWideCacheLocator would use (appdirs' user cache dir + "numba")."""
    try:
        from numba.misc.appdirs import AppDirs
        return AppDirs(appname="numba", appauthor=False).user_cache_dir
    except Exception:  # pragma: no cover - another numba layout
        return os.path.join(os.path.expanduser("~"), ".cache", "numba")


def _private_dir(path):
    """True when `path` is a real folder owned by this user and writable by nobody else.

    Numba's cache files are pickles: a folder under a shared /tmp that another
    user created (or could write into) would let that user run code here.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    import stat
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        return False
    if st.st_mode & 0o022:
        return False
    return _writable_dir(path)


def numba_can_cache(package_dir):
    """True when numba finds a writable cache location for modules in `package_dir`."""
    if os.environ.get("NUMBA_CACHE_DIR") and _writable_dir(os.environ["NUMBA_CACHE_DIR"]):
        return True
    return _writable_dir(os.path.join(package_dir, "__pycache__")) or _writable_dir(_user_wide_dir())


def _disable_cache_when_no_locator():
    """Make ``cache=True`` compile without caching instead of raising, where no locator exists.

    Only a function for which numba finds no cache folder at all is affected:
    it gets numba's ``NullCache`` (compiled in every process) instead of the
    ``RuntimeError: cannot cache function``.
    """
    from numba.core import caching, dispatcher

    original = dispatcher.Dispatcher.enable_caching
    if getattr(original, "_backprop_numba_fallback", False):
        return

    def enable_caching(self):
        try:
            original(self)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise
            self._cache = caching.NullCache()

    enable_caching._backprop_numba_fallback = True
    dispatcher.Dispatcher.enable_caching = enable_caching


def ensure_cache_location(package_dir=None, stream=None):
    """Give numba a writable cache location before the kernels are defined (see the module docstring)."""
    global fallback
    package_dir = package_dir or os.path.dirname(os.path.abspath(__file__))
    if numba_can_cache(package_dir):
        return None
    stream = sys.stderr if stream is None else stream
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    try:
        candidate = os.path.join(tempfile.gettempdir(), f"backprop_numba-numba-cache-{uid}")
    except (OSError, FileNotFoundError):  # gettempdir() found no writable folder at all
        candidate = None
    if candidate is not None and _private_dir(candidate):
        os.environ["NUMBA_CACHE_DIR"] = candidate
        import numba.core.config
        numba.core.config.CACHE_DIR = candidate  # numba reads it when a function is decorated
        fallback = "tempdir"
        print(f"backprop-numba: note: neither {os.path.join(package_dir, '__pycache__')} nor "
              f"{_user_wide_dir()} is writable, so compiled kernels are cached in {candidate}; set "
              "NUMBA_CACHE_DIR to a writable folder to choose the place.", file=stream)
        return candidate
    try:
        _disable_cache_when_no_locator()
    except (ImportError, AttributeError):  # pragma: no cover - numba internals moved: import fails as before
        return None
    fallback = "disabled"
    print("backprop-numba: note: no writable folder for numba's compile cache (package __pycache__, "
          f"{_user_wide_dir()}, temporary folder), so the kernels are compiled again in every process "
          "(about 10 s per dtype); set NUMBA_CACHE_DIR to a writable folder to cache them.", file=stream)
    return None
