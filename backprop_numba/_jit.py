"""The options every kernel is compiled with, stated once.

``_kernels.py`` and the element-wise rules in ``activations.py``,
``losses.py`` and ``optimizers.py`` import them from here (``_kernels``
imports those modules, so the options cannot live there).
"""

# No "nnan"/"ninf": the finiteness checks must survive, and no "afn":
# approximate exp/log would move results beyond rounding.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
# error_model="numpy" keeps IEEE division (no ZeroDivisionError from a kernel).
# no_cfunc_wrapper: numba otherwise also emits a C-callable wrapper of every
# kernel (for passing it as a first-class function value, which no kernel
# does); leaving it out cut the cold compile of a digits run from 41.9 to 33.4
# s of CPU (one run each, load ~2; the cfunc-wrapper measurement of the
# compile-time work, 2026-12-01).
OPTS = dict(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True, no_cfunc_wrapper=True)
