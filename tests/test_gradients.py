"""Backpropagated gradients against three oracles: central differences, a naive
NumPy network, and PyTorch autograd (float64 and float32)."""

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backprop_numba import MLP, check_gradients

from oracles import (
    FD_EPS,
    FD_RTOL,
    RTOL_TORCH,
    flat,
    naive_jacobian,
    naive_loss_and_gradients,
    rel_error,
    torch_input_gradient,
    torch_loss_and_gradients,
)

HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "identity"]
# Every (loss, output activation) pair the library accepts.
PAIRS = [(loss, out) for loss in ("sse", "half_sse", "mse") for out in ("sigmoid", "tanh", "relu", "leaky_relu", "identity", "softmax")]
PAIRS += [("bce", "sigmoid"), ("cross_entropy", "softmax")]


def make_targets(rng, loss, B, n_out):
    if loss == "bce":
        return rng.uniform(size=(B, n_out))
    if loss == "cross_entropy":
        return np.eye(n_out)[rng.integers(0, n_out, size=B)]
    return rng.normal(size=(B, n_out))


def random_net(sizes, hidden, out, loss, rng, dtype=np.float64):
    """A network with its usual initial weights and random non-zero biases, so that no
    relu sits exactly at its kink z = 0 (where no derivative exists)."""
    net = MLP(sizes, activation=hidden, output_activation=out, loss=loss, seed=int(rng.integers(2**31)),
              dtype=dtype)
    for b in net.biases:
        b[...] = rng.normal(scale=0.5, size=b.shape)
    return net


def params64(net):
    return [W.astype(np.float64) for W in net.weights], [b.astype(np.float64) for b in net.biases]


@pytest.mark.parametrize("loss,out", PAIRS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_every_loss_and_activation_against_all_oracles(loss, out, hidden):
    rng = np.random.default_rng(zlib.crc32(f"{loss}-{out}-{hidden}".encode()))
    sizes = [5, 4, 1, 3] if out != "softmax" else [5, 4, 3, 3]
    net = random_net(sizes, hidden, out, loss, rng)
    X = rng.normal(size=(6, sizes[0]))
    Y = make_targets(rng, loss, 6, sizes[-1])

    value, grads = net.loss_and_gradients(X, Y)
    Ws, bs = params64(net)

    # (a) central finite differences over every parameter
    fd = check_gradients(net, X, Y, eps=FD_EPS)
    assert fd.rel_error < FD_RTOL, fd.rel_error
    # (b) the naive per-sample NumPy network: same loss, same gradients
    ref_value, ref_grads = naive_loss_and_gradients(Ws, bs, net.activations, loss, X, Y)
    assert value == pytest.approx(ref_value, rel=1e-12)
    assert rel_error(flat(grads), flat(ref_grads)) < 1e-12
    # (c) PyTorch autograd, float64
    t_value, t_grads = torch_loss_and_gradients(Ws, bs, net.activations, loss, X, Y)
    assert value == pytest.approx(t_value, rel=1e-12)
    assert rel_error(flat(grads), flat(t_grads)) < RTOL_TORCH[np.float64]


@st.composite
def problems(draw):
    """A random architecture (1-5 weight layers, widths 1-64), batch (1-64) and loss."""
    loss, out = draw(st.sampled_from(PAIRS))
    L = draw(st.integers(1, 5))
    widths = draw(st.lists(st.integers(1, 64), min_size=L + 1, max_size=L + 1))
    if out == "softmax":
        widths[-1] = max(widths[-1], 2)
    hidden = draw(st.lists(st.sampled_from(HIDDEN), min_size=L - 1, max_size=L - 1))
    B = draw(st.integers(1, 64))
    seed = draw(st.integers(0, 2**31 - 1))
    return widths, hidden, out, loss, B, seed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_random_architectures_match_torch_and_finite_differences(problem):
    sizes, hidden, out, loss, B, seed = problem
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, sizes[0]))
    Y = make_targets(rng, loss, B, sizes[-1])

    net = random_net(sizes, hidden, out, loss, rng)
    value, grads = net.loss_and_gradients(X, Y)
    g = flat(grads)
    Ws, bs = params64(net)
    t_value, t_grads = torch_loss_and_gradients(Ws, bs, net.activations, loss, X, Y)
    assert value == pytest.approx(t_value, rel=1e-10, abs=1e-12)
    assert rel_error(g, flat(t_grads)) < RTOL_TORCH[np.float64]

    # Central differences on up to 64 coordinates (each costs two passes over the
    # batch); the error is measured against the norm of the whole gradient, plus
    # the round-off of the differences themselves: each loss value carries about
    # machine-eps * |C| of rounding, so each difference quotient about that / FD_EPS
    # (it dominates when the gradient is tiny next to the loss).
    idx = np.sort(rng.choice(g.size, size=min(64, g.size), replace=False))
    fd = check_gradients(net, X, Y, eps=FD_EPS, indices=idx)
    roundoff = np.sqrt(idx.size) * 8 * np.finfo(np.float64).eps * max(abs(value), 1.0) / FD_EPS
    assert np.linalg.norm(fd.analytic - fd.numeric) <= FD_RTOL * np.linalg.norm(g) + roundoff

    # The same network in float32 against torch in float32.
    net32 = MLP.from_weights(net.weights, net.biases, activation=hidden, output_activation=out, loss=loss,
                             dtype=np.float32)
    value32, grads32 = net32.loss_and_gradients(X, Y)
    assert isinstance(value32, float) and grads32[0][0].dtype == np.float32
    W32 = [W.astype(np.float32) for W in Ws]
    b32 = [b.astype(np.float32) for b in bs]
    _, t32 = torch_loss_and_gradients(W32, b32, net.activations, loss, X.astype(np.float32),
                                      Y.astype(np.float32), dtype=np.float32)
    assert rel_error(flat(grads32), flat(t32)) < RTOL_TORCH[np.float32]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.lists(st.integers(1, 32), min_size=5, max_size=5),
       st.sampled_from(HIDDEN), st.sampled_from(["sigmoid", "tanh", "identity"]), st.integers(0, 2**31 - 1))
