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

from .activations import IDENTITY, RELU, SIGMOID, SOFTMAX, TANH
from .losses import BCE, CROSS_ENTROPY, HALF_SSE, MSE, SSE
from .optimizers import ADAM, MOMENTUM, NESTEROV, SGD

# No "nnan"/"ninf": the finiteness checks below must survive, and no "afn":
# approximate exp/log would move results beyond rounding.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}
# error_model="numpy" keeps IEEE division (no ZeroDivisionError from a kernel).
OPTS = dict(cache=True, fastmath=FASTMATH, error_model="numpy", nogil=True)

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
    """Logistic 1/(1 + e^{-z}); exp is only taken of -|z|, so it never overflows."""
    if z >= 0.0:
        return 1.0 / (1.0 + np.exp(-z))
    e = np.exp(z)
    return e / (1.0 + e)


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
        n_out, n_in = W.shape
        # seed 001: z[l]_j = sum_k W[l]_jk a[l-1]_k + b[l]_j
        for s in range(B):
            for j in range(n_out):
                acc = b[j]
                for k in range(n_in):
                    acc += W[j, k] * a_prev[s, k]
                z[s, j] = acc
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
    for s in range(B):
        for k in range(n_in):
            out[s, k] = 0.0
        # sum_j W_jk delta_j, accumulated row by row of W so the k loop is contiguous
        for j in range(n_out):
            d = delta[s, j]
            for k in range(n_in):
                out[s, k] += W[j, k] * d


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
def _weight_gradients(arch, a_buf, d_buf, B, scale, grad):
    """dC/dW[l] = delta[l] a[l-1]^T and dC/db[l] = delta[l], summed over the batch times scale.

    (seed 002 eqs. 3 and 4, seed 003 eqs. 22/24/26, seed 004 "g[2W] = a[1]^T g[2z]").
    """
    L = arch.shape[1] - 1
    for l in range(1, L + 1):
        dW = _W(grad, arch, l)
        db = _b(grad, arch, l)
        delta = _rows(d_buf, arch, l, B)
        a_prev = _rows(a_buf, arch, l - 1, B)
        n_out, n_in = dW.shape
        # seed 002 eq. 3: dC/dW[l]_jk = delta[l]_j a[l-1]_k  (outer product per sample)
        for j in range(n_out):
            for k in range(n_in):
                dW[j, k] = 0.0
            for s in range(B):
                d = delta[s, j] * scale
                for k in range(n_in):
                    dW[j, k] += d * a_prev[s, k]
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
    _weight_gradients(arch, a_buf, d_buf, B, 1.0 / B, grad)
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


@njit(**OPTS)
def _train_epoch(theta, arch, loss, X, Y, perm, shuffle_seed, batch_size, opt, lr, hyper, state, t,
                 skip_nonfinite, a_buf, z_buf, d_buf, y_buf, grad):
    """One epoch of mini-batch gradient descent, entirely in compiled code.

    Shuffles perm (when shuffle_seed >= 0), then for each mini-batch of
    perm: forward, loss, delta[L], delta recursion, gradients of the batch
    mean, and one optimizer step.  The last batch may be smaller.  All buffers
    are allocated by the caller, once per fit.

    A mini-batch whose loss or gradient is not finite gets no update: with
    skip_nonfinite the epoch goes on to the next batch, otherwise it stops
    there, so theta keeps the last finite parameters.

    Returns (sum of per-sample losses over the batches used, samples used,
    optimizer steps taken, batches skipped, status).
    """
    L = arch.shape[1] - 1
    total_rows = X.shape[0]
    if shuffle_seed >= 0:
        _shuffle(perm, shuffle_seed)
    total = 0.0
    seen = 0
    steps = 0
    skipped = 0
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
            _weight_gradients(arch, a_buf, d_buf, B, 1.0 / B, grad)
            if not _all_finite(grad):
                status = NONFINITE_GRADIENT
        if status != OK:
            if skip_nonfinite:
                skipped += 1
                continue
            return total, seen, steps, skipped, status
        _update(opt, theta, grad, state, lr, hyper, t + steps + 1, arch)
        total += batch_loss
        seen += B
        steps += 1
    return total, seen, steps, skipped, OK
