"""The compiled core: every ``@njit`` function of backprop_numba lives here.

Conventions (stated once, used everywhere)
------------------------------------------
- Layers are numbered ``l = 0..L``; ``a[0] = x`` is the input and ``l = 1..L``
  carry weights.  (The column notes, seeds 000/001/003, number the input 1;
  the row notes, seeds 002/004, number it 0, as here.)
- ``W[l]`` has shape ``(n[l], n[l-1])`` (column convention, seeds 000/001/003):
  ``z[l]_j = b[l]_j + sum_k W[l]_jk a[l-1]_k``.  The row convention of seeds
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
from numba import njit

from .activations import RELU, SIGMOID, SOFTMAX, TANH
from .losses import BCE, CROSS_ENTROPY, HALF_SSE, SSE
from .optimizers import ADAM, MOMENTUM, NESTEROV, SGD

# No "nnan"/"ninf": the finiteness checks below must survive, and no "afn":
# approximate exp/log would move results beyond rounding.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
# error_model="numpy" keeps IEEE division (no ZeroDivisionError from a kernel).
OPTS = dict(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)
# Every kernel is serial.  prange over unit slices was measured (issue 5) on the
# 2-core target: one thread beat two even on a near-idle machine (0.30 s vs
# 0.68 s an epoch of [784,512,512,10], B=256) and two were up to 12x slower when
# one other process ran (OpenMP barriers spinning on a busy core); it also
# needed every caller compiled with parallel=True to dodge a numba cache bug
# (#8578/#4807) and made libgomp unusable after fork.  The blocked loops below
# are written so a later prange over unit slices stays a one-line change.
# Units per register tile: the blocked loops below compute TILE outputs for
# TILE samples at once, so every value loaded from W or a is used TILE times.
TILE = 4
# Cache blocking: the forward pass takes SAMPLE_BLOCK samples at a time (their
# inputs stay in L2 while every row of W passes over them); the delta recursion
# and dC/dW take K_BLOCK inputs k at a time (that slice of W or of a[l-1]
# stays in L2 while every sample or unit passes over it).
SAMPLE_BLOCK = 64
K_BLOCK = 128
# From this batch size on, dC/dW sums over samples as dot products of the
# transposed delta and a[l-1] (_outer_sum_dot_units); below it, row updates.
# It pays only where the transposes (B * (n[l-1] + n[l]) strided copies) are
# shared by enough units: measured on [784,16,10] at B=256, the row updates
# are 5x faster than transposing a[0] for 16 units.
DOT_MIN_BATCH = 16
DOT_MIN_UNITS = 64


# Rows of the ``arch`` table.
N, ACT, WOFF, BOFF, UOFF = 0, 1, 2, 3, 4

# Status codes returned by the training kernel.
OK, NONFINITE_LOSS, NONFINITE_GRADIENT = 0, 1, 2


# --------------------------------------------------------------------------
# Views into the flat parameter vector and the unit buffers
# --------------------------------------------------------------------------

@njit(**OPTS)
def _W(theta, arch, l):
    """W[l] as an (n[l], n[l-1]) view of theta (or of a gradient laid out like it)."""
    start = arch[WOFF, l]
    return theta[start:start + arch[N, l] * arch[N, l - 1]].reshape((arch[N, l], arch[N, l - 1]))


@njit(**OPTS)
def _b(theta, arch, l):
    """b[l] as an (n[l],) view of theta."""
    start = arch[BOFF, l]
    return theta[start:start + arch[N, l]]


@njit(**OPTS)
def _rows(buf, arch, l, B):
    """Layer l's block of a unit buffer (a, z or delta) as a (B, n[l]) view."""
    start = B * arch[UOFF, l]
    return buf[start:start + B * arch[N, l]].reshape((B, arch[N, l]))


# --------------------------------------------------------------------------
# Activations g and their derivatives (activations.py has the table)
# --------------------------------------------------------------------------

@njit(**OPTS)
def _sigmoid(z):
    """Logistic 1/(1 + e^{-z}); exp is only taken of -|z|, so it never overflows.

    Written without a branch around exp (the same values bit for bit): a select
    instead of a jump that mispredicts on every other unit, and the loop vectorises."""
    e = np.exp(-abs(z))
    return 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)


@njit(**OPTS)
def _g(code, z):
    if code == SIGMOID:
        return _sigmoid(z)
    if code == TANH:
        return np.tanh(z)
    if code == RELU:
        return z if z > 0.0 else 0.0 * z
    return z  # IDENTITY


@njit(**OPTS)
def _g_prime(code, a):
    """g'(z) written with the cached output a = g(z) (for relu, a > 0 iff z > 0)."""
    if code == SIGMOID:
        return a * (1.0 - a)
    if code == TANH:
        return 1.0 - a * a
    if code == RELU:
        return 1.0 if a > 0.0 else 0.0
    return 1.0  # IDENTITY


@njit(**OPTS)
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


@njit(**OPTS)
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
        # Hadamard product with g'(z) (seed 002 eq. 1 and 2, seed 004 "o")
        for s in range(B):
            for j in range(m):
                delta[s, j] = grad_a[s, j] * _g_prime(code, a[s, j])


# --------------------------------------------------------------------------
# Forward pass
# --------------------------------------------------------------------------

@njit(**OPTS)
def _dense_units(W, b, a_prev, z, j0, j1):
    """z[s, j] = b[j] + sum_k W[j, k] a_prev[s, k] for units j0 <= j < j1 and every sample s.

    .. math:: z^{[l]}_{sj} = b^{[l]}_j + \\sum_k W^{[l]}_{jk} a^{[l-1]}_{sk}

    Register-blocked: 4 units x 4 samples per pass over k, 16 running sums, so
    each W[j, k] and a[s, k] loaded is used 4 times; the k loop is contiguous
    in both and vectorises (fastmath "reassoc" lets it split each sum).
    """
    B = a_prev.shape[0]
    zero = W.dtype.type(0)  # sums in the network's dtype (float32 stays float32)
    for s_first in range(0, B, SAMPLE_BLOCK):
        _dense_block(W, b, a_prev, z, j0, j1, s_first, min(B, s_first + SAMPLE_BLOCK), zero)


