"""The worked examples of the derivation notes in shared/seeds, reproduced literally.

Each test recomputes the note's intermediate quantities with its own notation
(plain NumPy, independent of the kernels) and compares the library with them.
"""

import numpy as np
import pytest

from backprop_numba import MLP


def sigma(z):
    # seed 004 prints 1/(1 - e^{-z}); its derivative a(1 - a) is that of 1/(1 + e^{-z}).
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------
# seed 004: the 4-3-2-1 sigmoid network with binary cross-entropy, row vectors
# --------------------------------------------------------------------------

def seed004_network(rng):
    W = {1: rng.normal(size=(4, 3)), 2: rng.normal(size=(3, 2)), 3: rng.normal(size=(2, 1))}  # rows = inputs
    b = {1: rng.normal(size=(1, 3)), 2: rng.normal(size=(1, 2)), 3: rng.normal(size=(1, 1))}
    return W, b


def seed004_net(W, b):
    """The library's network from the note's row-convention parameters."""
    return MLP.from_weights([W[1], W[2], W[3]], [b[1][0], b[2][0], b[3][0]], layout="row",
                            activation="sigmoid", output_activation="sigmoid", loss="bce")


def seed004_by_hand(W, b, x, y):
    """Every g[..] of seed 004 for one sample, in the note's row convention."""
    a0 = x.reshape(1, 4)                 # a[0] = [x1 x2 x3 x4], 1x4
    z1 = a0 @ W[1] + b[1]; a1 = sigma(z1)   # 1x3
    z2 = a1 @ W[2] + b[2]; a2 = sigma(z2)   # 1x2
    z3 = a2 @ W[3] + b[3]; a3 = sigma(z3)   # 1x1, y-hat
    loss = -((1 - y) * np.log(1 - a3) + y * np.log(a3)).item()
    g = {}
    g["3z"] = a3 - y                     # g[3z] = a - y
    g["3W"] = a2.T @ g["3z"]             # g[3W] = a[2]^T g[3z], 2x1
    g["3b"] = g["3z"]
    g["2a"] = g["3z"] @ W[3].T           # g[2a] = g[3z] W[3]^T, 1x2
    g["2z"] = a2 * (1 - a2) * g["2a"]    # g[2z] = g_h'(z[2]) o g[2a]
    g["2W"] = a1.T @ g["2z"]             # g[2W] = a[1]^T g[2z], 3x2
    g["2b"] = g["2z"]
    g["1a"] = g["2z"] @ W[2].T           # g[1a] = g[2z] W[2]^T, 1x3
    g["1z"] = a1 * (1 - a1) * g["1a"]    # g[1z] = g_h'(z[1]) o g[1a]
    g["1W"] = a0.T @ g["1z"]             # g[1W] = a[0]^T g[1z], 4x3
    g["1b"] = g["1z"]
    return loss, a3, g


def test_seed004_sigmoid_bce_chain_collapses_to_a_minus_y():
    """Seed 004 derives dL/dz[3] = a - y from dL/da = -y/a + (1-y)/(1-a) and a' = a(1-a)."""
    for a, y in [(0.3, 1.0), (0.9, 0.0), (0.5, 0.25)]:
        dL_da = -y / a + (1 - y) / (1 - a)
        assert dL_da * a * (1 - a) == pytest.approx(a - y, rel=1e-14)


