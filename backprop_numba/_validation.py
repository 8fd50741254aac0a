"""Checks at the Python boundary: the only place backprop_numba raises on bad input.

Messages follow one pattern, ``<param> must be <expected>, got <actual>.``;
``TypeError`` for the wrong kind of thing, ``ValueError`` for the wrong value.
Kernels are only ever called with what these functions return.
"""

import collections.abc
import math
import numbers
import operator
import os

import numpy as np

FLOAT_DTYPES = (np.float32, np.float64)

# Upper bound on the number of parameters a network may describe (layer_sizes,
# from_weights, model files): far beyond any memory, but it keeps the int64
# offset arithmetic exact and turns absurd sizes into a ValueError.
MAX_PARAMETERS = 2**40


def _describe(value):
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 60 else text[:57] + "..."


def check_choice(name, value, options):
    """Return value if it is one of options (a collection of str)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {sorted(options)}, got {_describe(value)}.")
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}.")
    return value


def check_int(name, value, minimum=None):
    """Return value as a Python int; booleans and floats are refused."""
    if type(value) is not int:  # the common case skips the (slow) abstract-base-class checks
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {_describe(value)}.")
        value = operator.index(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return value


def _to_float(name, value):
    """float(value), or a ValueError naming the parameter for an integer beyond the float range."""
    try:
        return float(value)
    except OverflowError:  # float(10**400)
        digits = len(str(abs(int(value))))
        raise ValueError(f"{name} must be a finite number within the float range (about 1.8e308), "
                         f"got an integer of {digits} digits.") from None


def check_float(name, value, low=None, high=None, low_open=False, high_open=False):
    """Return value as a finite Python float within the given bounds."""
    if type(value) is not float:  # the common case skips the (slow) abstract-base-class checks
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {_describe(value)}.")
        value = _to_float(name, value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}.")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}.")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}.")
    return value


def check_bool(name, value, allow_none=False):
    """Return value as a bool; only True/False (and NumPy booleans) are accepted."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        expected = "True, False or None" if allow_none else "True or False"
        raise TypeError(f"{name} must be {expected}, got {_describe(value)}.")
    return bool(value)


def check_params(constraints, values, names=None):
    """Check a dict of parameters against a declarative table; return the checked values.

    ``constraints`` maps each parameter to a spec (scikit-learn's
    ``_parameter_constraints`` in spirit), stated once where the parameter
    belongs (``optimizers.Adam.PARAMS``, ``training.FIT_PARAMS``):

    - ``kind="real"``: ``check_float`` with ``low``/``high``/``low_open``/``high_open``
    - ``kind="int"``: ``check_int`` with ``minimum``
    - ``kind="bool"``: ``check_bool``
    - ``kind="choice"``: ``check_choice`` among ``options``
    - ``allow_none=True``: None passes as it is

    Other keys of a spec (``default``, ``slot``, ``doc``) are the owner's,
    but for ``_accepts``: the spec's fast test, built at its first check.
    ``names`` maps a parameter to the name the caller's user knows it by (an
    estimator's ``beta_1`` for ``beta1``), so messages name what was typed.
    Keys of ``values`` without a constraint are returned unchanged.
    """
    names = names or {}
    out = dict(values)
    for key, spec in constraints.items():
        if key not in values:
            continue
        value = values[key]
        accepts = spec.get("_accepts") or _remember_accepts(spec)
        if not accepts(value):  # accepted values are valid as they are: nothing to convert, no message to build
            out[key] = check_one(names.get(key, key), value, spec)
    return out


def check_one(name, value, spec):
    """The checked value of one parameter under its spec (check_params' table entry), or the error."""
    if value is None and spec.get("allow_none"):
        return None
    kind = spec["kind"]
    if kind == "real":
        return check_float(name, value, low=spec.get("low"), high=spec.get("high"),
                           low_open=spec.get("low_open", False), high_open=spec.get("high_open", False))
    if kind == "int":
        return check_int(name, value, minimum=spec.get("minimum"))
    if kind == "bool":
        return check_bool(name, value, allow_none=spec.get("allow_none", False))
    if kind == "choice":
        return check_choice(name, value, spec["options"])
    raise AssertionError(f"unknown constraint kind {kind!r} for {name}")  # a mistake in a table, not user input


