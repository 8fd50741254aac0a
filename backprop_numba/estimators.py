"""scikit-learn-compatible estimators: ``MLPClassifier`` and ``MLPRegressor``.

They wrap ``MLP`` (its compiled training epoch) behind the scikit-learn API:
``fit``/``predict``/``predict_proba``/``score``/``get_params``/``set_params``,
so they work in ``Pipeline`` and ``GridSearchCV``.  scikit-learn is an optional
dependency: ``pip install 'backprop_numba[sklearn]'``.

Parameter names follow ``sklearn.neural_network.MLPClassifier`` where the
meaning is the same; the differences:

- ``solver``: "sgd", "adam", and also "momentum"/"nesterov" by name.  With
  ``solver="sgd"`` and ``momentum > 0`` the update is momentum SGD, Nesterov's
  when ``nesterovs_momentum`` (PyTorch conventions, see ``optimizers``).
  "lbfgs" is not provided.
- ``alpha`` is the L2 weight decay added to the gradient of the weights
  (``g + alpha W``, PyTorch's ``weight_decay``), not scikit-learn's penalty
  scaled by the number of samples.
- ``learning_rate``: the schedule, "constant", "step", "exponential" or
  "cosine" (``schedules``); scikit-learn's "invscaling"/"adaptive" are not.
- ``max_iter`` is the number of epochs; without ``early_stopping`` all of
  them run (no stopping on a training-loss plateau; ``tol`` and
  ``n_iter_no_change`` act only with ``early_stopping``).
- ``MLPRegressor`` standardises the targets inside ``fit`` and undoes it in
  ``predict`` (the loss is the mean squared error of the standardised targets).
  Both steps work on ``y / max|y|``, so targets up to the largest float64
  standardise without overflow; a prediction beyond the float64 range raises
  ``ValueError`` instead of returning ``inf``.
- ``activation``: "logistic" (scikit-learn's name) and "sigmoid" are the same
  function; "tanh", "relu", "identity" as in scikit-learn.
- Boolean parameters (``shuffle``, ``early_stopping``, ``nesterovs_momentum``)
  take only ``True``/``False`` (``verbose`` also an int): a string such as
  ``"no"`` raises ``TypeError`` (scikit-learn reads it as true).
"""

import numbers

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, column_or_1d
except ImportError as exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError("backprop_numba.estimators needs scikit-learn: pip install scikit-learn "
                      "(or pip install 'backprop_numba[sklearn]').") from exc

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

from ._validation import check_bool, check_choice, check_float, check_int
from .mlp import MLP

__all__ = ["MLPClassifier", "MLPRegressor"]

SOLVERS = {"sgd", "momentum", "nesterov", "adam"}
SCHEDULES = {"constant", "step", "exponential", "cosine"}
# scikit-learn's activation names -> ours (the rest are the same).
ACTIVATION_ALIASES = {"logistic": "sigmoid"}