@njit(**OPTS)
def _dense_block(W, b, a_prev, z, j0, j1, s0, s1, zero):
    """_dense_units for the samples s0 <= s < s1."""
    n_in = W.shape[1]
    j = j0
    while j + TILE <= j1:
        w0, w1, w2, w3 = W[j], W[j + 1], W[j + 2], W[j + 3]
        s = s0
        while s + TILE <= s1:
            x0, x1, x2, x3 = a_prev[s], a_prev[s + 1], a_prev[s + 2], a_prev[s + 3]
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = zero
            c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = zero
            # seed 001: sum_k W_jk a_k, for 4 units (first index) x 4 samples (second)
            for k in range(n_in):
                u0, u1, u2, u3 = w0[k], w1[k], w2[k], w3[k]
                v0, v1, v2, v3 = x0[k], x1[k], x2[k], x3[k]
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
            z[s, j], z[s, j + 1], z[s, j + 2], z[s, j + 3] = b[j] + c00, b[j + 1] + c10, b[j + 2] + c20, b[j + 3] + c30
            z[s + 1, j], z[s + 1, j + 1], z[s + 1, j + 2], z[s + 1, j + 3] = (b[j] + c01, b[j + 1] + c11,
                                                                              b[j + 2] + c21, b[j + 3] + c31)
            z[s + 2, j], z[s + 2, j + 1], z[s + 2, j + 2], z[s + 2, j + 3] = (b[j] + c02, b[j + 1] + c12,
                                                                              b[j + 2] + c22, b[j + 3] + c32)
            z[s + 3, j], z[s + 3, j + 1], z[s + 3, j + 2], z[s + 3, j + 3] = (b[j] + c03, b[j + 1] + c13,
                                                                              b[j + 2] + c23, b[j + 3] + c33)
            s += TILE
        while s < s1:
            x0 = a_prev[s]
            c00 = c10 = c20 = c30 = zero
            for k in range(n_in):
                v0 = x0[k]
                c00 += w0[k] * v0
                c10 += w1[k] * v0
                c20 += w2[k] * v0
                c30 += w3[k] * v0
            z[s, j], z[s, j + 1], z[s, j + 2], z[s, j + 3] = b[j] + c00, b[j + 1] + c10, b[j + 2] + c20, b[j + 3] + c30
            s += 1
        j += TILE
    while j < j1:
        w0 = W[j]
        for s in range(s0, s1):
            x0 = a_prev[s]
            c00 = zero
            for k in range(n_in):
                c00 += w0[k] * x0[k]
            z[s, j] = b[j] + c00
        j += 1


@njit(**OPTS)
def _forward(theta, arch, a_buf, z_buf, B):
    """Forward pass for B samples whose inputs already fill layer 0 of a_buf.

    .. math:: z^{[l]} = W^{[l]} a^{[l-1]} + b^{[l]},\\quad a^{[l]} = g_l(z^{[l]})

    (seeds 000/001 "Forward pass", seed 003 eqs. 15-18), keeping every z and a.
    """
    L = arch.shape[1] - 1
    for l in range(1, L + 1):
        W = _W(theta, arch, l)
        b = _b(theta, arch, l)
        a_prev = _rows(a_buf, arch, l - 1, B)
        z = _rows(z_buf, arch, l, B)
        # seed 001: z[l]_j = sum_k W[l]_jk a[l-1]_k + b[l]_j
        _dense_units(W, b, a_prev, z, 0, W.shape[0])
        # a[l] = g_l(z[l])
        _activate(arch[ACT, l], z, _rows(a_buf, arch, l, B))


@njit(**OPTS)
def _load_inputs(X, rows, start, B, arch, a_buf):
    """Copy samples X[rows[start:start+B]] into layer 0 of a_buf (a[0] = x)."""
    a0 = _rows(a_buf, arch, 0, B)
    for s in range(B):
        r = rows[start + s]
        for k in range(X.shape[1]):
            a0[s, k] = X[r, k]


@njit(**OPTS)
def _load_targets(Y, rows, start, B, y_buf):
    """Copy targets Y[rows[start:start+B]] into the first B rows of y_buf."""
    y = y_buf[:B * Y.shape[1]].reshape((B, Y.shape[1]))
    for s in range(B):
        r = rows[start + s]
        for j in range(Y.shape[1]):
            y[s, j] = Y[r, j]
    return y


@njit(**OPTS)
def _predict(theta, arch, X, rows, out, a_buf, z_buf, chunk):
    """out[i] = a[L](X[rows[i]]) for every i, `chunk` samples per forward pass."""
    L = arch.shape[1] - 1
    total = rows.shape[0]
    for start in range(0, total, chunk):
        B = min(chunk, total - start)
        _load_inputs(X, rows, start, B, arch, a_buf)
        _forward(theta, arch, a_buf, z_buf, B)
        a_L = _rows(a_buf, arch, L, B)
        for s in range(B):
            for j in range(a_L.shape[1]):
                out[start + s, j] = a_L[s, j]


# --------------------------------------------------------------------------
# Losses (losses.py has the table)
# --------------------------------------------------------------------------

@njit(**OPTS)
def _softplus(z):
    """log(1 + e^z) without overflow."""
    return max(z, 0.0) + np.log1p(np.exp(-abs(z)))


@njit(**OPTS)
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
            zmax = z[s, 0]
            for j in range(1, m):
                if z[s, j] > zmax:
                    zmax = z[s, j]
            e = 0.0
            for j in range(m):
                e += np.exp(z[s, j] - zmax)
            lse = zmax + np.log(e)
            for j in range(m):
                if y[s, j] != 0.0:
                    total += y[s, j] * (lse - z[s, j])
        return total
    for s in range(B):
        for j in range(m):
            if loss == BCE:
                # seed 004: -[(1-y) log(1-a) + y log a] = softplus(z) - y z
                total += _softplus(z[s, j]) - y[s, j] * z[s, j]
            else:
                d = a[s, j] - y[s, j]
                if loss == SSE:
                    total += d * d
                elif loss == HALF_SSE:
                    total += 0.5 * d * d
                else:  # MSE
                    total += d * d / m
    return total