def _remember_accepts(spec):
    """Build a spec's fast test and keep it in the spec (as "_accepts"); returns it.

    The test is true only for a value check_one would return unchanged:
    None where allowed, a float within the bounds, an int at or above the
    minimum, True or False, a str among the options.  Anything else takes the
    full check, which converts it or raises with the message.  fit checks its
    18 options and the optimizer's on every call: 3.4 -> 2.0 us with the test
    built once (AMD EPYC, 2026-12-02).
    """
    kind, none_ok = spec["kind"], bool(spec.get("allow_none"))
    if kind == "real":
        low, high = spec.get("low"), spec.get("high")
        low = -math.inf if low is None else low
        high = math.inf if high is None else high
        low_open, high_open = spec.get("low_open", False), spec.get("high_open", False)

        def accepts(value):  # NaN fails every comparison; inf fails the finite test
            return (type(value) is float and (low < value or (value == low and not low_open))
                    and (value < high or (value == high and not high_open)) and math.isfinite(value)) \
                or (value is None and none_ok)
    elif kind == "int":
        minimum = spec.get("minimum")
        minimum = -math.inf if minimum is None else minimum

        def accepts(value):
            return (type(value) is int and value >= minimum) or (value is None and none_ok)
    elif kind == "bool":
        def accepts(value):
            return value is True or value is False or (value is None and none_ok)
    elif kind == "choice":
        options = spec["options"]

        def accepts(value):
            return (type(value) is str and value in options) or (value is None and none_ok)
    else:  # an unknown kind: check_one raises
        def accepts(value):
            return False
    spec["_accepts"] = accepts
    return accepts


def check_seed(name, seed):
    """Return seed if np.random.default_rng accepts it: None, an int >= 0 or a Generator."""
    if seed is None or isinstance(seed, (np.random.Generator, np.random.SeedSequence)):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be None, an integer >= 0 or a numpy Generator, got {_describe(seed)}.")
    seed = operator.index(seed)
    if seed < 0:
        raise ValueError(f"{name} must be >= 0, got {seed}.")
    return seed


def check_path(name, path):
    """Return path as a str for anything os.fspath accepts (str, bytes, pathlib.Path)."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{name} must be a file path (str or os.PathLike), got {_describe(path)}.") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError(f"{name} must be a non-empty file path, got {path!r}.")
    return path


def check_activation_names(activation, n_hidden, options):
    """Hidden activations as a list of n_hidden names: one name for all, or one per hidden layer."""
    if isinstance(activation, str) or activation is None:
        names = [activation] * n_hidden
    else:
        try:
            names = list(activation)
        except TypeError:
            raise TypeError(f"activation must be a name or a sequence of names (one per hidden layer), "
                            f"got {_describe(activation)}.") from None
        if len(names) != n_hidden:
            raise ValueError(f"activation must be one name or one per hidden layer ({n_hidden}), "
                             f"got {len(names)} names.")
    return [check_choice("activation", a, options) for a in names]


def check_dtype(dtype):
    """Return np.float32 or np.float64 for anything NumPy reads as one of them."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {_describe(dtype)}.") from None
    if dt == np.float32:
        return np.float32
    if dt == np.float64:
        return np.float64
    raise ValueError(f"dtype must be float32 or float64, got {dt}.")


def _available_memory():
    """Bytes this process can still allocate, as far as the system says; None when it does not say.

    The smallest of MemAvailable (/proc/meminfo; os.sysconf's available pages
    elsewhere) and the room left under a cgroup memory limit (containers).
    """
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
            if limit != "max" and int(limit) < 2**60:  # cgroup v1 writes a huge number for "no limit"
                found.append(max(int(limit) - usage, 0))
        except (OSError, ValueError):
            pass
    return min(found) if found else None


def _bytes(n):
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


# Networks below this many bytes of parameters are never checked against the available memory.
_MEMORY_CHECK_FROM = 1 << 24


