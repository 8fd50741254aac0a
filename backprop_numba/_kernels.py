"""The compiled core: the forward pass, the delta recursion, the gradients and the epoch.

The element-wise maths that belongs to one activation, loss or optimizer lives
beside its registry entry (``activations.py``, ``losses.py``,
``optimizers.py``); everything that walks the network lives here.  The
derivation notes 000-004 (the notes this library implements) are cited by
equation above each loop.

Conventions (stated once, used everywhere)
------------------------------------------
- Layers are numbered ``l = 0..L``; ``a[0] = x`` is the input and ``l = 1..L``
  carry weights.  (Notes 000/001/003, written with columns, number the input
  1; notes 002/004, written with rows, number it 0, as here.)
- ``W[l]`` has shape ``(n[l], n[l-1])`` (column convention, notes 000/001/003):
  ``z[l]_j = b[l]_j + sum_k W[l]_jk a[l-1]_k``.  The row convention of notes
  002/004 is ``W_row = W.T``, converted at the Python boundary only.
- All parameters live in one flat vector ``theta``.  ``arch`` is an int64
  array of shape ``(5, L+1)`` describing the network:

  ``arch[N][l]``    n[l], the width of layer l
  ``arch[ACT][l]``  activation code of layer l (``activations.py``; unused at l=0)
  ``arch[WOFF][l]`` offset of W[l] in theta
  ``arch[BOFF][l]`` offset of b[l] in theta
  ``arch[UOFF][l]`` sum of n[0..l-1]: where layer l starts in a unit buffer

- A batch of ``B`` samples keeps ``a``, ``z`` and ``delta`` in flat unit
  buffers; layer l's block is ``buf[B*UOFF[l] : B*UOFF[l+1]]`` viewed as
  ``(B, n[l])`` (sample ``s`` in rows, unit ``j`` in columns, so every inner
  loop over ``k`` runs over contiguous memory).

Kernels take and fill plain contiguous arrays and integers, write results into
output arguments, and never raise: the Python layer validates before calling,
and a non-finite loss or gradient is reported through a status code.
"""


import numpy as np
from numba import config as numba_config, njit, prange, types
from numba.core import cgutils
from numba.core.codegen import get_host_cpu_features as _host_cpu_features
from numba.core.cpu import CPUTargetOptions as _CPUTargetOptions
from numba.extending import intrinsic, overload
from numba.core.imputils import impl_ret_borrowed
from numba.np.arrayobj import make_array, populate_array

from . import _threads  # noqa: F401 - loads libtbb before numba picks a threading layer
from .activations import SOFTMAX, _activate, _backprop_activation, _g, _g_prime
from .losses import _count_correct, _loss_sum, _output_delta
from .optimizers import (WEIGHT_DECAY, _state_bound, _step, _step_bound, _step_factors, _step_one, _step_outer,
                         _step_range)

from ._jit import FASTMATH, OPTS, TILE_OPTS  # noqa: F401 - FASTMATH: tests compile reference loops with it

# The training loop is compiled without the runtime's reference counting: numba
# otherwise increfs every array argument of every call it makes on entry and
# decrefs it on every exit (atomic operations, ~40 calls a step), which was
# half the time of a B = 1 step on [4,3,2,1] (2.98 -> 1.59 us/sample).  It
# allocates nothing, and every function it calls is compiled with the same
# flag; those that return a view are inlined (inline="always"), since a kernel
# without reference counting cannot return a new array.  ``_nrt`` is a private
# numba option (TargetOptions._nrt, numba 0.60-0.68): without it, the same code
# runs with the counting.
LEAF = dict(OPTS, _nrt=False) if hasattr(_CPUTargetOptions, "_nrt") else OPTS
# The matrix loops run on both cores where the work pays (see PARALLEL below).
# Issue 5 had measured prange with numba's default layer (GNU OpenMP) slower
# than one thread: its barriers spin on a busy core (up to 12x slower beside
# one other process) and libgomp hangs after fork.  numba's tbb layer has
# neither problem (_threads.py loads it), which is what made the split pay.
# The row-update tiles below (W^T delta, and dC/dW at small batches) take 4
# samples x 4 units at once, so every value loaded from W or a is used 4
# times.  TILE names that shape; it is not a tuning knob: the tiles are
# unrolled by hand (16 named sums), so any other value would make them wrong,
# and the import refuses it.
TILE = 4
if TILE != 4:  # pragma: no cover - guards an edit of the line above
    raise ImportError("backprop_numba._kernels.TILE must be 4: the register tiles are unrolled by hand for 4x4.")
# The dot-product tile (the forward pass, and through it W^T delta and dC/dW
# at large batches) is 4 x 3: 12 running sums plus the 7 vectors loaded per
# k fill AVX2's 16 vector registers without spilling.  The 4 x 4 form spilled: on 256x784->512
# it ran at 20 GFLOP/s (float64) and 43 (float32), the 4 x 3 form at 30 and
# 74 (one thread; NumPy's one-thread matmul: 34 and 67-79).  Unrolled by hand
# too (12 named sums), like TILE.
DOT_TILE = (4, 3)
# With AVX-512's 32 vector registers the forward's whole groups of 4 samples
# take 6 x 4 tiles instead (24 sums and 10 loaded vectors; measured in
# _dense_wide).  On a layer that takes them the parallel forward cuts
# its units at multiples of WIDE_SLICE_UNITS, a multiple of both tiles' widths,
# so every unit's sum is taken by the same loop as in the serial call (and
# the results are equal to the last bit); elsewhere at multiples of 4.
WIDE_DOT_TILE = (6, 4)
WIDE_SLICE_UNITS = 12
# rows of W and a shorter than this, and layers of fewer units, keep the 4 x 3 tiles; longer rows are
# taken in blocks of inputs (_dense_wide has the measurements)
WIDE_TILE_MIN_ROW_BYTES, WIDE_TILE_MIN_UNITS, WIDE_K_BLOCK_BYTES = 1024, 24, 4096
# Cache blocking: the forward pass takes SAMPLE_BLOCK samples at a time (their
# inputs stay in L2 while every row of W passes over them); the delta recursion
# and dC/dW take K_BLOCK inputs k at a time (that slice of W or of a[l-1]
# stays in L2 while every sample or unit passes over it).
SAMPLE_BLOCK = 64
K_BLOCK = 128
# dC/dW sums over samples as dot products of the transposed delta and a[l-1]
# (_outer_sum_dot) from DOT_MIN_BATCH samples when B * n_out >= DOT_MIN_WORK;
# below, row updates.  The transposes (B * (n[l-1] + n[l]) copies) pay only
# where they are shared by enough units and the sums are long enough.
# Measured (one thread, GFLOP/s rows -> dot, float64; float32): 784->512 at
# B = 64: 14.8 -> 22.0; 24.8 -> 31.4, at B = 32: 14 -> 17-25; 17-24 -> 21-24;
# 784->128 at B = 32: 17.7 -> 16.6; 26.5 -> 21.1, at B = 64: 16.8 -> 21.6;
# 25.8 -> 29.2; 784->16 at B = 256: 21.6 -> 17.9; 28.9 -> 22.1.
# Layers of fewer than DOT_MIN_UNITS units keep the row updates at every
# batch: there the dot form ran 3-6x slower from B = 512 on, where B * n_out
# first reached DOT_MIN_WORK (one thread, GFLOP/s rows vs dot, AMD EPYC with
# AVX-512, 2026-12-02; float64, float32): 784->16 at B = 512: 47.6 vs 11.2,
# 61.7 vs 22.7; at B = 2048: 38.6 vs 10.6, 60.5 vs 13.4; 512->10 at B = 1024:
# 29.0 vs 8.2, 49.6 vs 9.1; 784->24 at B = 1024: 45.1 vs 16.0, 61.6 vs 19.1
# (the transposed a[l-1], B values a row, is 4 KB apart row to row at
# B = 512 float64, and 3 units share each pass over it).
DOT_MIN_BATCH = 32
DOT_MIN_WORK = 8192
DOT_MIN_UNITS = 32
# A layer with at most TINY_LAYER weights takes plain element loops indexed
# straight into theta and the unit buffers, in the forward pass (_forward)
# and in the fused step (_backward_update): no views, no calls, and no
# vector loop whose set-up (alias checks, prologue, remainder) costs more
# than its 1-4 iterations.  Measured on [4,3,2,1], B = 1, run_epoch, thread CPU
# time (2026-12-01, 2 cores shared, load 3-6, interleaved with the old code):
# 1.25 -> 0.77 us/sample with the inline views (_matrix); unsigned indices
# 0.95 -> 0.87; the tiny layer body as its own (called) function instead of
# inlined: 0.62 -> 0.84.  A loop calling _step_one for every element is
# scalar (LLVM does not unswitch the rule), hence the bound on the size.
TINY_LAYER = 64


# Rows of the ``arch`` table.
N, ACT, WOFF, BOFF, UOFF = 0, 1, 2, 3, 4

# Constants kernels pass to kernels, as int64 values: a literal (-1, 0, 1) is
# typed Literal[int] and compiles the callee (and its callees) once more than
# the int64 variables of other callers (_forward, _drop and _dropout_keep were
# each compiled twice in a digits run, ~1.5 s of its cold compile;
# tests/test_compile.py checks that each kernel compiles once).
NO_SEED, ZERO, ONE_THREAD = np.int64(-1), np.int64(0), np.int64(1)
NOT_LAGGED, LAGGED = ZERO, ONE_THREAD  # _forward's `lagged` (an int64: a bool compiled it twice)

# Status codes returned by the training kernel.
OK, NONFINITE_LOSS, NONFINITE_GRADIENT = 0, 1, 2
# _train_batches(prove=True) stopped before a batch whose step it could not prove finite (3 is
# training.NONFINITE_PARAMETERS)
NOT_PROVEN = 4


# --------------------------------------------------------------------------
# Views into the flat parameter vector and the unit buffers
# --------------------------------------------------------------------------

@intrinsic
def _matrix(typingctx, flat, n_rows, n_cols):
    """flat (a contiguous 1-d array of n_rows * n_cols values) as a C-contiguous (n_rows, n_cols) view.

    What flat.reshape((n_rows, n_cols)) returns, built inline: numba's reshape
    calls the C helper numba_attempt_nocopy_reshape, which LLVM cannot see
    through, for every view.  The views below are made per layer per step
    (~25 a step at B = 1 on [4,3,2,1]): perf put 15% of a B = 1 epoch of
    [4,3,2,1] in that helper (2026-12-01).  The caller passes a slice of
    exactly n_rows * n_cols values (no check here).
    """
    if not (isinstance(flat, types.Array) and flat.ndim == 1 and flat.layout == "C"):
        return None
    result = flat.copy(ndim=2, layout="C")

    def codegen(context, builder, sig, args):
        ary = make_array(sig.args[0])(context, builder, args[0])
        intp = context.get_value_type(types.intp)
        rows = context.cast(builder, args[1], sig.args[1], types.intp)
        cols = context.cast(builder, args[2], sig.args[2], types.intp)
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(flat.dtype)))
        out = make_array(sig.return_type)(context, builder)
        populate_array(out, data=ary.data, shape=cgutils.pack_array(builder, [rows, cols], intp),
                       strides=cgutils.pack_array(builder, [builder.mul(cols, itemsize), itemsize], intp),
                       itemsize=ary.itemsize, meminfo=ary.meminfo, parent=ary.parent)
        # a view of flat's memory: one more reference to it where reference counting is on (as reshape)
        return impl_ret_borrowed(context, builder, sig.return_type, out._getvalue())

    return result(flat, n_rows, n_cols), codegen


if numba_config.DISABLE_JIT:  # the kernels run as Python (NUMBA_DISABLE_JIT=1), where an intrinsic cannot
    def _matrix(flat, n_rows, n_cols):
        return flat.reshape((n_rows, n_cols))


# The vector width of the matrix loops.  LLVM tunes for Intel's AVX-512
# server cores (Skylake-X to Emerald Rapids) with "prefer-256-bit": its
# vectorizers then use 256-bit registers even where the CPU has 512-bit ones,
# and the loops did half the work per instruction that NumPy's AVX-512 BLAS
# kernels do.  _wide_vectors() marks the function it is called in with LLVM's
# "prefer-vector-width"="512" (that function only, not numba's other code);
# on a CPU without AVX-512 LLVM keeps to 256 bits, and the code is unchanged.
# Measured on an Emerald Rapids core (2026-12-01, one thread, GFLOP/s, 256 ->
# 512 bits, before the tiles were widened for it): float32 256 x 512 -> 512
# forward 40 -> 107, W^T delta 34 -> 68, dC/dW 32 -> 79; float64 unchanged
# (31-36), hence WIDE below.
# The features numba compiles for: NUMBA_CPU_FEATURES where set, else the host's (numba keys its cache by them).
WIDE = "+avx512f" in (numba_config.CPU_FEATURES or _host_cpu_features()).split(",")


@intrinsic
def _wide_vectors(typingctx):
    """Lets LLVM use 512-bit vectors in the function that calls it (a function attribute; no code)."""
    def codegen(context, builder, sig, args):
        # llvmlite's FunctionAttributes accept only attribute names without a value; this one is a
        # string attribute of LLVM's IR, written as it reads there
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


if numba_config.DISABLE_JIT:  # see _matrix
    def _wide_vectors():
        return None


@njit(inline="always", **OPTS)
def _W(theta, arch, l):
    """W[l] as an (n[l], n[l-1]) view of theta (or of a gradient laid out like it)."""
    start = arch[WOFF, l]
    return _matrix(theta[start:start + arch[N, l] * arch[N, l - 1]], arch[N, l], arch[N, l - 1])


@njit(inline="always", **OPTS)
def _b(theta, arch, l):
    """b[l] as an (n[l],) view of theta."""
    start = arch[BOFF, l]
    return theta[start:start + arch[N, l]]


@njit(inline="always", **OPTS)
def _rows(buf, arch, l, B):
    """Layer l's block of a unit buffer (a, z or delta) as a (B, n[l]) view."""
    start = B * arch[UOFF, l]
    return _matrix(buf[start:start + B * arch[N, l]], B, arch[N, l])


# --------------------------------------------------------------------------
# Forward pass
# --------------------------------------------------------------------------

@njit(**OPTS)
def _dense_units(W, b, a_prev, z, j0, j1):
    """z[s, j] = b[j] + sum_k W[j, k] a_prev[s, k] for units j0 <= j < j1 and every sample s (b empty: no b).

    .. math:: z^{[l]}_{sj} = b^{[l]}_j + \\sum_k W^{[l]}_{jk} a^{[l-1]}_{sk}

    Register-blocked: 4 units x 3 samples per pass over k, 12 running sums, so
    each W[j, k] loaded is used 3 times and each a[s, k] 4 times; the k loop
    is contiguous in both and vectorises (fastmath "reassoc" lets it split
    each sum).  With AVX-512, on the layers where they pay, 6 units x 4
    samples (_dense_wide).
    """
    _dense_samples(W, b, a_prev, z, j0, j1, ZERO, a_prev.shape[0])


@njit(**OPTS)  # not inlined: inside _dense_slices' parallel loop it cost ~1.5 s more of first-use compile
def _dense_samples(W, b, a_prev, z, j0, j1, s0, s1):
    """_dense_units for the samples s0 <= s < s1, SAMPLE_BLOCK samples at a time.

    Where the 6 x 4 tiles pay (_wide_tiles_pay) each block's whole groups of 4
    samples take them (_dense_wide) and the 1-3 samples left the 4 x 3 tiles'
    loops (_dense_block); elsewhere _dense_block takes every sample.  Which
    loop takes a unit's sum for a sample then depends only on the layer's
    shape and the sample's place past s0 (a multiple of 4 apart from the
    serial call's blocks: _dense_slices), so slices reproduce the serial
    call's numbers exactly.  At B = 1 every sample is left to _dense_block's
    4-units-a-pass loop, which the lagged forward relies on (_backward_update).
    """
    zero = W.dtype.type(0)  # sums in the network's dtype (float32 stays float32)
    wide = _wide_tiles_pay(W.shape[1], W.shape[0], W.itemsize)
    for s_first in range(s0, s1, SAMPLE_BLOCK):
        s_last = min(s1, s_first + SAMPLE_BLOCK)
        s_rest = s_first + (s_last - s_first) // 4 * 4 if wide else s_first
        if s_rest > s_first:
            _dense_wide(W, b, a_prev, z, j0, j1, s_first, s_rest, zero)
        if s_last > s_rest:
            _dense_block(W, b, a_prev, z, j0, j1, s_rest, s_last, zero)