@njit(**OPTS)
def _output_delta(loss, code, a, y, delta):
    """delta[L] = dC/da[L] * g_L'(z[L]) (seed 002 eq. 1).

    For sigmoid+bce and softmax+cross_entropy the chain collapses to a - y
    (seed 004 "g[3z] = a - y"); the Python layer only allows bce with a sigmoid
    output and cross_entropy with a softmax one, so those never divide by a(1-a).
    """
    B, m = a.shape
    if loss == BCE or loss == CROSS_ENTROPY:
        # seed 004: dC/dz[L] = a - y
        for s in range(B):
            for j in range(m):
                delta[s, j] = a[s, j] - y[s, j]
        return
    # dC/da[L] (seed 003 eq. 4: 2(a - y); seed 004: a - y; mse: 2(a - y)/m)
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


# --------------------------------------------------------------------------
# Backward pass: the delta recursion and the gradients
# --------------------------------------------------------------------------

@njit(**OPTS)
def _backprop_linear(W, delta, out):
    """out = delta W, i.e. out[s] = W^T delta[s]: dC/da[l-1] from delta[l] = dC/dz[l]."""
    B, n_out = delta.shape
    n_in = W.shape[1]
    _backprop_linear_inputs(W, delta, out, 0, n_in)


@njit(**OPTS)
def _backprop_linear_inputs(W, delta, out, k0, k1):
    """out[s, k] = sum_j W[j, k] delta[s, j] for inputs k0 <= k < k1 and every sample s.

    .. math:: \\frac{\\partial C}{\\partial a^{[l-1]}_{sk}} = \\sum_j W^{[l]}_{jk} \\delta^{[l]}_{sj}

    Accumulated row by row of W so the k loop is contiguous; register-blocked
    over 4 samples x 4 units j, so each W[j, k] loaded serves 4 samples and
    each out[s, k] loaded and stored takes 4 terms.
    """
    for k_first in range(k0, k1, K_BLOCK):
        _backprop_linear_block(W, delta, out, k_first, min(k1, k_first + K_BLOCK))


@njit(**OPTS)
def _backprop_linear_block(W, delta, out, k0, k1):
    """_backprop_linear_inputs for one block of inputs k0 <= k < k1.

    Indexed as 2-D arrays (out[s, k], W[j, k]), not through row views: with
    one base pointer per array LLVM proves the rows independent and
    vectorises the k loop (row views measured 3x slower here).
    """
    # unsigned k: numba then skips the negative-index wraparound that blocks vectorising
    ku0, ku1 = np.uint64(k0), np.uint64(k1)
    B, n_out = delta.shape
    s = 0
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
                # seed 002 eq. 2: sum_j W_jk delta_j, 4 units j at a time, for 4 samples
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


@njit(**OPTS)
def _backward(theta, arch, a_buf, d_buf, B):
    """The delta recursion, from delta[L] (already in d_buf) down to delta[1].

    .. math:: \\delta^{[l-1]} = (W^{[l]\\,T} \\delta^{[l]}) \\circ g_{l-1}'(z^{[l-1]})

    (seed 002 eq. 2, seed 000, seed 004 "g[2a] = g[3z] W[3]^T, g[2z] = g'(z[2]) o g[2a]").
    """
    L = arch.shape[1] - 1
    for l in range(L, 1, -1):
        delta_prev = _rows(d_buf, arch, l - 1, B)
        # seed 002 eq. 2: delta[l-1] = (W[l]^T delta[l]) * g'_{l-1}(z[l-1])
        _backprop_linear(_W(theta, arch, l), _rows(d_buf, arch, l, B), delta_prev)
        _backprop_activation(arch[ACT, l - 1], _rows(a_buf, arch, l - 1, B), delta_prev, delta_prev)


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
                # seed 002 eq. 3: dW_jk += delta_sj a_sk, 4 samples s at a time, for 4 units j
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


@njit(**OPTS)
def _outer_sum_dot_units(delta_T, a_T, dW, j0, j1):
    """dW[j, k] = sum_s delta_T[j, s] a_T[k, s] for units j0 <= j < j1: the sum over samples as dot products.

    The same sum as _outer_sum_units, with the batch index s innermost: delta
    and a[l-1] transposed (samples contiguous), 4 units j x 4 inputs k per
    pass over s, 16 running sums in registers and no store in the inner loop
    (the blocking of _dense_block); ~2x the FLOP/s of the row-update form
    once the batch is large enough to fill the vectors.
    """
    n_in = a_T.shape[0]
    zero = dW.dtype.type(0)
    for k_first in range(0, n_in, SAMPLE_BLOCK):
        k_last = min(n_in, k_first + SAMPLE_BLOCK)
        j = j0
        while j < j1:
            if j + TILE <= j1:
                g0, g1, g2, g3 = delta_T[j], delta_T[j + 1], delta_T[j + 2], delta_T[j + 3]
                k = k_first
                while k + TILE <= k_last:
                    x0, x1, x2, x3 = a_T[k], a_T[k + 1], a_T[k + 2], a_T[k + 3]
                    c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = zero
                    c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = zero
                    # seed 002 eq. 3: sum_s delta_sj a_sk, 4 units j (first index) x 4 inputs k (second)
                    for s in range(delta_T.shape[1]):
                        u0, u1, u2, u3 = g0[s], g1[s], g2[s], g3[s]
                        v0, v1, v2, v3 = x0[s], x1[s], x2[s], x3[s]
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
                    dW[j, k], dW[j, k + 1], dW[j, k + 2], dW[j, k + 3] = c00, c01, c02, c03
                    dW[j + 1, k], dW[j + 1, k + 1], dW[j + 1, k + 2], dW[j + 1, k + 3] = c10, c11, c12, c13
                    dW[j + 2, k], dW[j + 2, k + 1], dW[j + 2, k + 2], dW[j + 2, k + 3] = c20, c21, c22, c23
                    dW[j + 3, k], dW[j + 3, k + 1], dW[j + 3, k + 2], dW[j + 3, k + 3] = c30, c31, c32, c33
                    k += TILE
                while k < k_last:
                    x0 = a_T[k]
                    c00 = c10 = c20 = c30 = zero
                    for s in range(delta_T.shape[1]):
                        v0 = x0[s]
                        c00 += g0[s] * v0
                        c10 += g1[s] * v0
                        c20 += g2[s] * v0
                        c30 += g3[s] * v0
                    dW[j, k], dW[j + 1, k], dW[j + 2, k], dW[j + 3, k] = c00, c10, c20, c30
                    k += 1
                j += TILE
            else:
                g0 = delta_T[j]
                for k in range(k_first, k_last):
                    x0 = a_T[k]
                    c00 = zero
                    for s in range(delta_T.shape[1]):
                        c00 += g0[s] * x0[s]
                    dW[j, k] = c00
                j += 1