def check_layer_sizes(sizes, itemsize=4):
    """Return layer sizes as a list of ints: at least 2 layers, each >= 1, parameters that fit in memory.

    sizes must be an ordered sequence (list, tuple, range, 1-D array); a set
    or a mapping has no order to read layers from.  The parameters
    (``itemsize`` bytes each: 4 for float32, the least any network needs) are
    compared with the memory available now, before anything is allocated.
    """
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
        raise TypeError(f"layer_sizes must be a sequence of integers, got {_describe(sizes)}.")
    if isinstance(sizes, (collections.abc.Set, collections.abc.Mapping)):
        raise TypeError(f"layer_sizes must be an ordered sequence of integers (list, tuple or 1-D array), got a "
                        f"{type(sizes).__name__} {_describe(sizes)}, which has no defined order.")
    if isinstance(sizes, np.ndarray) and sizes.ndim != 1:
        if sizes.ndim == 0:
            raise TypeError(f"layer_sizes must be a sequence of integers (list, tuple or 1-D array, e.g. "
                            f"[3, 4, 1]), got a 0-d array {_describe(sizes)}.")
        raise ValueError(f"layer_sizes must be a 1-D sequence of integers, got an array of shape {sizes.shape}.")
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes must have at least 2 layers (input and output), got {sizes}.")
    out = []
    for i, n in enumerate(sizes):
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
            raise TypeError(f"layer_sizes[{i}] must be an integer, got {_describe(n)}.")
        if n < 1:
            raise ValueError(f"layer_sizes[{i}] must be >= 1, got {int(n)}.")
        out.append(int(n))
    n_params = sum(out[l] * out[l - 1] + out[l] for l in range(1, len(out)))
    if n_params > MAX_PARAMETERS:
        raise ValueError(f"layer_sizes must describe at most 2**40 parameters, got {out} ({n_params} parameters).")
    need = n_params * itemsize
    if need >= _MEMORY_CHECK_FROM:
        available = _available_memory()
        if available is not None and need > available:
            raise ValueError(f"layer_sizes must describe a network whose parameters fit in memory, got {out}: "
                             f"{n_params:,} parameters need at least {_bytes(need)} ({itemsize} bytes each), "
                             f"and {_bytes(available)} is available.")
    return out


def _library(X):
    """The top-level package that defined type(X) ('torch', 'scipy', 'pandas', ...)."""
    return (type(X).__module__ or "").split(".")[0]


def _foreign_array(name, X):
    """X converted from another library's container, or a TypeError/ValueError saying how to convert it.

    Recognised by the module of the type, so torch, scipy and pandas are never imported here.
    """
    lib = _library(X)
    if lib == "torch":
        if getattr(X, "requires_grad", False):
            raise TypeError(f"{name} must be an array of numbers, got a torch tensor with requires_grad=True "
                            f"(shape {tuple(X.shape)}): pass {name}.detach().cpu().numpy().")
        try:
            return np.asarray(X)
        except (TypeError, RuntimeError, ValueError) as exc:  # a GPU tensor, ...
            raise TypeError(f"{name} must be an array of numbers, got a torch tensor NumPy cannot read "
                            f"({exc}): pass {name}.detach().cpu().numpy().") from None
    if lib == "scipy" and hasattr(X, "toarray"):
        raise TypeError(f"{name} must be a dense array, got a scipy.sparse {type(X).__name__} of shape "
                        f"{getattr(X, 'shape', '?')}: convert it with {name}.toarray() (networks here take "
                        "dense input).")
    if lib == "pandas" and hasattr(X, "isna"):
        arr = np.asarray(X)
        if arr.dtype != object:
            return arr
        if bool(np.asarray(X.isna()).any()):
            raise ValueError(f"{name} must hold numbers only, got a pandas {type(X).__name__} with missing "
                             f"values (pd.NA/None): drop or fill them first, e.g. {name}.dropna() or "
                             f"{name}.fillna(0), then pass {name}.to_numpy(dtype=float).")
        dtypes = X.dtypes if hasattr(X.dtypes, "__iter__") else [X.dtypes]
        if all(getattr(dt, "kind", "O") in "iuf" for dt in dtypes):  # nullable Int64/Float64 columns
            return X.to_numpy(dtype=np.float64)
        raise TypeError(f"{name} must hold real numbers (float or int), got a pandas {type(X).__name__} with "
                        f"column dtypes {sorted({str(dt) for dt in dtypes})}: convert it with "
                        f"{name}.to_numpy(dtype=float) after encoding non-numeric columns.")
    return None


