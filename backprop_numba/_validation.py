"""Checks at the Python boundary: the only place backprop_numba raises on bad input.

Messages follow one pattern, ``<param> must be <expected>, got <actual>.``;
``TypeError`` for the wrong kind of thing, ``ValueError`` for the wrong value.
Kernels are only ever called with what these functions return.
"""

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
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}.")
    value = operator.index(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return value


def check_float(name, value, low=None, high=None, low_open=False, high_open=False):
    """Return value as a finite Python float within the given bounds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}.")
    value = float(value)
    if not np.isfinite(value):
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

    Other keys of a spec (``default``, ``slot``, ``doc``) are the owner's.
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
        shown = names.get(key, key)
        if value is None and spec.get("allow_none"):
            continue
        kind = spec["kind"]
        if kind == "real":
            out[key] = check_float(shown, value, low=spec.get("low"), high=spec.get("high"),
                                   low_open=spec.get("low_open", False), high_open=spec.get("high_open", False))
        elif kind == "int":
            out[key] = check_int(shown, value, minimum=spec.get("minimum"))
        elif kind == "bool":
            out[key] = check_bool(shown, value)
        elif kind == "choice":
            out[key] = check_choice(shown, value, spec["options"])
        else:  # pragma: no cover - a mistake in a table, not in user input
            raise AssertionError(f"unknown constraint kind {kind!r} for {key}")
    return out


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


def check_layer_sizes(sizes):
    """Return layer sizes as a list of ints: at least 2 layers, each >= 1."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__len__"):
        raise TypeError(f"layer_sizes must be a sequence of integers, got {_describe(sizes)}.")
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
    return out


def _as_numeric(name, X):
    """X as a NumPy array of a real numeric kind, or a TypeError."""
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got a string.")
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged nested sequences
        raise ValueError(f"{name} must be a rectangular numeric array, got {type(X).__name__} ({exc}).") from None
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {arr.dtype}.")
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype bool.")
    return arr


def _kernel_array(arr, dtype):
    """arr as what a kernel may be given: C-contiguous, aligned, native-order dtype.

    The caller's array is passed through only when it already is exactly that
    and writeable; read-only, unaligned, non-contiguous or other-dtype input is
    copied (kernels never write to their inputs, but a read-only or unaligned
    array would also compile a second specialisation of every kernel).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32 become inf: refused next
        out = np.ascontiguousarray(arr, dtype=dtype)
    if not (out.flags.writeable and out.flags.aligned):
        out = np.array(out, dtype=dtype, order="C", copy=True)
    return out


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
    if not np.isfinite(out).all():
        raise ValueError(f"theta must be finite, got NaN or inf (after conversion to {np.dtype(dtype).name}).")
    return out


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
    if not np.isfinite(out).all():
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
    if not np.isfinite(out).all():
        raise ValueError(f"{name} must be finite, got NaN or inf (after conversion to {np.dtype(dtype).name}).")
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