class _BaseMLP(BaseEstimator):
    """Shared parameters and fit logic (``__init__`` only stores; ``fit`` validates)."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dtype="float64"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype

    def _hidden(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got {sizes!r}.") from None
        return [check_int(f"hidden_layer_sizes[{i}]", n, minimum=1) for i, n in enumerate(sizes)]

    def _optimizer(self):
        solver = check_choice("solver", self.solver, SOLVERS)
        nesterov = check_bool("nesterovs_momentum", self.nesterovs_momentum)
        if solver == "sgd" and check_float("momentum", self.momentum, low=0.0, high=1.0, high_open=True) > 0:
            return "nesterov" if nesterov else "momentum"
        return solver

    def _activation(self):
        activation = self.activation
        if isinstance(activation, str):
            activation = ACTIVATION_ALIASES.get(activation, activation)
        return activation

    def _verbose(self):
        if isinstance(self.verbose, (bool, np.bool_)):
            return bool(self.verbose)
        if isinstance(self.verbose, numbers.Integral):
            return self.verbose > 0
        raise TypeError(f"verbose must be True, False or an int, got {self.verbose!r}.")

    def _fit_network(self, X, Y, n_out, loss, output_activation):
        """Build self.net_ and train it on (X, Y) already in the network's target form."""
        optimizer = self._optimizer()
        schedule = check_choice("learning_rate", self.learning_rate, SCHEDULES)
        epochs = check_int("max_iter", self.max_iter, minimum=1)
        if isinstance(self.batch_size, str):
            if self.batch_size != "auto":
                raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}.")
            batch_size = min(200, X.shape[0])
        else:
            batch_size = check_int("batch_size", self.batch_size, minimum=1)
        n_iter_no_change = check_int("n_iter_no_change", self.n_iter_no_change, minimum=1)
        tol = check_float("tol", self.tol, low=0.0)
        validation_fraction = check_float("validation_fraction", self.validation_fraction, low=0.0, high=1.0,
                                          low_open=True, high_open=True)
        # Checked under the estimator's own names (MLP.fit would name weight_decay, beta1, eps, ...).
        check_float("learning_rate_init", self.learning_rate_init, low=0.0, low_open=True)
        check_float("alpha", self.alpha, low=0.0)
        check_float("beta_1", self.beta_1, low=0.0, high=1.0, high_open=True)
        check_float("beta_2", self.beta_2, low=0.0, high=1.0, high_open=True)
        check_float("epsilon", self.epsilon, low=0.0, low_open=True)
        shuffle = check_bool("shuffle", self.shuffle)
        early = check_bool("early_stopping", self.early_stopping)
        verbose = self._verbose()
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(0, 2**31 - 1))
        self.net_ = MLP([X.shape[1], *self._hidden(), n_out], activation=self._activation(),
                        output_activation=output_activation, loss=loss, seed=seed, dtype=self.dtype)
        history = self.net_.fit(
            X, Y, epochs=epochs, batch_size=batch_size, learning_rate=self.learning_rate_init,
            optimizer=optimizer, shuffle=shuffle, progress=verbose and None,
            momentum=self.momentum, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon,
            weight_decay=self.alpha, seed=seed, lr_schedule=schedule,
            validation_fraction=validation_fraction if early else None, early_stopping=early,
            patience=n_iter_no_change, min_delta=tol)
        self.loss_curve_ = list(history["loss"])
        self.n_iter_ = len(history["loss"])
        self.loss_ = self.loss_curve_[-1]
        if early:
            self.validation_loss_curve_ = list(history["val_loss"])
            self.best_loss_ = min(history["val_loss"])
            self.best_epoch_ = history["best_epoch"]
        else:
            self.best_loss_ = None
        self.n_layers_ = len(self.net_.layer_sizes)
        self.n_outputs_ = n_out
        self.t_ = None
        return self

    @property
    def coefs_(self):
        """Weights in scikit-learn's layout: coefs_[i] has shape (n[i], n[i+1]) (row convention)."""
        check_is_fitted(self, "net_")
        return [W.T.copy() for W in self.net_.weights]

    @property
    def intercepts_(self):
        check_is_fitted(self, "net_")
        return [b.copy() for b in self.net_.biases]

    def _forward(self, X):
        check_is_fitted(self, "net_")
        X = _validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.net_.forward(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier trained by backpropagation (backprop_numba's compiled core).

    Softmax output with cross-entropy loss over the classes seen in ``fit``
    (two classes included).  See the module docstring for the parameters and
    how they differ from scikit-learn's.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    net_ : MLP, the trained network (input -> hidden_layer_sizes -> n_classes)
    loss_curve_ : list of float, mean training loss per epoch
    n_iter_ : int, epochs run;  loss_ : float, the last epoch's loss
    coefs_, intercepts_ : weights and biases in scikit-learn's layout
    n_features_in_ : int;  feature_names_in_ : when X has feature names

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from backprop_numba.estimators import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=100,
    ...                     random_state=0).fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    """

    def fit(self, X, y):
        """Train on X (n_samples, n_features) and class labels y (n_samples,); return self."""
        X, y = _validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=False)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        self._label_encoder = LabelEncoder().fit(y)
        self.classes_ = self._label_encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"y must hold at least 2 classes to train a classifier, got 1 class "
                             f"({self.classes_[0]!r}).")
        codes = self._label_encoder.transform(y).astype(np.int64)
        return self._fit_network(X, codes, len(self.classes_), "cross_entropy", "softmax")

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in the order of classes_."""
        return self._forward(X).astype(np.float64)

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each sample."""
        check_is_fitted(self, "net_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor trained by backpropagation (backprop_numba's compiled core).

    Identity output, mean squared error on targets standardised in ``fit``
    (mean 0, std 1 per output); ``predict`` maps back.  One or several
    outputs.  See the module docstring for the parameters.

    Attributes
    ----------
    net_ : MLP;  loss_curve_, n_iter_, loss_, coefs_, intercepts_, n_features_in_
    y_mean_, y_scale_ : ndarray of shape (n_outputs,), the target standardisation

    Examples
    --------
    >>> import numpy as np
    >>> from backprop_numba.estimators import MLPRegressor
    >>> X = np.linspace(-2, 2, 200).reshape(-1, 1)
    >>> reg = MLPRegressor(hidden_layer_sizes=(16,), activation="tanh", learning_rate_init=0.01,
    ...                    max_iter=300, random_state=0).fit(X, X[:, 0] ** 2)
    >>> reg.score(X, X[:, 0] ** 2) > 0.95
    True
    """

    def fit(self, X, y):
        """Train on X (n_samples, n_features) and targets y (n_samples,) or (n_samples, n_outputs)."""
        X, y = _validate_data(self, X, y, dtype=(np.float64, np.float32), multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        Y = y.reshape(len(y), -1)
        # Standardise through Yn = Y / max|Y| (|Yn| <= 1), so that targets up to the largest float64
        # overflow neither the mean, nor the squares of the standard deviation, nor (in predict) the
        # back-transform: y = peak * (a * std + mean) with std, mean of Yn.
        peak = np.abs(Y).max(axis=0)
        peak[peak == 0] = 1.0
        Yn = Y / peak
        mean, std = Yn.mean(axis=0), Yn.std(axis=0)
        std[std == 0] = 1.0
        self._y_peak, self._y_mean_n, self._y_std_n = peak, mean, std
        self.y_mean_, self.y_scale_ = mean * peak, std * peak
        return self._fit_network(X, (Yn - mean) / std, Y.shape[1], "mse", "identity")

    def predict(self, X):
        """Predicted targets, shape (n_samples,) or (n_samples, n_outputs) as y in fit.

        Raises ValueError when a prediction lies beyond the float64 range
        (possible only for targets within a small factor of 1.8e308).
        """
        a = self._forward(X).astype(np.float64)
        with np.errstate(over="ignore"):
            out = (a * self._y_std_n + self._y_mean_n) * self._y_peak
        if not np.all(np.isfinite(out)):
            bad = int(np.sum(~np.isfinite(out)))
            raise ValueError(f"predictions must be finite, got {bad} beyond the float64 range (|y| > "
                             f"{np.finfo(np.float64).max:.3g}): the targets in fit reach "
                             f"{self._y_peak.max():.3g}; divide y by a large constant before fit "
                             "(e.g. y / 1e300) and multiply the predictions back.")
        return out[:, 0] if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
