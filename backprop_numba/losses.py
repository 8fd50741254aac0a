"""Loss functions: names, integer codes for the kernels, and their maths.

Per-sample losses (``a`` is the network output ``a[L]``, ``y`` the target,
``n_out`` the number of outputs).  A batch loss is the MEAN of the per-sample
losses, and the gradients are those of that mean.

==============  =======================================  ==========================
name            C(a, y)                                  dC/da
==============  =======================================  ==========================
sse             sum_j (a_j - y_j)^2          (seed 003)  2 (a - y)
half_sse        1/2 sum_j (y_j - a_j)^2      (seed 004)  a - y
mse             1/n_out sum_j (a_j - y_j)^2              2 (a - y) / n_out
bce             -sum_j [y_j log a_j + (1-y_j) log(1-a_j)]  (seed 004)
cross_entropy   -sum_j y_j log a_j
==============  =======================================  ==========================

Fused pairs.  ``bce`` requires a sigmoid output and ``cross_entropy`` a softmax
output.  For those pairs the chain rule collapses to ``delta[L] = dC/dz[L] =
a - y`` (seed 004 derives it for the sigmoid; for softmax it holds when each
target row sums to 1), and the kernels use that form: they never divide by
``a (1 - a)``, and the loss itself is computed from ``z`` through
``log(sigmoid(z)) = -softplus(-z)`` and ``log softmax(z) = z - logsumexp(z)``,
so it stays finite for any finite ``z``.
"""

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