@njit(**OPTS)
def _dense_block(W, b, a_prev, z, j0, j1, s0, s1, zero):
    """_dense_units for the samples s0 <= s < s1: tiles of 4 units x 3 samples (DOT_TILE)."""
    _wide_vectors()
    n_in = np.uint64(W.shape[1])  # unsigned k: no negative-index wraparound, so the k loop vectorises
    biased = b.shape[0] != 0  # an empty b: no bias (W^T delta through this loop, see _backprop_linear)
    j = j0
    while j + 4 <= j1:
        b0, b1, b2, b3 = (b[j], b[j + 1], b[j + 2], b[j + 3]) if biased else (zero, zero, zero, zero)
        s = s0
        while s + 3 <= s1:
            c00 = c01 = c02 = c10 = c11 = c12 = zero
            c20 = c21 = c22 = c30 = c31 = c32 = zero
            # note 001: sum_k W_jk a_k, for 4 units (first index) x 3 samples (second)
            for k in range(n_in):
                u0, u1, u2, u3 = W[j, k], W[j + 1, k], W[j + 2, k], W[j + 3, k]
                v0, v1, v2 = a_prev[s, k], a_prev[s + 1, k], a_prev[s + 2, k]
                c00 += u0 * v0
                c01 += u0 * v1
                c02 += u0 * v2
                c10 += u1 * v0
                c11 += u1 * v1
                c12 += u1 * v2
                c20 += u2 * v0
                c21 += u2 * v1
                c22 += u2 * v2
                c30 += u3 * v0
                c31 += u3 * v1
                c32 += u3 * v2
            z[s, j], z[s, j + 1], z[s, j + 2], z[s, j + 3] = b0 + c00, b1 + c10, b2 + c20, b3 + c30
            z[s + 1, j], z[s + 1, j + 1], z[s + 1, j + 2], z[s + 1, j + 3] = (b0 + c01, b1 + c11,
                                                                              b2 + c21, b3 + c31)
            z[s + 2, j], z[s + 2, j + 1], z[s + 2, j + 2], z[s + 2, j + 3] = (b0 + c02, b1 + c12,
                                                                              b2 + c22, b3 + c32)
            s += 3
        while s < s1:  # the last 1-2 samples (every sample at B = 1): 4 units a pass
            c00 = c10 = c20 = c30 = zero
            for k in range(n_in):
                v0 = a_prev[s, k]
                c00 += W[j, k] * v0
                c10 += W[j + 1, k] * v0
                c20 += W[j + 2, k] * v0
                c30 += W[j + 3, k] * v0
            z[s, j], z[s, j + 1], z[s, j + 2], z[s, j + 3] = b0 + c00, b1 + c10, b2 + c20, b3 + c30
            s += 1
        j += 4
    while j < j1:
        b0 = b[j] if biased else zero
        for s in range(s0, s1):
            c00 = zero
            for k in range(n_in):
                c00 += W[j, k] * a_prev[s, k]
            z[s, j] = b0 + c00
        j += 1


@njit(inline="always", **OPTS)  # inlined: one compiled library fewer per caller (cold compile)
def _wide_tiles_pay(n_in, n_out, itemsize):
    """Whether the forward's whole groups of 4 samples take the 6 x 4 tiles (see _dense_wide)."""
    return WIDE and n_out >= WIDE_TILE_MIN_UNITS and n_in * itemsize >= WIDE_TILE_MIN_ROW_BYTES


@njit(**OPTS)
def _dense_wide(W, b, a_prev, z, j0, j1, s0, s1, zero):
    """_dense_block's sums in tiles of 6 units x 4 samples (WIDE_DOT_TILE), for s1 - s0 a multiple of 4.

    24 running sums and 10 vectors loaded per k, within AVX-512's 32
    registers; the units past the last whole 6 one at a time over the same
    groups of 4 samples.  A unit's sum is taken by the same loop whatever j0
    is, provided j0 is a multiple of 6 (the parallel forward's slices start
    at multiples of WIDE_SLICE_UNITS, 12).  z is set to b,
    then the inputs are taken in blocks of at most WIDE_K_BLOCK_BYTES, each
    block's sums added to z (b + the first block's sums + the next's ...).

    Measured (2026-12-02, AMD EPYC with AVX-512, one thread, GFLOP/s, 4 x 3
    tiles -> these, in turns in one process, through _dense):
    float64 32 x 512 -> 512 59-63 -> 78-85, 256 x 512 -> 512 62 -> 77,
    256 x 784 -> 128 80 -> 88-91, 32 x 784 -> 512 61-63 -> 81-82; float32
    32 x 784 -> 512 155 -> 180, 256 x 784 -> 128 170 -> 182, 256 x 512 ->
    512 165 -> 174.  Shapes tried first (no input blocks, 256 x 512 -> 512
    float64): 4 x 3 68, 8 x 3 97, 6 x 4 97, 4 x 6 59, 3 x 8 59, 2 x 12 35;
    without the input blocks 784 float64 inputs gained nothing (six rows of
    W and four of a, 62 KB, spill out of L1).  Narrow layers and short rows
    keep the 4 x 3 tiles (_wide_tiles_pay): with these tiles everywhere,
    [784,16,10] epochs took 1.07-1.16x the time, and float32 128 -> 64 ran at
    108 against 119.
    """
    _wide_vectors()
    n_in = np.uint64(W.shape[1])  # unsigned k: no negative-index wraparound, so the k loop vectorises
    biased = b.shape[0] != 0
    # z starts as b; the inputs then come in blocks of at most WIDE_K_BLOCK_BYTES (784 float64: 2 x 392),
    # each block's rows of W and a kept in L1 and L2 while every tile passes over them, its sums added to z
    for s in range(s0, s1):
        for j in range(j0, j1):
            z[s, j] = b[j] if biased else zero
    n_blocks = (n_in * W.itemsize + WIDE_K_BLOCK_BYTES - 1) // WIDE_K_BLOCK_BYTES
    k_step = (n_in + n_blocks - 1) // n_blocks
    for k0 in range(np.uint64(0), n_in, k_step):  # unsigned, as n_in: the k loops vectorise
        _dense_wide_block(W, a_prev, z, j0, j1, s0, s1, zero, k0, min(n_in, k0 + k_step))


@njit(inline="always", **OPTS)  # inlined: its k loops get _wide_vectors' attribute
def _dense_wide_block(W, a_prev, z, j0, j1, s0, s1, zero, k0, k1):
    """The 6 x 4 tiles over the inputs k0 <= k < k1, their sums added to z."""
    j = j0
    while j + 6 <= j1:
        for s in range(s0, s1, 4):
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = c20 = c21 = c22 = c23 = zero
            c30 = c31 = c32 = c33 = c40 = c41 = c42 = c43 = c50 = c51 = c52 = c53 = zero
            # note 001: sum_k W_jk a_k, for 6 units (first index) x 4 samples (second)
            for k in range(k0, k1):
                u0, u1, u2, u3, u4, u5 = W[j, k], W[j + 1, k], W[j + 2, k], W[j + 3, k], W[j + 4, k], W[j + 5, k]
                v0, v1, v2, v3 = a_prev[s, k], a_prev[s + 1, k], a_prev[s + 2, k], a_prev[s + 3, k]
                c00 += u0 * v0
                c01 += u0 * v1
                c02 += u0 * v2
                c03 += u0 * v3
                c10 += u1 * v0
                c11 += u1 * v1
                c12 += u1 * v2
                c13 += u1 * v3
                c20 += u2 * v0
                c21 += u2 * v1
                c22 += u2 * v2
                c23 += u2 * v3
                c30 += u3 * v0
                c31 += u3 * v1
                c32 += u3 * v2
                c33 += u3 * v3
                c40 += u4 * v0
                c41 += u4 * v1
                c42 += u4 * v2
                c43 += u4 * v3
                c50 += u5 * v0
                c51 += u5 * v1
                c52 += u5 * v2
                c53 += u5 * v3
            z[s, j] += c00
            z[s, j + 1] += c10
            z[s, j + 2] += c20
            z[s, j + 3] += c30
            z[s, j + 4] += c40
            z[s, j + 5] += c50
            z[s + 1, j] += c01
            z[s + 1, j + 1] += c11
            z[s + 1, j + 2] += c21
            z[s + 1, j + 3] += c31
            z[s + 1, j + 4] += c41
            z[s + 1, j + 5] += c51
            z[s + 2, j] += c02
            z[s + 2, j + 1] += c12
            z[s + 2, j + 2] += c22
            z[s + 2, j + 3] += c32
            z[s + 2, j + 4] += c42
            z[s + 2, j + 5] += c52
            z[s + 3, j] += c03
            z[s + 3, j + 1] += c13
            z[s + 3, j + 2] += c23
            z[s + 3, j + 3] += c33
            z[s + 3, j + 4] += c43
            z[s + 3, j + 5] += c53
        j += 6
    while j < j1:  # the units past the last whole 6: one at a time, over the same groups of 4 samples
        for s in range(s0, s1, 4):
            c00 = c01 = c02 = c03 = zero
            for k in range(k0, k1):
                u0 = W[j, k]
                c00 += u0 * a_prev[s, k]
                c01 += u0 * a_prev[s + 1, k]
                c02 += u0 * a_prev[s + 2, k]
                c03 += u0 * a_prev[s + 3, k]
            z[s, j] += c00
            z[s + 1, j] += c01
            z[s + 2, j] += c02
            z[s + 3, j] += c03
        j += 1


# The next function is equivalent to _dense_units(W, b, a_prev, z, 0, n_out)
# and left for reference: the one-loop form of the equation (tests compare them).
@njit(**OPTS)
def _dense_reference(W, b, a_prev, z):
    """z[s, j] = b[j] + sum_k W[j, k] a_prev[s, k], one multiply-add at a time."""
    for s in range(a_prev.shape[0]):
        for j in range(W.shape[0]):
            acc = b[j]
            for k in range(W.shape[1]):
                acc += W[j, k] * a_prev[s, k]
            z[s, j] = acc


# Both cores.  Each matrix loop is split across threads by its output: the
# forward tiles (_dense_units, also W^T delta and dC/dW as dot products over
# transposed operands) by units j (by samples s where the 6 x 4 tiles run on
# too few units: _dense_slices), the row updates of W^T delta by inputs k,
# those of dC/dW by units j.  A thread writes only its own slice, with the
# sums and their order of one thread, so results are bit-identical to the
# serial loops.  The slices are cut at whole tiles, SLICES_PER_THREAD per
# thread; the Python layer calls the kernels with numba's chunk size 1
# (_threads.call_kernel), so a slice is a task and a thread kept off its core
# by another process holds back only the slice it is on.  A second thread
# pays from about PARALLEL_MIN_WORK float64 multiply-adds a call (~30 us on
# one core), twice as many in float32; measured (2026-12-01, tbb layer, other
# processes stopped, GFLOP/s one thread -> two, forward tiles, multiply-adds
# in brackets): float64 32 x 784 -> 512 (12M) 26.6 -> 41.2, 16 x 784 -> 512
# (6M) 28.1 -> 40.7, 256 x 128 -> 64 (2M) 29.0 -> 42.4, 32 x 784 -> 40 (1M)
# 38.1 -> 43.5, 32 x 784 -> 32 (0.8M) 38.4 -> 35.6, 32 x 784 -> 16 (0.4M)
# 35.0 -> 31.0; float32 32 x 784 -> 512 62.6 -> 98.9, 64 x 784 -> 16 (0.8M)
# 84.9 -> 91.9, 32 x 784 -> 40 (1M) 82.4 -> 77.0, 32 x 784 -> 16 67.0 -> 49.4.
# Batches the fused step takes (B <= FUSED_MAX_BATCH) stay on one thread even
# on large layers, their forward pass too: on two threads [784,512,512,10] at
# B = 4-8 ran at 0.86-0.98x, and at B = 1 (threshold lowered to 2^16) at
# 0.55-0.73x: the fused pass (one thread) then finds half of each W in the
# other core's cache.  From B = 16 the blocked step gains (1.6-1.9x).  Beside
# one busy process the epoch on two threads ran at 0.96-1.01x one thread, so
# the default needs no load test.  The parallel loops run only on numba's
# tbb layer (_threads.py: thread-safe, fork-safe, no spinning); the caller
# passes threads = 1 on any other, and every kernel is then serial.
PARALLEL = dict(OPTS, parallel=True)
PARALLEL_MIN_WORK = 1 << 20
# the activation pass runs on threads from this many values (~8192 calls of exp: ~50 us on one core)
ACTIVATE_PARALLEL_MIN = 8192
SLICES_PER_THREAD = 4


@njit(**OPTS)
def _parallel_pays(threads, work, itemsize):
    """Whether a loop of `work` multiply-adds on values of itemsize bytes runs on `threads` threads.

    float32 multiply-adds count half: a core does twice as many a cycle.
    """
    return threads > 1 and work * itemsize >= PARALLEL_MIN_WORK * 8


