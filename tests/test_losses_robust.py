"""huber, mae and poisson (with the exp output) against PyTorch and central differences.

Per sample the mean over outputs, per batch the mean over samples: the same as
``torch.nn.HuberLoss(delta)``, ``L1Loss`` and ``PoissonNLLLoss(log_input=True)``
with ``reduction="mean"`` (the log rate being the output layer's ``z``).
"""

import numpy as np
import pytest

from backprop_numba import MLP, check_gradients

torch = pytest.importorskip("torch")

RTOL = {np.float64: 1e-10, np.float32: 1e-4}


def _torch_loss_and_grads(net, X, Y, loss, delta):
    params = []
    a = torch.tensor(X, dtype=torch.float64)
    for l in range(1, net.n_layers + 1):
        W = torch.tensor(net.W(l).astype(np.float64), requires_grad=True)
        b = torch.tensor(net.b(l).astype(np.float64), requires_grad=True)
        params += [W, b]
        z = a @ W.T + b
        act = net.activations[l - 1]
        a = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "identity": lambda t: t, "exp": torch.exp,
             "relu": torch.relu}[act](z)
    y = torch.tensor(Y, dtype=torch.float64)
    if loss == "huber":
        value = torch.nn.HuberLoss(delta=delta)(a, y)
    elif loss == "mae":
        value = torch.nn.L1Loss()(a, y)
    else:
        value = torch.nn.PoissonNLLLoss(log_input=True, full=False)(z, y)
    grads = torch.autograd.grad(value, params)
    return float(value.detach()), [g.numpy() for g in grads]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss, out, delta", [("huber", "identity", 1.0), ("huber", "identity", 0.3),
                                              ("huber", "sigmoid", 0.1), ("mae", "identity", 1.0),
                                              ("mae", "tanh", 1.0), ("poisson", "exp", 1.0)])
def test_against_torch(loss, out, delta, dtype):
    rng = np.random.default_rng(7)
    net = MLP([4, 6, 3], activation="tanh", output_activation=out, loss=loss, seed=2, dtype=dtype,
              huber_delta=delta)
    X = rng.normal(size=(9, 4))
    Y = rng.poisson(2.0, size=(9, 3)).astype(float) if loss == "poisson" else rng.normal(scale=2, size=(9, 3))
    value, grads = net.loss_and_gradients(X, Y)
    ref_value, ref = _torch_loss_and_grads(net, X.astype(dtype), Y.astype(dtype), loss, delta)
    assert value == pytest.approx(ref_value, rel=RTOL[dtype])
    ours = [g for pair in grads for g in pair]
    for g, r in zip(ours, ref):
        np.testing.assert_allclose(g, r, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-2)
    assert net.loss_value(X, Y) == pytest.approx(ref_value, rel=RTOL[dtype])


@pytest.mark.parametrize("loss, out", [("huber", "identity"), ("mae", "identity"), ("poisson", "exp")])
def test_central_differences(loss, out):
    rng = np.random.default_rng(1)
    net = MLP([3, 5, 2], activation="tanh", output_activation=out, loss=loss, seed=0, huber_delta=0.5)
    X = rng.normal(size=(6, 3))
    Y = rng.poisson(1.5, size=(6, 2)).astype(float) if loss == "poisson" else rng.normal(size=(6, 2))
    assert check_gradients(net, X, Y)


def test_poisson_trains_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    Y = rng.poisson(np.exp(0.5 * X[:, :1] - 0.3 * X[:, 1:]))
    net = MLP([2, 8, 1], activation="tanh", output_activation="exp", loss="poisson", seed=0)
    h = net.fit(X, Y, epochs=30, batch_size=20, learning_rate=0.05, optimizer="adam", progress=False)
    assert h["loss"][-1] < h["loss"][0]
    with pytest.raises(ValueError, match=r"output_activation must be 'exp' for loss='poisson'"):
        MLP([2, 1], loss="poisson", output_activation="identity")
    with pytest.raises(ValueError, match="must be counts or rates >= 0 for loss='poisson'"):
        net.loss_value(X, -Y - 1)
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP([2, 3, 1], activation="exp")
    with pytest.raises(ValueError, match="huber_delta must be > 0"):
        MLP([2, 1], loss="huber", huber_delta=0)
    huber = MLP([2, 3, 1], loss="huber", huber_delta=0.25, seed=1)
    huber.save(tmp_path / "h.npz")
    again = MLP.load(tmp_path / "h.npz")
    assert again.huber_delta == 0.25 and again.loss_value(X, Y) == huber.loss_value(X, Y)
    assert "huber_delta=0.25" in repr(huber)
