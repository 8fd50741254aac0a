"""Loss functions: the registry and their compiled maths, side by side.

Per-sample losses (``a`` is the network output ``a[L]``, ``y`` the target,
``n_out`` the number of outputs).  A batch loss is the MEAN of the per-sample
losses, and the gradients are those of that mean.

==============  =======================================  ==========================
name            C(a, y)                                  dC/da
==============  =======================================  ==========================
sse             sum_j (a_j - y_j)^2          (note 003)  2 (a - y)
half_sse        1/2 sum_j (y_j - a_j)^2      (note 004)  a - y
mse             1/n_out sum_j (a_j - y_j)^2              2 (a - y) / n_out
bce             -sum_j [y_j log a_j + (1-y_j) log(1-a_j)]  (note 004)
cross_entropy   -sum_j y_j log a_j
huber           1/n_out sum_j h(a_j - y_j), h(d) = d^2/2   clip(a - y, -delta, delta) / n_out
                if |d| <= delta else delta (|d| - delta/2)
mae             1/n_out sum_j |a_j - y_j|                sign(a - y) / n_out
poisson         1/n_out sum_j (a_j - y_j z_j), a = exp(z)  (dC/dz = (a - y) / n_out)
==============  =======================================  ==========================

huber, mae and poisson equal PyTorch's ``HuberLoss(delta)``, ``L1Loss`` and
``PoissonNLLLoss(log_input=True)`` with ``reduction="mean"`` (the mean over
outputs, then over samples).  ``poisson`` needs the ``exp`` output (its ``z``
is the log rate); its delta is the stable ``(a - y) / n_out``, never computed
through ``log a``.  Huber's ``delta`` (default 1.0) is the network's
``huber_delta``, handed to the kernels as ``loss_param``.

Fused pairs.  ``bce`` requires a sigmoid output and ``cross_entropy`` a softmax
output.  For those pairs the chain rule collapses to ``delta[L] = dC/dz[L] =
a - y`` (note 004 derives it for the sigmoid; for softmax it holds when each
target row sums to 1), and the kernels use that form: they never divide by
``a (1 - a)``, and the loss itself is computed from ``z`` through
``log(sigmoid(z)) = -softplus(-z)`` and ``log softmax(z) = z - logsumexp(z)``,
so it stays finite for any finite ``z``, and in forms where no two large terms
cancel, so it keeps its digits at extreme ``z`` (tested against a
high-precision reference).

A new loss is one place: a code, its rows in the tables below, and a branch in
``_sample_loss`` and ``_output_delta``.
"""

import numpy as np
from numba import njit

from .activations import _backprop_activation

from ._jit import OPTS as _OPTS
# The loss value is written so that no two large terms cancel; "reassoc" would
# let LLVM undo that (a - (b - c) -> a - b + c), so it is left out here.  The
# loss touches only the output layer: no measurable cost.
_OPTS_EXACT = dict(_OPTS, fastmath={"nsz", "arcp", "contract"})

SSE, HALF_SSE, BCE, MSE, CROSS_ENTROPY, HUBER, MAE, POISSON = 0, 1, 2, 3, 4, 5, 6, 7

CODES = {
    "sse": SSE,
    "half_sse": HALF_SSE,
    "bce": BCE,
    "mse": MSE,
    "cross_entropy": CROSS_ENTROPY,
    "huber": HUBER,
    "mae": MAE,
    "poisson": POISSON,
}
NAMES = {code: name for name, code in CODES.items()}

# The output activation each loss needs, where it needs one.
REQUIRED_OUTPUT = {"bce": "sigmoid", "cross_entropy": "softmax", "poisson": "exp"}

# The output activation used when the user names none.
DEFAULT_OUTPUT = {
    "sse": "sigmoid",
    "half_sse": "sigmoid",
    "mse": "identity",
    "bce": "sigmoid",
    "cross_entropy": "softmax",
    "huber": "identity",
    "mae": "identity",
    "poisson": "exp",
}

# The default of each loss's parameter (loss_param in the kernels), where it has one.
DEFAULT_PARAM = {"huber": 1.0}

CLASSIFICATION = frozenset({"bce", "cross_entropy"})


# --------------------------------------------------------------------------
# Compiled maths
# --------------------------------------------------------------------------

@njit(**_OPTS_EXACT)
def _softplus(z):
    """log(1 + e^z) without overflow."""
    return max(z, 0.0) + np.log1p(np.exp(-abs(z)))