def _as_numeric(name, X):
    """X as a NumPy array of a real numeric kind, or a TypeError."""
    if type(X) is np.ndarray and X.dtype.kind in "fiu":  # what the steps below return it as (~2 us saved)
        return X
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got a string.")
    if isinstance(X, np.ma.MaskedArray):
        masked = int(np.ma.count_masked(X))
        raise TypeError(f"{name} must be a plain array, got a numpy masked array ({masked} masked values): the "
                        f"values under its mask would be used as they are. Pass {name}.filled(value), or drop "
                        f"the masked rows first (e.g. {name}[~np.ma.getmaskarray({name}).any(axis=1)].data).")
    arr = _foreign_array(name, X) if _library(X) in ("torch", "scipy", "pandas") else None
    if arr is None:
        try:
            arr = np.asarray(X)
        except (ValueError, TypeError, OverflowError) as exc:  # ragged nested sequences
            raise ValueError(f"{name} must be a rectangular numeric array, got {type(X).__name__} ({exc}).") from None
    if arr.dtype == object and not isinstance(X, np.ndarray) and arr.size and all(
            isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in arr.flat):
        # Lists of Python ints beyond int64 (10**20, 10**400): as floats if they fit, else a ValueError.
        # (An explicit object ndarray stays refused below, whatever it holds.)
        try:
            arr = arr.astype(np.float64)
        except OverflowError:
            raise ValueError(f"{name} must hold numbers within the float range (about 1.8e308), got an "
                             "integer too large for a float.") from None
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {arr.dtype}.")
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype bool.")
    return arr


def check_output_path(name, path):
    """Return path (a str) if a file can be written there; for use before long work starts.

    The same rules as ``io.save_arrays``, checked without writing anything: a
    symbolic link counts as its target; an existing directory or a path ending
    in ``/`` raises ValueError, a missing folder FileNotFoundError, a folder or
    an existing file that the caller may not write PermissionError (root may
    write anything, as with ``open``).
    """
    path = check_path(name, path)
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        raise ValueError(f"{name} must be a file path, got {path!r}, which names a folder (it ends with {path[-1]!r}).")
    target = os.path.realpath(path)
    if os.path.isdir(target):
        raise ValueError(f"{name} must be a file path, got a directory: {path}.")
    if os.path.exists(target) and not os.path.isfile(target):
        raise ValueError(f"{name} must be a regular file (or a new one), got {path}, which is neither.")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{name} must be in an existing folder, got {path} (folder {folder} does not exist).")
    if os.path.exists(target) and not os.access(target, os.W_OK):
        raise PermissionError(f"{name} must be a writable file, got {path}, which is read-only.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{name} must be in a writable folder, got {path} (folder {folder} is not writable).")
    return path


def _kernel_array(arr, dtype):
    """arr as what a kernel may be given: C-contiguous, aligned, native-order dtype.

    The caller's array is passed through only when it already is exactly that
    and writeable; read-only, unaligned, non-contiguous or other-dtype input is
    copied (kernels never write to their inputs, but a read-only or unaligned
    array would also compile a second specialisation of every kernel).
    """
    if type(arr) is np.ndarray and arr.dtype == dtype and arr.ndim:
        flags = arr.flags
        if flags.c_contiguous and flags.writeable and flags.aligned:  # as it is, without np.errstate (~3 us)
            return arr
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf: refused next
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not (out.flags.writeable and out.flags.aligned):
        out = np.array(out, dtype=dtype, order="C", copy=True)
    return out


def all_finite(x):
    """Whether every value of a kernel array (C-contiguous float32/float64, as _kernel_array returns) is finite.

    The compiled pass over its flat view (theta_is_finite): 0.2-0.3 against
    1.0 us for NumPy's isfinite(x).all() on one sample, which fit and
    partial_fit test in X and Y on every call, and no temporary array of
    booleans the size of a large X (AMD EPYC, 2026-12-02).
    """
    return theta_is_finite(x.ravel())


