"""One convention inside, two at the boundary: row and column layouts agree."""

import numba
import numpy as np
import pytest

from backprop_numba import MLP
from backprop_numba import _kernels


def column_and_row_nets(rng, sizes, **kw):
    Ws = [rng.normal(size=(sizes[l], sizes[l - 1])) for l in range(1, len(sizes))]
    bs = [rng.normal(size=sizes[l]) for l in range(1, len(sizes))]
    col = MLP.from_weights(Ws, bs, layout="column", **kw)
    row = MLP.from_weights([W.T for W in Ws], bs, layout="row", **kw)
    return Ws, bs, col, row


@pytest.mark.parametrize("sizes", [[4, 3, 2, 1], [784, 16, 10], [3, 1], [1, 1, 1]])
def test_row_and_column_layouts_give_identical_results(sizes):
    rng = np.random.default_rng(sum(sizes))
    kw = dict(activation="sigmoid", output_activation="sigmoid", loss="half_sse")
    Ws, bs, col, row = column_and_row_nets(rng, sizes, **kw)
    np.testing.assert_array_equal(col.theta, row.theta)
    for W_net, W in zip(row.weights, Ws):
        np.testing.assert_array_equal(W_net, W)          # stored in the column convention
    X = rng.normal(size=(5, sizes[0]))
    Y = rng.uniform(size=(5, sizes[-1]))
    np.testing.assert_array_equal(col.forward(X), row.forward(X))
    lc, gc = col.loss_and_gradients(X, Y)
    lr_, gr = row.loss_and_gradients(X, Y)
    assert lc == lr_
    for (a, b), (c, d) in zip(gc, gr):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    # the row formula z = a W_row + b gives the same forward pass
    a = X
    for W, b in zip(Ws, bs):
        a = 1 / (1 + np.exp(-(a @ W.T + b)))
    np.testing.assert_allclose(col.forward(X), a, rtol=1e-13)


def test_weights_and_biases_are_views_into_theta():
    net = MLP([3, 2, 1], seed=0)
    assert net.weights[0].shape == (2, 3) and net.biases[0].shape == (2,)
    assert net.weights[1].shape == (1, 2) and net.biases[1].shape == (1,)
    assert net.theta.size == 2 * 3 + 2 + 1 * 2 + 1
    net.weights[0][1, 2] = 42.0
    assert 42.0 in net.theta
    assert net.layer_sizes == [3, 2, 1]


def test_seeded_initialisation_is_reproducible_and_scaled():
    a = MLP([50, 40, 30], activation="tanh", seed=5)
    b = MLP([50, 40, 30], activation="tanh", seed=5)
    c = MLP([50, 40, 30], activation="tanh", seed=6)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert not np.array_equal(a.theta, c.theta)
    bound = np.sqrt(6 / (50 + 40))                       # Glorot uniform for tanh
    assert np.abs(a.weights[0]).max() <= bound and np.abs(a.weights[0]).max() > 0.9 * bound
    assert np.all(a.biases[0] == 0)
    relu = MLP([50, 40, 30], activation="relu", seed=5)
    assert np.abs(relu.weights[0]).max() <= np.sqrt(6 / 50)  # He uniform


def test_kernels_only_ever_see_contiguous_arrays():
    """STYLE R15: no kernel was compiled for a non-contiguous ('A' layout) array."""
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        net = MLP([5, 4, 3], activation="relu", output_activation="softmax", loss="cross_entropy", seed=0,
                  dtype=dtype)
        X = rng.normal(size=(12, 10))[:, ::2]            # a strided view from the user
        Y = rng.integers(0, 3, size=12)
        net.forward(X); net.loss_and_gradients(X, Y); net.jacobian(X[0])
        net.fit(X, Y, epochs=1, batch_size=5, progress=False, optimizer="adam")
    compiled = 0
    for name in dir(_kernels):
        kernel = getattr(_kernels, name)
        if isinstance(kernel, numba.core.registry.CPUDispatcher):
            for sig in kernel.signatures:
                compiled += 1
                for arg in sig:
                    assert getattr(arg, "layout", "C") == "C", (name, sig)
    assert compiled > 0
