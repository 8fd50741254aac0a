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
==============  =======================================  ==========================

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

_OPTS = dict(cache=True, fastmath={"nsz", "arcp", "contract", "reassoc"}, error_model="numpy", nogil=True)
# The loss value is written so that no two large terms cancel; "reassoc" would
# let LLVM undo that (a - (b - c) -> a - b + c), so it is left out here.  The
# loss touches only the output layer: no measurable cost.
_OPTS_EXACT = dict(_OPTS, fastmath={"nsz", "arcp", "contract"})

SSE, HALF_SSE, BCE, MSE, CROSS_ENTROPY = 0, 1, 2, 3, 4

CODES = {
    "sse": SSE,
    "half_sse": HALF_SSE,
    "bce": BCE,
    "mse": MSE,
    "cross_entropy": CROSS_ENTROPY,
}
NAMES = {code: name for name, code in CODES.items()}

# The output activation each loss needs, where it needs one.
REQUIRED_OUTPUT = {"bce": "sigmoid", "cross_entropy": "softmax"}

# The output activation used when the user names none.
DEFAULT_OUTPUT = {
    "sse": "sigmoid",
    "half_sse": "sigmoid",
    "mse": "identity",
    "bce": "sigmoid",
    "cross_entropy": "softmax",
}

CLASSIFICATION = frozenset({"bce", "cross_entropy"})


# --------------------------------------------------------------------------
# Compiled maths
# --------------------------------------------------------------------------

@njit(**_OPTS_EXACT)
def _softplus(z):
    """log(1 + e^z) without overflow."""
    return max(z, 0.0) + np.log1p(np.exp(-abs(z)))


@njit(**_OPTS_EXACT)
def _loss_sum(loss, a, z, y):
    """Sum over the B samples of the per-sample loss C(a[L], y).

    bce and cross_entropy are evaluated from z, not a: log(sigmoid(z)) =
    -softplus(-z) and log(softmax(z)_j) = z_j - logsumexp(z) stay finite where
    a has rounded to exactly 0 or 1.
    """
    B, m = a.shape
    total = 0.0
    if loss == CROSS_ENTROPY:
        for s in range(B):
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
    for s in range(B):
        for j in range(m):
            if loss == BCE:
                # note 004: -[(1-y) log(1-a) + y log a] with log a = -softplus(-z) and
                # log(1-a) = -softplus(z): two non-negative terms, nothing cancels (the
                # equal softplus(z) - y z loses every digit at y = 1, z = 30)
                yj = y[s, j]
                total += yj * _softplus(-z[s, j]) + (1.0 - yj) * _softplus(z[s, j])
            else:
                d = a[s, j] - y[s, j]
                if loss == SSE:
                    total += d * d
                elif loss == HALF_SSE:
                    total += 0.5 * d * d
                else:  # MSE
                    total += d * d / m
    return total


@njit(**_OPTS)
def _output_delta(loss, code, a, y, delta):
    """delta[L] = dC/da[L] * g_L'(z[L]) (note 002 eq. 1).

    For sigmoid+bce and softmax+cross_entropy the chain collapses to a - y
    (note 004 "g[3z] = a - y"); the Python layer only allows bce with a sigmoid
    output and cross_entropy with a softmax one, so those never divide by a(1-a).
    """
    B, m = a.shape
    if loss == BCE or loss == CROSS_ENTROPY:
        # note 004: dC/dz[L] = a - y
        for s in range(B):
            for j in range(m):
                delta[s, j] = a[s, j] - y[s, j]
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