@njit(**OPTS)
def _transpose_into(x, scale, buf, start):
    """buf[start:] viewed as x.T * scale, shape (n, B), C-contiguous; returns that view."""
    B, n = x.shape
    x_T = buf[start:start + n * B].reshape((n, B))
    # 16 rows of x_T at a time, so the lines being written stay in L1
    for k0 in range(0, n, 16):
        k1 = min(n, k0 + 16)
        for s in range(B):
            for k in range(k0, k1):
                x_T[k, s] = x[s, k] * scale
    return x_T


@njit(**OPTS)
def _weight_gradients(arch, a_buf, d_buf, B, scale, grad, scratch):
    """dC/dW[l] = delta[l] a[l-1]^T and dC/db[l] = delta[l], summed over the batch times scale.

    (seed 002 eqs. 3 and 4, seed 003 eqs. 22/24/26, seed 004 "g[2W] = a[1]^T g[2z]").
    ``scratch`` (at least B * sum(n) values, the z buffer: z is no longer
    needed once delta[L] is known) holds the transposes of the dot-product form.
    """
    L = arch.shape[1] - 1
    for l in range(1, L + 1):
        dW = _W(grad, arch, l)
        db = _b(grad, arch, l)
        delta = _rows(d_buf, arch, l, B)
        a_prev = _rows(a_buf, arch, l - 1, B)
        n_out, n_in = dW.shape
        # seed 002 eq. 3: dC/dW[l]_jk = delta[l]_j a[l-1]_k  (outer product per sample)
        if B >= DOT_MIN_BATCH and n_out >= DOT_MIN_UNITS:
            # summed over s as dot products of the transposes (samples contiguous)
            a_T = _transpose_into(a_prev, a_prev.dtype.type(1), scratch, 0)
            delta_T = _transpose_into(delta, scale, scratch, n_in * B)
            _outer_sum_dot_units(delta_T, a_T, dW, 0, n_out)
        else:
            _outer_sum_units(delta, a_prev, scale, dW, 0, n_out)
        # seed 002 eq. 4: dC/db[l]_j = delta[l]_j
        for j in range(n_out):
            acc = 0.0
            for s in range(B):
                acc += delta[s, j]
            db[j] = acc * scale


@njit(**OPTS)
def _loss_and_gradients(theta, arch, loss, X, Y, a_buf, z_buf, d_buf, grad):
    """Mean loss over the batch X, Y; fills grad (laid out like theta) with its gradient."""
    B = X.shape[0]
    L = arch.shape[1] - 1
    rows = np.arange(B)
    _load_inputs(X, rows, 0, B, arch, a_buf)
    _forward(theta, arch, a_buf, z_buf, B)
    a_L = _rows(a_buf, arch, L, B)
    value = _loss_sum(loss, a_L, _rows(z_buf, arch, L, B), Y) / B
    _output_delta(loss, arch[ACT, L], a_L, Y, _rows(d_buf, arch, L, B))
    _backward(theta, arch, a_buf, d_buf, B)
    _weight_gradients(arch, a_buf, d_buf, B, 1.0 / B, grad, z_buf)
    return value


@njit(**OPTS)
def _loss_value(theta, arch, loss, X, Y, a_buf, z_buf, chunk):
    """Mean loss over all samples of X, Y (forward passes only, `chunk` samples at a time)."""
    L = arch.shape[1] - 1
    total_rows = X.shape[0]
    rows = np.arange(total_rows)
    total = 0.0
    for start in range(0, total_rows, chunk):
        B = min(chunk, total_rows - start)
        _load_inputs(X, rows, start, B, arch, a_buf)
        _forward(theta, arch, a_buf, z_buf, B)
        y = Y[start:start + B]
        total += _loss_sum(loss, _rows(a_buf, arch, L, B), _rows(z_buf, arch, L, B), y)
    return total / total_rows


# --------------------------------------------------------------------------
# Differentiating the output with respect to the input (seeds 000, 001)
# --------------------------------------------------------------------------

@njit(**OPTS)
def _vjp(theta, arch, X, V, a_buf, z_buf, d_buf, gx):
    """gx[s] = V[s]^T J(X[s]), the vector-Jacobian product of a[L] at X[s].

    With n[L] = 1 and V = 1 this is the input gradient of seeds 000/001:
    delta[L] = g_L'(z[L]); delta[l] = (W[l+1]^T delta[l+1]) * g_l'(z[l]);
    grad_x a[L] = W[1]^T delta[1] (the seeds' W[2]^T delta[2], input numbered 1 there).
    """
    B = X.shape[0]
    L = arch.shape[1] - 1
    rows = np.arange(B)
    _load_inputs(X, rows, 0, B, arch, a_buf)
    _forward(theta, arch, a_buf, z_buf, B)
    # seed 000: delta[L] = v * sigma'(z[L])  (the softmax Jacobian for a softmax output)
    _backprop_activation(arch[ACT, L], _rows(a_buf, arch, L, B), V, _rows(d_buf, arch, L, B))
    _backward(theta, arch, a_buf, d_buf, B)
    # seed 000: grad_x a[L] = W[1]^T delta[1]  (the input layer has no activation)
    _backprop_linear(_W(theta, arch, 1), _rows(d_buf, arch, 1, B), gx)


