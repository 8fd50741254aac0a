"""Hypothesis-generated bad (and good) input at every MLP entry point (issue 4, part 1).

Arrays of random shape (0-d to 3-d, empty sides), dtype (floats of three widths, ints, bool,
complex, object, strings, nested lists, scalars) and values (NaN, +-inf, 1e308, 1e30, ...)
are passed as X, Y or V; hyper-parameters get random Python objects.  Every call must
either succeed with a finite result of the documented shape or raise ValueError/TypeError
(fit may also raise DivergenceError, its documented outcome for a diverging run).  Any
other exception fails; a crash takes the test run down.  Example counts are kept small.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from backprop_numba import MLP, DivergenceError, check_gradients

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=True)
OK_ERRORS = (ValueError, TypeError)

NETS = {
    "reg64": MLP([3, 4, 2], activation="tanh", loss="mse", seed=0),
    "clf32": MLP([3, 4, 3], activation="relu", loss="cross_entropy", seed=1, dtype=np.float32),
    "bin64": MLP([3, 2, 1], activation="sigmoid", loss="bce", seed=2),
}

SPECIAL = [np.nan, np.inf, -np.inf, 1e308, -1e308, 1e30, 1e4, -1e4, 0.0, 1.0, 0.5, 2.0, -1.0, 5e-324]
VALUES = st.one_of(st.floats(-3, 3), st.sampled_from(SPECIAL), st.integers(-3, 5).map(float))
KINDS = ["float64", "float32", "float16", "int64", "int8", "uint8", "bool", "complex128", "object", "str",
         "list", "scalar", "none"]


@st.composite
def arrays(draw, n_features=3):
    """An array-like of a random kind and shape, often close to a valid (n, n_features) batch."""
    kind = draw(st.sampled_from(KINDS))
    if kind == "none":
        return None
    ndim = draw(st.sampled_from([0, 1, 2, 2, 2, 3]))
    shape = tuple(draw(st.sampled_from([0, 1, 2, 3, 4, n_features, n_features])) for _ in range(ndim))
    values = draw(hnp.arrays(np.float64, shape, elements=VALUES))
    if kind == "scalar":
        return float(values.ravel()[0]) if values.size else 0.0
    if kind == "list":
        return values.tolist()
    if kind == "object":
        out = values.astype(object)
        if out.size and draw(st.booleans()):
            out.ravel()[0] = "x"
        return out
    if kind == "str":
        return values.astype(str)
    with np.errstate(all="ignore"):
        return values.astype(kind)


def _n(x):
    a = np.asarray(x) if not isinstance(x, (str, type(None))) else np.zeros(0)
    return a.shape[0] if a.ndim == 2 else 1


def _targets(net, n, rng):
    n_out = net.layer_sizes[-1]
    if net.loss == "cross_entropy":
        return rng.integers(0, n_out, size=n)
    if net.loss == "bce":
        return rng.integers(0, 2, size=(n, n_out)).astype(float)
    return rng.normal(size=(n, n_out))


def _finite(result):
    if hasattr(result, "analytic"):  # a GradientCheck
        return _finite((result.analytic, result.numeric, result.rel_error))
    if isinstance(result, dict):
        return all(np.all(np.isfinite(v)) for v in result.values() if not isinstance(v, (list, str)))
    if isinstance(result, tuple):
        return all(_finite(r) for r in result)
    if isinstance(result, list):
        return all(_finite(r) for r in result)
    result = np.asarray(result)
    if result.dtype.kind not in "fciub":  # class labels of an estimator may be strings
        return True
    return bool(np.all(np.isfinite(result)))


def _call(fn, *args, divergence_ok=False, **kwargs):
    allowed = OK_ERRORS + ((DivergenceError,) if divergence_ok else ())
    try:
        result = fn(*args, **kwargs)
    except allowed as exc:
        assert str(exc), "an error without a message"
        return None
    if not hasattr(result, "get_params"):  # a fitted estimator returns itself
        assert _finite(result), f"{fn.__name__} returned non-finite values without raising"
    return result


def _entry_points(net, X, Y, V):
    rng = np.random.default_rng(0)
    calls = [
        (net.forward, (X,), {}),
        (net.predict, (X,), {}),
        (net.predict_classes, (X,), {}),
        (net.jacobian, (X,), {}),
        (net.vjp, (X, V), {}),
        (net.loss_and_gradients, (X, Y), {}),
        (net.loss_value, (X, Y), {}),
        (net.evaluate, (X, Y), {}),
        (check_gradients, (net, X, Y), {"indices": rng.integers(0, net.theta.size, 3)}),
    ]
    if net.layer_sizes[-1] == 1:
        calls.append((net.input_gradient, (X,), {}))
    return calls


@pytest.mark.parametrize("name", sorted(NETS))
@SETTINGS
@given(X=arrays())
def test_fuzz_X(name, X):
    net = NETS[name]
    theta = net.theta.copy()
    rng = np.random.default_rng(1)
    n = _n(X)
    Y, V = _targets(net, n, rng), rng.normal(size=(n, net.layer_sizes[-1]))
    if np.ndim(X) == 1:
        Y, V = Y[0], V[0]
    for fn, args, kwargs in _entry_points(net, X, Y, V):
        _call(fn, *args, **kwargs)
    np.testing.assert_array_equal(net.theta, theta)  # nothing above may change the network
    trained = MLP(net.layer_sizes, activation=net.activations[0], loss=net.loss, seed=0, dtype=net.dtype)
    _call(trained.fit, X, _targets(net, n, rng), epochs=1, batch_size=2, progress=False, divergence_ok=True)
    assert np.isfinite(trained.theta).all()


@pytest.mark.parametrize("name", sorted(NETS))
@SETTINGS
@given(Y=arrays(n_features=3), n=st.sampled_from([1, 2, 3, 4]))
def test_fuzz_Y_and_V(name, Y, n):
    net = NETS[name]
    X = np.random.default_rng(2).normal(size=(n, 3))
    for fn, args, kwargs in _entry_points(net, X, Y, Y):
        _call(fn, *args, **kwargs)
    trained = MLP(net.layer_sizes, activation=net.activations[0], loss=net.loss, seed=0, dtype=net.dtype)
    _call(trained.fit, X, Y, epochs=1, batch_size=2, progress=False, divergence_ok=True)
    _call(trained.fit, X, _targets(net, n, np.random.default_rng(3)), epochs=1, progress=False,
          validation_data=(X, Y), divergence_ok=True)
    assert np.isfinite(trained.theta).all()


ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4), st.sampled_from(["sgd", "adam", "sigmoid", "softmax", "mse", "float32", "bce"]),
    st.lists(st.integers(-2, 5), max_size=4), st.just(np.array([1.0, 2.0])), st.just(np.float32(0.1)),
    st.just(np.int64(3)), st.just(complex(1, 1)), st.just(object()),
)
FIT_PARAMS = ["epochs", "batch_size", "learning_rate", "optimizer", "shuffle", "momentum", "beta1", "beta2",
              "eps", "weight_decay", "on_nonfinite", "seed", "validation_data", "progress"]


@SETTINGS
@given(param=st.sampled_from(FIT_PARAMS), value=ANYTHING)
def test_fuzz_fit_hyperparameters(param, value):
    net = MLP([3, 4, 2], activation="tanh", loss="mse", seed=0)
    X = np.random.default_rng(4).normal(size=(6, 3))
    Y = np.random.default_rng(5).normal(size=(6, 2))
    kwargs = {"epochs": 1, "progress": False, param: value}
    if param == "epochs" and isinstance(value, int) and value > 3:
        kwargs["epochs"] = 3  # a valid but long run proves nothing more
    _call(net.fit, X, Y, divergence_ok=True, **kwargs)
    assert np.isfinite(net.theta).all()


@SETTINGS
@given(sizes=st.one_of(ANYTHING, st.lists(st.one_of(st.integers(-1, 4), ANYTHING), max_size=4)),
       activation=ANYTHING, loss=ANYTHING, dtype=ANYTHING, seed=ANYTHING)
def test_fuzz_constructor(sizes, activation, loss, dtype, seed):
    for kwargs in ({"activation": activation}, {"loss": loss}, {"dtype": dtype}, {"seed": seed},
                   {"output_activation": activation}):
        try:
            net = MLP(sizes, **kwargs)
        except OK_ERRORS as exc:
            assert str(exc)
            continue
        assert np.isfinite(net.theta).all() and net.theta.dtype in (np.float32, np.float64)


@SETTINGS
@given(W=arrays(n_features=3), b=arrays(n_features=3))
def test_fuzz_from_weights(W, b):
    for weights, biases in (([W], [b]), ([W, np.ones((2, 4))], [b, np.zeros(2)]), (W, b)):
        for dtype in (None, np.float32):
            try:
                net = MLP.from_weights(weights, biases, output_activation="identity", dtype=dtype)
            except OK_ERRORS as exc:
                assert str(exc)
                continue
            assert np.isfinite(net.theta).all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(X=arrays(n_features=3), y=arrays(n_features=1))
def test_fuzz_estimators(X, y):
    estimators = pytest.importorskip("backprop_numba.estimators")
    for make in (estimators.MLPClassifier, estimators.MLPRegressor):
        est = make(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
        yy = y if y is not None and np.ndim(y) else np.arange(_n(X)) % 2
        fitted = _call(est.fit, X, yy)
        if fitted is not None:
            _call(est.predict, X)
        good = make(hidden_layer_sizes=(3,), max_iter=1, random_state=0).fit(
            np.random.default_rng(0).normal(size=(6, 3)), np.arange(6) % 2)
        _call(good.predict, X)
