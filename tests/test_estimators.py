"""scikit-learn estimators: the estimator checks, Pipeline and GridSearchCV."""

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_digits, make_regression  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from backprop_numba import MLP  # noqa: E402
from backprop_numba.estimators import MLPClassifier, MLPRegressor  # noqa: E402

# Checks that cannot pass, with why (also listed in the README).  Empty: every
# check of scikit-learn's suite passes for both estimators (array-API checks
# are skipped by scikit-learn itself unless SCIPY_ARRAY_API=1).
EXPECTED_FAILED = {}


@parametrize_with_checks([MLPClassifier(), MLPRegressor()],
                         expected_failed_checks=lambda est: EXPECTED_FAILED.get(type(est).__name__, {}))
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_pipeline_and_grid_search_on_digits():
    X, y = load_digits(return_X_y=True)
    X, y = X[:600], y[:600]
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=20, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(16,), (32,)],
                               "mlpclassifier__learning_rate_init": [1e-3, 1e-2]}, cv=3)
    grid.fit(X, y)
    assert grid.best_score_ > 0.85
    assert set(grid.best_params_) == {"mlpclassifier__hidden_layer_sizes", "mlpclassifier__learning_rate_init"}
    assert grid.score(X, y) > 0.9
    proba = grid.predict_proba(X[:5])
    assert proba.shape == (5, 10) and np.allclose(proba.sum(axis=1), 1)


def test_regressor_learns_and_maps_targets_back():
    X, y = make_regression(n_samples=200, n_features=5, noise=1.0, random_state=0)
    y = 1000 + 50 * y  # far from standardised
    reg = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01,
                                                        max_iter=150, random_state=0))
    reg.fit(X, y)
    assert reg.score(X, y) > 0.95
    Y2 = np.c_[y, -y]
    multi = MLPRegressor(hidden_layer_sizes=(16,), max_iter=100, learning_rate_init=0.01, random_state=0)
    assert multi.fit(StandardScaler().fit_transform(X), Y2).predict(X[:3]).shape == (3, 2)


def test_solver_names_and_params_reach_the_network():
    X, y = load_digits(return_X_y=True)
    X = X[:300] / 16
    y = y[:300]
    for solver, momentum, nesterov in [("sgd", 0.0, False), ("sgd", 0.9, False), ("sgd", 0.9, True),
                                       ("adam", 0.9, True), ("nesterov", 0.9, True)]:
        clf = MLPClassifier(hidden_layer_sizes=(8,), solver=solver, momentum=momentum,
                            nesterovs_momentum=nesterov, learning_rate_init=0.05 if solver != "adam" else 0.01,
                            max_iter=15, random_state=1, learning_rate="cosine", alpha=1e-4)
        clf.fit(X, y)
        assert clf.n_iter_ == 15 and clf.loss_curve_[-1] < clf.loss_curve_[0]
        assert clf._optimizer(clf._checked()).name == {("sgd", 0.0): "sgd"}.get((solver, momentum),
                                                              "adam" if solver == "adam" else
                                                              "nesterov" if nesterov else "momentum")
    assert isinstance(clf.net_, MLP) and clf.net_.layer_sizes == [64, 8, 10]
    assert [c.shape for c in clf.coefs_] == [(64, 8), (8, 10)]


def test_same_random_state_same_model_and_early_stopping():
    X, y = load_digits(return_X_y=True)
    X = X / 16
    a = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, learning_rate_init=0.01, random_state=3,
                      early_stopping=True, n_iter_no_change=3)
    b = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, learning_rate_init=0.01, random_state=3,
                      early_stopping=True, n_iter_no_change=3)
    a.fit(X, y)
    b.fit(X, y)
    assert a.net_.theta.tobytes() == b.net_.theta.tobytes()
    assert a.n_iter_ < 300 and a.n_iter_ == a.best_epoch_ + 3
    assert a.best_loss_ == min(a.validation_loss_curve_)


def test_bad_parameters_are_refused_in_fit():
    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    for params, error, message in [
        ({"solver": "lbfgs"}, ValueError, "solver must be one of"),
        ({"hidden_layer_sizes": (0,)}, ValueError, r"hidden_layer_sizes\[0\] must be >= 1"),
        ({"learning_rate": "adaptive"}, ValueError, "learning_rate must be one of"),
        ({"learning_rate_init": -1.0}, ValueError, "learning_rate_init must be > 0"),
        ({"batch_size": "big"}, ValueError, "batch_size must be 'auto'"),
        ({"activation": "swish"}, ValueError, "activation must be one of"),
    ]:
        clf = MLPClassifier(max_iter=2, **params)  # __init__ only stores
        with pytest.raises(error, match=message):
            clf.fit(X, y)
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        MLPClassifier(max_iter=0).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier(max_iter=2).fit(X, np.zeros(20))


def test_optional_dependencies_stay_optional():
    """Importing the package (and its CLI) pulls in neither scikit-learn nor matplotlib nor tqdm;
    the estimators module without scikit-learn says how to install it."""
    import subprocess
    import sys
    code = ("import sys\n"
            "import backprop_numba, backprop_numba.cli, backprop_numba.datasets, backprop_numba.schedules\n"
            "assert not {'sklearn', 'matplotlib', 'tqdm'} & set(sys.modules), sorted(sys.modules)\n"
            "sys.modules['sklearn'] = None\n"
            "try:\n"
            "    import backprop_numba.estimators\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "needs scikit-learn: pip install scikit-learn" in r.stdout