# --------------------------------------------------------------------------
# Gradient descent and its variants (optimizers.py has the rules)
# --------------------------------------------------------------------------

@njit(**OPTS)
def _update(opt, theta, grad, state, lr, hyper, t, arch):
    """One optimizer step on theta from grad (W <- W - eta dC/dW, seeds 002/004).

    hyper = (momentum, beta1, beta2, eps, weight_decay); t counts steps from 1
    (Adam's bias correction).  grad is modified in place by the L2 term.
    """
    weight_decay = hyper[4]
    if weight_decay != 0.0:
        # L2 penalty (weight_decay/2) |W|^2 on weights only, not biases
        for l in range(1, arch.shape[1]):
            start = arch[WOFF, l]
            for i in range(start, start + arch[N, l] * arch[N, l - 1]):
                grad[i] += weight_decay * theta[i]
    P = theta.shape[0]
    if opt == SGD:
        # seed 002: W <- W - eta dC/dW
        for i in range(P):
            theta[i] -= lr * grad[i]
    elif opt == MOMENTUM or opt == NESTEROV:
        mu = hyper[0]
        v = state[0]
        for i in range(P):
            v[i] = mu * v[i] + grad[i]
            if opt == NESTEROV:
                theta[i] -= lr * (grad[i] + mu * v[i])
            else:
                theta[i] -= lr * v[i]
    elif opt == ADAM:
        beta1, beta2, eps = hyper[1], hyper[2], hyper[3]
        m = state[0]
        v = state[1]
        step = lr / (1.0 - beta1 ** t)
        root_bc2 = np.sqrt(1.0 - beta2 ** t)
        for i in range(P):
            g = grad[i]
            m[i] = beta1 * m[i] + (1.0 - beta1) * g
            v[i] = beta2 * v[i] + (1.0 - beta2) * g * g
            theta[i] -= step * (m[i] / (np.sqrt(v[i]) / root_bc2 + eps))


@njit(**OPTS)
def _all_finite(x):
    for i in range(x.shape[0]):
        if not np.isfinite(x[i]):
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


# --------------------------------------------------------------------------
# Small batches: one fused optimizer step, indexed flat
# --------------------------------------------------------------------------
#
# Up to FUSED_MAX_BATCH samples a step, the per-step overhead of the blocked
# path (2-D views made per layer per step, calls passing arrays, a gradient
# buffer written then read by a separate update pass, the _all_finite pass
# over it) outweighs the arithmetic.  The fused step instead indexes theta and
# the unit buffers flat with np.uint64 offsets (unsigned: no negative-index
# wraparound, so the k loops vectorise), makes no views, and updates each W[l]
# in the same pass over it that computes W[l]^T delta[l] from the old row.
# The unit buffers keep the layout of the blocked path (layer l's block at
# B * UOFF[l], sample s in rows), so a step can fall back to it at any point.
#
# Non-finite gradients.  The fused step writes theta before delta[l-1] is
# known, so it must know beforehand that every gradient will be finite.  It
# checks a bound: with A[l] = sum |a[l]| (all samples), D[l] = sum |delta[l]|
# and S[l] = sum |W[l]|,
#     |dC/dW[l]_jk| <= scale D[l] A[l-1],   |dC/db[l]_j| <= scale D[l],
#     D[l-1] <= D[l] S[l]                     (every hidden g' <= 1),
# evaluated from D[L] (known after the loss), the A of the forward pass and
# the S left by the previous step's update pass.  When every bound is below a
# quarter of the dtype's largest value (rounding cannot then reach inf), the
# gradient is finite and the step is fused; otherwise (including any inf or
# NaN in a, delta or W) that step runs the blocked path of the large batches,
# with its exact gradient check, so the semantics are those of the original.

FUSED_MAX_BATCH = 8
# The fused kernels only index arrays they are given (none allocates), so they are compiled without the
# runtime's reference counting: numba otherwise increfs every array argument on entry and decrefs it on
# every exit (atomic operations its pruner leaves in any function with branches), ~6-10 per call.
LEAF = dict(OPTS, _nrt=False)


@njit(inline="always", **LEAF)
def _load_flat(X, perm, start, B, a_buf):
    """a[0] = X[perm[start + s]] for the B samples of the step; returns sum |a[0]|."""
    n_in = np.uint64(X.shape[1])
    total = 0.0
    for s in range(B):
        r = perm[start + s]
        x0 = np.uint64(s) * n_in
        for k in range(n_in):
            a_buf[x0 + k] = X[r, k]
            total += abs(X[r, k])
    return total


@njit(inline="always", **LEAF)
def _activate_flat(code, z_buf, a_buf, off, B, m):
    """a = g(z) for the B rows of m units at off; returns sum |a|."""
    total = 0.0
    for s in range(B):
        o = off + np.uint64(s) * m
        if code == SOFTMAX:
            zmax = z_buf[o]
            for j in range(m):
                if z_buf[o + j] > zmax:
                    zmax = z_buf[o + j]
            e_sum = 0.0
            for j in range(m):
                e = np.exp(z_buf[o + j] - zmax)
                a_buf[o + j] = e
                e_sum += e
            for j in range(m):
                a_buf[o + j] = a_buf[o + j] / e_sum
                total += a_buf[o + j]
        else:
            for j in range(m):
                a_buf[o + j] = _g(code, z_buf[o + j])
                total += abs(a_buf[o + j])
    return total