def check_finite_result(what, values, hint):
    """Raise if a kernel's result (an array or a float) holds NaN/inf: overflow is never returned silently."""
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{what} must be finite, got NaN or inf: the computation overflowed. {hint}")
    return values


def check_theta(value, n_params, dtype):
    """Return a parameter vector for a network: shape (n_params,), finite, of the network's dtype.

    The array itself is kept (so it aliases the caller's) when it already is a
    writeable C-contiguous vector of that dtype; anything else is converted.
    """
    arr = _as_numeric("theta", value)
    if arr.shape != (n_params,):
        raise ValueError(f"theta must have shape ({n_params},) (the network's parameter count), got shape {arr.shape}.")
    out = _kernel_array(arr, dtype)
    if not theta_is_finite(out):
        raise ValueError(f"theta must be finite, got NaN or inf (after conversion to {np.dtype(dtype).name}).")
    return out


def theta_is_finite(theta):
    """all_finite for a parameter vector (1-D, C-contiguous, float32 or float64), compiled.

    One vectorised pass (_kernels._all_finite) instead of NumPy's isfinite
    array and its reduction: 57 against 86 us over [784,512,512,10]'s float64
    theta, which fit tests before every call (~0.1 ms against a 0.24-0.33 ms
    B = 1 step; AMD EPYC with AVX-512, 2026-12-02).
    """
    return bool((_ALL_FINITE or _all_finite_kernel())(theta))


_ALL_FINITE = None  # _kernels._all_finite, looked up at first use: _kernels imports optimizers, which imports us


def _all_finite_kernel():
    global _ALL_FINITE
    from ._kernels import _all_finite
    _ALL_FINITE = _all_finite
    return _all_finite


def check_inputs(X, n_features, dtype, name="X", what="the network's input size"):
    """Return (X as a C-contiguous (B, n_features) array of dtype, whether it was 1-D).

    One sample may be 1-D of shape (n_features,); a batch is 2-D.  Integer
    arrays are converted.  Empty batches, NaN and inf are refused.
    """
    arr = _as_numeric(name, X)
    one = arr.ndim == 1
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D (n_features,) or 2-D (n_samples, n_features), got {arr.ndim}-D array of shape {arr.shape}.")
    if one:
        arr = arr.reshape(1, -1)
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features ({what}), got shape {arr.shape if not one else arr.shape[1:]}.")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sample, got an empty batch of shape {arr.shape}.")
    out = _kernel_array(arr, dtype)
    if not all_finite(out):
        bad = "NaN" if np.isnan(out).any() else "inf"
        raise ValueError(f"{name} must be finite, got {bad} (after conversion to {np.dtype(dtype).name}).")
    return out, one


def check_targets(Y, loss, n_out, n_samples, dtype, name="Y"):
    """Return targets as a C-contiguous (n_samples, n_out) array of dtype.

    Accepted forms: (n_samples, n_out); (n_samples,) when n_out == 1, or a
    scalar/(n_out,) row for a single sample; for cross_entropy, integer class
    labels of shape (n_samples,) in 0..n_out-1, which are one-hot encoded.
    The values must lie in the loss's domain: [0, 1] for bce, rows of
    probabilities summing to 1 for cross_entropy.
    """
    arr = _as_numeric(name, Y)
    if loss == "cross_entropy" and arr.ndim == 1 and arr.shape[0] == n_samples and (n_out > 1 or n_samples > 1) \
            and arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() >= n_out):
            raise ValueError(f"{name} class labels must be integers in [0, {n_out - 1}], got values in [{arr.min()}, {arr.max()}].")
        onehot = np.zeros((n_samples, n_out), dtype=dtype)
        onehot[np.arange(n_samples), arr] = 1.0
        return onehot
    if arr.ndim == 0 or (arr.ndim == 1 and n_samples == 1 and arr.shape[0] == n_out):
        arr = arr.reshape(1, -1)
    elif arr.ndim == 1 and n_out == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape != (n_samples, n_out):
        hint = " (or integer class labels of shape ({n_samples},))".format(n_samples=n_samples) \
            if loss == "cross_entropy" else ""
        raise ValueError(f"{name} must have shape ({n_samples}, {n_out}){hint} to match X and the network's "
                         f"{n_out} outputs, got shape {arr.shape} of dtype {arr.dtype}.")
    out = _kernel_array(arr, dtype)
    if not all_finite(out):
        raise ValueError(f"{name} must be finite, got NaN or inf (after conversion to {np.dtype(dtype).name}).")
    if loss == "poisson" and out.min() < 0:
        raise ValueError(f"{name} must be counts or rates >= 0 for loss='poisson', got a minimum of {out.min()}.")
    if loss == "bce" and (out.min() < 0 or out.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1] for loss='bce', got values in [{out.min()}, {out.max()}].")
    if loss == "cross_entropy":
        if out.min() < 0 or out.max() > 1:
            raise ValueError(f"{name} must be one-hot rows (or probabilities) in [0, 1] for loss='cross_entropy', got values in [{out.min()}, {out.max()}].")
        sums = out.sum(axis=1, dtype=np.float64)
        tol = 1e-4 if dtype == np.float32 else 1e-8
        bad = np.abs(sums - 1.0) > tol * n_out
        if bad.any():
            raise ValueError(f"{name} rows must sum to 1 for loss='cross_entropy' (one-hot or probabilities; or pass integer class labels), got a row summing to {sums[bad][0]:.6g}.")
    return out


