"""Activation functions: the registry and their compiled maths, side by side.

A new activation is one place: a code, a row in ``ACTIVATIONS`` (its name,
whether hidden layers may use it, its initialisation rule), and a branch in
``_g`` and ``_g_prime`` below.  The kernels (``_kernels.py``) dispatch on the
integer codes.  Every derivative is computed from the cached *output*
``a = g(z)`` where that is exact and cheap, as scikit-learn does:

============  ==============================  ==========================
name          g(z)                            g'(z), written with a=g(z)
============  ==============================  ==========================
sigmoid       1 / (1 + exp(-z))               a (1 - a)
tanh          tanh(z)                         1 - a^2
relu          max(z, 0)                       1 if a > 0 else 0
leaky_relu    z if z > 0 else 0.01 z          1 if a > 0 else 0.01
identity      z                               1
softmax       exp(z_j) / sum_k exp(z_k)       a_j (delta_jk - a_k)  (a Jacobian)
exp           exp(z)                          a
============  ==============================  ==========================

(For relu and leaky_relu, a > 0 exactly when z > 0, so the output decides.)
Note 004 writes the sigmoid as ``1/(1 - e^{-z})``: a typo, since its own
derivative ``a(1 - a)`` belongs to the logistic function ``1/(1 + e^{-z})``,
which is what is implemented (in a form that never overflows, ``_sigmoid``).
``softmax`` and ``exp`` (the rate of a Poisson output) are allowed on the
output layer only.

Initial weights are uniform in +-bound, with the bound from the activation's
rule: Glorot's sqrt(f / (fan_in + fan_out)) (f = 2 for the logistic function,
whose derivative peaks at 1/4, as in scikit-learn; 6 otherwise) or He's
sqrt(6 / fan_in) for the rectifiers.
"""

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from ._jit import OPTS as _OPTS

SIGMOID, TANH, RELU, IDENTITY, SOFTMAX, LEAKY_RELU, EXP = 0, 1, 2, 3, 4, 5, 6

# Slope of leaky_relu for z < 0 (PyTorch's and Keras' default negative_slope).
LEAKY_SLOPE = 0.01


def glorot(factor):
    """Glorot & Bengio (2010): bound sqrt(factor / (fan_in + fan_out))."""
    return lambda fan_in, fan_out: math.sqrt(factor / (fan_in + fan_out))


def he(fan_in, fan_out):
    """He et al. (2015), uniform form: bound sqrt(6 / fan_in)."""
    return math.sqrt(6.0 / fan_in)


@dataclass(frozen=True)
class Activation:
    name: str
    code: int
    hidden: bool         # may be used on hidden layers (softmax: output only)
    init_bound: object   # (fan_in, fan_out) -> bound of the uniform initial weights


ACTIVATIONS = {a.name: a for a in (
    Activation("sigmoid", SIGMOID, True, glorot(2.0)),
    Activation("tanh", TANH, True, glorot(6.0)),
    Activation("relu", RELU, True, he),
    Activation("leaky_relu", LEAKY_RELU, True, he),
    Activation("identity", IDENTITY, True, glorot(6.0)),
    Activation("softmax", SOFTMAX, False, glorot(6.0)),
    Activation("exp", EXP, False, glorot(6.0)),
)}

CODES = {name: a.code for name, a in ACTIVATIONS.items()}
NAMES = {code: name for name, code in CODES.items()}
HIDDEN = frozenset(name for name, a in ACTIVATIONS.items() if a.hidden)
OUTPUT = frozenset(ACTIVATIONS)


# --------------------------------------------------------------------------
# Compiled maths
# --------------------------------------------------------------------------

@njit(**_OPTS)
def _sigmoid(z):
    """Logistic 1/(1 + e^{-z}); exp is only taken of -|z|, so it never overflows.

    One exp and a select rather than a branch around exp: the branch
    mispredicted on every other unit and kept the activation loop from
    vectorising.  The bits are those of the two-branch form.
    """
    e = np.exp(-abs(z))
    return 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)


@njit(**_OPTS)
def _g(code, z):
    """a = g(z) for one element (every activation but softmax, which needs the whole row)."""
    if code == SIGMOID:
        return _sigmoid(z)
    if code == TANH:
        return np.tanh(z)
    if code == RELU:
        return z if z > 0.0 else 0.0 * z
    if code == LEAKY_RELU:
        return z if z > 0.0 else LEAKY_SLOPE * z
    if code == EXP:
        return np.exp(z)
    return z  # IDENTITY


@njit(**_OPTS)
def _g_prime(code, a):
    """g'(z) written with the cached output a = g(z)."""
    if code == SIGMOID:
        return a * (1.0 - a)
    if code == TANH:
        return 1.0 - a * a
    if code == RELU:
        return 1.0 if a > 0.0 else 0.0
    if code == LEAKY_RELU:
        return 1.0 if a > 0.0 else LEAKY_SLOPE
    if code == EXP:
        return a
    return 1.0  # IDENTITY


@njit(**_OPTS)
def _activate(code, z, a):
    """a = g(z) row by row; softmax shifts by the row maximum so exp never overflows."""
    B, m = z.shape
    if code == SOFTMAX:
        for s in range(B):
            zmax = z[s, 0]
            for j in range(1, m):
                if z[s, j] > zmax:
                    zmax = z[s, j]
            total = 0.0
            for j in range(m):
                e = np.exp(z[s, j] - zmax)
                a[s, j] = e
                total += e
            for j in range(m):
                a[s, j] = a[s, j] / total
    else:
        for s in range(B):
            for j in range(m):
                a[s, j] = _g(code, z[s, j])


@njit(**_OPTS)
def _backprop_activation(code, a, grad_a, delta):
    """delta = dC/dz from grad_a = dC/da through a = g(z); delta may alias grad_a."""
    B, m = a.shape
    if code == SOFTMAX:
        # Softmax Jacobian a_j (delta_jk - a_k): delta_j = a_j (grad_j - sum_k grad_k a_k)
        for s in range(B):
            dot = 0.0
            for k in range(m):
                dot += grad_a[s, k] * a[s, k]
            for j in range(m):
                delta[s, j] = a[s, j] * (grad_a[s, j] - dot)
    else:
        # Hadamard product with g'(z) (note 002 eqs. 1 and 2, note 004 "o")
        for s in range(B):
            for j in range(m):
                delta[s, j] = grad_a[s, j] * _g_prime(code, a[s, j])