@njit(**LEAF)
def _forward_flat(theta, arch, a_buf, z_buf, B, a_abs):
    """_forward for B samples, indexed flat; a_abs[l] = sum |a[l]| for l >= 1.

    .. math:: z^{[l]} = W^{[l]} a^{[l-1]} + b^{[l]},\\quad a^{[l]} = g_l(z^{[l]})
    """
    L = arch.shape[1] - 1
    Bu = np.uint64(B)
    zero = theta.dtype.type(0)
    for l in range(1, L + 1):
        n_in, n_out = np.uint64(arch[N, l - 1]), np.uint64(arch[N, l])
        W0, b0 = np.uint64(arch[WOFF, l]), np.uint64(arch[BOFF, l])
        a_prev0, z0 = Bu * np.uint64(arch[UOFF, l - 1]), Bu * np.uint64(arch[UOFF, l])
        for j in range(n_out):
            row = W0 + j * n_in
            for s in range(Bu):
                x0 = a_prev0 + s * n_in
                acc = zero
                # seed 001: z[l]_j = b[l]_j + sum_k W[l]_jk a[l-1]_k
                for k in range(n_in):
                    acc += theta[row + k] * a_buf[x0 + k]
                z_buf[z0 + s * n_out + j] = theta[b0 + j] + acc
        # a[l] = g_l(z[l])
        a_abs[l] = _activate_flat(arch[ACT, l], z_buf, a_buf, z0, B, n_out)


@njit(inline="always", **LEAF)
def _loss_flat(loss, a_buf, z_buf, off, B, m, Y, perm, start):
    """_loss_sum for the B output rows at off, targets read from Y[perm[start + s]]."""
    total = 0.0
    for s in range(B):
        r = perm[start + s]
        o = off + np.uint64(s) * m
        if loss == CROSS_ENTROPY:
            zmax = z_buf[o]
            for j in range(m):
                if z_buf[o + j] > zmax:
                    zmax = z_buf[o + j]
            e = 0.0
            for j in range(m):
                e += np.exp(z_buf[o + j] - zmax)
            lse = zmax + np.log(e)
            for j in range(m):
                if Y[r, j] != 0.0:
                    total += Y[r, j] * (lse - z_buf[o + j])
        else:
            for j in range(m):
                if loss == BCE:
                    # seed 004: -[(1-y) log(1-a) + y log a] = softplus(z) - y z
                    total += _softplus(z_buf[o + j]) - Y[r, j] * z_buf[o + j]
                else:
                    d = a_buf[o + j] - Y[r, j]
                    if loss == SSE:
                        total += d * d
                    elif loss == HALF_SSE:
                        total += 0.5 * d * d
                    else:  # MSE
                        total += d * d / m
    return total


@njit(inline="always", **LEAF)
def _correct_flat(loss, a_buf, off, B, m, Y, perm, start):
    """Correct predictions among the B output rows at off: argmax match for
    cross_entropy, elementwise (a > 0.5) == (y > 0.5) for bce, 0 otherwise."""
    count = 0
    for s in range(B):
        r = perm[start + s]
        o = off + np.uint64(s) * m
        if loss == CROSS_ENTROPY:
            ja = 0
            jy = 0
            for j in range(1, np.int64(m)):
                if a_buf[o + np.uint64(j)] > a_buf[o + np.uint64(ja)]:
                    ja = j
                if Y[r, j] > Y[r, jy]:
                    jy = j
            count += ja == jy
        elif loss == BCE:
            for j in range(m):
                count += (a_buf[o + j] > 0.5) == (Y[r, j] > 0.5)
    return count


@njit(inline="always", **LEAF)
def _output_delta_flat(loss, code, a_buf, d_buf, off, B, m, Y, perm, start):
    """_output_delta for the B output rows at off; returns sum |delta[L]|."""
    if loss == SSE:
        c = 2.0
    elif loss == HALF_SSE:
        c = 1.0
    else:  # MSE
        c = 2.0 / m
    total = 0.0
    for s in range(B):
        r = perm[start + s]
        o = off + np.uint64(s) * m
        if loss == BCE or loss == CROSS_ENTROPY:
            # seed 004: dC/dz[L] = a - y
            for j in range(m):
                d_buf[o + j] = a_buf[o + j] - Y[r, j]
        else:
            # dC/da[L] times g_L'(z[L]) (seed 002 eq. 1)
            for j in range(m):
                d_buf[o + j] = c * (a_buf[o + j] - Y[r, j])
            if code == SOFTMAX:
                dot = 0.0
                for k in range(m):
                    dot += d_buf[o + k] * a_buf[o + k]
                for j in range(m):
                    d_buf[o + j] = a_buf[o + j] * (d_buf[o + j] - dot)
            else:
                for j in range(m):
                    d_buf[o + j] = d_buf[o + j] * _g_prime(code, a_buf[o + j])
        for j in range(m):
            total += abs(d_buf[o + j])
    return total


@njit(inline="always", **LEAF)
def _gradient_is_finite(arch, a_abs, d_abs, w_abs, B, big):
    """True when the bound of the section comment proves every gradient of the step finite
    (big: a quarter of the dtype's largest finite value)."""
    scale = 1.0 / B
    L = arch.shape[1] - 1
    for l in range(L, 0, -1):
        # |dC/dW[l]_jk| <= scale D[l] A[l-1];  |dC/db[l]_j| <= scale D[l]
        bound = scale * d_abs * max(a_abs[l - 1], 1.0)
        if not bound < big:  # also catches NaN
            return False
        # D[l-1] = sum |(W[l]^T delta[l]) o g'| <= D[l] S[l]
        d_abs = d_abs * w_abs[l]
    return True


@njit(**LEAF)
def _abs_sum_weights(theta, arch, w_abs):
    """w_abs[l] = S[l] = sum |W[l]| for every layer (accumulated in the dtype, like the update pass)."""
    for l in range(1, arch.shape[1]):
        W0 = np.uint64(arch[WOFF, l])
        total = theta.dtype.type(0)
        for i in range(W0, W0 + np.uint64(arch[N, l] * arch[N, l - 1])):
            total += abs(theta[i])
        w_abs[l] = total


