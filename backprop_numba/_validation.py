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
            out[key] = check_bool(shown, value, allow_none=spec.get("allow_none", False))
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
    if not np.isfinite(out).all():
        raise ValueError(f"{name} must be finite, got NaN or inf (after conversion to {np.dtype(dtype).name}).")
    if out.min() < 0:
        raise ValueError(f"{name} must be >= 0, got a minimum of {out.min()}.")
    if not out.any():
        raise ValueError(f"{name} must not be all zero (nothing would be learned), got {n_samples} zeros.")
    return out
