"""Activation functions: names, integer codes for the kernels, and their maths.

The kernels in ``_kernels.py`` dispatch on the integer codes below; this module
is the one place where a name becomes a code.  Every derivative is computed
from the cached *output* ``a = g(z)`` where that is exact and cheap, as
scikit-learn does:

============  ==============================  ==========================
name          g(z)                            g'(z), written with a=g(z)
============  ==============================  ==========================
sigmoid       1 / (1 + exp(-z))               a (1 - a)
tanh          tanh(z)                         1 - a^2
relu          max(z, 0)                       1 if z > 0 else 0
identity      z                               1
softmax       exp(z_j) / sum_k exp(z_k)       a_j (delta_jk - a_k)  (a Jacobian)
============  ==============================  ==========================

Seed 004 writes the sigmoid as ``1/(1 - e^{-z})``: a typo, since its own
derivative ``a(1 - a)`` belongs to the logistic function ``1/(1 + e^{-z})``,
which is what is implemented (in a form that never overflows, see
``_kernels._sigmoid``).  ``softmax`` is allowed on the output layer only.
"""

SIGMOID, TANH, RELU, IDENTITY, SOFTMAX = 0, 1, 2, 3, 4

CODES = {
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "relu": RELU,
    "identity": IDENTITY,
    "softmax": SOFTMAX,
}
NAMES = {code: name for name, code in CODES.items()}

HIDDEN = frozenset(CODES) - {"softmax"}
OUTPUT = frozenset(CODES)

# Uniform initialisation bound sqrt(factor / (fan_in + fan_out)) per activation
# (Glorot & Bengio 2010; factor 2 for the logistic function as in scikit-learn,
# whose derivative peaks at 1/4); relu uses He's sqrt(6 / fan_in) instead.
GLOROT_FACTOR = {"sigmoid": 2.0, "tanh": 6.0, "identity": 6.0, "softmax": 6.0}
