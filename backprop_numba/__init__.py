"""backprop_numba: fully-connected networks trained and differentiated by
backpropagation, with a compute core of Numba loops that follow the derivation.

Public names: ``MLP``, ``check_gradients``, ``DivergenceError``; the optimizers
are in ``backprop_numba.optimizers`` (``Adam(beta1=0.8)``), the training loop and
its low-level ``Workspace`` in ``backprop_numba.training``, data-parallel
training on Dask in ``backprop_numba.data_parallel`` (``fit_data_parallel``).
"""

# First, before any @njit(cache=True) kernel is defined: make sure numba has a
# writable place for its compile cache (see _cache.py).
from ._cache import ensure_cache_location as _ensure_cache_location

_ensure_cache_location()

from .gradcheck import GradientCheck, check_gradients
from .mlp import MLP, DivergenceError

__version__ = "0.1.0"
__all__ = ["MLP", "check_gradients", "GradientCheck", "DivergenceError", "__version__"]
