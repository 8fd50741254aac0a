"""Optimizers as objects: each owns its hyper-parameters, its state and its compiled rule.

An optimizer is one class (name, hyper-parameters with their defaults and
bounds, the number of state vectors) plus one ``@njit`` rule below it that
updates the flat parameter vector ``theta`` in place.  ``MLP.fit`` takes a
name (``optimizer="adam"``, hyper-parameters from ``fit``'s keywords) or an
instance (``optimizer=Adam(beta1=0.8)``); the command line and the estimators
build them through the same classes, so defaults and bounds are written once,
here.

The conventions are PyTorch's (``torch.optim``), so a step here and a step
there agree to rounding (``tests/test_optimizers.py``):

- ``sgd``:       theta <- theta - eta * g                               (notes 002, 004)
- ``momentum``:  v <- mu v + g;  theta <- theta - eta * v
- ``nesterov``:  v <- mu v + g;  theta <- theta - eta * (g + mu v)
- ``adam``:      m <- b1 m + (1-b1) g;  s <- b2 s + (1-b2) g^2;
                 theta <- theta - eta * (m / (1-b1^t)) / (sqrt(s / (1-b2^t)) + eps)
- ``rmsprop``:   s <- alpha s + (1-alpha) g^2;  theta <- theta - eta * g / (sqrt(s) + eps)

``g`` includes the L2 term ``weight_decay * W`` for weights (not biases),
added by ``_kernels._update`` before the rule runs.

The kernels receive the hyper-parameters as one float64 array ``hyper``; each
rule reads it by the named slots defined beside its class (``hyper[BETA1]``),
and ``Optimizer.hyper_array`` fills it from the same slots.
"""

import numpy as np
from numba import njit

from ._validation import check_choice, check_params

# Kernel options: the same as _kernels.OPTS (kept here to avoid an import cycle).
from ._jit import OPTS as _OPTS

# Optimizer codes, dispatched by _step below.
SGD_CODE, MOMENTUM_CODE, NESTEROV_CODE, ADAM_CODE, RMSPROP_CODE = 0, 1, 2, 3, 4

# Slots of the hyper-parameter array.  WEIGHT_DECAY is common to every optimizer.
WEIGHT_DECAY = 0
MU = 1                       # Momentum, Nesterov
BETA1, BETA2, EPS = 1, 2, 3  # Adam
ALPHA, RMS_EPS = 1, 2        # RMSprop
N_HYPER = 4

_UNIT = dict(low=0.0, high=1.0, high_open=True)  # [0, 1)
_WEIGHT_DECAY = {"weight_decay": dict(kind="real", default=0.0, low=0.0, slot=WEIGHT_DECAY)}


class Optimizer:
    """Base class.  Subclasses set ``name``, ``code``, ``n_state`` and ``PARAMS``.

    ``PARAMS`` maps each hyper-parameter to its constraint (see
    ``_validation.check_params``), its default and its slot in the kernel's
    hyper array.  An instance holds the validated values as attributes.
    """

    name = "optimizer"
    code = -1
    n_state = 0                  # state vectors of length P (velocity, moments, ...)
    default_learning_rate = 0.1  # the command line's default eta for this optimizer
    PARAMS = {}

    def __init__(self, **params):
        unknown = sorted(set(params) - set(self.PARAMS))
        if unknown:
            raise TypeError(f"{type(self).__name__} takes {sorted(self.PARAMS)}, got unknown {unknown}.")
        self._set(params, names=None)

    def _set(self, params, names):
        """Take params (only keys of PARAMS), checked, the others at their defaults."""
        values = {k: spec["default"] for k, spec in self.PARAMS.items()}
        values.update(params)
        for key, value in check_params(self.PARAMS, values, names).items():
            setattr(self, key, value)

    @classmethod
    def from_options(cls, options, names=None):
        """An instance from a dict that may hold other keys (only PARAMS are taken).

        ``names`` maps a parameter to the name the caller's user knows it by
        (the estimators' ``beta_1``), for error messages.
        """
        opt = cls.__new__(cls)
        opt._set({k: options[k] for k in cls.PARAMS if k in options}, names)
        return opt

    def params(self):
        """The hyper-parameters, as a dict (stored in checkpoints and metrics)."""
        return {k: getattr(self, k) for k in self.PARAMS}

    def hyper_array(self):
        """The float64 array the compiled rule reads, each value at its named slot."""
        hyper = np.zeros(N_HYPER, dtype=np.float64)
        for key, spec in self.PARAMS.items():
            hyper[spec["slot"]] = float(getattr(self, key))
        return hyper

    def new_state(self, n_params, dtype):
        """The optimizer's state, zeroed: shape (n_state, n_params)."""
        return np.zeros((self.n_state, n_params), dtype=dtype)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    def __eq__(self, other):
        return type(self) is type(other) and self.params() == other.params()

    __hash__ = None