def test_seed004_every_intermediate_gradient():
    rng = np.random.default_rng(4)
    W, b = seed004_network(rng)
    x, y = rng.normal(size=4), 1.0
    loss, a3, g = seed004_by_hand(W, b, x, y)

    net = seed004_net(W, b)
    assert net.layer_sizes == [4, 3, 2, 1]
    assert net.forward(x) == pytest.approx(a3.ravel(), rel=1e-14)
    value, grads = net.loss_and_gradients(x, [y])
    assert value == pytest.approx(loss, rel=1e-13)
    # The library returns column-convention gradients: dW_col = (g[lW])^T.
    for l in (1, 2, 3):
        dW, db = grads[l - 1]
        np.testing.assert_allclose(dW, g[f"{l}W"].T, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(db, g[f"{l}b"].ravel(), rtol=1e-12, atol=1e-15)


def test_seed004_batch_gradient_is_the_mean_of_sample_gradients():
    rng = np.random.default_rng(40)
    W, b = seed004_network(rng)
    X, Y = rng.normal(size=(5, 4)), rng.uniform(size=5)
    net = seed004_net(W, b)
    value, grads = net.loss_and_gradients(X, Y)
    per_sample = [seed004_by_hand(W, b, x, y) for x, y in zip(X, Y)]
    assert value == pytest.approx(np.mean([p[0] for p in per_sample]), rel=1e-13)
    for l in (1, 2, 3):
        mean_gW = np.mean([p[2][f"{l}W"] for p in per_sample], axis=0)
        np.testing.assert_allclose(grads[l - 1][0], mean_gW.T, rtol=1e-12, atol=1e-15)


def test_seed004_gradient_descent_step():
    """W <- W - eta dL/dW, b <- b - eta dL/db (seed 004's update; seed 002 "update")."""
    rng = np.random.default_rng(41)
    W, b = seed004_network(rng)
    x, y = rng.normal(size=4), 0.0
    _, _, g = seed004_by_hand(W, b, x, y)
    net = seed004_net(W, b)
    eta = 0.5
    net.fit(x[None, :], [y], epochs=1, batch_size=1, learning_rate=eta, optimizer="sgd", shuffle=False,
            progress=False)
    for l in (1, 2, 3):
        np.testing.assert_allclose(net.weights[l - 1], (W[l] - eta * g[f"{l}W"]).T, rtol=1e-13)
        np.testing.assert_allclose(net.biases[l - 1], (b[l] - eta * g[f"{l}b"]).ravel(), rtol=1e-13)


# --------------------------------------------------------------------------
# seed 003: squared error, sigma everywhere; the scalar chain and 784-16-10
# --------------------------------------------------------------------------

def test_seed003_single_neuron_chain_eqs_1_to_9():
    """C = (a - y)^2, a = sigma(z), z = w a_prev + b: dC/dw = a_prev sigma'(z) 2(a - y) (eq. 8),
    dC/db = sigma'(z) 2(a - y) (eq. 9)."""
    w, bias, a_prev, y = 0.7, -0.2, 0.9, 1.0
    z = w * a_prev + bias
    a = sigma(z)
    net = MLP.from_weights([[[w]]], [[bias]], activation="sigmoid", output_activation="sigmoid", loss="sse")
    value, [(dW, db)] = net.loss_and_gradients([a_prev], [y])
    assert value == pytest.approx((a - y) ** 2, rel=1e-14)                        # eq. (1)
    assert dW[0, 0] == pytest.approx(a_prev * a * (1 - a) * 2 * (a - y), rel=1e-13)  # eq. (8)
    assert db[0] == pytest.approx(1 * a * (1 - a) * 2 * (a - y), rel=1e-13)         # eq. (9)


def test_seed003_784_16_10_per_index_formulas():
    rng = np.random.default_rng(3)
    net = MLP([784, 16, 10], activation="sigmoid", output_activation="sigmoid", loss="sse", seed=3)
    W1, b1 = net.weights[0], net.biases[0]   # the note's w^(1): 16x784
    W2, b2 = net.weights[1], net.biases[1]   # w^(2): 10x16
    a0 = rng.uniform(0, 1, size=784)         # an image scaled to [0, 1]
    y = np.eye(10)[7]

    z1 = W1 @ a0 + b1; a1 = sigma(z1)        # eqs. (15), (16)
    z2 = W2 @ a1 + b2; a2 = sigma(z2)        # eqs. (17), (18)
    C = np.sum((a2 - y) ** 2)                # eq. (19)
    s2 = a2 * (1 - a2)                       # sigma^(2)'(z^(2))
    s1 = a1 * (1 - a1)

    # eq. (22): dC/dw2_jk = a1_k sigma'(z2_j) 2(a2_j - y_j);  eq. (24): dC/db2_j = sigma'(z2_j) 2(a2_j - y_j)
    dW2 = np.empty((10, 16)); db2 = np.empty(10)
    for j in range(10):
        db2[j] = s2[j] * 2 * (a2[j] - y[j])
        for k in range(16):
            dW2[j, k] = a1[k] * s2[j] * 2 * (a2[j] - y[j])
    # eq. (29): dC/da1_j = sum_m w2_mj sigma'(z2_m) 2(a2_m - y_m)
    dC_da1 = np.array([sum(W2[m, j] * s2[m] * 2 * (a2[m] - y[m]) for m in range(10)) for j in range(16)])
    # eq. (26): dC/dw1_jk = a0_k sigma'(z1_j) dC/da1_j
    dW1 = np.empty((16, 784))
    for j in range(16):
        dW1[j, :] = a0 * s1[j] * dC_da1[j]
    db1 = s1 * dC_da1

    value, [(gW1, gb1), (gW2, gb2)] = net.loss_and_gradients(a0, y)
    assert value == pytest.approx(C, rel=1e-13)
    np.testing.assert_allclose(gW2, dW2, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(gb2, db2, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(gW1, dW1, rtol=1e-11, atol=1e-16)
    np.testing.assert_allclose(gb1, db1, rtol=1e-11, atol=1e-16)


# --------------------------------------------------------------------------
# seeds 000/001: the gradient of a single-output network with respect to x
# --------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [[5, 4, 3, 1], [3, 1], [2, 7, 1], [6, 5, 4, 3, 1]])
def test_seeds_000_001_input_gradient_recursion(sizes):
    rng = np.random.default_rng(len(sizes))
    net = MLP(sizes, activation="sigmoid", output_activation="sigmoid", seed=1)
    for b in net.biases:
        b[...] = rng.normal(size=b.shape)
    x = rng.normal(size=sizes[0])

    # The notes number the input layer 1: W[l], b[l] for l = 2..L, a[1] = x.
    L = len(sizes)
    W = {l: net.weights[l - 2] for l in range(2, L + 1)}
    b = {l: net.biases[l - 2] for l in range(2, L + 1)}
    a, z = {1: x}, {}
    for l in range(2, L + 1):                     # forward pass: z[l] = W[l] a[l-1] + b[l]
        z[l] = W[l] @ a[l - 1] + b[l]
        a[l] = sigma(z[l])
    g = {L: a[L] * (1 - a[L])}                     # g[L] = sigma'(z[L])
    for l in range(L - 1, 1, -1):                  # (*): g[l] = (W[l+1]^T g[l+1]) . sigma'(z[l])
        g[l] = (W[l + 1].T @ g[l + 1]) * a[l] * (1 - a[l])
    grad = g[2] @ W[2]                             # (**): grad_x a[L] = (g[2])^T W[2]

    np.testing.assert_allclose(net.input_gradient(x), grad, rtol=1e-12, atol=1e-16)
    eps = 1e-6
    fd = np.array([(net.forward(x + eps * e)[0] - net.forward(x - eps * e)[0]) / (2 * eps)
                   for e in np.eye(sizes[0])])
    np.testing.assert_allclose(net.input_gradient(x), fd, rtol=1e-6, atol=1e-10)