OVERFLOW_HINT = ("The inputs or the parameters are too large for the network's dtype: rescale X "
                 "(e.g. standardise it), or check the weights.")


# -- the network's own description (MLP, MLP.from_weights, model files) ---------

def check_network(layer_sizes, activation, output_activation, loss, dtype, huber_delta, losses, hidden_names,
                  output_names):
    """(sizes, activations of layers 1..L, loss, dtype, huber_delta) of a valid network description.

    ``losses`` is the loss registry module (its CODES, DEFAULT_OUTPUT,
    REQUIRED_OUTPUT), passed in to keep this module free of the registries.
    """
    sizes = check_layer_sizes(layer_sizes)
    loss = check_choice("loss", loss, losses.CODES)
    if output_activation is None:
        output_activation = losses.DEFAULT_OUTPUT[loss]
    output_activation = check_choice("output_activation", output_activation, output_names)
    hidden = check_activation_names(activation, len(sizes) - 2, hidden_names)
    needed = losses.REQUIRED_OUTPUT.get(loss)
    if needed is not None and output_activation != needed:
        raise ValueError(f"output_activation must be {needed!r} for loss={loss!r}, got {output_activation!r}.")
    if output_activation == "softmax" and sizes[-1] < 2:
        raise ValueError(f"output_activation='softmax' needs at least 2 outputs, got layer_sizes[-1]={sizes[-1]}.")
    delta = check_float("huber_delta", huber_delta, low=0.0, low_open=True)
    return sizes, hidden + [output_activation], loss, check_dtype(dtype), delta


def _as_param(name, value, ndim):
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise ValueError(f"{name} must be a rectangular numeric array.") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got NaN or inf.")
    return arr


def check_layer_parameters(weights, biases, layout):
    """Weights and biases given by the user (``MLP.from_weights``) as lists of arrays, column convention."""
    layout = check_choice("layout", layout, {"column", "row"})
    for name, value in (("weights", weights), ("biases", biases)):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise TypeError(f"{name} must be a sequence of arrays (one per layer), got {type(value).__name__}.")
    if isinstance(weights, np.ndarray) or isinstance(biases, np.ndarray):
        raise TypeError("weights and biases must be sequences of arrays (one per layer), got a single ndarray.")
    weights, biases = list(weights), list(biases)
    if not weights:
        raise ValueError("weights must hold at least one layer, got an empty sequence.")
    if len(weights) != len(biases):
        raise ValueError(f"biases must have one array per layer ({len(weights)}), got {len(biases)}.")
    Ws = [_as_param(f"weights[{l}]", W, 2) for l, W in enumerate(weights)]
    bs = [_as_param(f"biases[{l}]", b, 1) for l, b in enumerate(biases)]
    if layout == "row":
        Ws = [W.T for W in Ws]
    sizes = [Ws[0].shape[1]] + [W.shape[0] for W in Ws]
    for l in range(len(Ws)):
        if Ws[l].shape[1] != sizes[l]:
            expected = (sizes[l + 1], sizes[l]) if layout == "column" else (sizes[l], sizes[l + 1])
            got = Ws[l].shape if layout == "column" else Ws[l].T.shape
            raise ValueError(f"weights[{l}] must have shape {expected} to chain with the layer before "
                             f"({layout} layout), got {got}.")
        if bs[l].shape != (sizes[l + 1],):
            raise ValueError(f"biases[{l}] must have shape ({sizes[l + 1]},), got {bs[l].shape}.")
    return Ws, bs


