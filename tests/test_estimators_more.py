"""The estimators beyond fit/predict: partial_fit, warm_start, sample and class weights, the loss-plateau
stop, the regressor's losses and ONNX export; and the scale-out uses on a Dask LocalCluster
(GridSearchCV under joblib's dask backend, dask-ml's Incremental over a chunked dask array)."""

import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402

from backprop_numba import MLP  # noqa: E402
from backprop_numba.estimators import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16, y[:600]


def test_partial_fit_continues_the_optimizer_state(digits):
    X, y = digits
    kw = dict(hidden_layer_sizes=(16,), learning_rate_init=0.01, batch_size=50, shuffle=False, random_state=0)
    clf = MLPClassifier(**kw)
    with pytest.raises(ValueError, match="classes must be given on the first call"):
        clf.partial_fit(X, y)
    for _ in range(3):
        clf.partial_fit(X, y, classes=np.arange(10))
    assert clf.n_iter_ == 3 and clf.t_ == 3 * 12 and len(clf.loss_curve_) == 3
    # the same as three epochs of the network's own fit: Adam's moments and step count carried over
    net = MLP([64, 16, 10], activation="relu", loss="cross_entropy", seed=clf._partial_seed)
    net.fit(X, y, epochs=3, batch_size=50, learning_rate=0.01, optimizer=clf._optimizer(clf._checked()),
            shuffle=False, progress=False)
    assert net.theta.tobytes() == clf.net_.theta.tobytes()
    with pytest.raises(ValueError, match="y holds labels not in classes"):
        MLPClassifier(**kw).partial_fit(X, y, classes=np.arange(5))


def test_warm_start_keeps_the_parameters(digits):
    X, y = digits
    kw = dict(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm = MLPClassifier(warm_start=True, **kw).fit(X, y)
        first = warm.net_.theta.copy()
        warm.fit(X, y)
        cold = MLPClassifier(**kw).fit(X, y)
    assert len(warm.loss_curve_) == 10 and warm.loss_curve_[5] < warm.loss_curve_[0]
    assert not np.array_equal(warm.net_.theta, first) and len(cold.loss_curve_) == 5


def test_loss_plateau_stops_and_max_iter_warns(digits):
    X, y = digits
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=500, tol=0.5, n_iter_no_change=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y)  # converged: no warning
    assert clf.n_iter_ < 500


def test_sample_weight_is_repeated_rows_for_the_estimators(digits):
    X, y = digits
    X, y = X[:120], y[:120]
    w = np.random.default_rng(0).integers(0, 3, size=len(y)).astype(float)
    w[:10] = 1
    reps = np.repeat(np.arange(len(y)), w.astype(int))
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", momentum=0.0, learning_rate_init=0.1, max_iter=5,
              shuffle=False, random_state=0, n_iter_no_change=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(batch_size=len(y), **kw).fit(X, y, sample_weight=w)
        b = MLPClassifier(batch_size=len(reps), **kw).fit(X[reps], y[reps])
        ra = MLPRegressor(batch_size=len(y), **kw).fit(X, y * 1.5, sample_weight=w)
        rb = MLPRegressor(batch_size=len(reps), **kw).fit(X[reps], y[reps] * 1.5)
    np.testing.assert_allclose(a.net_.theta, b.net_.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ra.predict(X), rb.predict(X), rtol=1e-9)


@pytest.mark.parametrize("class_weight", ["balanced", {0: 3.0, 1: 0.5}])
def test_class_weight_matches_compute_sample_weight(digits, class_weight):
    X, y = digits
    y2 = (y == 3).astype(int)  # imbalanced: one class in ten
    kw = dict(hidden_layer_sizes=(8,), max_iter=3, shuffle=False, random_state=0, n_iter_no_change=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(class_weight=class_weight, **kw).fit(X, y2)
        b = MLPClassifier(**kw).fit(X, y2, sample_weight=compute_sample_weight(class_weight, y2))
    assert a.net_.theta.tobytes() == b.net_.theta.tobytes()
    with pytest.raises(ValueError, match="class_weight must name classes of y"):
        MLPClassifier(class_weight={7: 1.0}, **kw).fit(X, y2)
    with pytest.raises(ValueError, match="class_weight must be None, 'balanced' or a dict"):
        MLPClassifier(class_weight="heavy", **kw).fit(X, y2)


@pytest.mark.parametrize("loss", ["squared_error", "huber", "mae", "poisson"])
def test_regressor_losses(loss):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    rate = np.exp(0.5 * X[:, 0] - 0.4 * X[:, 1])
    y = rng.poisson(rate).astype(float) if loss == "poisson" else rate
    reg = MLPRegressor(hidden_layer_sizes=(16,), loss=loss, learning_rate_init=0.01, max_iter=150,
                       random_state=0).fit(X, y)
    assert reg.net_.loss == {"squared_error": "mse"}.get(loss, loss)
    pred = reg.predict(X)
    assert np.corrcoef(pred, rate)[0, 1] > 0.8
    if loss == "poisson":
        assert pred.min() > 0 and reg.net_.activations[-1] == "exp"
    with pytest.raises(ValueError, match="loss must be one of"):
        MLPRegressor(loss="absolute_error").fit(X, y)


def test_estimators_to_onnx(digits, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    X, y = digits
    labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0).fit(X, labels)
    clf.to_onnx(tmp_path / "clf.onnx")
    label, proba = ort.InferenceSession(str(tmp_path / "clf.onnx")).run(None, {"X": X})
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(label, clf.predict(X))
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y * 100.0 + 7)
    reg.to_onnx(tmp_path / "reg.onnx")
    (out,) = ort.InferenceSession(str(tmp_path / "reg.onnx")).run(None, {"X": X})
    np.testing.assert_allclose(out[:, 0], reg.predict(X), rtol=1e-10)


# -- on a Dask cluster ----------------------------------------------------------------------------

def test_grid_search_under_the_dask_backend(client, digits):
    import joblib
    from sklearn.model_selection import GridSearchCV
    X, y = digits
    grid = GridSearchCV(MLPClassifier(hidden_layer_sizes=(16,), max_iter=20, random_state=0),
                        {"learning_rate_init": [0.003, 0.01], "hidden_layer_sizes": [(8,), (16,)]}, cv=2)
    with joblib.parallel_backend("dask"):
        grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4 and grid.best_score_ > 0.7


def test_dask_ml_incremental_drives_partial_fit(client, digits):
    da = pytest.importorskip("dask.array")
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y = digits
    Xd, yd = da.from_array(X, chunks=(100, 64)), da.from_array(y, chunks=100)
    inc = wrappers.Incremental(MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0),
                               scoring="accuracy")
    scores = []
    for _ in range(4):
        inc.partial_fit(Xd, yd, classes=np.arange(10))
        scores.append(inc.score(Xd, yd))
    assert inc.estimator_.n_iter_ == 4 * 6  # one pass per chunk, six chunks per pass over the data
    assert scores[-1] > scores[0] and scores[-1] > 0.7  # accuracy rising over the passes
