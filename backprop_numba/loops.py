"""The three matrix-shaped loops of backpropagation, callable one at a time.

These are the compiled loops the training epoch runs (``_kernels.py``),
behind checked wrappers: a documented low-level entry for benchmarks (each
loop's FLOP/s against a matrix multiply of the same shape) and for reading
the algorithm one equation at a time.  Each runs on numba's threads where the
work pays, like the epoch (``numba.set_num_threads(1)`` keeps it on one).
Every array is 2-D, C-contiguous and of one float dtype (float32 or
float64); outputs, and the working space of ``dense_transpose`` and
``outer_sum`` (``scratch``, of ``scratch_size(B, n_in, n_out)`` values), are
written in place when given (no allocation: what a benchmark wants) and
allocated otherwise.

=====================  ===================================================  ==================
function               computes                                             equation
=====================  ===================================================  ==================
``dense``              Z[s, j] = b[j] + sum_k W[j, k] A[s, k]               z = W a + b
``dense_transpose``    OUT[s, k] = sum_j W[j, k] D[s, j]                    W^T delta
``outer_sum``          dW[j, k] = scale * sum_s D[s, j] A[s, k]             dC/dW = delta a^T
=====================  ===================================================  ==================

(notes 001 forward pass; 002 eqs. 2 and 3.)  W has the column convention:
shape (n_out, n_in); A and Z hold one sample per row.
"""

import numpy as np

from . import _kernels as K
from ._threads import call_kernel, kernel_threads

__all__ = ["dense", "dense_transpose", "outer_sum", "scratch_size"]


def _matrix(name, x, dtype=None):
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D NumPy array, got {type(x).__name__} "
                         f"{getattr(x, 'shape', '')}.")
    if x.dtype not in (np.float32, np.float64) or (dtype is not None and x.dtype != dtype):
        expected = "float32 or float64" if dtype is None else np.dtype(dtype).name
        raise TypeError(f"{name} must have dtype {expected}, got {x.dtype}.")
    if not (x.flags.c_contiguous and x.flags.writeable and x.flags.aligned):
        raise ValueError(f"{name} must be C-contiguous, aligned and writeable (np.ascontiguousarray).")
    return x


def _output(name, out, shape, dtype):
    if out is None:
        return np.empty(shape, dtype=dtype)
    _matrix(name, out, dtype)
    if out.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {out.shape}.")
    return out


def _shape(name, x, shape):
    if x.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {x.shape}.")


def dense(W, b, A, Z=None):
    """Z = A W^T + b: the forward loop of one layer, for every sample (row) of A."""
    W = _matrix("W", W)
    n_out, n_in = W.shape
    A = _matrix("A", A, W.dtype)
    _shape("A", A, (A.shape[0], n_in))
    if not isinstance(b, np.ndarray) or b.shape != (n_out,) or b.dtype != W.dtype:
        raise ValueError(f"b must be a ({n_out},) array of dtype {W.dtype}.")
    Z = _output("Z", Z, (A.shape[0], n_out), W.dtype)
    call_kernel(K._dense, W, np.ascontiguousarray(b), A, Z)
    return Z


def _tile_scratch(n_lead, n_other):
    """Scratch values the register tiles need on the most slices the kernels' threads can take."""
    return int(K._tile_scratch_need(n_lead, n_other, kernel_threads() * K.SLICES_PER_THREAD))


def _transpose_need(B, n_in, n_out):
    # the packed operands of the register tiles (K._tile), and W^T, which the dot-product form takes from
    # K.TRANSPOSE_MIN_BATCH samples on
    return max(_tile_scratch(B, n_out), n_in * n_out)


def _outer_need(B, n_in, n_out):
    return max(B * (n_out + n_in), _tile_scratch(n_out, B))


def scratch_size(B, n_in, n_out):
    """Values of ``scratch`` that dense_transpose and outer_sum need for B samples of a layer n_in -> n_out.

    For numba's thread count at the call (``numba.set_num_threads``): more
    threads may need more.  Passing scratch of this size (1-D, the arrays'
    dtype) saves each call an allocation of up to n_in * n_out values: 2 MB
    of float64 on 512 -> 512, whose page faults a benchmark would time.
    """
    return max(_transpose_need(B, n_in, n_out), _outer_need(B, n_in, n_out))


def _scratch(scratch, need, dtype):
    if scratch is None:
        return np.empty(need, dtype=dtype)
    if not (isinstance(scratch, np.ndarray) and scratch.ndim == 1 and scratch.dtype == dtype
            and scratch.flags.c_contiguous and scratch.flags.writeable and scratch.shape[0] >= need):
        raise ValueError(f"scratch must be a writeable contiguous 1-D {np.dtype(dtype).name} array of at least {need} "
                         "values (loops.scratch_size).")
    return scratch


def dense_transpose(W, D, OUT=None, scratch=None):
    """OUT = D W, i.e. OUT[s] = W^T D[s]: the delta recursion's product, for every sample of D.

    ``scratch`` (optional: 1-D, of the dtype, at least scratch_size(B, n_in,
    n_out) values) is the working space; allocated when None.
    """
    W = _matrix("W", W)
    n_out, n_in = W.shape
    D = _matrix("D", D, W.dtype)
    _shape("D", D, (D.shape[0], n_out))
    OUT = _output("OUT", OUT, (D.shape[0], n_in), W.dtype)
    scratch = _scratch(scratch, _transpose_need(D.shape[0], n_in, n_out), W.dtype)
    call_kernel(K._backprop_linear, W, D, OUT, scratch)
    return OUT


def outer_sum(D, A, dW=None, scale=1.0, scratch=None):
    """dW = scale * D^T A: the weight gradient summed over the samples (rows) of D and A.

    ``scratch`` (optional: 1-D, of the dtype, at least scratch_size(B, n_in,
    n_out) values) is the working space of the packed operands; allocated
    when None.
    """
    D = _matrix("D", D)
    A = _matrix("A", A, D.dtype)
    B, n_out = D.shape
    _shape("A", A, (B, A.shape[1]))
    dW = _output("dW", dW, (n_out, A.shape[1]), D.dtype)
    scratch = _scratch(scratch, _outer_need(B, A.shape[1], n_out), D.dtype)
    call_kernel(K._outer_sum, D, A, float(scale), dW, scratch)
    return dW
