"""Inverted dropout on hidden layers, in training only.

Oracles: PyTorch's gradients with the same masks applied (the masks are
exposed by ``training.dropout_masks``), the network without dropout (rate 0
trains bit for bit like it), and the run itself (same seed, same parameters;
a resumed run equals an uninterrupted one).
"""

import numpy as np
import pytest

from backprop_numba import MLP
from backprop_numba.training import dropout_masks

torch = pytest.importorskip("torch")


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    return X, np.stack([np.tanh(X[:, 0] - X[:, 1]), X[:, 2] * 0.5], axis=1)


@pytest.mark.parametrize("hidden, rates", [("tanh", 0.3), ("relu", [0.5, 0.2]), ("sigmoid", [0.0, 0.4]),
                                           ("leaky_relu", 0.25)])
def test_gradients_with_a_given_mask_match_torch(hidden, rates):
    X, Y = _data(9)
    net = MLP([5, 7, 6, 2], activation=hidden, seed=1, dropout=rates)
    for b in net.biases:
        b[...] = 0.3
    seed = 12345
    value, grad = net._loss_and_flat_gradient(np.ascontiguousarray(X), np.ascontiguousarray(Y), drop_seed=seed)
    masks = dropout_masks(net, seed, len(X))
    assert any((m == 0).any() for m in masks) or not any(net.dropout)
    act = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
           "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, 0.01)}[hidden]
    params, a = [], torch.tensor(X)
    for l in range(1, net.n_layers + 1):
        W = torch.tensor(net.W(l).copy(), requires_grad=True)
        b = torch.tensor(net.b(l).copy(), requires_grad=True)
        params += [W, b]
        z = a @ W.T + b
        if l < net.n_layers:
            a = act(z) * torch.tensor(masks[l - 1]) / (1.0 - net.dropout[l - 1])
        else:
            a = z
    ref = ((a - torch.tensor(Y)) ** 2).mean()
    ref_grads = torch.autograd.grad(ref, params)
    assert value == pytest.approx(float(ref.detach()), rel=1e-12)
    np.testing.assert_allclose(grad, np.concatenate([g.numpy().ravel() for g in ref_grads]), rtol=1e-10, atol=1e-13)


def test_rate_zero_trains_bit_identically_and_inference_never_drops():
    X, Y = _data()
    a, b = MLP([5, 8, 2], seed=0), MLP([5, 8, 2], seed=0, dropout=0.0)
    kw = dict(epochs=3, batch_size=8, learning_rate=0.05, optimizer="adam", seed=4, progress=False)
    assert a.fit(X, Y, **kw)["loss"] == b.fit(X, Y, **kw)["loss"]
    assert a.theta.tobytes() == b.theta.tobytes()
    c = MLP([5, 8, 2], seed=0, dropout=0.5)
    c.theta[...] = a.theta
    np.testing.assert_array_equal(c.predict(X), a.predict(X))
    assert c.loss_and_gradients(X, Y)[0] == a.loss_and_gradients(X, Y)[0]


def test_same_seed_same_parameters_and_resume(tmp_path):
    X, Y = _data(200)
    kw = dict(batch_size=16, learning_rate=0.05, optimizer="adam", seed=7, progress=False)
    runs = [MLP([5, 16, 16, 2], seed=0, dropout=[0.3, 0.1]) for _ in range(3)]
    h0 = runs[0].fit(X, Y, epochs=6, **kw)
    h1 = runs[1].fit(X, Y, epochs=6, **kw)
    assert runs[0].theta.tobytes() == runs[1].theta.tobytes() and h0["loss"] == h1["loss"]
    plain = MLP([5, 16, 16, 2], seed=0)
    plain.fit(X, Y, epochs=6, **kw)
    assert plain.theta.tobytes() != runs[0].theta.tobytes()  # dropout did act
    path = str(tmp_path / "c.npz")
    runs[2].fit(X, Y, epochs=3, checkpoint_every=3, checkpoint_path=path, **kw)
    again = MLP([5, 16, 16, 2], seed=0, dropout=[0.3, 0.1])
    again.fit(X, Y, epochs=6, resume_from=path, **kw)
    assert again.theta.tobytes() == runs[0].theta.tobytes()


def test_dropout_is_saved_and_checked(tmp_path):
    net = MLP([3, 4, 4, 1], dropout=[0.2, 0.5])
    net.save(tmp_path / "n.npz")
    assert MLP.load(tmp_path / "n.npz").dropout == [0.2, 0.5]
    assert "dropout=[0.2, 0.5]" in repr(net)
    for bad, error in ((1.0, ValueError), (-0.1, ValueError), ([0.1], ValueError), ("0.5", TypeError)):
        with pytest.raises(error, match="dropout"):
            MLP([3, 4, 4, 1], dropout=bad)