def test_input_gradient_matches_torch_and_jacobian(L, widths, hidden, out, seed):
    rng = np.random.default_rng(seed)
    sizes = widths[:L] + [1]
    net = random_net(sizes, hidden, out, "mse", rng)
    x = rng.normal(size=sizes[0])
    gx = net.input_gradient(x)
    Ws, bs = params64(net)
    assert rel_error(gx, torch_input_gradient(Ws, bs, net.activations, x)) < 1e-10
    assert rel_error(gx, naive_jacobian(Ws, bs, net.activations, x)[0]) < 1e-10
    # the batched form gives the same rows
    Xb = rng.normal(size=(3, sizes[0]))
    Gb = net.input_gradient(Xb)
    for s in range(3):
        np.testing.assert_allclose(Gb[s], net.input_gradient(Xb[s]), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("out", ["sigmoid", "softmax", "identity", "tanh"])
def test_jacobian_and_vjp_match_naive_jacobian(out):
    rng = np.random.default_rng(7)
    net = random_net([6, 5, 4, 3], "tanh", out, "mse", rng)
    Ws, bs = params64(net)
    X = rng.normal(size=(4, 6))
    J = net.jacobian(X)
    assert J.shape == (4, 3, 6)
    for s in range(4):
        ref = naive_jacobian(Ws, bs, net.activations, X[s])
        np.testing.assert_allclose(J[s], ref, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(net.jacobian(X[s]), ref, rtol=1e-10, atol=1e-13)
        v = rng.normal(size=3)
        np.testing.assert_allclose(net.vjp(X[s], v), v @ ref, rtol=1e-10, atol=1e-13)
    # finite differences of the forward pass, column by column
    x = X[0]
    eps = 1e-6
    fd = np.stack([(net.forward(x + eps * e) - net.forward(x - eps * e)) / (2 * eps) for e in np.eye(6)], axis=1)
    assert rel_error(J[0], fd) < 1e-8


def test_float32_network_end_to_end_keeps_its_dtype():
    rng = np.random.default_rng(3)
    net = MLP([8, 6, 3], activation="relu", output_activation="softmax", loss="cross_entropy", seed=0,
              dtype=np.float32)
    X = rng.normal(size=(10, 8))  # float64 in, float32 out
    Y = rng.integers(0, 3, size=10)
    assert net.theta.dtype == np.float32
    assert net.forward(X).dtype == np.float32
    assert net.forward(X[0]).shape == (3,)
    loss, grads = net.loss_and_gradients(X, Y)
    assert all(dW.dtype == np.float32 and db.dtype == np.float32 for dW, db in grads)
    assert net.jacobian(X[0]).dtype == np.float32
    history = net.fit(X, Y, epochs=3, batch_size=4, progress=False)
    assert net.theta.dtype == np.float32 and len(history["loss"]) == 3
    # float32 gradients agree with float64 ones to float32 precision
    net64 = MLP.from_weights(net.weights, net.biases, activation="relu", output_activation="softmax",
                             loss="cross_entropy", dtype=np.float64)
    _, g64 = net64.loss_and_gradients(X, Y)
    _, g32 = net.loss_and_gradients(X, Y)
    assert rel_error(flat(g32), flat(g64)) < 1e-5


def test_gradient_checker_catches_a_wrong_gradient(monkeypatch):
    """The oracle must be able to fail: corrupt one gradient entry and it notices."""
    rng = np.random.default_rng(0)
    net = random_net([3, 4, 2], "tanh", "sigmoid", "bce", rng)
    X, Y = rng.normal(size=(5, 3)), rng.uniform(size=(5, 2))
    assert check_gradients(net, X, Y)
    original = MLP._loss_and_flat_gradient

    def corrupted(self, X, Y):
        value, grad = original(self, X, Y)
        grad[2] += 1e-3
        return value, grad

    monkeypatch.setattr(MLP, "_loss_and_flat_gradient", corrupted)
    result = check_gradients(net, X, Y)
    assert not result and result.rel_error > 1e-4