class SGD(Optimizer):
    """theta <- theta - eta g  (notes 002, 004; torch.optim.SGD)."""

    name, code, n_state = "sgd", SGD_CODE, 0
    default_learning_rate = 0.1
    PARAMS = dict(_WEIGHT_DECAY)


@njit(**_OPTS)
def _sgd_rule(theta, state, hyper, c1, c2, i, g):
    # notes 002: W <- W - eta dC/dW   (c1 = eta)
    theta[i] -= c1 * g


class Momentum(Optimizer):
    """v <- mu v + g;  theta <- theta - eta v  (torch.optim.SGD(momentum=mu))."""

    name, code, n_state = "momentum", MOMENTUM_CODE, 1
    default_learning_rate = 0.05
    PARAMS = {"momentum": dict(kind="real", default=0.9, slot=MU, **_UNIT), **_WEIGHT_DECAY}


@njit(**_OPTS)
def _momentum_rule(theta, state, hyper, c1, c2, i, g):
    mu = hyper[MU]
    state[0, i] = mu * state[0, i] + g
    theta[i] -= c1 * state[0, i]


class Nesterov(Momentum):
    """v <- mu v + g;  theta <- theta - eta (g + mu v)  (torch.optim.SGD(momentum=mu, nesterov=True))."""

    name, code = "nesterov", NESTEROV_CODE


@njit(**_OPTS)
def _nesterov_rule(theta, state, hyper, c1, c2, i, g):
    mu = hyper[MU]
    state[0, i] = mu * state[0, i] + g
    theta[i] -= c1 * (g + mu * state[0, i])


class Adam(Optimizer):
    """Adam with bias correction (torch.optim.Adam); t counts steps from 1."""

    name, code, n_state = "adam", ADAM_CODE, 2
    default_learning_rate = 0.01
    PARAMS = {
        "beta1": dict(kind="real", default=0.9, slot=BETA1, **_UNIT),
        "beta2": dict(kind="real", default=0.999, slot=BETA2, **_UNIT),
        "eps": dict(kind="real", default=1e-8, low=0.0, low_open=True, slot=EPS),
        **_WEIGHT_DECAY,
    }


@njit(**_OPTS)
def _adam_rule(theta, state, hyper, c1, c2, i, g):
    # c1 = eta / (1 - beta1^t), c2 = sqrt(1 - beta2^t): the bias corrections (_step_factors)
    beta1, beta2, eps = hyper[BETA1], hyper[BETA2], hyper[EPS]
    state[0, i] = beta1 * state[0, i] + (1.0 - beta1) * g
    state[1, i] = beta2 * state[1, i] + (1.0 - beta2) * g * g
    theta[i] -= c1 * (state[0, i] / (np.sqrt(state[1, i]) / c2 + eps))


class RMSprop(Optimizer):
    """s <- alpha s + (1-alpha) g^2;  theta <- theta - eta g / (sqrt(s) + eps)  (torch.optim.RMSprop)."""

    name, code, n_state = "rmsprop", RMSPROP_CODE, 1
    default_learning_rate = 0.01
    PARAMS = {
        "alpha": dict(kind="real", default=0.99, slot=ALPHA, **_UNIT),
        "eps": dict(kind="real", default=1e-8, low=0.0, low_open=True, slot=RMS_EPS),
        **_WEIGHT_DECAY,
    }


@njit(**_OPTS)
def _rmsprop_rule(theta, state, hyper, c1, c2, i, g):
    alpha, eps = hyper[ALPHA], hyper[RMS_EPS]
    state[0, i] = alpha * state[0, i] + (1.0 - alpha) * g * g
    theta[i] -= c1 * g / (np.sqrt(state[0, i]) + eps)


