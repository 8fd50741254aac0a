"""Optimizers: names, codes, defaults and state allocation.

The update rule itself is one compiled kernel, ``_kernels._update``, applied to
the flat parameter vector theta; this module only holds what is Python-side:
validated hyper-parameters and the state arrays, allocated once per ``fit``.

The conventions are PyTorch's (``torch.optim``), so a step here and a step
there agree to rounding:

- ``sgd``:       theta <- theta - eta * g                               (seeds 002, 004)
- ``momentum``:  v <- mu v + g;  theta <- theta - eta * v
- ``nesterov``:  v <- mu v + g;  theta <- theta - eta * (g + mu v)
- ``adam``:      m <- b1 m + (1-b1) g;  s <- b2 s + (1-b2) g^2;
                 theta <- theta - eta * (m / (1-b1^t)) / (sqrt(s / (1-b2^t)) + eps)

``g`` includes the L2 term ``weight_decay * W`` for weights (not biases).
"""

import numpy as np

SGD, MOMENTUM, NESTEROV, ADAM = 0, 1, 2, 3

CODES = {"sgd": SGD, "momentum": MOMENTUM, "nesterov": NESTEROV, "adam": ADAM}
NAMES = {code: name for name, code in CODES.items()}

DEFAULTS = {"momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}

# Index of each hyper-parameter in the float64 array handed to the kernels.
HYPER_ORDER = ("momentum", "beta1", "beta2", "eps", "weight_decay")


def hyper_array(options):
    """Pack validated optimizer options into the kernel's float64 array."""
    return np.array([float(options[k]) for k in HYPER_ORDER], dtype=np.float64)


def new_state(n_params, dtype):
    """Two state vectors (velocity / first moment, second moment), zeroed."""
    return np.zeros((2, n_params), dtype=dtype)
