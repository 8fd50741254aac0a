"""scikit-learn-compatible estimators: ``MLPClassifier`` and ``MLPRegressor``.

They wrap ``MLP`` (its compiled training epoch) behind the scikit-learn API:
``fit``/``predict``/``predict_proba``/``score``/``get_params``/``set_params``,
so they work in ``Pipeline`` and ``GridSearchCV``.  scikit-learn is an optional
dependency: ``pip install 'backprop_numba[sklearn]'``.

Parameter names follow ``sklearn.neural_network.MLPClassifier`` where the
meaning is the same; the differences:

- ``solver``: "sgd", "adam", and also "momentum", "nesterov" and "rmsprop" by
  name.  With ``solver="sgd"`` and ``momentum > 0`` the update is momentum SGD,
  Nesterov's when ``nesterovs_momentum`` (PyTorch conventions, see
  ``optimizers``; the optimizer objects check the hyper-parameters, under
  scikit-learn's names).  "lbfgs" is not provided.
- ``alpha`` is the L2 weight decay added to the gradient of the weights
  (``g + alpha W``, PyTorch's ``weight_decay``), not scikit-learn's penalty
  scaled by the number of samples.
- ``learning_rate``: the schedule, "constant", "step", "exponential" or
  "cosine" (``schedules``); scikit-learn's "invscaling"/"adaptive" are not.
- ``max_iter`` is the number of epochs.  Without ``early_stopping``, training
  stops when the training loss has not improved by ``tol`` for
  ``n_iter_no_change`` epochs, and a ``ConvergenceWarning`` says when
  ``max_iter`` ran out first, as in scikit-learn; with it, ``tol`` and
  ``n_iter_no_change`` are the patience and min_delta on the validation loss.
- ``partial_fit`` (``classes`` required on the first call for the classifier)
  continues the parameters and the optimizer state (moments, step count) of
  earlier calls; ``warm_start=True`` makes ``fit`` start from the fitted
  parameters (with a fresh optimizer state, as scikit-learn).
- ``sample_weight`` in ``fit`` and ``partial_fit`` (scikit-learn's meaning),
  and ``MLPClassifier(class_weight=None | "balanced" | {label: weight})`` as in
  ``LogisticRegression``/``SGDClassifier``, multiplied into it
  (``compute_sample_weight``); scikit-learn's MLP has no class_weight.
- ``MLPRegressor(loss="squared_error" | "poisson" | "huber" | "mae")``:
  scikit-learn's two plus PyTorch's Huber (delta 1) and L1; the regressor
  standardises the targets inside ``fit`` (weighted) and undoes it in
  ``predict`` (the loss is that of the standardised targets; Poisson targets
  are only divided by their maximum).  Both steps work on ``y / max|y|``, so
  targets up to the largest float64 standardise without overflow; a
  prediction beyond the float64 range raises ``ValueError``.
- ``to_onnx(path)``: the classifier's graph gives "label" and
  "probabilities" (as skl2onnx's), the regressor's undoes the target scaling.
- ``dropout`` (one rate or one per hidden layer): inverted dropout while
  training, as ``MLP(dropout=)``; scikit-learn's MLP has none.
- ``activation``: "logistic" (scikit-learn's name) and "sigmoid" are the same
  function; "tanh", "relu", "identity" as in scikit-learn, plus "leaky_relu".
- Boolean parameters (``shuffle``, ``early_stopping``, ``nesterovs_momentum``,
  ``warm_start``) take only ``True``/``False`` (``verbose`` also an int): a
  string such as ``"no"`` raises ``TypeError`` (scikit-learn reads it as true).
"""

import numbers

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils.class_weight import compute_sample_weight
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

import warnings

from . import optimizers
from ._validation import check_params, check_sample_weight
from .mlp import MLP

__all__ = ["MLPClassifier", "MLPRegressor"]

SOLVERS = {"sgd", "momentum", "nesterov", "adam", "rmsprop"}
SCHEDULES = {"constant", "step", "exponential", "cosine"}
# scikit-learn's activation names -> ours (the rest are the same).
ACTIVATION_ALIASES = {"logistic": "sigmoid"}
# The optimizers' hyper-parameters under scikit-learn's names (for messages and get_params).
OPTIMIZER_NAMES = {"beta1": "beta_1", "beta2": "beta_2", "eps": "epsilon", "weight_decay": "alpha"}