@njit(**_OPTS)
def _step_factors(code, lr, hyper, t):
    """The step's two scalars (c1, c2): Adam's lr / (1 - beta1^t) and sqrt(1 - beta2^t), else (lr, 1).

    Taken once a step, so a rule applied to one row of W at a time (the fused
    small-batch step in _kernels.py) pays no pow per row.
    """
    if code == ADAM_CODE:
        return lr / (1.0 - hyper[BETA1] ** t), np.sqrt(1.0 - hyper[BETA2] ** t)
    return lr, 1.0


@njit(inline="always", **_OPTS)
def _step_one(code, theta, state, hyper, c1, c2, i, g):
    """One step of the optimizer with this code on theta[i] (and its state), gradient g.

    The only list of rules: each rule above updates one element.  The fused
    small-batch step (_kernels.py) calls this for each element of a tiny
    layer; _step_range below loops over a range with the choice made once.
    Inlined where it is called (numba IR): LLVM left it a call, and with its
    array arguments passed as scalars that call, once per weight, was 9% of a
    B = 1 epoch of [4,3,2,1] (perf); inlined, the choice is one predicted branch.
    """
    if code == SGD_CODE:
        _sgd_rule(theta, state, hyper, c1, c2, i, g)
    elif code == MOMENTUM_CODE:
        _momentum_rule(theta, state, hyper, c1, c2, i, g)
    elif code == NESTEROV_CODE:
        _nesterov_rule(theta, state, hyper, c1, c2, i, g)
    elif code == ADAM_CODE:
        _adam_rule(theta, state, hyper, c1, c2, i, g)
    elif code == RMSPROP_CODE:
        _rmsprop_rule(theta, state, hyper, c1, c2, i, g)


@njit(**_OPTS)
def _step_range(code, theta, grad, state, hyper, c1, c2, i0, n):
    """One step of the optimizer with this code on theta[i0:i0+n] (and its state), gradient grad[0:n].

    The rule is chosen outside the loop, one loop per rule, so each loop is
    that rule alone and vectorises (a loop calling _step_one per element
    stayed scalar: LLVM did not unswitch it).  i0 and n are unsigned
    (np.uint64): numba then emits no negative-index wraparound.
    """
    if code == SGD_CODE:
        for k in range(n):
            _sgd_rule(theta, state, hyper, c1, c2, i0 + k, grad[k])
    elif code == MOMENTUM_CODE:
        for k in range(n):
            _momentum_rule(theta, state, hyper, c1, c2, i0 + k, grad[k])
    elif code == NESTEROV_CODE:
        for k in range(n):
            _nesterov_rule(theta, state, hyper, c1, c2, i0 + k, grad[k])
    elif code == ADAM_CODE:
        for k in range(n):
            _adam_rule(theta, state, hyper, c1, c2, i0 + k, grad[k])
    elif code == RMSPROP_CODE:
        for k in range(n):
            _rmsprop_rule(theta, state, hyper, c1, c2, i0 + k, grad[k])


@njit(inline="always", **_OPTS)
def _outer_gradient(theta, i, d, a_k, weight_decay):
    """g = d a_k + weight_decay theta[i], rounded to theta's dtype as a stored gradient is (at each term)."""
    cast = theta.dtype.type
    return cast(cast(d * a_k) + weight_decay * theta[i])


@njit(**_OPTS)
def _step_outer(code, theta, state, hyper, c1, c2, i0, n, d, a, weight_decay):
    """_step_range on theta[i0:i0+n] with the gradient of one sample's row of W, formed in the loop.

    The gradient is g_k = d a[k] + weight_decay theta[i0 + k] (notes 002
    eq. 3 at B = 1, d = delta_j / the batch weight, plus the L2 term), the
    value _kernels._backward_update otherwise stores in a row buffer first.
    Returns sum_k |theta[i0 + k]| after the step, the fused step's bound,
    taken in the same pass.  One loop per rule, as in _step_range.
    """
    w_sum = 0.0
    if code == SGD_CODE:
        for k in range(n):
            _sgd_rule(theta, state, hyper, c1, c2, i0 + k, _outer_gradient(theta, i0 + k, d, a[k], weight_decay))
            w_sum += abs(theta[i0 + k])
    elif code == MOMENTUM_CODE:
        for k in range(n):
            _momentum_rule(theta, state, hyper, c1, c2, i0 + k,
                           _outer_gradient(theta, i0 + k, d, a[k], weight_decay))
            w_sum += abs(theta[i0 + k])
    elif code == NESTEROV_CODE:
        for k in range(n):
            _nesterov_rule(theta, state, hyper, c1, c2, i0 + k,
                           _outer_gradient(theta, i0 + k, d, a[k], weight_decay))
            w_sum += abs(theta[i0 + k])
    elif code == ADAM_CODE:
        for k in range(n):
            _adam_rule(theta, state, hyper, c1, c2, i0 + k, _outer_gradient(theta, i0 + k, d, a[k], weight_decay))
            w_sum += abs(theta[i0 + k])
    elif code == RMSPROP_CODE:
        for k in range(n):
            _rmsprop_rule(theta, state, hyper, c1, c2, i0 + k,
                          _outer_gradient(theta, i0 + k, d, a[k], weight_decay))
            w_sum += abs(theta[i0 + k])
    return w_sum