@njit(inline="always", **LEAF)
def _update_row(opt, theta, state, i0, n, g_src, g0, c, wd, lr, mu, beta1, beta2, eps, step, root_bc2):
    """theta[i0:i0+n] -= one optimizer step with gradient g_k = c g_src[g0 + k] + wd theta[i0 + k];
    returns sum |theta| after the step.  (_update's rules, element by element.)"""
    total = theta.dtype.type(0)
    if opt == SGD:
        for k in range(n):
            i = i0 + k
            # seed 002: W <- W - eta dC/dW
            g = c * g_src[g0 + k] + wd * theta[i]
            theta[i] -= lr * g
            total += abs(theta[i])
    elif opt == MOMENTUM:
        for k in range(n):
            i = i0 + k
            g = c * g_src[g0 + k] + wd * theta[i]
            state[0, i] = mu * state[0, i] + g
            theta[i] -= lr * state[0, i]
            total += abs(theta[i])
    elif opt == NESTEROV:
        for k in range(n):
            i = i0 + k
            g = c * g_src[g0 + k] + wd * theta[i]
            state[0, i] = mu * state[0, i] + g
            theta[i] -= lr * (g + mu * state[0, i])
            total += abs(theta[i])
    else:  # ADAM
        one = theta.dtype.type(1)
        for k in range(n):
            i = i0 + k
            g = c * g_src[g0 + k] + wd * theta[i]
            state[0, i] = beta1 * state[0, i] + (one - beta1) * g
            state[1, i] = beta2 * state[1, i] + (one - beta2) * g * g
            theta[i] -= step * (state[0, i] / (np.sqrt(state[1, i]) / root_bc2 + eps))
            total += abs(theta[i])
    return total


@njit(**LEAF)
def _fused_backward_update(theta, arch, a_buf, d_buf, g_row, B, opt, lr, hyper, state, t, w_abs):
    """Delta recursion, gradients and optimizer step in one pass over each W[l], from l = L down to 1.

    Row j of W[l] first gives its share of W[l]^T delta[l] (old weights), then
    is updated with dC/dW[l]_jk = scale sum_s delta[l]_sj a[l-1]_sk (seed 002
    eqs. 2-4).  delta[L] must be in d_buf; leaves w_abs[l] = sum |W[l]| (new).
    """
    L = arch.shape[1] - 1
    Bu = np.uint64(B)
    dt = theta.dtype.type
    zero = dt(0)
    scale = 1.0 / B
    lr_, wd, mu = dt(lr), dt(hyper[4]), dt(hyper[0])
    beta1, beta2, eps = dt(hyper[1]), dt(hyper[2]), dt(hyper[3])
    step, root_bc2 = lr_, dt(1)
    if opt == ADAM:  # bias corrections (pow is ~50 cycles: only where used)
        step = dt(lr / (1.0 - hyper[1] ** t))
        root_bc2 = dt(np.sqrt(1.0 - hyper[2] ** t))
    for l in range(L, 0, -1):
        n_in, n_out = np.uint64(arch[N, l - 1]), np.uint64(arch[N, l])
        W0, b0 = np.uint64(arch[WOFF, l]), np.uint64(arch[BOFF, l])
        prev0, d0 = Bu * np.uint64(arch[UOFF, l - 1]), Bu * np.uint64(arch[UOFF, l])
        back = l > 1
        if back:
            for i in range(prev0, prev0 + Bu * n_in):
                d_buf[i] = zero
        w_sum = zero
        for j in range(n_out):
            row = W0 + j * n_in
            if back:
                for s in range(Bu):
                    delta_j = d_buf[d0 + s * n_out + j]
                    o = prev0 + s * n_in
                    # seed 002 eq. 2 (old weights): (W[l]^T delta[l])_k += W[l]_jk delta[l]_j
                    for k in range(n_in):
                        d_buf[o + k] += theta[row + k] * delta_j
            # seed 002 eq. 3: dC/dW[l]_jk = scale sum_s delta[l]_sj a[l-1]_sk, as c g_src[g0 + k]
            g_src, g0, c = a_buf, prev0, dt(d_buf[d0 + j] * scale)  # B = 1: delta[l]_j a[l-1]_k
            if B > 1:
                g_src, g0, c = g_row, np.uint64(0), dt(1)
                for k in range(n_in):
                    g_row[k] = zero
                for s in range(Bu):
                    c_s = d_buf[d0 + s * n_out + j] * scale
                    a0 = prev0 + s * n_in
                    for k in range(n_in):
                        g_row[k] += c_s * a_buf[a0 + k]
            w_sum += _update_row(opt, theta, state, row, n_in, g_src, g0, c, wd, lr_, mu, beta1, beta2, eps,
                                 step, root_bc2)
        # seed 002 eq. 4: dC/db[l]_j = scale sum_s delta[l]_sj  (no weight decay on biases), all j in one call
        for j in range(n_out):
            acc = zero
            for s in range(Bu):
                acc += d_buf[d0 + s * n_out + j]
            g_row[j] = acc * scale
        _update_row(opt, theta, state, b0, n_out, g_row, np.uint64(0), dt(1), zero, lr_, mu, beta1, beta2, eps,
                    step, root_bc2)
        w_abs[l] = w_sum
        if back:
            # seed 002 eq. 2: delta[l-1] = (W[l]^T delta[l]) * g'_{l-1}(z[l-1])
            code = arch[ACT, l - 1]
            for i in range(prev0, prev0 + Bu * n_in):
                d_buf[i] = d_buf[i] * _g_prime(code, a_buf[i])


# --------------------------------------------------------------------------
# The training epoch
# --------------------------------------------------------------------------

@njit(**OPTS)
def _count_correct(loss, a, y):
    """_correct_flat for a (B, m) output block and its targets."""
    B, m = a.shape
    count = 0
    for s in range(B):
        if loss == CROSS_ENTROPY:
            ja = 0
            jy = 0
            for j in range(1, m):
                if a[s, j] > a[s, ja]:
                    ja = j
                if y[s, j] > y[s, jy]:
                    jy = j
            count += ja == jy
        elif loss == BCE:
            for j in range(m):
                count += (a[s, j] > 0.5) == (y[s, j] > 0.5)
    return count


