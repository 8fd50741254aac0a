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

# The register tiles (_kernels._tile16, _tile32, _tile64) are written as 48,
# 96 or 192 scalar running sums that only LLVM's SLP vectorizer packs into
# vectors (12 AVX2 or AVX-512 registers).  numba turns the SLP pass off by default since numba #8705 (an
# LLVM miscompilation in other code), so the tiles alone are lowered with it
# on: _SLPLowering sets numba's switch while its function is optimised (under
# numba's compiler lock) and restores it.  Without "reassoc" the loop
# vectorizer leaves the sum over i to SLP; with it, it vectorised that sum
# across i with gathered loads (3 GFLOP/s).  Measured on the packed tile alone,
# one thread, 2026-12-01, AVX2: float64 26-29 GFLOP/s, scalar without SLP 3-6.
# The tests compare the tiles with the one-loop forms at every shape class.
TILE_FASTMATH = FASTMATH - {"reassoc"}
TILE_OPTS = dict(OPTS, fastmath=TILE_FASTMATH)
try:  # numba's documented compiler-customisation API ("Customizing the compiler")
    from numba.core import config as _numba_config
    from numba.core.compiler import CompilerBase as _CompilerBase, DefaultPassBuilder as _DefaultPassBuilder
    from numba.core.compiler_machinery import register_pass as _register_pass
    from numba.core.typed_passes import NativeLowering as _NativeLowering

    @_register_pass(mutates_CFG=True, analysis_only=False)
    class _SLPLowering(_NativeLowering):
        """numba's lowering pass with LLVM's SLP vectorizer on for this function."""

        _name = "backprop_numba_slp_lowering"

        def run_pass(self, state):
            saved = _numba_config.SLP_VECTORIZE
            _numba_config.SLP_VECTORIZE = 1
            try:
                return super().run_pass(state)
            finally:
                _numba_config.SLP_VECTORIZE = saved

    class _SLPCompiler(_CompilerBase):
        """numba's nopython pipeline, lowering with _SLPLowering."""

        def define_pipelines(self):
            pm = _DefaultPassBuilder.define_nopython_pipeline(self.state)
            pm.passes = [(_SLPLowering if p is _NativeLowering else p, d) for p, d in pm.passes]
            pm.finalize()
            return [pm]

    TILE_OPTS["pipeline_class"] = _SLPCompiler
except (ImportError, AttributeError):  # pragma: no cover - another numba: the tiles compile, unvectorised
    pass