@njit(inline="always", **OPTS)  # inlined: no compile of its own for each literal step and index type
def _slice_bounds(n, p, n_slices, step):
    """Slice p of n_slices of the range 0..n, cut at multiples of step."""
    pieces = (n + step - 1) // step
    return min(n, step * (pieces * p // n_slices)), min(n, step * (pieces * (p + 1) // n_slices))


@njit(**PARALLEL)
def _dense_slices(W, b, a_prev, z, threads):
    """_dense_units on every unit and sample, cut into slices that `threads` threads share.

    By units (slices of whole tiles: multiples of 4 units, or of
    WIDE_SLICE_UNITS where the 6 x 4 tiles run, so each unit's sum is taken
    by the loop the serial call takes it by), except where the 6 x 4 tiles
    run with fewer than two 12-unit pieces a thread: then by samples (whole
    groups of 4, every unit).
    """
    n_out, B = W.shape[0], a_prev.shape[0]
    wide = _wide_tiles_pay(W.shape[1], n_out, W.itemsize)
    step = WIDE_SLICE_UNITS if wide else 4
    tiles = (n_out + step - 1) // step
    by_units = not wide or tiles >= 2 * threads
    n_slices = min(tiles if by_units else (B + 3) // 4, threads * SLICES_PER_THREAD)
    for p in prange(n_slices):
        j0, j1 = _slice_bounds(n_out, p, n_slices, step) if by_units else (ZERO, n_out)
        s0, s1 = (ZERO, B) if by_units else _slice_bounds(B, p, n_slices, 4)
        _dense_samples(W, b, a_prev, z, j0, j1, s0, s1)


@njit(**OPTS)
def _dense(W, b, a_prev, z, threads):
    """z = a_prev W^T + b (b empty: no b) for every unit: on `threads` threads where that pays."""
    if _parallel_pays(threads, a_prev.shape[0] * a_prev.shape[1] * W.shape[0], W.itemsize):
        _dense_slices(W, b, a_prev, z, threads)
    else:
        _dense_units(W, b, a_prev, z, ZERO, W.shape[0])


@njit(**PARALLEL)
def _activate_slices(code, z, a, threads):
    """a = g(z) element by element (code not SOFTMAX), the samples cut into slices `threads` threads share.

    Each element is g of its own z (_g), so slices give the serial pass's numbers exactly.
    """
    B, m = z.shape
    n_slices = min(B, threads * SLICES_PER_THREAD)
    for p in prange(n_slices):
        s0, s1 = _slice_bounds(B, p, n_slices, 1)
        for s in range(s0, s1):
            for j in range(m):
                a[s, j] = _g(code, z[s, j])


@njit(**OPTS)
def _activate_rows(code, z, a, threads):
    """a = g(z) (activations._activate): on `threads` threads where the pass is long enough to pay.

    The activation pass ran on one thread after the parallel matrix loops:
    on [784,128,64,10] at B = 256 (sigmoid) libm's scalar exp and the
    sigmoid around it were ~12% of a one-thread epoch (perf), about a third
    of it on two threads.
    """
    if code != SOFTMAX and threads > 1 and z.shape[0] * z.shape[1] >= ACTIVATE_PARALLEL_MIN:
        _activate_slices(code, z, a, threads)
    else:
        _activate(code, z, a)


@njit(**OPTS)
def _forward(theta, arch, a_buf, z_buf, B, rates, seed, row0, threads, lagged):
    """Forward pass for B samples whose inputs already fill layer 0 of a_buf.

    .. math:: z^{[l]} = W^{[l]} a^{[l-1]} + b^{[l]},\\quad a^{[l]} = g_l(z^{[l]})

    (notes 000/001 "Forward pass", note 003 eqs. 15-18), keeping every z and a.
    In training (seed >= 0) a hidden layer with dropout rate rates[l] > 0 keeps
    each unit with probability 1 - rates[l] and scales it by 1 / (1 - rates[l])
    (inverted dropout): the mask of sample row0 + s, layer l, unit j is
    _dropout_keep(seed, row0 + s, l, j, rate); seed < 0 (inference) never drops.
    ``threads``: how many threads the matrix loops may share (_dense).
    ``lagged`` (LAGGED, else NOT_LAGGED): z[1] already holds W[1] a[0]
    (B = 1, the fused step's lagged forward, see _backward_update), to
    which only b[1] is added.
    """
    L = arch.shape[1] - 1
    zero = theta.dtype.type(0)  # sums in the network's dtype (float32 stays float32), as _dense_block
    for l in range(1, L + 1):
        n_out, n_in, code = arch[N, l], arch[N, l - 1], arch[ACT, l]
        if n_out * n_in <= TINY_LAYER and code != SOFTMAX:
            # note 001: z[l]_j = sum_k W[l]_jk a[l-1]_k + b[l]_j, a[l]_j = g_l(z[l]_j), one unit at a
            # time, indexed straight into theta and the unit buffers (see TINY_LAYER)
            u = np.uint64  # unsigned indices: no negative-index wraparound on every access
            w0, b0, n_o, n_i, Bu = u(arch[WOFF, l]), u(arch[BOFF, l]), u(n_out), u(n_in), u(B)
            for s in range(Bu):
                a0, z0 = Bu * u(arch[UOFF, l - 1]) + s * n_i, Bu * u(arch[UOFF, l]) + s * n_o
                for j in range(n_o):
                    acc = zero
                    for k in range(n_i):
                        acc += theta[w0 + j * n_i + k] * a_buf[a0 + k]
                    z_buf[z0 + j] = theta[b0 + j] + acc
                    a_buf[z0 + j] = _g(code, z_buf[z0 + j])
        else:
            W = _W(theta, arch, l)
            b = _b(theta, arch, l)
            a_prev = _rows(a_buf, arch, l - 1, B)
            z = _rows(z_buf, arch, l, B)
            # note 001: z[l]_j = sum_k W[l]_jk a[l-1]_k + b[l]_j
            if lagged != 0 and l == 1:
                # B = 1: z[1] holds W[1] a[0] already (the fused step's lagged forward)
                for j in range(n_out):
                    z[0, j] = b[j] + z[0, j]
            else:
                _dense(W, b, a_prev, z, threads)
            # a[l] = g_l(z[l])
            _activate_rows(code, z, _rows(a_buf, arch, l, B), threads)
        if seed >= 0 and l < L and rates[l] > 0.0:
            _drop(_rows(a_buf, arch, l, B), rates[l], seed, row0, l)


# --------------------------------------------------------------------------
# Dropout (training only): masks from a counter-based hash, so the mask of
# (epoch seed, row of the epoch, layer, unit) is the same however the epoch is
# cut into calls (Ctrl-C, progress) and after a resume.
# --------------------------------------------------------------------------

@njit(**OPTS)
def _dropout_keep(seed, row, l, j, rate):
    """True when unit j of layer l is kept for this row: splitmix64 of the four, as a uniform in [0, 1)."""
    x = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(row) * np.uint64(0xD1B54A32D192ED03) \
        + np.uint64(l) * np.uint64(0x8CB92BA72F3D8DD7) + np.uint64(j)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)) * (1.0 / 9007199254740992.0) >= rate


@njit(**OPTS)
def _drop(a, rate, seed, row0, l):
    """Inverted dropout on a hidden layer's outputs: a <- a m / (1 - rate), m in {0, 1}."""
    scale = 1.0 / (1.0 - rate)
    for s in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[s, j] = a[s, j] * scale if _dropout_keep(seed, row0 + s, l, j, rate) else 0.0 * a[s, j]


@njit(**OPTS)
def _backprop_dropout(code, a, grad_a, delta, rate, seed, row0, l):
    """delta = dC/dz through a dropped layer: grad_a m / (1 - rate) g'(z), with g' from the kept output
    a (1 - rate) (a holds the dropped, scaled output); a dropped unit passes nothing back."""
    scale = 1.0 / (1.0 - rate)
    for s in range(a.shape[0]):
        for j in range(a.shape[1]):
            if _dropout_keep(seed, row0 + s, l, j, rate):
                delta[s, j] = grad_a[s, j] * scale * _g_prime(code, a[s, j] * (1.0 - rate))
            else:
                delta[s, j] = 0.0 * grad_a[s, j]


# Inlined into its callers (numba IR), as are _load_inputs, _gradient_bound, losses._output_delta
# and losses._count_correct: called once a step, each call passed every array as ~7 scalars;
# inlining the four took [4,3,2,1] B = 1 from 0.56 to 0.46 us/sample (thread CPU time, load 5.4).
# Not losses._loss_sum: inlined, it would take the caller's "reassoc", which its sums must not have.
@njit(inline="always", **OPTS)
def _load_inputs(X, rows, start, B, arch, a_buf):
    """Copy samples X[rows[start:start+B]] into layer 0 of a_buf (a[0] = x)."""
    a0 = _rows(a_buf, arch, 0, B)
    for s in range(B):
        r = rows[start + s]
        for k in range(X.shape[1]):
            a0[s, k] = X[r, k]


@njit(inline="always", **OPTS)
def _load_targets(Y, rows, start, B, y_buf):
    """Copy targets Y[rows[start:start+B]] into the first B rows of y_buf."""
    y = _matrix(y_buf[:B * Y.shape[1]], B, Y.shape[1])
    for s in range(B):
        r = rows[start + s]
        for j in range(Y.shape[1]):
            y[s, j] = Y[r, j]
    return y


@njit(**OPTS)
def _predict(theta, arch, X, rows, out, a_buf, z_buf, chunk, threads):
    """out[i] = a[L](X[rows[i]]) for every i, `chunk` samples per forward pass."""
    L = arch.shape[1] - 1
    total = rows.shape[0]
    no_dropout = np.empty(0)
    for start in range(0, total, chunk):
        B = min(chunk, total - start)
        _load_inputs(X, rows, start, B, arch, a_buf)
        _forward(theta, arch, a_buf, z_buf, B, no_dropout, NO_SEED, ZERO, threads, NOT_LAGGED)
        a_L = _rows(a_buf, arch, L, B)
        for s in range(B):
            for j in range(a_L.shape[1]):
                out[start + s, j] = a_L[s, j]


# --------------------------------------------------------------------------
# Backward pass: the delta recursion and the gradients
# --------------------------------------------------------------------------

# --------------------------------------------------------------------------
# The register tile of W^T delta and dC/dW (outer-product form)
# --------------------------------------------------------------------------

# Both backward matrix loops are sums of outer products: W^T delta adds
# delta[s, j] W[j, :] over the units j, dC/dW adds delta[s, j] a[l-1][s, :]
# over the samples s.  _tile keeps a 3 x w block of the result in registers
# (w = 16 float64 or 32 float32 columns: 12 AVX2 vectors) while it runs
# along that sum, loading w values of one operand and broadcasting 3 of the
# other per step: 3 w multiply-adds for w / 4 (float64) or w / 8 (float32)
# vector loads and 3 broadcasts, nothing stored until the end.
# Both operands are first copied ("packed") into the order the tile reads
# them: the rows of W or a[l-1] are n_in values apart, and with n_in = 512
# float64 (4 KB) every row of a panel falls in the same L1 set.  Measured on
# the tile alone (prototypes, before it was wired into the library), one
# thread, float64 GFLOP/s, 2026-12-01, AVX2 (NumPy's one-thread matmul beside):
# W^T delta at B = 32, 784->128: row updates 17, unpacked tile 29, packed 28
# (NumPy 25); 512->512: 14, 12, 16-20 (23-27); dC/dW 512->512 at B = 32: 15,
# 14, 27-28 (20-22).  ROWS and PANEL_BYTES name the shape (a panel is
# PANEL_BYTES of each row: 16 float64, 32 float32); the tiles are unrolled
# by hand, like TILE.  With 512-bit vectors (WIDE) a panel is twice as wide,
# 256 bytes (32 float64, 64 float32), so the tile again holds 12 vectors:
# at 128 bytes it held 6 AVX-512 vectors, too few running sums to hide the
# multiply-add's latency.  Measured on the tile alone (L1-resident operands,
# one thread, GFLOP/s, Emerald Rapids, 2026-12-01): float64 3 x 16 on 512-bit
# vectors 46, 3 x 32 66 (3 x 16 on 256-bit vectors: 33).
ROWS = 3
PANEL_BYTES = 256 if WIDE else 128
if ROWS != 3 or PANEL_BYTES not in (128, 256):  # pragma: no cover - guards an edit of the lines above
    raise ImportError("backprop_numba._kernels.ROWS, PANEL_BYTES must be 3 and 128 or 256: the register tiles are "
                      "unrolled by hand.")
MAX_PANEL = PANEL_BYTES // 4  # columns of the widest panel (float32)
# Blocks of the packed operands: J_BLOCK units of W (16 KB of float64 per
# panel) for W^T delta, S_BLOCK samples of a[l-1] for dC/dW.
J_BLOCK = 128
S_BLOCK = 128
# Scratch for one slice's panel buffer, and behind it the 3 x MAX_PANEL sums of
# a tile over the last, partial panel (_tail_tiles).
TILE_PANEL_VALUES = MAX_PANEL * max(J_BLOCK, S_BLOCK) + ROWS * MAX_PANEL
# Where the tiles replace the other forms: batches of ROWS to TILE_MAX_BATCH
# - 1 samples, layers of at least TILE_MIN_UNITS units (W^T delta sums over
# them; dC/dW shares each packed panel of a[l-1] among their triples).
# Measured in the library against the forms before the tiles (one thread,
# GFLOP/s, old -> tiles, 2026-12-01, load ~1.2, runs ~20% apart from noise):
# float64 W^T delta 784->128 at B = 32, 64, 128, 256: 14.7 -> 20.8, 19.1 ->
# 25.6, 26.1 -> 25.3, 24.1 -> 26.4; dC/dW 19.1 -> 22.3, 16.7 -> 22.1, 24.7
# -> 27.9, 25.9 -> 19.2.  float32 dC/dW 512->512: 20.2 -> 26.5, 30.8 ->
# 29.3, 38.7 -> 43.5, 42.9 -> 50.5; 784->512 at B = 256: 48.0 -> 33.1.  At
# B = 256 the dot-product forms were as fast or faster overall, and with 10
# units the tiles lost everywhere (W^T delta 512->10 float32 at B = 32: 19.4
# -> 7.7): 10 steps per tile do not pay for loading and storing its sums.
# With 512-bit vectors (WIDE) the tiles also win at B = 256, where the dot
# forms read W or a[l-1] from L2 for every 3 samples (best of 3 interleaved
# runs, one thread, GFLOP/s, dot -> tiles, Emerald Rapids, 2026-12-01):
# float64 W^T delta 784->512 32 -> 47, 784->128 33 -> 44; dC/dW 784->512 33
# -> 48, 128->64 24 -> 48, 512->512 54 -> 47 (noise: ~20% run to run);
# float32 W^T delta 512->512 77 -> 104, 128->64 47 -> 66; dC/dW 784->128 53
# -> 86, 128->64 40 -> 70.  So they take every batch there.
TILE_MAX_BATCH = 1 << 62 if WIDE else 256
TILE_MIN_UNITS = 32
# float32 dC/dW on AVX-512 takes the tiles from 16 units: there they beat the
# row updates on layers of 16-31 units (one thread, GFLOP/s rows -> tiles, AMD
# EPYC, 2026-12-02, B = 32, 64, 256, 1024): 784->24 46 -> 66, 62 -> 98, 63 ->
# 103, 62 -> 101; 512->16 57 -> 65, 61 -> 78, 67 -> 88, 58 -> 79; 784->16 51
# -> 46, 63 -> 77, 64 -> 82, 49 -> 56; 128->16 52 -> 52, 45 -> 55, 48 -> 79,
# 54 -> 82.  float64 lost there (784->16 66 -> 43, 50 -> 47 at B = 32, 256),
# float32 W^T delta was mixed (512->16 71 -> 61, 89 -> 79), 10 units mixed in
# both, and AVX2 was not measured: they keep TILE_MIN_UNITS.
OUTER_TILE_MIN_UNITS_F32 = 16 if WIDE else TILE_MIN_UNITS


@njit(inline="always", **OPTS)
def _outer_tile_min_units(itemsize):
    """The fewest units a layer's dC/dW takes the register tiles at (see OUTER_TILE_MIN_UNITS_F32)."""
    return OUTER_TILE_MIN_UNITS_F32 if itemsize == 4 else TILE_MIN_UNITS


def _tile(A, a0, n, P, C, r, k, scale, add):
    """C[r + t, k + c] = scale * sum_{i < n} A[a0 + 3 i + t] P[w i + c] for t < 3, c < w = _panel(C); += where add.

    .. math:: C_{r+t,\\,k+c} \\mathrel{(+)}= \\text{scale} \\sum_i A_{it} P_{ic}

    Writing the first sums (add false) instead of adding them to zeros saves
    the pass that zeroed C and the tile's read of it (dC/dW 784->512 at B = 32:
    a fifth of its time).

    The register tile: A holds 3 rows' coefficients per step i (delta,
    packed), P w columns per step (a packed panel of W or a[l-1]); w is
    PANEL_BYTES of values: 16 float64 or 32 float32 (4 AVX2 vectors), or on
    AVX-512 hosts 32 float64 or 64 float32 (4 AVX-512 vectors).  Compiled
    code runs _tile16, _tile32 or _tile64 (the same sums unrolled by hand,
    48, 96 or 192 running sums; picked by w below); this Python body is
    their one-loop form, and runs as such under NUMBA_DISABLE_JIT.
    """
    w = PANEL_BYTES // C.itemsize
    for t in range(ROWS):
        for c in range(w):
            acc = 0.0
            for i in range(n):
                acc += A[a0 + ROWS * i + t] * P[w * i + c]
            C[r + t, k + c] = (C[r + t, k + c] + scale * acc) if add else scale * acc


@overload(_tile, jit_options=OPTS)
def _tile_by_dtype(A, a0, n, P, C, r, k, scale, add):
    """In compiled code, _tile is _tile16, _tile32 or _tile64 by the panel's columns (picked while typing: no branch)."""
    w = PANEL_BYTES // (8 if C.dtype == types.float64 else 4)
    if w == 16:
        return lambda A, a0, n, P, C, r, k, scale, add: _tile16(A, a0, n, P, C, r, k, scale, add)
    if w == 32:
        return lambda A, a0, n, P, C, r, k, scale, add: _tile32(A, a0, n, P, C, r, k, scale, add)
    return lambda A, a0, n, P, C, r, k, scale, add: _tile64(A, a0, n, P, C, r, k, scale, add)


@njit(**TILE_OPTS)
def _tile16(A, a0, n, P, C, r, k, scale, add):
    """_tile for 16-column panels (float64 on AVX2): 3 x 16 running sums, 12 AVX2 vectors."""
    _wide_vectors()
    c00 = c01 = c02 = c03 = c04 = c05 = c06 = c07 = C.dtype.type(0)
    c08 = c09 = c0a = c0b = c0c = c0d = c0e = c0f = C.dtype.type(0)
    c10 = c11 = c12 = c13 = c14 = c15 = c16 = c17 = C.dtype.type(0)
    c18 = c19 = c1a = c1b = c1c = c1d = c1e = c1f = C.dtype.type(0)
    c20 = c21 = c22 = c23 = c24 = c25 = c26 = c27 = C.dtype.type(0)
    c28 = c29 = c2a = c2b = c2c = c2d = c2e = c2f = C.dtype.type(0)
    # 2-D views with an unsigned row and constant columns: numba then emits no
    # negative-index wraparound (uint64 + 1 is a signed int64 in numba, and its
    # wraparound test kept SLP from packing the tile: 3 GFLOP/s)
    A_i = _matrix(A[a0:a0 + 3 * n], n, 3)
    P_i = _matrix(P[:16 * n], n, 16)
    for i in range(np.uint64(n)):
        w0, w1, w2, w3, w4, w5, w6, w7 = P_i[i, 0], P_i[i, 1], P_i[i, 2], P_i[i, 3], P_i[i, 4], P_i[i, 5], P_i[i, 6], P_i[i, 7]
        w8, w9, wa, wb, wc, wd, we, wf = P_i[i, 8], P_i[i, 9], P_i[i, 10], P_i[i, 11], P_i[i, 12], P_i[i, 13], P_i[i, 14], P_i[i, 15]
        d0, d1, d2 = A_i[i, 0], A_i[i, 1], A_i[i, 2]
        c00 += d0 * w0; c01 += d0 * w1; c02 += d0 * w2; c03 += d0 * w3  # noqa: E702
        c04 += d0 * w4; c05 += d0 * w5; c06 += d0 * w6; c07 += d0 * w7  # noqa: E702
        c08 += d0 * w8; c09 += d0 * w9; c0a += d0 * wa; c0b += d0 * wb  # noqa: E702
        c0c += d0 * wc; c0d += d0 * wd; c0e += d0 * we; c0f += d0 * wf  # noqa: E702
        c10 += d1 * w0; c11 += d1 * w1; c12 += d1 * w2; c13 += d1 * w3  # noqa: E702
        c14 += d1 * w4; c15 += d1 * w5; c16 += d1 * w6; c17 += d1 * w7  # noqa: E702
        c18 += d1 * w8; c19 += d1 * w9; c1a += d1 * wa; c1b += d1 * wb  # noqa: E702
        c1c += d1 * wc; c1d += d1 * wd; c1e += d1 * we; c1f += d1 * wf  # noqa: E702
        c20 += d2 * w0; c21 += d2 * w1; c22 += d2 * w2; c23 += d2 * w3  # noqa: E702
        c24 += d2 * w4; c25 += d2 * w5; c26 += d2 * w6; c27 += d2 * w7  # noqa: E702
        c28 += d2 * w8; c29 += d2 * w9; c2a += d2 * wa; c2b += d2 * wb  # noqa: E702
        c2c += d2 * wc; c2d += d2 * wd; c2e += d2 * we; c2f += d2 * wf  # noqa: E702
    _tile_store16(C, r, k, scale, add, c00, c01, c02, c03, c04, c05, c06, c07, c08, c09, c0a, c0b, c0c, c0d, c0e, c0f)
    _tile_store16(C, r + 1, k, scale, add, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, c1a, c1b, c1c, c1d, c1e, c1f)
    _tile_store16(C, r + 2, k, scale, add, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29, c2a, c2b, c2c, c2d, c2e, c2f)


@njit(inline="always", **TILE_OPTS)
def _tile_store16(C, r, k, scale, add, x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, xa, xb, xc, xd, xe, xf):
    """C[r, k:k + 16] = scale * (x0, ..., xf), or += where add: 16 of one row's sums of _tile16, _tile32 or _tile64."""
    row = C[r, k:k + 16]  # a view: constant indices below (see _tile16)
    if not add:
        row[0] = scale * x0; row[1] = scale * x1; row[2] = scale * x2; row[3] = scale * x3  # noqa: E702
        row[4] = scale * x4; row[5] = scale * x5; row[6] = scale * x6; row[7] = scale * x7  # noqa: E702
        row[8] = scale * x8; row[9] = scale * x9; row[10] = scale * xa; row[11] = scale * xb  # noqa: E702
        row[12] = scale * xc; row[13] = scale * xd; row[14] = scale * xe; row[15] = scale * xf  # noqa: E702
        return
    row[0] += scale * x0; row[1] += scale * x1; row[2] += scale * x2; row[3] += scale * x3  # noqa: E702
    row[4] += scale * x4; row[5] += scale * x5; row[6] += scale * x6; row[7] += scale * x7  # noqa: E702
    row[8] += scale * x8; row[9] += scale * x9; row[10] += scale * xa; row[11] += scale * xb  # noqa: E702
    row[12] += scale * xc; row[13] += scale * xd; row[14] += scale * xe; row[15] += scale * xf  # noqa: E702


@njit(**TILE_OPTS)
def _tile32(A, a0, n, P, C, r, k, scale, add):
    """_tile for 32-column panels (float32 on AVX2, float64 on AVX-512): 3 x 32 running sums, 12 vectors."""
    _wide_vectors()
    c00 = c01 = c02 = c03 = c04 = c05 = c06 = c07 = C.dtype.type(0)
    c08 = c09 = c0a = c0b = c0c = c0d = c0e = c0f = C.dtype.type(0)
    c0g = c0h = c0i = c0j = c0k = c0l = c0m = c0n = C.dtype.type(0)
    c0o = c0p = c0q = c0r = c0s = c0t = c0u = c0v = C.dtype.type(0)
    c10 = c11 = c12 = c13 = c14 = c15 = c16 = c17 = C.dtype.type(0)
    c18 = c19 = c1a = c1b = c1c = c1d = c1e = c1f = C.dtype.type(0)
    c1g = c1h = c1i = c1j = c1k = c1l = c1m = c1n = C.dtype.type(0)
    c1o = c1p = c1q = c1r = c1s = c1t = c1u = c1v = C.dtype.type(0)
    c20 = c21 = c22 = c23 = c24 = c25 = c26 = c27 = C.dtype.type(0)
    c28 = c29 = c2a = c2b = c2c = c2d = c2e = c2f = C.dtype.type(0)
    c2g = c2h = c2i = c2j = c2k = c2l = c2m = c2n = C.dtype.type(0)
    c2o = c2p = c2q = c2r = c2s = c2t = c2u = c2v = C.dtype.type(0)
    # 2-D views with an unsigned row and constant columns: numba then emits no
    # negative-index wraparound (uint64 + 1 is a signed int64 in numba, and its
    # wraparound test kept SLP from packing the tile: 3 GFLOP/s)
    A_i = _matrix(A[a0:a0 + 3 * n], n, 3)
    P_i = _matrix(P[:32 * n], n, 32)
    for i in range(np.uint64(n)):
        w0, w1, w2, w3, w4, w5, w6, w7 = P_i[i, 0], P_i[i, 1], P_i[i, 2], P_i[i, 3], P_i[i, 4], P_i[i, 5], P_i[i, 6], P_i[i, 7]
        w8, w9, wa, wb, wc, wd, we, wf = P_i[i, 8], P_i[i, 9], P_i[i, 10], P_i[i, 11], P_i[i, 12], P_i[i, 13], P_i[i, 14], P_i[i, 15]
        wg, wh, wi, wj, wk, wl, wm, wn = P_i[i, 16], P_i[i, 17], P_i[i, 18], P_i[i, 19], P_i[i, 20], P_i[i, 21], P_i[i, 22], P_i[i, 23]
        wo, wp, wq, wr, ws, wt, wu, wv = P_i[i, 24], P_i[i, 25], P_i[i, 26], P_i[i, 27], P_i[i, 28], P_i[i, 29], P_i[i, 30], P_i[i, 31]
        d0, d1, d2 = A_i[i, 0], A_i[i, 1], A_i[i, 2]
        c00 += d0 * w0; c01 += d0 * w1; c02 += d0 * w2; c03 += d0 * w3  # noqa: E702
        c04 += d0 * w4; c05 += d0 * w5; c06 += d0 * w6; c07 += d0 * w7  # noqa: E702
        c08 += d0 * w8; c09 += d0 * w9; c0a += d0 * wa; c0b += d0 * wb  # noqa: E702
        c0c += d0 * wc; c0d += d0 * wd; c0e += d0 * we; c0f += d0 * wf  # noqa: E702
        c0g += d0 * wg; c0h += d0 * wh; c0i += d0 * wi; c0j += d0 * wj  # noqa: E702
        c0k += d0 * wk; c0l += d0 * wl; c0m += d0 * wm; c0n += d0 * wn  # noqa: E702
        c0o += d0 * wo; c0p += d0 * wp; c0q += d0 * wq; c0r += d0 * wr  # noqa: E702
        c0s += d0 * ws; c0t += d0 * wt; c0u += d0 * wu; c0v += d0 * wv  # noqa: E702
        c10 += d1 * w0; c11 += d1 * w1; c12 += d1 * w2; c13 += d1 * w3  # noqa: E702
        c14 += d1 * w4; c15 += d1 * w5; c16 += d1 * w6; c17 += d1 * w7  # noqa: E702
        c18 += d1 * w8; c19 += d1 * w9; c1a += d1 * wa; c1b += d1 * wb  # noqa: E702
        c1c += d1 * wc; c1d += d1 * wd; c1e += d1 * we; c1f += d1 * wf  # noqa: E702
        c1g += d1 * wg; c1h += d1 * wh; c1i += d1 * wi; c1j += d1 * wj  # noqa: E702
        c1k += d1 * wk; c1l += d1 * wl; c1m += d1 * wm; c1n += d1 * wn  # noqa: E702
        c1o += d1 * wo; c1p += d1 * wp; c1q += d1 * wq; c1r += d1 * wr  # noqa: E702
        c1s += d1 * ws; c1t += d1 * wt; c1u += d1 * wu; c1v += d1 * wv  # noqa: E702
        c20 += d2 * w0; c21 += d2 * w1; c22 += d2 * w2; c23 += d2 * w3  # noqa: E702
        c24 += d2 * w4; c25 += d2 * w5; c26 += d2 * w6; c27 += d2 * w7  # noqa: E702
        c28 += d2 * w8; c29 += d2 * w9; c2a += d2 * wa; c2b += d2 * wb  # noqa: E702
        c2c += d2 * wc; c2d += d2 * wd; c2e += d2 * we; c2f += d2 * wf  # noqa: E702
        c2g += d2 * wg; c2h += d2 * wh; c2i += d2 * wi; c2j += d2 * wj  # noqa: E702
        c2k += d2 * wk; c2l += d2 * wl; c2m += d2 * wm; c2n += d2 * wn  # noqa: E702
        c2o += d2 * wo; c2p += d2 * wp; c2q += d2 * wq; c2r += d2 * wr  # noqa: E702
        c2s += d2 * ws; c2t += d2 * wt; c2u += d2 * wu; c2v += d2 * wv  # noqa: E702
    _tile_store16(C, r, k, scale, add, c00, c01, c02, c03, c04, c05, c06, c07, c08, c09, c0a, c0b, c0c, c0d, c0e, c0f)
    _tile_store16(C, r, k + 16, scale, add, c0g, c0h, c0i, c0j, c0k, c0l, c0m, c0n, c0o, c0p, c0q, c0r, c0s, c0t, c0u, c0v)
    _tile_store16(C, r + 1, k, scale, add, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, c1a, c1b, c1c, c1d, c1e, c1f)
    _tile_store16(C, r + 1, k + 16, scale, add, c1g, c1h, c1i, c1j, c1k, c1l, c1m, c1n, c1o, c1p, c1q, c1r, c1s, c1t, c1u, c1v)
    _tile_store16(C, r + 2, k, scale, add, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29, c2a, c2b, c2c, c2d, c2e, c2f)
    _tile_store16(C, r + 2, k + 16, scale, add, c2g, c2h, c2i, c2j, c2k, c2l, c2m, c2n, c2o, c2p, c2q, c2r, c2s, c2t, c2u, c2v)


@njit(**TILE_OPTS)
def _tile64(A, a0, n, P, C, r, k, scale, add):
    """_tile for 64-column panels (float32 on AVX-512): 3 x 64 running sums, 12 AVX-512 vectors."""
    _wide_vectors()
    c00 = c01 = c02 = c03 = c04 = c05 = c06 = c07 = C.dtype.type(0)
    c08 = c09 = c0a = c0b = c0c = c0d = c0e = c0f = C.dtype.type(0)
    c0g = c0h = c0i = c0j = c0k = c0l = c0m = c0n = C.dtype.type(0)
    c0o = c0p = c0q = c0r = c0s = c0t = c0u = c0v = C.dtype.type(0)
    c0w = c0x = c0y = c0z = c0A = c0B = c0C = c0D = C.dtype.type(0)
    c0E = c0F = c0G = c0H = c0I = c0J = c0K = c0L = C.dtype.type(0)
    c0M = c0N = c0O = c0P = c0Q = c0R = c0S = c0T = C.dtype.type(0)
    c0U = c0V = c0W = c0X = c0Y = c0Z = c0_0 = c0_1 = C.dtype.type(0)
    c10 = c11 = c12 = c13 = c14 = c15 = c16 = c17 = C.dtype.type(0)
    c18 = c19 = c1a = c1b = c1c = c1d = c1e = c1f = C.dtype.type(0)
    c1g = c1h = c1i = c1j = c1k = c1l = c1m = c1n = C.dtype.type(0)
    c1o = c1p = c1q = c1r = c1s = c1t = c1u = c1v = C.dtype.type(0)
    c1w = c1x = c1y = c1z = c1A = c1B = c1C = c1D = C.dtype.type(0)
    c1E = c1F = c1G = c1H = c1I = c1J = c1K = c1L = C.dtype.type(0)
    c1M = c1N = c1O = c1P = c1Q = c1R = c1S = c1T = C.dtype.type(0)
    c1U = c1V = c1W = c1X = c1Y = c1Z = c1_0 = c1_1 = C.dtype.type(0)
    c20 = c21 = c22 = c23 = c24 = c25 = c26 = c27 = C.dtype.type(0)
    c28 = c29 = c2a = c2b = c2c = c2d = c2e = c2f = C.dtype.type(0)
    c2g = c2h = c2i = c2j = c2k = c2l = c2m = c2n = C.dtype.type(0)
    c2o = c2p = c2q = c2r = c2s = c2t = c2u = c2v = C.dtype.type(0)
    c2w = c2x = c2y = c2z = c2A = c2B = c2C = c2D = C.dtype.type(0)
    c2E = c2F = c2G = c2H = c2I = c2J = c2K = c2L = C.dtype.type(0)
    c2M = c2N = c2O = c2P = c2Q = c2R = c2S = c2T = C.dtype.type(0)
    c2U = c2V = c2W = c2X = c2Y = c2Z = c2_0 = c2_1 = C.dtype.type(0)
    # see _tile16
    A_i = _matrix(A[a0:a0 + 3 * n], n, 3)
    P_i = _matrix(P[:64 * n], n, 64)
    for i in range(np.uint64(n)):
        w0, w1, w2, w3, w4, w5, w6, w7 = P_i[i, 0], P_i[i, 1], P_i[i, 2], P_i[i, 3], P_i[i, 4], P_i[i, 5], P_i[i, 6], P_i[i, 7]
        w8, w9, wa, wb, wc, wd, we, wf = P_i[i, 8], P_i[i, 9], P_i[i, 10], P_i[i, 11], P_i[i, 12], P_i[i, 13], P_i[i, 14], P_i[i, 15]
        wg, wh, wi, wj, wk, wl, wm, wn = P_i[i, 16], P_i[i, 17], P_i[i, 18], P_i[i, 19], P_i[i, 20], P_i[i, 21], P_i[i, 22], P_i[i, 23]
        wo, wp, wq, wr, ws, wt, wu, wv = P_i[i, 24], P_i[i, 25], P_i[i, 26], P_i[i, 27], P_i[i, 28], P_i[i, 29], P_i[i, 30], P_i[i, 31]
        ww, wx, wy, wz, wA, wB, wC, wD = P_i[i, 32], P_i[i, 33], P_i[i, 34], P_i[i, 35], P_i[i, 36], P_i[i, 37], P_i[i, 38], P_i[i, 39]
        wE, wF, wG, wH, wI, wJ, wK, wL = P_i[i, 40], P_i[i, 41], P_i[i, 42], P_i[i, 43], P_i[i, 44], P_i[i, 45], P_i[i, 46], P_i[i, 47]
        wM, wN, wO, wP, wQ, wR, wS, wT = P_i[i, 48], P_i[i, 49], P_i[i, 50], P_i[i, 51], P_i[i, 52], P_i[i, 53], P_i[i, 54], P_i[i, 55]
        wU, wV, wW, wX, wY, wZ, w_0, w_1 = P_i[i, 56], P_i[i, 57], P_i[i, 58], P_i[i, 59], P_i[i, 60], P_i[i, 61], P_i[i, 62], P_i[i, 63]
        d0, d1, d2 = A_i[i, 0], A_i[i, 1], A_i[i, 2]
        c00 += d0 * w0; c01 += d0 * w1; c02 += d0 * w2; c03 += d0 * w3  # noqa: E702
        c04 += d0 * w4; c05 += d0 * w5; c06 += d0 * w6; c07 += d0 * w7  # noqa: E702
        c08 += d0 * w8; c09 += d0 * w9; c0a += d0 * wa; c0b += d0 * wb  # noqa: E702
        c0c += d0 * wc; c0d += d0 * wd; c0e += d0 * we; c0f += d0 * wf  # noqa: E702
        c0g += d0 * wg; c0h += d0 * wh; c0i += d0 * wi; c0j += d0 * wj  # noqa: E702
        c0k += d0 * wk; c0l += d0 * wl; c0m += d0 * wm; c0n += d0 * wn  # noqa: E702
        c0o += d0 * wo; c0p += d0 * wp; c0q += d0 * wq; c0r += d0 * wr  # noqa: E702
        c0s += d0 * ws; c0t += d0 * wt; c0u += d0 * wu; c0v += d0 * wv  # noqa: E702
        c0w += d0 * ww; c0x += d0 * wx; c0y += d0 * wy; c0z += d0 * wz  # noqa: E702
        c0A += d0 * wA; c0B += d0 * wB; c0C += d0 * wC; c0D += d0 * wD  # noqa: E702
        c0E += d0 * wE; c0F += d0 * wF; c0G += d0 * wG; c0H += d0 * wH  # noqa: E702
        c0I += d0 * wI; c0J += d0 * wJ; c0K += d0 * wK; c0L += d0 * wL  # noqa: E702
        c0M += d0 * wM; c0N += d0 * wN; c0O += d0 * wO; c0P += d0 * wP  # noqa: E702
        c0Q += d0 * wQ; c0R += d0 * wR; c0S += d0 * wS; c0T += d0 * wT  # noqa: E702
        c0U += d0 * wU; c0V += d0 * wV; c0W += d0 * wW; c0X += d0 * wX  # noqa: E702
        c0Y += d0 * wY; c0Z += d0 * wZ; c0_0 += d0 * w_0; c0_1 += d0 * w_1  # noqa: E702
        c10 += d1 * w0; c11 += d1 * w1; c12 += d1 * w2; c13 += d1 * w3  # noqa: E702
        c14 += d1 * w4; c15 += d1 * w5; c16 += d1 * w6; c17 += d1 * w7  # noqa: E702
        c18 += d1 * w8; c19 += d1 * w9; c1a += d1 * wa; c1b += d1 * wb  # noqa: E702
        c1c += d1 * wc; c1d += d1 * wd; c1e += d1 * we; c1f += d1 * wf  # noqa: E702
        c1g += d1 * wg; c1h += d1 * wh; c1i += d1 * wi; c1j += d1 * wj  # noqa: E702
        c1k += d1 * wk; c1l += d1 * wl; c1m += d1 * wm; c1n += d1 * wn  # noqa: E702
        c1o += d1 * wo; c1p += d1 * wp; c1q += d1 * wq; c1r += d1 * wr  # noqa: E702
        c1s += d1 * ws; c1t += d1 * wt; c1u += d1 * wu; c1v += d1 * wv  # noqa: E702
        c1w += d1 * ww; c1x += d1 * wx; c1y += d1 * wy; c1z += d1 * wz  # noqa: E702
        c1A += d1 * wA; c1B += d1 * wB; c1C += d1 * wC; c1D += d1 * wD  # noqa: E702
        c1E += d1 * wE; c1F += d1 * wF; c1G += d1 * wG; c1H += d1 * wH  # noqa: E702
        c1I += d1 * wI; c1J += d1 * wJ; c1K += d1 * wK; c1L += d1 * wL  # noqa: E702
        c1M += d1 * wM; c1N += d1 * wN; c1O += d1 * wO; c1P += d1 * wP  # noqa: E702
        c1Q += d1 * wQ; c1R += d1 * wR; c1S += d1 * wS; c1T += d1 * wT  # noqa: E702
        c1U += d1 * wU; c1V += d1 * wV; c1W += d1 * wW; c1X += d1 * wX  # noqa: E702
        c1Y += d1 * wY; c1Z += d1 * wZ; c1_0 += d1 * w_0; c1_1 += d1 * w_1  # noqa: E702
        c20 += d2 * w0; c21 += d2 * w1; c22 += d2 * w2; c23 += d2 * w3  # noqa: E702
        c24 += d2 * w4; c25 += d2 * w5; c26 += d2 * w6; c27 += d2 * w7  # noqa: E702
        c28 += d2 * w8; c29 += d2 * w9; c2a += d2 * wa; c2b += d2 * wb  # noqa: E702
        c2c += d2 * wc; c2d += d2 * wd; c2e += d2 * we; c2f += d2 * wf  # noqa: E702
        c2g += d2 * wg; c2h += d2 * wh; c2i += d2 * wi; c2j += d2 * wj  # noqa: E702
        c2k += d2 * wk; c2l += d2 * wl; c2m += d2 * wm; c2n += d2 * wn  # noqa: E702
        c2o += d2 * wo; c2p += d2 * wp; c2q += d2 * wq; c2r += d2 * wr  # noqa: E702
        c2s += d2 * ws; c2t += d2 * wt; c2u += d2 * wu; c2v += d2 * wv  # noqa: E702
        c2w += d2 * ww; c2x += d2 * wx; c2y += d2 * wy; c2z += d2 * wz  # noqa: E702
        c2A += d2 * wA; c2B += d2 * wB; c2C += d2 * wC; c2D += d2 * wD  # noqa: E702
        c2E += d2 * wE; c2F += d2 * wF; c2G += d2 * wG; c2H += d2 * wH  # noqa: E702
        c2I += d2 * wI; c2J += d2 * wJ; c2K += d2 * wK; c2L += d2 * wL  # noqa: E702
        c2M += d2 * wM; c2N += d2 * wN; c2O += d2 * wO; c2P += d2 * wP  # noqa: E702
        c2Q += d2 * wQ; c2R += d2 * wR; c2S += d2 * wS; c2T += d2 * wT  # noqa: E702
        c2U += d2 * wU; c2V += d2 * wV; c2W += d2 * wW; c2X += d2 * wX  # noqa: E702
        c2Y += d2 * wY; c2Z += d2 * wZ; c2_0 += d2 * w_0; c2_1 += d2 * w_1  # noqa: E702
    _tile_store16(C, r, k, scale, add, c00, c01, c02, c03, c04, c05, c06, c07, c08, c09, c0a, c0b, c0c, c0d, c0e, c0f)
    _tile_store16(C, r, k + 16, scale, add, c0g, c0h, c0i, c0j, c0k, c0l, c0m, c0n, c0o, c0p, c0q, c0r, c0s, c0t, c0u, c0v)
    _tile_store16(C, r, k + 32, scale, add, c0w, c0x, c0y, c0z, c0A, c0B, c0C, c0D, c0E, c0F, c0G, c0H, c0I, c0J, c0K, c0L)
    _tile_store16(C, r, k + 48, scale, add, c0M, c0N, c0O, c0P, c0Q, c0R, c0S, c0T, c0U, c0V, c0W, c0X, c0Y, c0Z, c0_0, c0_1)
    _tile_store16(C, r + 1, k, scale, add, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, c1a, c1b, c1c, c1d, c1e, c1f)
    _tile_store16(C, r + 1, k + 16, scale, add, c1g, c1h, c1i, c1j, c1k, c1l, c1m, c1n, c1o, c1p, c1q, c1r, c1s, c1t, c1u, c1v)
    _tile_store16(C, r + 1, k + 32, scale, add, c1w, c1x, c1y, c1z, c1A, c1B, c1C, c1D, c1E, c1F, c1G, c1H, c1I, c1J, c1K, c1L)
    _tile_store16(C, r + 1, k + 48, scale, add, c1M, c1N, c1O, c1P, c1Q, c1R, c1S, c1T, c1U, c1V, c1W, c1X, c1Y, c1Z, c1_0, c1_1)
    _tile_store16(C, r + 2, k, scale, add, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29, c2a, c2b, c2c, c2d, c2e, c2f)
    _tile_store16(C, r + 2, k + 16, scale, add, c2g, c2h, c2i, c2j, c2k, c2l, c2m, c2n, c2o, c2p, c2q, c2r, c2s, c2t, c2u, c2v)
    _tile_store16(C, r + 2, k + 32, scale, add, c2w, c2x, c2y, c2z, c2A, c2B, c2C, c2D, c2E, c2F, c2G, c2H, c2I, c2J, c2K, c2L)
    _tile_store16(C, r + 2, k + 48, scale, add, c2M, c2N, c2O, c2P, c2Q, c2R, c2S, c2T, c2U, c2V, c2W, c2X, c2Y, c2Z, c2_0, c2_1)


@intrinsic
def _panel(typingctx, x):
    """Columns of a panel of x's dtype, PANEL_BYTES // itemsize, as a compile-time constant."""
    if not isinstance(x, types.Array):
        return None

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, PANEL_BYTES // context.get_abi_sizeof(context.get_data_type(x.dtype)))

    return types.intp(x), codegen


if numba_config.DISABLE_JIT:  # see _matrix
    def _panel(x):
        return PANEL_BYTES // x.itemsize


@njit(inline="always", **OPTS)
def _pack_rows(x, i0, i1, k, P):
    """P[w (i - i0) + c] = x[i, k + c] for i0 <= i < i1, c < w = _panel(x): a panel of w columns of x, rows contiguous."""
    w = np.uint64(_panel(x))
    ku = np.uint64(k)
    p = np.uint64(0)
    for i in range(np.uint64(i0), np.uint64(i1)):
        for c in range(w):
            P[p + c] = x[i, ku + c]
        p += w


PACK_ROWS = 8


@njit(inline="always", **OPTS)
def _pack_triples(x, n_triples, n, A):
    """A[3 (m n + i) + t] = x[i, 3 m + t] for m < n_triples, i < n, t < 3: x's columns in groups of 3, each group's rows contiguous.

    For dC/dW, x = delta (B x n_out): group m is units 3m..3m+2, step i a sample.
    Rows of x are taken PACK_ROWS at a time (they stay in L1 while every
    group of them is written); group by group down all B rows, each read
    touched a new cache line.  256 x 512, one thread, us, all rows -> 4, 8,
    16 rows a block: float64 90 -> 34, 33, 67; float32 52 -> 42, 38, 31
    (AMD EPYC with AVX-512, 2026-12-02).
    """
    n_u = np.uint64(n)
    three = np.uint64(3)
    for i0 in range(np.uint64(0), n_u, np.uint64(PACK_ROWS)):
        i1 = min(n_u, i0 + np.uint64(PACK_ROWS))
        for m in range(np.uint64(n_triples)):
            q = three * (m * n_u + i0)
            j = three * m
            for i in range(i0, i1):
                A[q] = x[i, j]
                A[q + np.uint64(1)] = x[i, j + np.uint64(1)]
                A[q + np.uint64(2)] = x[i, j + np.uint64(2)]
                q += three


@njit(inline="always", **OPTS)
def _pack_triples_T(x, n_triples, n, A):
    """A[3 (m n + j) + t] = x[3 m + t, j] for m < n_triples, j < n, t < 3: x's rows in groups of 3, interleaved.

    For W^T delta, x = delta (B x n_out): group m is samples 3m..3m+2, step j a unit.
    """
    q = np.uint64(0)
    for m in range(np.uint64(n_triples)):
        r = np.uint64(3) * m
        for j in range(np.uint64(n)):
            A[q] = x[r, j]
            A[q + np.uint64(1)] = x[r + np.uint64(1), j]
            A[q + np.uint64(2)] = x[r + np.uint64(2), j]
            q += np.uint64(3)


@njit(inline="always", **OPTS)  # inlined: one compiled library fewer per caller (cold compile)
def _tiles_pay(B, n_out, min_units):
    """Whether the register tiles are the fastest form for this batch and layer width (see TILE_MAX_BATCH;
    min_units: TILE_MIN_UNITS, or for dC/dW _outer_tile_min_units)."""
    return ROWS <= B < TILE_MAX_BATCH and n_out >= min_units


@njit(inline="always", **OPTS)  # inlined: one compiled library fewer per caller (cold compile)
def _tile_scratch_need(n_lead, n_other, n_slices):
    """Values of scratch the tiled W^T delta or dC/dW needs: delta packed for the tile, then one panel per slice."""
    return (n_lead // ROWS) * ROWS * n_other + n_slices * TILE_PANEL_VALUES


@njit(inline="always", **OPTS)  # inlined: one compiled library fewer per caller (cold compile)
def _tile_slices(B, n_out, n_in, n_lead, n_other, itemsize, threads, n_scratch, min_units):
    """Slices of whole panels of the n_in inputs the register tiles run on, or 0 where they do not run.

    The tiles run where they pay (_tiles_pay), the inputs hold a whole panel
    and the n_scratch values of scratch hold the packed operands of one slice
    (_tile_scratch_need(n_lead, n_other, 1): n_lead = B for W^T delta, n_out
    for dC/dW).  More slices than 1 only where a second thread pays, and at
    most as many as the scratch holds panel buffers: whether the tiles run
    depends on the scratch for one panel only, never on the thread count, so
    any number of threads gives the same numbers.
    """
    if not (_tiles_pay(B, n_out, min_units) and n_in * itemsize >= PANEL_BYTES
            and n_scratch >= _tile_scratch_need(n_lead, n_other, ONE_THREAD)):
        return 0
    if not _parallel_pays(threads, B * n_in * n_out, itemsize):
        return 1
    free = n_scratch - _tile_scratch_need(n_lead, n_other, ZERO)
    return max(1, min(n_in // (PANEL_BYTES // itemsize), threads * SLICES_PER_THREAD, free // TILE_PANEL_VALUES))


# From this batch size on, W^T delta runs as the forward pass's dot-product
# tiles over a transposed copy of W, when the caller lends the scratch for it.
# Measured on 512->512, one thread, GFLOP/s of the row updates -> this form
# (float64; float32): B = 256: 17 -> 27; 24 -> 51.  B = 64: 17 -> 21; 23 -> 33.
# B = 32: 18 -> 15; 27 -> 32: there the transposition (n_in n_out copies)
# costs about what the faster tiles save.
TRANSPOSE_MIN_BATCH = 64
# ... and when its sums over the units j are long enough: n_out values of at
# least TRANSPOSE_MIN_BYTES (32 float64, 64 float32).  Measured at B = 256,
# 512 inputs, GFLOP/s row updates vs dot form, float64; float32: n_out = 10:
# 13.6 vs 11.0; 33.9 vs 11.3.  16: 21.4 vs 16.3; 38.8 vs 19.8.  32: 11.9 vs
# 23.7; 45.9 vs 30.6.  64: 13.9 vs 30.5; 34.8 vs 45.1.
TRANSPOSE_MIN_BYTES = 256


@njit(**OPTS)
def _backprop_linear(W, delta, out, scratch, threads):
    """out = delta W, i.e. out[s] = W^T delta[s]: dC/da[l-1] from delta[l] = dC/dz[l].

    Where ``scratch`` holds the packed operands (_tile_scratch_need), as
    register tiles (_backprop_linear_tiled); else, with B >=
    TRANSPOSE_MIN_BATCH, n_out values of at least TRANSPOSE_MIN_BYTES and
    scratch of at least n_in * n_out values, as _dense(W^T, no bias, delta,
    threads) (the sums over j contiguous); else row by row of W
    (_backprop_linear_inputs, split over the inputs k where that pays).
    """
    B, n_out = delta.shape
    n_in = W.shape[1]
    n_slices = _tile_slices(B, n_out, n_in, B, n_out, W.itemsize, threads, scratch.shape[0], TILE_MIN_UNITS)
    if n_slices > 0:
        _backprop_linear_tiled(W, delta, out, scratch, n_slices)
    elif B >= TRANSPOSE_MIN_BATCH and n_out * W.itemsize >= TRANSPOSE_MIN_BYTES and scratch.shape[0] >= n_in * n_out:
        W_T = _transpose_into(W, W.dtype.type(1), scratch, 0)
        _dense(W_T, scratch[:0], delta, out, threads)
    elif _parallel_pays(threads, B * n_in * n_out, W.itemsize):
        _backprop_linear_slices(W, delta, out, scratch[:0], scratch, ZERO, n_in, min((n_in + 15) // 16, threads * SLICES_PER_THREAD))
    else:
        _backprop_linear_inputs(W, delta, out, ZERO, ZERO, n_in)


@njit(inline="always", **OPTS)  # inlined: one compiled library fewer per caller (cold compile)
def _backprop_linear_tiled(W, delta, out, scratch, n_slices):
    """_backprop_linear as register tiles of 3 samples x a panel of inputs (PANEL_BYTES of values), on n_slices slices of the inputs.

    delta is packed once (_pack_triples_T) into the front of ``scratch``;
    each slice packs its own panels of W behind it.  The inputs past the last
    whole panel take the tiles over a panel padded with zeros (_tail_tiles)
    where they pay (_tail_pays), else the row updates, as do the last B % 3
    samples (_backprop_linear_inputs).
    """
    B, n_out = delta.shape
    n_in = W.shape[1]
    n_triples = B // ROWS
    A = scratch[:n_triples * ROWS * n_out]
    _pack_triples_T(delta, n_triples, n_out, A)
    k_end = n_in // _panel(out) * _panel(out)
    if n_slices > 1:
        _backprop_linear_slices(W, delta, out, A, scratch, n_triples, k_end, n_slices)
    else:
        _backprop_linear_tiles(W, out, A, scratch[A.shape[0]:], n_triples, n_out, ZERO, k_end)
    tail_tiled = k_end < n_in and _tail_pays(n_out, n_in - k_end, _panel(out))
    if tail_tiled:
        _tail_tiles(W, out.dtype.type(1), out, A, scratch[A.shape[0]:], n_triples, k_end)
    elif k_end < n_in:
        _backprop_linear_inputs(W, delta, out, ZERO, k_end, n_in)  # every sample
    if n_triples * ROWS < B:
        _backprop_linear_inputs(W, delta, out, n_triples * ROWS, ZERO, n_in if tail_tiled else k_end)


@njit(**OPTS)
def _backprop_linear_tiles(W, out, A, P, n_triples, n_out, k0, k1):
    """out[s, k] = sum_j W[j, k] delta[s, j] for whole panels k0 <= k < k1 and samples s < 3 n_triples.

    A is delta packed by _pack_triples_T; each panel of W (J_BLOCK units x
    a panel of inputs) is packed into P and serves the tiles of S_BLOCK samples.
    """
    one = out.dtype.type(1)
    w = _panel(out)
    # blocks of J_BLOCK units x S_BLOCK samples of the packed delta stay in L2
    # while the panels of W pass over them
    for j0 in range(0, n_out, J_BLOCK):
        j1 = min(n_out, j0 + J_BLOCK)
        for m0 in range(0, n_triples, S_BLOCK // ROWS):
            m1 = min(n_triples, m0 + S_BLOCK // ROWS)
            for k in range(k0, k1, w):
                _pack_rows(W, j0, j1, k, P)
                for m in range(m0, m1):
                    # note 002 eq. 2: sum_j W_jk delta_sj, for 3 samples s x a panel of inputs k at once
                    _tile(A, ROWS * (m * n_out + j0), j1 - j0, P, out, ROWS * m, k, one, j0 > 0)


@njit(**PARALLEL)
def _backprop_linear_slices(W, delta, out, A, scratch, n_triples, n_k, n_slices):
    """W^T delta on n_slices slices of the inputs k < n_k that numba's threads share.

    With n_triples > 0 the register tiles (_backprop_linear_tiles) on slices
    of whole panels, A the packed delta and one panel buffer per slice behind
    it in ``scratch``; else the row updates (_backprop_linear_inputs) on
    slices of 16 inputs.  One parallel loop for both: each prange function
    costs seconds of a cold compile.
    """
    n_out = W.shape[0]
    a_len = A.shape[0]
    step = _panel(out) if n_triples > 0 else 16
    for p in prange(n_slices):
        k0, k1 = _slice_bounds(n_k, p, n_slices, step)
        if n_triples > 0:
            P = scratch[a_len + p * TILE_PANEL_VALUES:a_len + (p + 1) * TILE_PANEL_VALUES]
            _backprop_linear_tiles(W, out, A, P, n_triples, n_out, k0, k1)
        else:
            _backprop_linear_inputs(W, delta, out, ZERO, k0, k1)


@njit(**OPTS)
def _backprop_linear_inputs(W, delta, out, s0, k0, k1):
    """out[s, k] = sum_j W[j, k] delta[s, j] for inputs k0 <= k < k1 and samples s >= s0.

    .. math:: \\frac{\\partial C}{\\partial a^{[l-1]}_{sk}} = \\sum_j W^{[l]}_{jk} \\delta^{[l]}_{sj}

    Accumulated row by row of W so the k loop is contiguous; register-blocked
    over 4 samples x 4 units j, so each W[j, k] loaded serves 4 samples and
    each out[s, k] loaded and stored takes 4 terms.
    """
    for k_first in range(k0, k1, K_BLOCK):
        _backprop_linear_block(W, delta, out, s0, k_first, min(k1, k_first + K_BLOCK))


@njit(**OPTS)
def _backprop_linear_block(W, delta, out, s0, k0, k1):
    """_backprop_linear_inputs for one block of inputs k0 <= k < k1.

    Indexed as 2-D arrays (out[s, k], W[j, k]), not through row views: with
    one base pointer per array LLVM proves the rows independent and
    vectorises the k loop (row views measured 3x slower here).
    """
    _wide_vectors()
    # unsigned k: numba then skips the negative-index wraparound that blocks vectorising
    ku0, ku1 = np.uint64(k0), np.uint64(k1)
    B, n_out = delta.shape
    s = s0
    while s < B:
        m = min(TILE, B - s)  # samples in this tile (the last may be short)
        for t in range(m):
            for k in range(ku0, ku1):
                out[s + t, k] = 0.0
        if m == TILE:
            j = 0
            while j + TILE <= n_out:
                d00, d01, d02, d03 = delta[s, j], delta[s, j + 1], delta[s, j + 2], delta[s, j + 3]
                d10, d11, d12, d13 = delta[s + 1, j], delta[s + 1, j + 1], delta[s + 1, j + 2], delta[s + 1, j + 3]
                d20, d21, d22, d23 = delta[s + 2, j], delta[s + 2, j + 1], delta[s + 2, j + 2], delta[s + 2, j + 3]
                d30, d31, d32, d33 = delta[s + 3, j], delta[s + 3, j + 1], delta[s + 3, j + 2], delta[s + 3, j + 3]
                # note 002 eq. 2: sum_j W_jk delta_j, 4 units j at a time, for 4 samples
                for k in range(ku0, ku1):
                    u0, u1, u2, u3 = W[j, k], W[j + 1, k], W[j + 2, k], W[j + 3, k]
                    out[s, k] += d00 * u0 + d01 * u1 + d02 * u2 + d03 * u3
                    out[s + 1, k] += d10 * u0 + d11 * u1 + d12 * u2 + d13 * u3
                    out[s + 2, k] += d20 * u0 + d21 * u1 + d22 * u2 + d23 * u3
                    out[s + 3, k] += d30 * u0 + d31 * u1 + d32 * u2 + d33 * u3
                j += TILE
            while j < n_out:
                d00, d10, d20, d30 = delta[s, j], delta[s + 1, j], delta[s + 2, j], delta[s + 3, j]
                for k in range(ku0, ku1):
                    u0 = W[j, k]
                    out[s, k] += d00 * u0
                    out[s + 1, k] += d10 * u0
                    out[s + 2, k] += d20 * u0
                    out[s + 3, k] += d30 * u0
                j += 1
        else:
            for t in range(m):
                r = s + t
                j = 0
                while j + TILE <= n_out:
                    d00, d01, d02, d03 = delta[r, j], delta[r, j + 1], delta[r, j + 2], delta[r, j + 3]
                    for k in range(ku0, ku1):
                        out[r, k] += d00 * W[j, k] + d01 * W[j + 1, k] + d02 * W[j + 2, k] + d03 * W[j + 3, k]
                    j += TILE
                while j < n_out:
                    d00 = delta[r, j]
                    for k in range(ku0, ku1):
                        out[r, k] += d00 * W[j, k]
                    j += 1
        s += m


# The next function is equivalent to _backprop_linear(W, delta, out, scratch, threads) and left
# for reference: the one-loop form of the equation (tests compare them).
@njit(**OPTS)
def _backprop_linear_reference(W, delta, out):
    """out[s, k] = sum_j W[j, k] delta[s, j], one multiply-add at a time."""
    for s in range(delta.shape[0]):
        for k in range(W.shape[1]):
            acc = 0.0
            for j in range(W.shape[0]):
                acc += W[j, k] * delta[s, j]
            out[s, k] = acc


@njit(**OPTS)
def _backward(theta, arch, a_buf, d_buf, B, rates, seed, row0, scratch, threads):
    """The delta recursion, from delta[L] (already in d_buf) down to delta[1].

    .. math:: \\delta^{[l-1]} = (W^{[l]\\,T} \\delta^{[l]}) \\circ g_{l-1}'(z^{[l-1]})

    (note 002 eq. 2, note 000, note 004 "g[2a] = g[3z] W[3]^T, g[2z] = g'(z[2]) o g[2a]").
    With dropout (seed >= 0, as in _forward) a dropped layer also multiplies by its mask / (1 - rate).
    ``scratch`` (at least max n[l] n[l-1] values, or empty) holds W[l]^T for
    the larger batches (_backprop_linear).
    """
    L = arch.shape[1] - 1
    for l in range(L, 1, -1):
        delta_prev = _rows(d_buf, arch, l - 1, B)
        # note 002 eq. 2: delta[l-1] = (W[l]^T delta[l]) * g'_{l-1}(z[l-1])
        _backprop_linear(_W(theta, arch, l), _rows(d_buf, arch, l, B), delta_prev, scratch, threads)
        a = _rows(a_buf, arch, l - 1, B)
        if seed >= 0 and rates[l - 1] > 0.0:
            _backprop_dropout(arch[ACT, l - 1], a, delta_prev, delta_prev, rates[l - 1], seed, row0, l - 1)
        else:
            _backprop_activation(arch[ACT, l - 1], a, delta_prev, delta_prev)


@njit(**OPTS)
def _outer_sum_units(delta, a_prev, scale, dW, j0, j1):
    """dW[j, k] = scale * sum_s delta[s, j] a_prev[s, k] for units j0 <= j < j1.

    .. math:: \\frac{\\partial C}{\\partial W^{[l]}_{jk}} = \\text{scale} \\sum_s \\delta^{[l]}_{sj} a^{[l-1]}_{sk}

    The sum of the per-sample outer products delta[l] a[l-1]^T, row j of dW
    contiguous in k; register-blocked over 4 units j x 4 samples, so each
    a[s, k] loaded serves 4 rows and each dW[j, k] loaded and stored takes 4
    samples.
    """
    n_in = dW.shape[1]
    for k_first in range(0, n_in, K_BLOCK):
        _outer_sum_block(delta, a_prev, scale, dW, j0, j1, k_first, min(n_in, k_first + K_BLOCK))


@njit(**OPTS)
def _outer_sum_block(delta, a_prev, scale, dW, j0, j1, k0, k1):
    """_outer_sum_units for one block of inputs k0 <= k < k1 (2-D indexing: see _backprop_linear_block)."""
    _wide_vectors()
    # unsigned k: numba then skips the negative-index wraparound that blocks vectorising
    ku0, ku1 = np.uint64(k0), np.uint64(k1)
    B = delta.shape[0]
    j = j0
    while j < j1:
        m = min(TILE, j1 - j)  # units in this tile
        for t in range(m):
            for k in range(ku0, ku1):
                dW[j + t, k] = 0.0
        if m == TILE:
            s = 0
            while s + TILE <= B:
                d00, d01, d02, d03 = (delta[s, j] * scale, delta[s + 1, j] * scale,
                                      delta[s + 2, j] * scale, delta[s + 3, j] * scale)
                d10, d11, d12, d13 = (delta[s, j + 1] * scale, delta[s + 1, j + 1] * scale,
                                      delta[s + 2, j + 1] * scale, delta[s + 3, j + 1] * scale)
                d20, d21, d22, d23 = (delta[s, j + 2] * scale, delta[s + 1, j + 2] * scale,
                                      delta[s + 2, j + 2] * scale, delta[s + 3, j + 2] * scale)
                d30, d31, d32, d33 = (delta[s, j + 3] * scale, delta[s + 1, j + 3] * scale,
                                      delta[s + 2, j + 3] * scale, delta[s + 3, j + 3] * scale)
                # note 002 eq. 3: dW_jk += delta_sj a_sk, 4 samples s at a time, for 4 units j
                for k in range(ku0, ku1):
                    v0, v1, v2, v3 = a_prev[s, k], a_prev[s + 1, k], a_prev[s + 2, k], a_prev[s + 3, k]
                    dW[j, k] += d00 * v0 + d01 * v1 + d02 * v2 + d03 * v3
                    dW[j + 1, k] += d10 * v0 + d11 * v1 + d12 * v2 + d13 * v3
                    dW[j + 2, k] += d20 * v0 + d21 * v1 + d22 * v2 + d23 * v3
                    dW[j + 3, k] += d30 * v0 + d31 * v1 + d32 * v2 + d33 * v3
                s += TILE
            while s < B:
                d00, d10, d20, d30 = (delta[s, j] * scale, delta[s, j + 1] * scale,
                                      delta[s, j + 2] * scale, delta[s, j + 3] * scale)
                for k in range(ku0, ku1):
                    v0 = a_prev[s, k]
                    dW[j, k] += d00 * v0
                    dW[j + 1, k] += d10 * v0
                    dW[j + 2, k] += d20 * v0
                    dW[j + 3, k] += d30 * v0
                s += 1
        else:
            for t in range(m):
                r = j + t
                s = 0
                while s + TILE <= B:
                    d00, d01, d02, d03 = (delta[s, r] * scale, delta[s + 1, r] * scale,
                                          delta[s + 2, r] * scale, delta[s + 3, r] * scale)
                    for k in range(ku0, ku1):
                        dW[r, k] += (d00 * a_prev[s, k] + d01 * a_prev[s + 1, k]
                                     + d02 * a_prev[s + 2, k] + d03 * a_prev[s + 3, k])
                    s += TILE
                while s < B:
                    d00 = delta[s, r] * scale
                    for k in range(ku0, ku1):
                        dW[r, k] += d00 * a_prev[s, k]
                    s += 1
        j += m


# The next function is equivalent to _outer_sum_units(delta, a_prev, scale, dW,
# 0, n_out) and to _outer_sum_dot on the same arguments, and left for
# reference: the one-loop form of the equation (tests compare them).
@njit(**OPTS)
def _outer_sum_reference(delta, a_prev, scale, dW):
    """dW[j, k] = scale * sum_s delta[s, j] a_prev[s, k], one multiply-add at a time."""
    for j in range(dW.shape[0]):
        for k in range(dW.shape[1]):
            acc = 0.0
            for s in range(delta.shape[0]):
                acc += delta[s, j] * a_prev[s, k]
            dW[j, k] = scale * acc


@njit(inline="always", **OPTS)
def _transpose_into(x, scale, buf, start):
    """buf[start:] viewed as x.T * scale, shape (n, B), C-contiguous; returns that view.

    4 rows of x per pass over its columns, so each row of x_T gets 4
    consecutive values (half a cache line) per visit; unsigned indices.
    Measured on a 512 x 512 float64 x: 1.5 ns a value, against 11 for 16
    columns of x at a time (x_T's rows 4 KB apart all fall in one L1 set).
    """
    B, n = x.shape
    x_T = buf[start:start + n * B].reshape((n, B))
    Bu, nu = np.uint64(B), np.uint64(n)
    one, four = np.uint64(1), np.uint64(4)
    s = np.uint64(0)
    while s + four <= Bu:
        for k in range(nu):
            x_T[k, s] = x[s, k] * scale
            x_T[k, s + one] = x[s + one, k] * scale
            x_T[k, s + 2 * one] = x[s + 2 * one, k] * scale
            x_T[k, s + 3 * one] = x[s + 3 * one, k] * scale
        s += four
    while s < Bu:
        for k in range(nu):
            x_T[k, s] = x[s, k] * scale
        s += one
    return x_T


@njit(**OPTS)
def _outer_sum_dot(delta, a_prev, scale, dW, scratch, threads):
    """dW = scale * delta^T a_prev with the batch index innermost: the forward pass's dot-product tiles.

    dW[j, k] = sum_s (scale delta)^T[j, s] a_prev^T[k, s] is _dense_units with
    a_prev^T as its "W" (rows k, samples contiguous) and (scale delta)^T as
    its inputs (rows j): 4 inputs k x 3 units j per pass over the samples,
    no bias.  ``scratch`` holds the two transposes, B * (n_in + n_out) values.
    """
    B = delta.shape[0]
    n_out, n_in = dW.shape
    a_T = _transpose_into(a_prev, a_prev.dtype.type(1), scratch, 0)
    delta_T = _transpose_into(delta, scale, scratch, n_in * B)
    # note 002 eq. 3: dC/dW[l]_jk = sum_s delta[l]_sj a[l-1]_sk
    _dense(a_T, scratch[:0], delta_T, dW, threads)


@njit(**OPTS)
def _outer_sum(delta, a_prev, scale, dW, scratch, threads):
    """dW = scale * delta^T a_prev, the sum over samples of the outer products delta[s] a_prev[s]^T.

    Where ``scratch`` holds the packed operands (_tile_scratch_need), as
    register tiles (_outer_sum_tiled); else the faster of the two blocked
    forms: row updates (_outer_sum_units) or, from DOT_MIN_BATCH samples,
    DOT_MIN_UNITS units and B * n_out >= DOT_MIN_WORK, dot products over the
    samples (_outer_sum_dot; ``scratch``: at least B * (n_in + n_out) values).
    """
    B = delta.shape[0]
    n_out, n_in = dW.shape
    n_slices = _tile_slices(B, n_out, n_in, n_out, B, dW.itemsize, threads, scratch.shape[0],
                            _outer_tile_min_units(dW.itemsize))
    if n_slices > 0:
        _outer_sum_tiled(delta, a_prev, scale, dW, scratch, n_slices)
    elif B >= DOT_MIN_BATCH and n_out >= DOT_MIN_UNITS and B * n_out >= DOT_MIN_WORK:
        _outer_sum_dot(delta, a_prev, scale, dW, scratch, threads)
    elif _parallel_pays(threads, B * n_in * n_out, dW.itemsize):
        _outer_sum_slices(delta, a_prev, scale, dW, scratch[:0], scratch, ZERO, n_out, min((n_out + 3) // 4, threads * SLICES_PER_THREAD))
    else:
        _outer_sum_units(delta, a_prev, scale, dW, ZERO, n_out)


@njit(inline="always", **OPTS)  # inlined: one compiled library fewer per caller (cold compile)
def _outer_sum_tiled(delta, a_prev, scale, dW, scratch, n_slices):
    """_outer_sum as register tiles of 3 units x a panel of inputs (PANEL_BYTES of values), on n_slices slices of the inputs.

    delta is packed once (_pack_triples) into the front of ``scratch``; each
    slice packs its own panels of a_prev behind it.  The inputs past the last
    whole panel take the tiles over a panel padded with zeros (_tail_tiles)
    where they pay (_tail_pays), else the row updates (_outer_sum_block), as
    do the last n_out % 3 units.
    """
    B = delta.shape[0]
    n_out, n_in = dW.shape
    n_triples = n_out // ROWS
    A = scratch[:n_triples * ROWS * B]
    _pack_triples(delta, n_triples, B, A)
    k_end = n_in // _panel(dW) * _panel(dW)
    if n_slices > 1:
        _outer_sum_slices(delta, a_prev, scale, dW, A, scratch, n_triples, k_end, n_slices)
    else:
        _outer_sum_tiles(a_prev, dW.dtype.type(scale), dW, A, scratch[A.shape[0]:], n_triples, ZERO, k_end)
    if k_end < n_in:
        if _tail_pays(B, n_in - k_end, _panel(dW)):
            _tail_tiles(a_prev, dW.dtype.type(scale), dW, A, scratch[A.shape[0]:], n_triples, k_end)
        else:
            _outer_sum_block(delta, a_prev, scale, dW, ZERO, n_triples * ROWS, k_end, n_in)
    if n_triples * ROWS < n_out:
        _outer_sum_block(delta, a_prev, scale, dW, n_triples * ROWS, n_out, ZERO, n_in)


@njit(**OPTS)
def _outer_sum_tiles(a_prev, scale, dW, A, P, n_triples, k0, k1):
    """dW[j, k] = scale sum_s delta[s, j] a_prev[s, k] for whole panels k0 <= k < k1 and units j < 3 n_triples.

    A is delta packed by _pack_triples; each panel of a_prev (S_BLOCK samples
    x a panel of inputs) is packed into P and serves the tiles of J_BLOCK units.
    """
    B = a_prev.shape[0]
    w = _panel(dW)
    # blocks of S_BLOCK samples x J_BLOCK units of the packed delta stay in L2
    # while the panels of a_prev pass over them
    for s0 in range(0, B, S_BLOCK):
        s1 = min(B, s0 + S_BLOCK)
        for m0 in range(0, n_triples, J_BLOCK // ROWS):
            m1 = min(n_triples, m0 + J_BLOCK // ROWS)
            for k in range(k0, k1, w):
                _pack_rows(a_prev, s0, s1, k, P)
                for m in range(m0, m1):
                    # note 002 eq. 3: dW_jk += delta_sj a_sk, for 3 units j x a panel of inputs k at once
                    _tile(A, ROWS * (m * B + s0), s1 - s0, P, dW, ROWS * m, k, scale, s0 > 0)


# Where the inputs past the last whole panel (of dC/dW and W^T delta) take the
# padded tile (_tail_tiles) rather than the row updates: where they fill at
# least a quarter of a panel (the tile's sums of the padding are wasted) and
# the sums are TAIL_TILE_MIN_TERMS terms long or more (B for dC/dW, n_out for
# W^T delta).  Measured on dC/dW 784 -> 512 (16 inputs past the panels), one
# thread, us, the two forms called by themselves, row updates vs padded tile,
# float32; float64: B = 8: 5.9 vs 13.0; 5.9 vs 12.2.  B = 32: 17.4 vs 19.3;
# 22.1 vs 17.8.  B = 48: 25.4 vs 23.5; 33.0 vs 21.7.  B = 128: 66.5 vs 42.4;
# 81.2 vs 42.6.  B = 256: 133-206 vs 86; 181 vs 89.  Through _outer_sum as
# the epoch compiles it (medians of 8 interleaved runs against the commit
# before, load ~1): 784 -> 512 float32 at B = 256 1795 -> 1660 us, at B = 128
# 830 -> 770; float64 3170 -> 3104 and 1423 -> 1373.  At odd widths, float32
# B = 256, GFLOP/s: dC/dW 100 -> 300 45-56 -> 92-133 and 300 -> 100 83-99 ->
# 130-161; W^T delta of 100 -> 300 66-72 -> 108-139 (AMD EPYC, 2026-12-02).
TAIL_TILE_MIN_TERMS = 48


@njit(inline="always", **OPTS)  # inlined: one compiled library fewer per caller (cold compile)
def _tail_pays(n_terms, n_tail, w):
    """Whether the n_tail < w inputs past the last whole panel take the padded tile (see TAIL_TILE_MIN_TERMS)."""
    return n_terms >= TAIL_TILE_MIN_TERMS and 4 * n_tail >= w


@njit(**OPTS)
def _tail_tiles(x, scale, C_out, A, P, n_triples, k0):
    """The register tiles for the inputs k0 <= k < n_in past the last whole panel (fewer than w = _panel(C_out)).

    C_out[3 m + t, k] = scale sum_r A[3 (m R + r) + t] x[r, k] for m <
    n_triples, R = x.shape[0] terms: dC/dW (x = a[l-1], C_out = dW, the
    terms samples) as _outer_sum_tiles takes it, or W^T delta (x = W, C_out
    = the output, the terms units) as _backprop_linear_tiles does.  The
    panel of x is packed with zeros after its n_in - k0 columns, and each
    tile writes its 3 x w sums to a block at the end of the panel buffer,
    whose first n_in - k0 columns go to C_out (the sums of the zero columns,
    never read, may be NaN for an infinite delta).  Each block of S_BLOCK
    (= J_BLOCK) terms is added in the same order as a tile over a whole
    panel adds it.  The row updates it replaces ran there at ~20 GFLOP/s:
    784 inputs hold 16 past 12 panels of 64 float32 (or 24 of 32 float64),
    and these 2% of dC/dW's multiply-adds took 8-13% of its time (784 ->
    512, B = 256, the forms called by themselves; through the epoch's
    _outer_sum the gain was 2-8%, see TAIL_TILE_MIN_TERMS).
    """
    R = x.shape[0]
    n_tail = np.uint64(C_out.shape[1] - k0)
    w = np.uint64(_panel(C_out))
    ku = np.uint64(k0)
    zero = C_out.dtype.type(0)
    C = _matrix(P[TILE_PANEL_VALUES - ROWS * _panel(C_out):TILE_PANEL_VALUES], ROWS, _panel(C_out))
    for r0 in range(0, R, S_BLOCK):
        r1 = min(R, r0 + S_BLOCK)
        p = np.uint64(0)
        for r in range(np.uint64(r0), np.uint64(r1)):
            for c in range(n_tail):
                P[p + c] = x[r, ku + c]
            for c in range(n_tail, w):
                P[p + c] = zero
            p += w
        for m in range(n_triples):
            # note 002 eqs. 2 and 3, as in _backprop_linear_tiles and _outer_sum_tiles
            _tile(A, ROWS * (m * R + r0), r1 - r0, P, C, ZERO, ZERO, scale, False)
            for t in range(ROWS):
                row = C_out[ROWS * m + t]
                for c in range(n_tail):
                    row[ku + c] = (row[ku + c] + C[t, c]) if r0 > 0 else C[t, c]


@njit(**PARALLEL)
def _outer_sum_slices(delta, a_prev, scale, dW, A, scratch, n_triples, n, n_slices):
    """dC/dW on n_slices slices that numba's threads share.

    With n_triples > 0 the register tiles (_outer_sum_tiles) on slices of
    whole panels of the inputs k < n, A the packed delta and one panel buffer
    per slice behind it in ``scratch``; else the row updates (_outer_sum_units)
    on slices of whole 4-unit tiles of the units j < n.  One parallel loop for
    both (see _backprop_linear_slices).
    """
    a_len = A.shape[0]
    step = _panel(dW) if n_triples > 0 else 4
    for p in prange(n_slices):
        lo, hi = _slice_bounds(n, p, n_slices, step)
        if n_triples > 0:
            P = scratch[a_len + p * TILE_PANEL_VALUES:a_len + (p + 1) * TILE_PANEL_VALUES]
            _outer_sum_tiles(a_prev, dW.dtype.type(scale), dW, A, P, n_triples, lo, hi)
        else:
            _outer_sum_units(delta, a_prev, scale, dW, lo, hi)


@njit(**OPTS)
def _weight_gradients(arch, a_buf, d_buf, B, scale, grad, scratch, threads):
    """dC/dW[l] = delta[l] a[l-1]^T and dC/db[l] = delta[l], summed over the batch times scale.

    (note 002 eqs. 3 and 4, note 003 eqs. 22/24/26, note 004 "g[2W] = a[1]^T g[2z]").
    ``scratch`` (at least B * sum(n) values, the z buffer: z is no longer
    needed once delta[L] is known) holds the transposes of the dot-product form.
    """
    L = arch.shape[1] - 1
    for l in range(1, L + 1):
        dW = _W(grad, arch, l)
        db = _b(grad, arch, l)
        delta = _rows(d_buf, arch, l, B)
        a_prev = _rows(a_buf, arch, l - 1, B)
        n_out = dW.shape[0]
        # note 002 eq. 3: dC/dW[l]_jk = delta[l]_j a[l-1]_k  (outer product per sample)
        _outer_sum(delta, a_prev, scale, dW, scratch, threads)
        # note 002 eq. 4: dC/db[l]_j = delta[l]_j, summed over the samples a row of delta at a time (the
        # rows are contiguous; down the columns it took 450 us on 256 x 512, a tenth of dC/dW's time)
        for j in range(n_out):
            db[j] = 0.0
        for s in range(B):
            for j in range(n_out):
                db[j] += delta[s, j]
        for j in range(n_out):
            db[j] *= scale


@njit(**OPTS)
def _weight_sum(w, B):
    """sum_s w_s over a batch of B samples (B when w is empty: unweighted)."""
    if w.shape[0] == 0:
        return float(B)
    total = 0.0
    for s in range(B):
        total += w[s]
    return total


@njit(**OPTS)
def _loss_and_gradients(theta, arch, loss, loss_param, X, Y, SW, a_buf, z_buf, d_buf, grad, rates, drop_seed,
                        threads):
    """Weighted mean loss sum_s w_s C_s / sum_s w_s over the batch X, Y (SW empty: the plain mean);
    fills grad (laid out like theta) with its gradient.  drop_seed >= 0 applies dropout with the masks of
    rows 0..B-1 (tests compare them with PyTorch); -1 never drops."""
    B = X.shape[0]
    L = arch.shape[1] - 1
    rows = np.arange(B)
    _load_inputs(X, rows, ZERO, B, arch, a_buf)
    _forward(theta, arch, a_buf, z_buf, B, rates, drop_seed, ZERO, threads, NOT_LAGGED)
    a_L = _rows(a_buf, arch, L, B)
    w_total = _weight_sum(SW, B)
    value = _loss_sum(loss, loss_param, a_L, _rows(z_buf, arch, L, B), Y, SW) / w_total
    _output_delta(loss, loss_param, arch[ACT, L], a_L, Y, SW, _rows(d_buf, arch, L, B))
    _backward(theta, arch, a_buf, d_buf, B, rates, drop_seed, ZERO, grad, threads)  # grad: scratch until written
    _weight_gradients(arch, a_buf, d_buf, B, 1.0 / w_total, grad, z_buf, threads)
    return value


@njit(**OPTS)
def _loss_value(theta, arch, loss, loss_param, X, Y, SW, a_buf, z_buf, chunk, threads):
    """Weighted mean loss over all samples of X, Y (forward passes only, `chunk` samples at a time)."""
    L = arch.shape[1] - 1
    total_rows = X.shape[0]
    rows = np.arange(total_rows)
    total = 0.0
    no_dropout = np.empty(0)
    for start in range(0, total_rows, chunk):
        B = min(chunk, total_rows - start)
        _load_inputs(X, rows, start, B, arch, a_buf)
        _forward(theta, arch, a_buf, z_buf, B, no_dropout, NO_SEED, ZERO, threads, NOT_LAGGED)
        y = Y[start:start + B]
        w = SW[start:start + B] if SW.shape[0] != 0 else SW
        total += _loss_sum(loss, loss_param, _rows(a_buf, arch, L, B), _rows(z_buf, arch, L, B), y, w)
    return total / _weight_sum(SW, total_rows)


# --------------------------------------------------------------------------
# Differentiating the output with respect to the input (notes 000, 001)
# --------------------------------------------------------------------------

@njit(**OPTS)
def _vjp(theta, arch, X, V, a_buf, z_buf, d_buf, gx):
    """gx[s] = V[s]^T J(X[s]), the vector-Jacobian product of a[L] at X[s].

    With n[L] = 1 and V = 1 this is the input gradient of notes 000/001:
    delta[L] = g_L'(z[L]); delta[l] = (W[l+1]^T delta[l+1]) * g_l'(z[l]);
    grad_x a[L] = W[1]^T delta[1] (the seeds' W[2]^T delta[2], input numbered 1 there).
    """
    B = X.shape[0]
    L = arch.shape[1] - 1
    rows = np.arange(B)
    no_dropout = np.empty(0)
    _load_inputs(X, rows, ZERO, B, arch, a_buf)
    _forward(theta, arch, a_buf, z_buf, B, no_dropout, NO_SEED, ZERO, ONE_THREAD, NOT_LAGGED)
    # note 000: delta[L] = v * sigma'(z[L])  (the softmax Jacobian for a softmax output)
    _backprop_activation(arch[ACT, L], _rows(a_buf, arch, L, B), V, _rows(d_buf, arch, L, B))
    no_scratch = theta[:0]
    _backward(theta, arch, a_buf, d_buf, B, no_dropout, NO_SEED, ZERO, no_scratch, ONE_THREAD)
    # note 000: grad_x a[L] = W[1]^T delta[1]  (the input layer has no activation)
    _backprop_linear(_W(theta, arch, 1), _rows(d_buf, arch, 1, B), gx, no_scratch, ONE_THREAD)


# --------------------------------------------------------------------------
# Gradient descent and its variants (optimizers.py has the rules)
# --------------------------------------------------------------------------

@njit(**OPTS)
def _update(opt, theta, grad, state, lr, hyper, t, arch, threads):
    """One optimizer step on theta from grad (W <- W - eta dC/dW, notes 002/004).

    hyper is the optimizer's float64 array (``optimizers.Optimizer.hyper_array``,
    read by named slots); t counts steps from 1 (Adam's bias correction).
    grad is modified in place by the L2 term.  The rule runs on `threads`
    threads from PARALLEL_MIN_PARAMS parameters (_step_slices).
    """
    weight_decay = hyper[WEIGHT_DECAY]
    if weight_decay != 0.0:
        # L2 penalty (weight_decay/2) |W|^2 on weights only, not biases
        for l in range(1, arch.shape[1]):
            start = arch[WOFF, l]
            for i in range(start, start + arch[N, l] * arch[N, l - 1]):
                grad[i] += weight_decay * theta[i]
    # the rule of this optimizer (optimizers.py)
    if threads > 1 and theta.shape[0] >= PARALLEL_MIN_PARAMS:
        c1, c2 = _step_factors(opt, lr, hyper, t)
        _step_slices(opt, theta, grad, state, hyper, c1, c2, threads)
    else:
        _step(opt, theta, grad, state, lr, hyper, t)


# The optimizer's pass over all parameters is bound by memory, not
# arithmetic (Adam's square roots and divisions aside); from PARALLEL_MIN_PARAMS
# parameters two threads pay.  Measured (2026-12-01, one step, us, one thread ->
# two): 669,706 float64 parameters ([784,512,512,10]): Adam 1031 -> 776, SGD
# 183 -> 171; 262,144: Adam 314 -> 196, SGD 61 -> 62; 109,386: equal.
PARALLEL_MIN_PARAMS = 1 << 18


@njit(**PARALLEL)
def _step_slices(opt, theta, grad, state, hyper, c1, c2, threads):
    """The optimizer's rule (optimizers._step_range) on all of theta, in slices that `threads` threads share."""
    n_slices = threads * SLICES_PER_THREAD
    for p in prange(n_slices):
        i0, i1 = _slice_bounds(theta.shape[0], p, n_slices, 64)
        _step_range(opt, theta, grad[i0:i1], state, hyper, c1, c2, np.uint64(i0), np.uint64(i1 - i0))


@njit(**OPTS)
def _all_finite(x):
    """Whether every x[i] is finite: all(isfinite(x[i]) for i in range(n)), 1024 elements at a time.

    The one-loop form (return False at the first non-finite x[i]) is not
    vectorized, its exit being per element: 193 us over the 669,706 float64
    of [784,512,512,10]'s gradient, against 57 us for the blocks below (one
    vector compare a block, the exit per block) and 86 us for NumPy's
    isfinite(x).all() (AMD EPYC with AVX-512, one thread, 2026-12-02).
    "abs(x) < inf" is False for NaN and for +-inf.
    """
    n = x.shape[0]
    m = n - n % 1024
    for i0 in range(0, m, 1024):
        ok = True
        for k in range(1024):
            ok &= abs(x[i0 + k]) < np.inf
        if not ok:
            return False
    for i in range(m, n):
        if not abs(x[i]) < np.inf:
            return False
    return True


@njit(**OPTS)
def _shuffle(perm, seed):
    """perm <- a uniformly random permutation of 0..N-1 (Fisher-Yates), seeded."""
    np.random.seed(seed)
    for i in range(perm.shape[0]):
        perm[i] = i
    for i in range(perm.shape[0] - 1, 0, -1):
        j = np.random.randint(0, i + 1)
        perm[i], perm[j] = perm[j], perm[i]


# Slots of the running sums a training call carries over (acc, float64).
LOSS_SUM, CORRECT, WEIGHT_SUM = 0, 1, 2
N_ACC = 3


@njit(inline="always", **OPTS)
def _load_weights(SW, rows, start, B, w_buf):
    """Sample weights SW[rows[start:start+B]] into w_buf (SW empty, unweighted: returned as it is)."""
    if SW.shape[0] == 0:
        return SW
    w = w_buf[:B]
    for s in range(B):
        w[s] = SW[rows[start + s]]
    return w


# --------------------------------------------------------------------------
# The fused small-batch step: delta recursion, gradients and update in one
# pass over each W[l]
# --------------------------------------------------------------------------
#
# At a small batch a step is bound by passes over the parameters, not by
# arithmetic: the blocked path reads W[l] in the forward pass and again in the
# delta recursion, writes the gradient, reads it to check it is finite, and
# reads it again with theta (and writes theta) in the update: 7 passes over P
# values.  The fused step makes 3: the forward pass, then one read-and-write
# pass per layer in which row j of W[l] first gives its share of W[l]^T
# delta[l] (old weights) and then takes its optimizer step.  No gradient
# buffer is written, so the finiteness of the gradient must be known before
# the first row is updated: a bound proves it (_gradient_bound), and
# where it cannot (huge values, inf or NaN anywhere) the step runs the
# blocked path, with its exact check, so statuses and skips are the same.
# Measured on [784,512,512,10] at B = 1 (float64): see README "Speed".
FUSED_MAX_BATCH = 8


@njit(**OPTS)
def _dropping(rates, drop_seed):
    """True when this call drops units.  A batch takes the fused step when it holds at most
    FUSED_MAX_BATCH samples and nothing is dropped (the masks need the blocked path's
    _backprop_dropout; the bound below assumes every hidden g' <= 1).  Asked once a call."""
    if drop_seed >= 0:
        for r in rates:
            if r > 0.0:
                return True
    return False


@njit(**OPTS)
def _abs_sum(x, i0, n):
    """sum_k |x[i0 + k]| for 0 <= k < n, in float64."""
    total = 0.0
    for k in range(n):
        total += abs(x[i0 + k])
    return total


@njit(**OPTS)
def _abs_sum_weights(theta, arch, w_abs):
    """w_abs[l] = S[l] = sum |W[l]| for every layer (the fused step keeps it up to date)."""
    for l in range(1, arch.shape[1]):
        w_abs[l] = _abs_sum(theta, np.uint64(arch[WOFF, l]), np.uint64(arch[N, l] * arch[N, l - 1]))


@njit(**OPTS)
def _abs_sum_biases(theta, arch):
    """sum |b[l]| over every layer."""
    total = 0.0
    for l in range(1, arch.shape[1]):
        total += _abs_sum(theta, np.uint64(arch[BOFF, l]), np.uint64(arch[N, l]))
    return total


@njit(**OPTS)
def _theta_abs_sums(theta, arch, w_abs):
    """w_abs[l] = sum |W[l]| (marked fresh: w_abs[0] = 0) and returns sum |theta|: one pass over theta.

    fit's test that theta is finite (the sum finite: so is every element)
    and, in the same read, the S[l] the fused step's bound starts from, so
    _train_batches skips its own pass (training.Workspace.knows_sums).
    """
    _abs_sum_weights(theta, arch, w_abs)
    w_abs[0] = 0.0
    total = _abs_sum_biases(theta, arch)
    for l in range(1, w_abs.shape[0]):
        total += w_abs[l]
    return total


@njit(inline="always", **OPTS)  # see _load_inputs
def _gradient_bound(arch, a_buf, d_buf, B, scale, weight_decay, w_abs, big):
    """G >= |every gradient| of the step, below big when a bound proves every gradient and delta finite (else inf).

    With A[l] = sum |a[l]| and D[l] = sum |delta[l]| over the batch, and
    S[l] = sum |W[l]|: |dC/dW[l]_jk| <= scale D[l] max(A[l-1], 1) + wd S[l]
    (which also bounds |dC/db[l]_j| <= scale D[l]), and D[l-1] <= D[l] S[l]
    because every hidden g' <= 1 (sigmoid, tanh, relu, leaky_relu, identity).
    When each bound is below big, a quarter of the dtype's largest value
    (so rounding cannot reach inf), nothing in the step overflows.  NaN or inf
    anywhere makes a bound fail.
    """
    L = arch.shape[1] - 1
    G = 0.0
    D = _abs_sum(d_buf, np.uint64(B * arch[UOFF, L]), np.uint64(B * arch[N, L]))
    for l in range(L, 0, -1):
        A = _abs_sum(a_buf, np.uint64(B * arch[UOFF, l - 1]), np.uint64(B * arch[N, l - 1]))
        g = scale * D * max(A, 1.0) + weight_decay * w_abs[l]
        if not g < big:  # "not <" also catches NaN
            return np.inf
        G = max(G, g)
        D = D * w_abs[l]
    return G


@njit(inline="always", **OPTS)
def _theta_bound(arch, w_abs, b_abs):
    """T >= |every parameter|: the largest of S[l] = sum |W[l]| (w_abs, kept by the fused pass) and b_abs."""
    T = b_abs
    for l in range(1, arch.shape[1]):
        T = max(T, w_abs[l])
    return T


@njit(inline="always", **OPTS)
def _backward_update_tiny(theta, arch, a_buf, d_buf, B, scale, opt, hyper, c1, c2, state, w_abs, l):
    """_backward_update's pass over one layer of at most TINY_LAYER weights, one weight at a time.

    The same sums in the same order, indexed straight into theta and the unit
    buffers, each weight's optimizer step taken as soon as its gradient is
    known (_step_one: the rules of optimizers.py, one element each).
    """
    # unsigned indices (as in _step_range): no negative-index wraparound on every access
    u = np.uint64
    n_out, n_in, b0, Bu = u(arch[N, l]), u(arch[N, l - 1]), u(arch[BOFF, l]), u(B)
    w0, d0, a0 = u(arch[WOFF, l]), Bu * u(arch[UOFF, l]), Bu * u(arch[UOFF, l - 1])  # delta[l-1] sits at a0 in d_buf
    weight_decay = hyper[WEIGHT_DECAY]
    # the gradient rounded to theta's dtype where the row path stores it in g_row (float32: the rules'
    # results differ beyond the tests' tolerance otherwise, RMSprop most)
    cast = theta.dtype.type
    back = l > 1
    if back:
        for i in range(a0, a0 + Bu * n_in):
            d_buf[i] = 0.0
    w_sum = 0.0
    for j in range(n_out):
        for k in range(n_in):
            i = w0 + j * n_in + k
            w = theta[i]
            g = cast(0.0)
            for s in range(Bu):
                d = d_buf[d0 + s * n_out + j]
                if back:
                    # note 002 eq. 2, old weights: (W[l]^T delta[l])_sk += W[l]_jk delta[l]_sj
                    d_buf[a0 + s * n_in + k] += w * d
                # note 002 eq. 3: dC/dW[l]_jk = scale sum_s delta[l]_sj a[l-1]_sk
                g = cast(g + (d * scale) * a_buf[a0 + s * n_in + k])
            _step_one(opt, theta, state, hyper, c1, c2, i, cast(g + weight_decay * w))
            w_sum += abs(theta[i])
    # note 002 eq. 4: dC/db[l]_j = scale sum_s delta[l]_sj (no weight decay on biases)
    for j in range(n_out):
        acc = 0.0
        for s in range(Bu):
            acc += d_buf[d0 + s * n_out + j]
        _step_one(opt, theta, state, hyper, c1, c2, b0 + j, cast(acc * scale))
    w_abs[l] = w_sum
    if back:
        # note 002 eq. 2: delta[l-1] = (W[l]^T delta[l]) * g'_{l-1}(z[l-1]) (a hidden layer: never softmax)
        code = arch[ACT, l - 1]
        for i in range(a0, a0 + Bu * n_in):
            d_buf[i] = d_buf[i] * _g_prime(code, a_buf[i])


@njit(**OPTS)
def _backward_update(theta, arch, a_buf, z_buf, d_buf, B, scale, opt, hyper, c1, c2, state, g_row, w_abs, lag):
    """The delta recursion, the gradients and the optimizer step, in one pass over each W[l], l = L..1.

    .. math:: \\delta^{[l-1]} = (W^{[l]\\,T} \\delta^{[l]}) \\circ g_{l-1}'(z^{[l-1]}),\\quad
              \\frac{\\partial C}{\\partial W^{[l]}_{jk}} = \\text{scale} \\sum_s \\delta^{[l]}_{sj} a^{[l-1]}_{sk}

    (note 002 eqs. 2-4: the same sums as _backward and _weight_gradients.)
    Row j of W[l] first adds W[l]_jk delta[l]_sj to (W[l]^T delta[l])_sk,
    from the old weights, then takes its step with its gradient in g_row
    (plus the L2 term weight_decay W[l]_jk, as _update adds it); the biases
    follow.  delta[L] must be in d_buf; leaves w_abs[l] = sum |W[l]| (new).

    With ``lag`` (B = 1, W[1] not a tiny layer) row j of W[1], just stepped
    and still in L1, also gives the next sample's W[1]_j x (note 001
    without b[1]), x being in layer 0 of z_buf (free at that point): z[1]
    of z_buf then holds it, and that sample's forward pass only adds b[1]
    (_forward's ``lagged``).  The forward pass would otherwise read W[1],
    most of the parameters of a network on pixels, once more a step.
    """
    L = arch.shape[1] - 1
    weight_decay = hyper[WEIGHT_DECAY]
    for l in range(L, 0, -1):
        if arch[N, l] * arch[N, l - 1] <= TINY_LAYER:
            _backward_update_tiny(theta, arch, a_buf, d_buf, B, scale, opt, hyper, c1, c2, state, w_abs, l)
            continue
        W = _W(theta, arch, l)
        delta = _rows(d_buf, arch, l, B)
        a_prev = _rows(a_buf, arch, l - 1, B)
        n_out, n_in = W.shape
        nu = np.uint64(n_in)
        back = l > 1
        out = _rows(d_buf, arch, l - 1, B)
        x_next, z_next, no_bias = _rows(z_buf, arch, 0, 1), _rows(z_buf, arch, 1, 1), theta[:0]  # lag only
        if back:
            for s in range(B):
                for k in range(nu):
                    out[s, k] = 0.0
        w_sum = 0.0
        for j in range(n_out):
            if back:
                # note 002 eq. 2, old weights: (W[l]^T delta[l])_sk += W[l]_jk delta[l]_sj
                for s in range(B):
                    d = delta[s, j]
                    for k in range(nu):
                        out[s, k] += W[j, k] * d
            row = np.uint64(arch[WOFF, l] + j * n_in)
            # note 002 eq. 3: dC/dW[l]_jk = scale sum_s delta[l]_sj a[l-1]_sk
            d = delta[0, j] * scale
            if B == 1:
                # one sample: the gradient d a[l-1]_k is formed inside the step's loop, which also sums |W|,
                # instead of being written to g_row and read back, and theta read again for the sum.
                # Measured (2026-12-01, one thread, thread time, medians of 5 interleaved runs, us a
                # sample), this and the lag below together: run_epoch at B = 1 on [784,16,10] 10.3 -> 6.8,
                # [784,128,64,10] 72 -> 47, [784,512,512,10] 485 -> 350; the lag alone 10-15% of it
                # (48-52 -> 41-46 and 332-384 -> 281-353 on the two larger networks)
                w_sum += _step_outer(opt, theta, state, hyper, c1, c2, row, nu, d, a_prev[0], weight_decay)
                if lag and l == 1 and ((j + 1) % 4 == 0 or j + 1 == n_out):
                    # note 001 for the next sample, without b[1], from the rows just stepped (in L1): the
                    # forward's own loop over the same groups of 4 units (_dense_block), so it rounds alike
                    _dense_units(W, no_bias, x_next, z_next, j - j % 4, j + 1)
                continue
            for k in range(nu):
                g_row[k] = d * a_prev[0, k]
            for s in range(1, B):
                d = delta[s, j] * scale
                for k in range(nu):
                    g_row[k] += d * a_prev[s, k]
            if weight_decay != 0.0:
                for k in range(nu):
                    g_row[k] += weight_decay * W[j, k]
            _step_range(opt, theta, g_row, state, hyper, c1, c2, row, nu)
            w_sum += _abs_sum(theta, row, nu)
        # note 002 eq. 4: dC/db[l]_j = scale sum_s delta[l]_sj (no weight decay on biases)
        for j in range(n_out):
            acc = 0.0
            for s in range(B):
                acc += delta[s, j]
            g_row[j] = acc * scale
        _step_range(opt, theta, g_row, state, hyper, c1, c2, np.uint64(arch[BOFF, l]), np.uint64(n_out))
        w_abs[l] = w_sum
        if back:
            # note 002 eq. 2: delta[l-1] = (W[l]^T delta[l]) * g'_{l-1}(z[l-1])
            _backprop_activation(arch[ACT, l - 1], _rows(a_buf, arch, l - 1, B), out, out)


@njit(**LEAF)
def _train_batches(theta, arch, loss, loss_param, X, Y, SW, perm, first, last, batch_size, opt, lr, hyper, state,
                   t, skip_nonfinite, a_buf, z_buf, d_buf, y_buf, w_buf, grad, acc, w_abs, rates, drop_seed, prove,
                   threads):
    """Mini-batches first <= i < last of an epoch, entirely in compiled code.

    Batch i holds the rows perm[i * batch_size : (i + 1) * batch_size] (the
    last may be smaller; the caller shuffles perm, see _shuffle).  For each:
    forward, loss, delta[L], delta recursion, gradients of the batch's
    (weighted) mean loss, and one optimizer step.  SW holds one weight per row
    of X (empty: unweighted); a batch whose weights are all 0 takes no step.
    A whole epoch is one call (first = 0, last = the number of batches); the
    Python layer may cut it into calls to return often enough for Ctrl-C and
    a progress bar: acc carries the running sums across calls
    (acc[LOSS_SUM] += sum_s w_s C_s, acc[WEIGHT_SUM] += sum_s w_s,
    acc[CORRECT] += weighted correct classifications, counted on each batch
    before its step), added in batch order, so the sums do not depend on
    where an epoch was cut.

    A mini-batch whose loss or gradient is not finite gets no update: with
    skip_nonfinite the call goes on to the next batch, otherwise it stops
    there, so theta keeps the last finite parameters.  rates[l] > 0 drops the
    hidden layer l's units (inverted dropout) with masks drawn from drop_seed
    (-1: no dropout, and no extra work).  Batches of up to FUSED_MAX_BATCH
    samples take the fused step (_backward_update; w_abs, L + 1 float64,
    holds its bound's S[l] = sum |W[l]|, computed at the first fused step
    when w_abs[0] < 0, which the caller sets unless w_abs holds the sums of
    this theta: _theta_abs_sums); larger ones the blocked kernels, whose
    matrix loops share ``threads`` threads where that pays (_dense).

    With ``prove`` every step must also be proven not to make theta or the
    optimizer state non-finite (a finite gradient can still overflow them: a
    huge learning rate), so that the caller needs no copy of theta to return
    to: each batch must take the fused step, and a bound (_theta_bound +
    optimizers._step_bound, from _gradient_bound's G) must stay below big;
    the call stops with NOT_PROVEN before the first batch where either fails
    (training.Workspace._guarded then takes the rest with its copy).

    Returns (batches done, samples used, optimizer steps taken, batches
    skipped, status); t counts the optimizer steps taken before this call.
    """
    L = arch.shape[1] - 1
    total_rows = X.shape[0]
    total, correct, weights = acc[LOSS_SUM], acc[CORRECT], acc[WEIGHT_SUM]
    seen = 0
    steps = 0
    skipped = 0
    status = OK
    # w_abs[l] = S[l] = sum |W[l]| for the fused step's bound, kept up to date by its pass; w_abs[0] < 0
    # marks it stale (the caller sets it before a call unless w_abs holds the sums of this theta)
    big = (3.4e38 if theta.itemsize == 4 else 1.7e308) / 4.0  # a quarter of the dtype's largest value
    dropping = _dropping(rates, drop_seed)
    # prove: V >= the optimizer's first moment, b_abs >= |every bias|, both carried from step to step
    V = _state_bound(opt, state, t) if prove else 0.0
    b_abs = _abs_sum_biases(theta, arch) if prove else 0.0
    U = V_next = 0.0
    # the fused step at B = 1 may compute the next batch's W[1] x (_backward_update's lag): then `ready`
    lag_layer = arch[N, 1] * arch[N, 0] > TINY_LAYER
    ready = False
    i = first
    while i < last:
        start = i * batch_size
        B = min(batch_size, total_rows - start)
        i += 1
        lagged = ready  # only this batch may use it: a batch skipped below drops it
        ready = False
        w = _load_weights(SW, perm, start, B, w_buf)
        w_total = _weight_sum(w, B)
        if w_total == 0.0:
            continue  # every sample of the batch weighs 0: nothing to learn from it
        _load_inputs(X, perm, start, B, arch, a_buf)
        y = _load_targets(Y, perm, start, B, y_buf)
        # dropout masks (drop_seed >= 0) follow the row's place in the epoch: the same wherever an epoch is cut;
        # batches the fused step may take stay on one thread (see PARALLEL: B = 4-8 measured 0.86-0.98x on two)
        _forward(theta, arch, a_buf, z_buf, B, rates, drop_seed, start, ONE_THREAD if B <= FUSED_MAX_BATCH else threads,
                 LAGGED if lagged else NOT_LAGGED)
        a_L = _rows(a_buf, arch, L, B)
        batch_loss = _loss_sum(loss, loss_param, a_L, _rows(z_buf, arch, L, B), y, w)
        status = OK
        if not np.isfinite(batch_loss):
            status = NONFINITE_LOSS
        else:
            _output_delta(loss, loss_param, arch[ACT, L], a_L, y, w, _rows(d_buf, arch, L, B))
            fused = B <= FUSED_MAX_BATCH and not dropping
            if fused:
                if w_abs[0] < 0.0:
                    _abs_sum_weights(theta, arch, w_abs)
                    w_abs[0] = 0.0
                G = _gradient_bound(arch, a_buf, d_buf, B, 1.0 / w_total, hyper[WEIGHT_DECAY], w_abs, big)
                fused = G < big
                if fused and prove:
                    # theta and the state stay finite in this step: |theta| <= T, and each element moves by
                    # at most U (optimizers._step_bound)
                    c1, c2 = _step_factors(opt, lr, hyper, t + steps + 1)
                    U, V_next = _step_bound(opt, hyper, c1, G, V)
                    fused = _theta_bound(arch, w_abs, b_abs) + U < big and V_next < big
            if prove and not fused:
                status = NOT_PROVEN
                i -= 1  # not done: the caller takes it with a copy of theta to return to (training.py)
                break
            if not fused:
                _backward(theta, arch, a_buf, d_buf, B, rates, drop_seed, start, grad, threads)  # grad: scratch
                _weight_gradients(arch, a_buf, d_buf, B, 1.0 / w_total, grad, z_buf, threads)
                if not _all_finite(grad):
                    status = NONFINITE_GRADIENT
        if status != OK:
            if skip_nonfinite:
                skipped += 1
                status = OK
                continue
            i -= 1  # this batch was not done
            break
        correct += _count_correct(loss, a_L, y, w)
        if fused:
            if prove:
                V, b_abs = V_next, b_abs + U
            else:
                c1, c2 = _step_factors(opt, lr, hyper, t + steps + 1)
            ready = B == 1 and i < last and lag_layer
            if ready:
                # the next batch's input, cast as _load_inputs casts it, into layer 0 of z_buf (never a z)
                x_next = _rows(z_buf, arch, 0, 1)[0]
                r = perm[i * batch_size]
                for k in range(X.shape[1]):
                    x_next[k] = X[r, k]
            _backward_update(theta, arch, a_buf, z_buf, d_buf, B, 1.0 / w_total, opt, hyper, c1, c2, state, grad,
                             w_abs, ready)
        else:
            _update(opt, theta, grad, state, lr, hyper, t + steps + 1, arch, threads)
            w_abs[0] = -1.0  # theta changed outside the fused pass: S[l] is stale
        total += batch_loss
        weights += w_total
        seen += B
        steps += 1
    acc[LOSS_SUM], acc[CORRECT], acc[WEIGHT_SUM] = total, correct, weights
    return i - first, seen, steps, skipped, status