# Every estimator parameter's constraint, stated once (the optimizer's own bounds come from
# optimizers.py under the names above; the network's from MLP).
PARAMS = {
    "solver": dict(kind="choice", options=SOLVERS),
    "learning_rate": dict(kind="choice", options=SCHEDULES),
    "learning_rate_init": dict(kind="real", low=0.0, low_open=True),
    "max_iter": dict(kind="int", minimum=1),
    "shuffle": dict(kind="bool"),
    "tol": dict(kind="real", low=0.0),
    "nesterovs_momentum": dict(kind="bool"),
    "early_stopping": dict(kind="bool"),
    "warm_start": dict(kind="bool"),
    "validation_fraction": dict(kind="real", low=0.0, high=1.0, low_open=True, high_open=True),
    "n_iter_no_change": dict(kind="int", minimum=1),
}


class _LossPlateau:
    """scikit-learn's stop on a training-loss plateau (``tol``, ``n_iter_no_change``), as a fit callback."""

    def __init__(self, tol, n_iter_no_change):
        self.tol, self.patience = tol, n_iter_no_change
        self.best, self.count, self.converged = np.inf, 0, False

    def on_epoch_end(self, epoch, logs):
        loss = logs["loss"]
        self.count = self.count + 1 if loss > self.best - self.tol else 0
        self.best = min(self.best, loss)
        if self.count >= self.patience:
            self.converged = True
        return self.converged