@njit(**_OPTS_EXACT)
def _sample_loss(loss, p, a, z, y, s):
    """C(a[L], y) of sample s (row s of a, z, y); p is the loss's parameter (huber's delta).

    bce and cross_entropy are evaluated from z, not a: log(sigmoid(z)) =
    -softplus(-z) and log(softmax(z)_j) = z_j - logsumexp(z) stay finite where
    a has rounded to exactly 0 or 1.
    """
    m = a.shape[1]
    total = 0.0
    if loss == CROSS_ENTROPY:
        j_max, zmax = 0, z[s, 0]
        for j in range(1, m):
            if z[s, j] > zmax:
                j_max, zmax = j, z[s, j]
        # log sum_k e^(z_k - zmax) = log1p(sum over k != j_max): the maximum's own term
        # is 1, and log1p keeps the digits of a sum far below 1
        rest = 0.0
        for j in range(m):
            if j != j_max:
                rest += np.exp(z[s, j] - zmax)
        log_e = np.log1p(rest)
        for j in range(m):
            if y[s, j] != 0.0:
                # -log softmax(z)_j = log_e - (z_j - zmax), two non-negative terms.  The
                # min() is a no-op (z_j <= zmax) that keeps LLVM's re-association (this
                # function is inlined into callers compiled with "reassoc") from turning it
                # into (log_e + zmax) - z_j, which loses every digit at z ~ 1e17.
                d = min(z[s, j] - zmax, 0.0)
                total += y[s, j] * (log_e - d)
        return total
    for j in range(m):
        if loss == BCE:
            # note 004: -[(1-y) log(1-a) + y log a] with log a = -softplus(-z) and
            # log(1-a) = -softplus(z): two non-negative terms, nothing cancels (the
            # equal softplus(z) - y z loses every digit at y = 1, z = 30)
            yj = y[s, j]
            total += yj * _softplus(-z[s, j]) + (1.0 - yj) * _softplus(z[s, j])
        elif loss == POISSON:
            # exp(z) - y z, z the log rate (PyTorch's PoissonNLLLoss(log_input=True))
            total += (a[s, j] - y[s, j] * z[s, j]) / m
        else:
            d = a[s, j] - y[s, j]
            if loss == SSE:
                total += d * d
            elif loss == HALF_SSE:
                total += 0.5 * d * d
            elif loss == HUBER:
                ad = abs(d)
                total += (0.5 * d * d if ad <= p else p * (ad - 0.5 * p)) / m
            elif loss == MAE:
                total += abs(d) / m
            else:  # MSE
                total += d * d / m
    return total


@njit(**_OPTS_EXACT)
def _loss_sum(loss, p, a, z, y, w):
    """sum_s w_s C(a[L]_s, y_s) over the B rows (w empty: every weight 1)."""
    total = 0.0
    if w.shape[0] == 0:
        for s in range(a.shape[0]):
            total += _sample_loss(loss, p, a, z, y, s)
    else:
        for s in range(a.shape[0]):
            if w[s] != 0.0:  # a zero weight drops the sample, even where its loss overflows
                total += w[s] * _sample_loss(loss, p, a, z, y, s)
    return total


@njit(inline="always", **_OPTS)  # a call a step: see _kernels._load_inputs
def _output_delta(loss, p, code, a, y, w, delta):
    """delta[L] = w_s dC/da[L] * g_L'(z[L]) (note 002 eq. 1), w_s the sample's weight (w empty: 1).

    Sample weights enter here, once: the weighted batch loss sum_s w_s C_s /
    sum_s w_s has dC/dz[L]_s = w_s (dC_s/dz[L]_s) / sum_s w_s, and the
    recursion and the gradients are linear in delta[L], so every later
    quantity carries the weight; the division by sum_s w_s is the gradients'
    scale (1/B without weights).

    For sigmoid+bce and softmax+cross_entropy the chain collapses to a - y
    (note 004 "g[3z] = a - y"); the Python layer only allows bce with a sigmoid
    output and cross_entropy with a softmax one, so those never divide by a(1-a).
    """
    _unweighted_output_delta(loss, p, code, a, y, delta)
    if w.shape[0] != 0:
        for s in range(a.shape[0]):
            for j in range(a.shape[1]):
                delta[s, j] *= w[s]


@njit(**_OPTS)
def _unweighted_output_delta(loss, p, code, a, y, delta):
    B, m = a.shape
    if loss == BCE or loss == CROSS_ENTROPY:
        # note 004: dC/dz[L] = a - y
        for s in range(B):
            for j in range(m):
                delta[s, j] = a[s, j] - y[s, j]
        return
    if loss == POISSON:
        # dC/dz[L] = (exp(z) - y) / m = (a - y) / m, never through log a
        for s in range(B):
            for j in range(m):
                delta[s, j] = (a[s, j] - y[s, j]) / m
        return
    if loss == HUBER or loss == MAE:
        # dC/da[L]: clip(a - y, -delta, delta) / m (huber), sign(a - y) / m (mae, 0 at a = y as PyTorch)
        for s in range(B):
            for j in range(m):
                d = a[s, j] - y[s, j]
                if loss == HUBER:
                    delta[s, j] = (min(max(d, -p), p)) / m
                else:
                    delta[s, j] = (1.0 if d > 0.0 else -1.0 if d < 0.0 else 0.0) / m
        _backprop_activation(code, a, delta, delta)
        return
    # dC/da[L] (note 003 eq. 4: 2(a - y); note 004: a - y; mse: 2(a - y)/m)
    if loss == SSE:
        c = 2.0
    elif loss == HALF_SSE:
        c = 1.0
    else:  # MSE
        c = 2.0 / m
    for s in range(B):
        for j in range(m):
            delta[s, j] = c * (a[s, j] - y[s, j])
    _backprop_activation(code, a, delta, delta)


@njit(inline="always", **_OPTS)  # a call a step: see _kernels._load_inputs
def _count_correct(loss, a, y, w):
    """Correct classifications in a batch, weighted by w (empty: 1); the accuracy's numerator (0 for regression).

    cross_entropy: argmax a == argmax y per sample; bce: (a > 0.5) == (y > 0.5)
    per output (Keras' binary accuracy).
    """
    B, m = a.shape
    count = 0.0
    if loss == CROSS_ENTROPY:
        for s in range(B):
            ja, jy = 0, 0
            for j in range(1, m):
                if a[s, j] > a[s, ja]:
                    ja = j
                if y[s, j] > y[s, jy]:
                    jy = j
            if ja == jy:
                count += 1.0 if w.shape[0] == 0 else w[s]
    elif loss == BCE:
        for s in range(B):
            for j in range(m):
                if (a[s, j] > 0.5) == (y[s, j] > 0.5):
                    count += 1.0 if w.shape[0] == 0 else w[s]
    return count