def check_fits_dtype(Ws, bs, dtype):
    """Every given parameter is representable in the network's dtype."""
    limit = np.finfo(dtype).max
    for l in range(len(Ws)):
        for name, arr in ((f"weights[{l}]", Ws[l]), (f"biases[{l}]", bs[l])):
            big = np.abs(arr.astype(np.float64)).max()
            if big > limit:
                raise ValueError(f"{name} must fit in {np.dtype(dtype).name} (|value| <= {limit:.4g}), "
                                 f"got a value of magnitude {big:.4g}.")


def check_stored_theta(theta, n_params, dtype, path):
    """The parameter vector of a model file: the shape and dtype its description needs, finite; a copy."""
    if theta.shape != (n_params,) or theta.dtype != dtype:
        raise ValueError(f"{path} holds {theta.shape} parameters of dtype {theta.dtype}; the network it "
                         f"describes needs ({n_params},) of dtype {np.dtype(dtype).name}.")
    if not np.isfinite(theta).all():
        raise ValueError(f"{path} holds non-finite parameters.")
    return np.ascontiguousarray(theta.copy())


def check_same_rows(name, arr, other_name, other):
    if arr.shape[0] != other.shape[0]:
        raise ValueError(f"{name} must have one row per sample of {other_name} ({other.shape[0]}), "
                         f"got {arr.shape[0]}.")


def check_single_output(n_out):
    if n_out != 1:
        raise ValueError(f"input_gradient needs a network with 1 output, got {n_out} outputs; "
                         "use jacobian(x) or vjp(x, v) instead.")


def check_sample_weight(sample_weight, n_samples, dtype, name="sample_weight"):
    """Per-sample weights as a C-contiguous (n_samples,) array of dtype; None gives an empty array
    (the kernels' "unweighted").  Weights must be finite, >= 0 and not all 0."""
    if sample_weight is None:
        return np.empty(0, dtype=dtype)
    arr = _as_numeric(name, sample_weight)
    if arr.ndim == 0:
        arr = np.full(n_samples, arr, dtype=np.float64)
    if arr.shape != (n_samples,):
        raise ValueError(f"{name} must have shape ({n_samples},) (one weight per sample), got shape {arr.shape}.")
    out = _kernel_array(arr, dtype)
    if not all_finite(out):
        raise ValueError(f"{name} must be finite, got NaN or inf (after conversion to {np.dtype(dtype).name}).")
    if out.min() < 0:
        raise ValueError(f"{name} must be >= 0, got a minimum of {out.min()}.")
    if not out.any():
        raise ValueError(f"{name} must not be all zero (nothing would be learned), got {n_samples} zeros.")
    return out


def check_dropout(dropout, n_hidden):
    """Dropout rates of the hidden layers as a list of n_hidden floats in [0, 1): one rate for all, or one each."""
    if isinstance(dropout, (str, bytes)):
        raise TypeError(f"dropout must be a rate in [0, 1) or one rate per hidden layer, got {_describe(dropout)}.")
    if isinstance(dropout, numbers.Real) or dropout is None:
        rates = [0.0 if dropout is None else dropout] * n_hidden
    else:
        try:
            rates = list(dropout)
        except TypeError:
            raise TypeError(f"dropout must be a rate in [0, 1) or one rate per hidden layer, "
                            f"got {_describe(dropout)}.") from None
        if len(rates) != n_hidden:
            raise ValueError(f"dropout must be one rate or one per hidden layer ({n_hidden}), got {len(rates)} rates.")
    return [check_float("dropout", r, low=0.0, high=1.0, high_open=True) for r in rates]