@njit(**OPTS)
def _train_epoch(theta, arch, loss, X, Y, perm, shuffle_seed, batch_size, opt, lr, hyper, state, t,
                 skip_nonfinite, a_buf, z_buf, d_buf, y_buf, grad):
    """One epoch of mini-batch gradient descent, entirely in compiled code.

    Shuffles perm (when shuffle_seed >= 0), then for each mini-batch of
    perm: forward, loss, delta[L], delta recursion, gradients of the batch
    mean, and one optimizer step.  The last batch may be smaller.  All buffers
    are allocated by the caller, once per fit.  Batches of up to
    FUSED_MAX_BATCH samples take the fused step (section above), larger ones
    the blocked kernels.

    A mini-batch whose loss or gradient is not finite gets no update: with
    skip_nonfinite the epoch goes on to the next batch, otherwise it stops
    there, so theta keeps the last finite parameters.

    Returns (sum of per-sample losses over the batches used, samples used,
    optimizer steps taken, batches skipped, status, correct predictions in the
    forward passes of the batches used: argmax matches for cross_entropy,
    matching outputs for bce, 0 for the other losses).
    """
    if shuffle_seed >= 0:
        _shuffle(perm, shuffle_seed)
    if batch_size <= FUSED_MAX_BATCH:
        return _train_epoch_fused(theta, arch, loss, X, Y, perm, batch_size, opt, lr, hyper, state, t,
                                  skip_nonfinite, a_buf, z_buf, d_buf, grad)
    L = arch.shape[1] - 1
    total_rows = X.shape[0]
    total = 0.0
    seen = 0
    steps = 0
    skipped = 0
    correct = 0
    for start in range(0, total_rows, batch_size):
        B = min(batch_size, total_rows - start)
        _load_inputs(X, perm, start, B, arch, a_buf)
        y = _load_targets(Y, perm, start, B, y_buf)
        _forward(theta, arch, a_buf, z_buf, B)
        a_L = _rows(a_buf, arch, L, B)
        batch_loss = _loss_sum(loss, a_L, _rows(z_buf, arch, L, B), y)
        status = OK
        if not np.isfinite(batch_loss):
            status = NONFINITE_LOSS
        else:
            _output_delta(loss, arch[ACT, L], a_L, y, _rows(d_buf, arch, L, B))
            _backward(theta, arch, a_buf, d_buf, B)
            _weight_gradients(arch, a_buf, d_buf, B, 1.0 / B, grad, z_buf)
            if not _all_finite(grad):
                status = NONFINITE_GRADIENT
        if status != OK:
            if skip_nonfinite:
                skipped += 1
                continue
            return total, seen, steps, skipped, status, correct
        correct += _count_correct(loss, a_L, y)
        _update(opt, theta, grad, state, lr, hyper, t + steps + 1, arch)
        total += batch_loss
        seen += B
        steps += 1
    return total, seen, steps, skipped, OK, correct


# _fused_step's answer when the bound cannot prove the gradient finite: delta[L] is in d_buf and the step
# is left to the blocked path.
BLOCKED = -1


@njit(**LEAF)
def _fused_step(theta, arch, loss, X, Y, perm, start, B, opt, lr, hyper, state, t, a_buf, z_buf, d_buf,
                a_abs, w_abs, g_row, big):
    """One optimizer step on the samples perm[start:start+B], fused; every kernel it calls is inlined,
    so a step is one call with no reference counting.

    Returns (sum of the per-sample losses, status, correct predictions): status OK when the step was
    taken, NONFINITE_LOSS (no update), or BLOCKED (no update yet: the caller runs the blocked path).
    """
    L = arch.shape[1] - 1
    m = np.uint64(arch[N, L])
    out0 = np.uint64(B * arch[UOFF, L])
    a_abs[0] = _load_flat(X, perm, start, B, a_buf)
    _forward_flat(theta, arch, a_buf, z_buf, B, a_abs)
    batch_loss = _loss_flat(loss, a_buf, z_buf, out0, B, m, Y, perm, start)
    if not np.isfinite(batch_loss):
        return batch_loss, NONFINITE_LOSS, 0
    d_abs = _output_delta_flat(loss, arch[ACT, L], a_buf, d_buf, out0, B, m, Y, perm, start)
    correct = _correct_flat(loss, a_buf, out0, B, m, Y, perm, start)
    if not _gradient_is_finite(arch, a_abs, d_abs, w_abs, B, big):
        return batch_loss, BLOCKED, correct
    _fused_backward_update(theta, arch, a_buf, d_buf, g_row, B, opt, lr, hyper, state, t, w_abs)
    return batch_loss, OK, correct


@njit(**OPTS)
def _train_epoch_fused(theta, arch, loss, X, Y, perm, batch_size, opt, lr, hyper, state, t, skip_nonfinite,
                       a_buf, z_buf, d_buf, grad):
    """_train_epoch's loop over mini-batches with the fused step (perm already shuffled)."""
    L = arch.shape[1] - 1
    total_rows = X.shape[0]
    a_abs = np.empty(L + 1)
    w_abs = np.empty(L + 1)
    g_row = np.empty(np.max(arch[N]) + 1, dtype=theta.dtype)
    _abs_sum_weights(theta, arch, w_abs)
    big = (3.4e38 if theta.itemsize == 4 else 1.7e308) / 4.0
    total = 0.0
    seen = 0
    steps = 0
    skipped = 0
    correct = 0
    for start in range(0, total_rows, batch_size):
        B = min(batch_size, total_rows - start)
        batch_loss, status, batch_correct = _fused_step(theta, arch, loss, X, Y, perm, start, B, opt, lr, hyper,
                                                        state, t + steps + 1, a_buf, z_buf, d_buf, a_abs, w_abs,
                                                        g_row, big)
        if status == BLOCKED:
            # the blocked path on the same buffers, with its exact check of the gradient
            _backward(theta, arch, a_buf, d_buf, B)
            _weight_gradients(arch, a_buf, d_buf, B, 1.0 / B, grad, z_buf)
            if not _all_finite(grad):
                status = NONFINITE_GRADIENT
            else:
                _update(opt, theta, grad, state, lr, hyper, t + steps + 1, arch)
                _abs_sum_weights(theta, arch, w_abs)
                status = OK
        if status != OK:
            if skip_nonfinite:
                skipped += 1
                continue
            return total, seen, steps, skipped, status, correct
        correct += batch_correct
        total += batch_loss
        seen += B
        steps += 1
    return total, seen, steps, skipped, OK, correct