class _BaseMLP(BaseEstimator):
    """Shared parameters and fit logic (``__init__`` only stores; ``fit`` validates)."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dtype="float64", dropout=0.0):
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
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.dropout = dropout

    # -- parameters -> what MLP takes (each checked once, here or by the optimizer classes) --

    def _checked(self):
        return check_params(PARAMS, self.get_params())

    def _hidden(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got {sizes!r}.") from None
        # Named as the user named them (MLP would say layer_sizes[i + 1]).
        return [check_params({"n": dict(kind="int", minimum=1)}, {"n": n}, {"n": f"hidden_layer_sizes[{i}]"})["n"]
                for i, n in enumerate(sizes)]

    def _optimizer(self, p):
        """The optimizer object: solver "sgd" with momentum > 0 is (Nesterov) momentum, as in scikit-learn."""
        values = {"momentum": self.momentum, "beta1": self.beta_1, "beta2": self.beta_2, "eps": self.epsilon,
                  "weight_decay": self.alpha}
        name = p["solver"]
        if name == "sgd":
            check_params({"momentum": optimizers.Momentum.PARAMS["momentum"]}, values)
            if self.momentum > 0:
                name = "nesterov" if p["nesterovs_momentum"] else "momentum"
        return optimizers.CLASSES[name].from_options(values, names=OPTIMIZER_NAMES)

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

    def _batch_size(self, n_samples):
        if isinstance(self.batch_size, str):
            if self.batch_size != "auto":
                raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}.")
            return min(200, n_samples)
        return self.batch_size  # checked by fit (batch_size)

    def _new_network(self, n_in, n_out, loss, output_activation, seed):
        return MLP([n_in, *self._hidden(), n_out], activation=self._activation(),
                   output_activation=output_activation, loss=loss, seed=seed, dtype=self.dtype, dropout=self.dropout)

    def _fit_network(self, X, Y, n_out, loss, output_activation, sample_weight=None):
        """Build (or, with warm_start, keep) self.net_ and train it on (X, Y) in the network's target form."""
        p = self._checked()
        optimizer = self._optimizer(p)
        verbose = self._verbose()
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        keep = p["warm_start"] and getattr(self, "net_", None) is not None and \
            self.net_.layer_sizes == [X.shape[1], *self._hidden(), n_out]
        if not keep:
            self.net_ = self._new_network(X.shape[1], n_out, loss, output_activation, seed)
            self.loss_curve_ = []
        self._partial_seed = seed  # a later partial_fit shuffles from here
        early = p["early_stopping"]
        plateau = None if early else _LossPlateau(p["tol"], p["n_iter_no_change"])
        history = self.net_.fit(
            X, Y, epochs=p["max_iter"], batch_size=self._batch_size(X.shape[0]),
            learning_rate=p["learning_rate_init"], optimizer=optimizer, shuffle=p["shuffle"],
            progress=verbose and None, seed=seed, lr_schedule=p["learning_rate"], sample_weight=sample_weight,
            validation_fraction=p["validation_fraction"] if early else None, early_stopping=early,
            patience=p["n_iter_no_change"], min_delta=p["tol"], callbacks=[plateau] if plateau else None)
        self.loss_curve_ = list(self.loss_curve_) + list(history["loss"])
        self.n_iter_ = len(history["loss"])
        self.t_ = None  # fit's optimizer state is its own (partial_fit's counts its steps)
        self.loss_ = self.loss_curve_[-1]
        if early:
            self.validation_loss_curve_ = list(history["val_loss"])
            self.best_loss_ = min(history["val_loss"])
            self.best_epoch_ = history["best_epoch"]
        else:
            self.best_loss_ = plateau.best
            if not plateau.converged and self.n_iter_ == p["max_iter"]:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({p['max_iter']}) reached and the "
                              "optimization hasn't converged yet.", ConvergenceWarning)
        self._set_shape_attributes(n_out)
        return self

    def _partial_fit_network(self, X, Y, n_out, loss, output_activation, sample_weight=None):
        """One pass over X, Y continuing the parameters and the optimizer state of earlier calls."""
        p = self._checked()
        if getattr(self, "net_", None) is None:
            seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
            self.net_ = self._new_network(X.shape[1], n_out, loss, output_activation, seed)
            self.loss_curve_ = []
            self.n_iter_ = 0
            self._partial_seed = seed
        info = self.net_.partial_fit(X, Y, batch_size=self._batch_size(X.shape[0]),
                                     learning_rate=p["learning_rate_init"], optimizer=self._optimizer(p),
                                     shuffle=p["shuffle"], seed=self._partial_seed, sample_weight=sample_weight)
        self.loss_curve_.append(info["loss"])
        self.loss_ = info["loss"]
        self.n_iter_ += 1
        self.t_ = info["optimizer_steps"]
        self.best_loss_ = min(self.loss_curve_)
        self._set_shape_attributes(n_out)
        return self

    def _set_shape_attributes(self, n_out):
        self.n_layers_ = len(self.net_.layer_sizes)
        self.n_outputs_ = n_out

    def _sample_weight(self, sample_weight, n_samples):
        """scikit-learn's sample_weight as float64 (None stays None); checked as MLP.fit checks it."""
        if sample_weight is None:
            return None
        return check_sample_weight(sample_weight, n_samples, np.float64)

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

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dtype="float64", dropout=0.0, class_weight=None):
        # scikit-learn reads the parameters from this signature: the base's, plus class_weight.
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init, max_iter=max_iter, shuffle=shuffle,
            random_state=random_state, tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            n_iter_no_change=n_iter_no_change, dtype=dtype, dropout=dropout)
        self.class_weight = class_weight

    def _weights(self, y, sample_weight):
        """sample_weight times the class weights (scikit-learn's compute_sample_weight: "balanced" or a dict)."""
        sample_weight = self._sample_weight(sample_weight, len(y))
        if self.class_weight is None:
            return sample_weight
        if isinstance(self.class_weight, dict):
            unknown = sorted(set(self.class_weight) - set(self.classes_.tolist()), key=str)
            if unknown:
                raise ValueError(f"class_weight must name classes of y {self.classes_.tolist()}, got unknown "
                                 f"labels {unknown}.")
        elif self.class_weight != "balanced":
            raise ValueError(f"class_weight must be None, 'balanced' or a dict {{label: weight}}, "
                             f"got {self.class_weight!r}.")
        weights = compute_sample_weight(self.class_weight, y)
        return weights if sample_weight is None else weights * sample_weight

    def _encode(self, X, y, reset):
        X, y = _validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=False, reset=reset)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        return X, y

    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and class labels y (n_samples,); return self.

        sample_weight (n_samples,), optional, is multiplied by the class weights (``class_weight``).
        """
        X, y = self._encode(X, y, reset=True)
        self._label_encoder = LabelEncoder().fit(y)
        self.classes_ = self._label_encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"y must hold at least 2 classes to train a classifier, got 1 class "
                             f"({self.classes_[0]!r}).")
        codes = self._label_encoder.transform(y).astype(np.int64)
        return self._fit_network(X, codes, len(self.classes_), "cross_entropy", "softmax",
                                 self._weights(y, sample_weight))

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One pass over X, y continuing the parameters and optimizer state of earlier calls (scikit-learn's).

        ``classes`` (every label that will ever be seen) is required on the first call.
        """
        first = getattr(self, "net_", None) is None
        if first:
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit (every label y will "
                                 "ever hold), got None.")
            self._label_encoder = LabelEncoder().fit(np.asarray(classes))
            self.classes_ = self._label_encoder.classes_
            if len(self.classes_) < 2:
                raise ValueError(f"classes must hold at least 2 labels, got {self.classes_.tolist()}.")
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes must be the classes of the first call ({self.classes_.tolist()}), "
                             f"got {np.unique(np.asarray(classes)).tolist()}.")
        X, y = self._encode(X, y, reset=first)
        unseen = np.setdiff1d(np.unique(y), self.classes_)
        if unseen.size:
            raise ValueError(f"y holds labels not in classes {self.classes_.tolist()}: {unseen.tolist()}.")
        codes = self._label_encoder.transform(y).astype(np.int64)
        return self._partial_fit_network(X, codes, len(self.classes_), "cross_entropy", "softmax",
                                         self._weights(y, sample_weight))

    def to_onnx(self, path):
        """Write the fitted classifier as ONNX: outputs "label" and "probabilities" (as skl2onnx's classifiers)."""
        from . import onnx_export
        check_is_fitted(self, "net_")
        return onnx_export.export(self.net_, path, classes=self.classes_)

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

    LOSSES = {"squared_error": ("mse", "identity"), "huber": ("huber", "identity"), "mae": ("mae", "identity"),
              "poisson": ("poisson", "exp")}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="squared_error", solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dtype="float64", dropout=0.0):
        # scikit-learn reads the parameters from this signature: the base's, plus loss.
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init, max_iter=max_iter, shuffle=shuffle,
            random_state=random_state, tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            n_iter_no_change=n_iter_no_change, dtype=dtype, dropout=dropout)
        self.loss = loss

    def _targets(self, X, y, sample_weight, reset):
        """(X, targets in the network's form, weights); the standardisation is fitted when reset."""
        X, y = _validate_data(self, X, y, dtype=(np.float64, np.float32), multi_output=True, y_numeric=True,
                              reset=reset)
        loss, _ = self.LOSSES[check_params({"loss": dict(kind="choice", options=self.LOSSES)},
                                           {"loss": self.loss})["loss"]]
        y = np.asarray(y, dtype=np.float64)
        if reset:
            self._y_1d = y.ndim == 1
        Y = y.reshape(len(y), -1)
        sample_weight = self._sample_weight(sample_weight, len(Y))
        if reset:
            self._fit_scaling(Y, sample_weight, loss)
        return X, (Y / self._y_peak - self._y_mean_n) / self._y_std_n, sample_weight

    def _fit_scaling(self, Y, sample_weight, loss):
        """Standardise through Yn = Y / max|Y| (|Yn| <= 1), so that targets up to the largest float64
        overflow neither the mean, nor the squares of the standard deviation, nor (in predict) the
        back-transform y = peak * (a * std + mean) with std, mean of Yn (weighted by sample_weight).
        Poisson targets are counts or rates: only divided by max|Y| (the exp output needs y >= 0)."""
        peak = np.abs(Y).max(axis=0)
        peak[peak == 0] = 1.0
        Yn = Y / peak
        if loss == "poisson":
            mean, std = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        elif sample_weight is None:
            mean, std = Yn.mean(axis=0), Yn.std(axis=0)
        else:  # the weighted mean and standard deviation: integer weights as repeated rows
            mean = np.average(Yn, axis=0, weights=sample_weight)
            std = np.sqrt(np.average((Yn - mean) ** 2, axis=0, weights=sample_weight))
        std[std == 0] = 1.0
        self._y_peak, self._y_mean_n, self._y_std_n = peak, mean, std
        self.y_mean_, self.y_scale_ = mean * peak, std * peak

    def fit(self, X, y, sample_weight=None):
        """Train on X (n_samples, n_features) and targets y (n_samples,) or (n_samples, n_outputs)."""
        X, Yt, sample_weight = self._targets(X, y, sample_weight, reset=True)
        loss, output = self.LOSSES[self.loss]
        return self._fit_network(X, Yt, Yt.shape[1], loss, output, sample_weight)

    def partial_fit(self, X, y, sample_weight=None):
        """One pass over X, y continuing the parameters and optimizer state of earlier calls (scikit-learn's).

        The target scaling is fitted on the first call's y and kept.
        """
        first = getattr(self, "net_", None) is None
        X, Yt, sample_weight = self._targets(X, y, sample_weight, reset=first)
        loss, output = self.LOSSES[self.loss]
        return self._partial_fit_network(X, Yt, Yt.shape[1], loss, output, sample_weight)

    def to_onnx(self, path):
        """Write the fitted regressor as ONNX, its target scaling undone (output "Y", shape (N, n_outputs))."""
        from . import onnx_export
        check_is_fitted(self, "net_")
        return onnx_export.export(self.net_, path, y_scale=self.y_scale_, y_offset=self.y_mean_)

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