@njit(**_OPTS)
def _state_bound(code, state, t):
    """V >= max |state[0, i]| for the rules that carry a first moment (momentum, nesterov, adam), else 0.

    The sum of |state[0]| (one pass, like _kernels._abs_sum: a sum catches NaN
    and inf where a max would drop NaN); inf when a second moment (adam,
    rmsprop) is NaN, whose square root would make theta NaN.  t = 0 means the
    state is new_state's zeros (no step taken): 0 without a pass.
    """
    if t == 0 or code == SGD_CODE:
        return 0.0
    first = 0.0
    for i in range(state.shape[1]):
        first += abs(state[0, i])
    if code == RMSPROP_CODE:  # state[0] is the second moment s
        return 0.0 if first < np.inf else np.inf
    if code == ADAM_CODE:
        second = 0.0
        for i in range(state.shape[1]):
            second += state[1, i]
        if not second < np.inf:  # NaN (or inf, harmless, but not worth a second test)
            return np.inf
    return first


@njit(**_OPTS)
def _step_bound(code, hyper, c1, G, V):
    """(U, V'): a bound U on |theta_new - theta| of every element in a step of this rule, and V' on its new first moment.

    For a step whose gradients are all at most G in absolute value, from a
    state whose first moment is at most V (_state_bound).  Read off the rules
    above: momentum |mu v + g| <= mu V + G; nesterov adds |g + mu v'| <= G +
    mu V'; adam |m'| / (sqrt(v') / c2 + eps) <= |m'| / eps; rmsprop the same
    with g.  The fused small-batch step (_kernels._train_batches) takes a
    step without a copy of theta only when |theta| + U and V' are far from
    overflow, which proves theta and the state finite after it.
    """
    c1 = abs(c1)
    if code == MOMENTUM_CODE:
        V = hyper[MU] * V + G
        return c1 * V, V
    if code == NESTEROV_CODE:
        V = hyper[MU] * V + G
        return c1 * (G + hyper[MU] * V), V
    if code == ADAM_CODE:
        V = hyper[BETA1] * V + (1.0 - hyper[BETA1]) * G
        return c1 * V / hyper[EPS], V
    if code == RMSPROP_CODE:
        return c1 * G / hyper[RMS_EPS], 0.0
    return c1 * G, 0.0


@njit(**_OPTS)
def _step(code, theta, grad, state, lr, hyper, t):
    """One step of the optimizer with this code on all of theta; t counts steps from 1."""
    c1, c2 = _step_factors(code, lr, hyper, t)
    _step_range(code, theta, grad, state, hyper, c1, c2, np.uint64(0), np.uint64(theta.shape[0]))


CLASSES = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adam, RMSprop)}
NAMES = sorted(CLASSES)

# Every hyper-parameter any optimizer takes, with its default (fit's keywords).
DEFAULTS = {k: spec["default"] for cls in CLASSES.values() for k, spec in cls.PARAMS.items()}


def get_optimizer(spec, options=None, names=None):
    """An Optimizer from a name (hyper-parameters taken from ``options``) or an instance.

    >>> get_optimizer("adam", {"beta1": 0.8, "momentum": 0.5})
    Adam(beta1=0.8, beta2=0.999, eps=1e-08, weight_decay=0.0)
    """
    if isinstance(spec, Optimizer):
        return spec
    name = check_choice("optimizer", spec, CLASSES)
    return CLASSES[name].from_options(options or {}, names)
