"""Slow, obvious references the library is tested against (cf. stumpy's tests/naive.py).

Nothing here imports backprop_numba's kernels: a per-sample NumPy network in
the style of Nielsen's network.py, and the same network in PyTorch float64/32.
Both take the column-convention parameters ``Ws[l-1]`` of shape (n[l], n[l-1])
and ``bs[l-1]`` of shape (n[l],), l = 1..L.
"""

import numpy as np

# Named tolerances (STYLE R14).
RTOL_TORCH = {np.float64: 1e-9, np.float32: 1e-4}
FD_EPS, FD_RTOL = 1e-6, 1e-6


def rel_error(a, b):
    """Norm-wise relative error ||a - b|| / (||a|| + ||b||)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denom == 0 else float(np.linalg.norm(a - b) / denom)


def flat(grads):
    """[(dW, db), ...] -> one vector (W[1], b[1], W[2], ...), like MLP.theta."""
    return np.concatenate([np.concatenate([dW.ravel(), db.ravel()]) for dW, db in grads])


# -- naive NumPy network ------------------------------------------------------

# leaky_relu's slope for z < 0: PyTorch's and Keras' default (written here, not
# imported, so the oracle does not lean on the library).
LEAKY_SLOPE = 0.01

def g(name, z):
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, LEAKY_SLOPE * z)
    if name == "identity":
        return z.copy()
    if name == "softmax":
        e = np.exp(z - z.max())
        return e / e.sum()
    raise ValueError(name)


def g_jacobian(name, z):
    """d g(z) / dz as a matrix (diagonal except for softmax)."""
    a = g(name, z)
    if name == "softmax":
        return np.diag(a) - np.outer(a, a)
    if name == "sigmoid":
        d = a * (1 - a)
    elif name == "tanh":
        d = 1 - a ** 2
    elif name == "relu":
        d = (z > 0).astype(float)
    elif name == "leaky_relu":
        d = np.where(z > 0, 1.0, LEAKY_SLOPE)
    else:
        d = np.ones_like(z)
    return np.diag(d)


def loss_value(loss, a, y):
    """Per-sample loss straight from the definitions in SPEC section 1."""
    if loss == "sse":
        return np.sum((a - y) ** 2)
    if loss == "half_sse":
        return 0.5 * np.sum((y - a) ** 2)
    if loss == "mse":
        return np.mean((a - y) ** 2)
    if loss == "bce":
        return -np.sum((1 - y) * np.log(1 - a) + y * np.log(a))
    if loss == "cross_entropy":
        return -np.sum(y * np.log(a))
    raise ValueError(loss)


def loss_grad_a(loss, a, y):
    """dC/da for one sample, straight from the definitions (no fused shortcut)."""
    if loss == "sse":
        return 2 * (a - y)
    if loss == "half_sse":
        return a - y
    if loss == "mse":
        return 2 * (a - y) / a.size
    if loss == "bce":
        return -(y / a) + (1 - y) / (1 - a)
    if loss == "cross_entropy":
        return -y / a
    raise ValueError(loss)


def naive_forward(Ws, bs, acts, x):
    """Lists z[1..L], a[0..L] for one sample x (loops over layers, NumPy inside)."""
    a, zs = [np.asarray(x, dtype=np.float64)], []
    for W, b, act in zip(Ws, bs, acts):
        z = W @ a[-1] + b
        zs.append(z)
        a.append(g(act, z))
    return zs, a


def naive_loss_and_gradients(Ws, bs, acts, loss, X, Y):
    """Mean loss and [(dW, db)] by the textbook chain rule, sample by sample."""
    L = len(Ws)
    total = 0.0
    gW = [np.zeros_like(W, dtype=np.float64) for W in Ws]
    gb = [np.zeros_like(b, dtype=np.float64) for b in bs]
    for x, y in zip(X, Y):
        zs, a = naive_forward(Ws, bs, acts, x)
        total += loss_value(loss, a[-1], y)
        # delta[L] = J_g(z[L])^T dC/da[L]
        delta = g_jacobian(acts[-1], zs[-1]).T @ loss_grad_a(loss, a[-1], y)
        for l in range(L, 0, -1):
            gW[l - 1] += np.outer(delta, a[l - 1])
            gb[l - 1] += delta
            if l > 1:
                delta = g_jacobian(acts[l - 2], zs[l - 2]).T @ (Ws[l - 1].T @ delta)
    B = len(X)
    return total / B, [(dW / B, db / B) for dW, db in zip(gW, gb)]


def naive_jacobian(Ws, bs, acts, x):
    """d a[L] / d x by multiplying layer Jacobians: J = prod_l J_g(z[l]) W[l]."""
    zs, _ = naive_forward(Ws, bs, acts, x)
    J = np.eye(len(x))
    for W, z, act in zip(Ws, zs, acts):
        J = g_jacobian(act, z) @ W @ J
    return J


# -- PyTorch ------------------------------------------------------------------

def torch_loss_and_gradients(Ws, bs, acts, loss, X, Y, dtype=np.float64):
    """Mean loss and [(dW, db)] from torch.autograd, in the given precision."""
    import torch

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    params = []
    for W, b in zip(Ws, bs):
        params.append(torch.tensor(np.asarray(W), dtype=tdtype, requires_grad=True))
        params.append(torch.tensor(np.asarray(b), dtype=tdtype, requires_grad=True))
    a = torch.tensor(np.asarray(X), dtype=tdtype)
    y = torch.tensor(np.asarray(Y), dtype=tdtype)
    z = None
    for l, act in enumerate(acts):
        z = a @ params[2 * l].T + params[2 * l + 1]
        a = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
             "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, LEAKY_SLOPE),
             "identity": lambda t: t, "softmax": lambda t: torch.softmax(t, dim=1)}[act](z)
    B = a.shape[0]
    if loss == "sse":
        value = ((a - y) ** 2).sum() / B
    elif loss == "half_sse":
        value = 0.5 * ((y - a) ** 2).sum() / B
    elif loss == "mse":
        value = ((a - y) ** 2).mean(dim=1).mean()
    elif loss == "bce":
        value = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="sum") / B
    elif loss == "cross_entropy":
        value = -(y * torch.log_softmax(z, dim=1)).sum() / B
    else:
        raise ValueError(loss)
    grads = torch.autograd.grad(value, params)
    out = [(grads[2 * l].numpy(), grads[2 * l + 1].numpy()) for l in range(len(acts))]
    return float(value.detach()), out


def torch_input_gradient(Ws, bs, acts, x, dtype=np.float64):
    """torch.autograd.grad of the single output with respect to the input."""
    import torch

    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    xt = torch.tensor(np.asarray(x), dtype=tdtype, requires_grad=True)
    a = xt
    for W, b, act in zip(Ws, bs, acts):
        z = torch.tensor(np.asarray(W), dtype=tdtype) @ a + torch.tensor(np.asarray(b), dtype=tdtype)
        a = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
             "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, LEAKY_SLOPE),
             "identity": lambda t: t, "softmax": lambda t: torch.softmax(t, dim=0)}[act](z)
    (gx,) = torch.autograd.grad(a.sum(), xt)
    return gx.numpy()
