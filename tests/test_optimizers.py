"""Each optimizer step against torch.optim on the same parameters and gradients.

Each optimizer object (``optimizers.SGD``, ``Momentum``, ``Nesterov``,
``Adam``, ``RMSprop``) owns its hyper-parameters and state; its compiled rule,
through ``_kernels._update``, is called directly with a fixed
sequence of gradients; torch gets the same tensors as two parameter groups,
weights with ``weight_decay`` and biases without (the library decays weights
only).  float64, step by step, to 1e-12.
"""

import numpy as np
import pytest

from backprop_numba import MLP
from backprop_numba import _kernels as K
from backprop_numba import optimizers

torch = pytest.importorskip("torch")

TOL = 1e-12
STEPS = 25
SIZES = [5, 4, 3, 2]


NAMES = ["sgd", "momentum", "nesterov", "adam", "rmsprop"]


def _torch_optimizer(name, groups, lr, options):
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(groups, lr=lr, momentum=options["momentum"])
    if name == "nesterov":
        return torch.optim.SGD(groups, lr=lr, momentum=options["momentum"], nesterov=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=options["alpha"], eps=options["eps"])
    return torch.optim.Adam(groups, lr=lr, betas=(options["beta1"], options["beta2"]), eps=options["eps"])


def _run_both(name, weight_decay, lrs):
    net = MLP(SIZES, activation="tanh", seed=0)
    rng = np.random.default_rng(1)
    net.theta[...] = rng.normal(size=net.theta.shape)
    options = dict(momentum=0.8, beta1=0.85, beta2=0.99, eps=1e-7, alpha=0.9, weight_decay=weight_decay)
    opt_ours = optimizers.get_optimizer(name, options)
    hyper = opt_ours.hyper_array()
    state = opt_ours.new_state(net._n_params, np.float64)

    Ws = [torch.tensor(W.copy(), dtype=torch.float64, requires_grad=True) for W in net.weights]
    bs = [torch.tensor(b.copy(), dtype=torch.float64, requires_grad=True) for b in net.biases]
    groups = [{"params": Ws, "weight_decay": weight_decay}, {"params": bs, "weight_decay": 0.0}]
    opt = _torch_optimizer(name, groups, lrs[0], options)

    for t in range(1, len(lrs) + 1):
        grad = rng.normal(size=net.theta.shape) * rng.uniform(0.01, 3.0)
        views = net._unflatten(grad)
        for W, (dW, _) in zip(Ws, views):
            W.grad = torch.tensor(dW.copy())
        for b, (_, db) in zip(bs, views):
            b.grad = torch.tensor(db.copy())
        for g in opt.param_groups:
            g["lr"] = lrs[t - 1]
        opt.step()
        K._update(opt_ours.code, net.theta, grad, state, lrs[t - 1], hyper, t, net._arch, 1)
        for l in range(1, net.n_layers + 1):
            np.testing.assert_allclose(net.W(l), Ws[l - 1].detach().numpy(), rtol=0, atol=TOL,
                                       err_msg=f"{name} W[{l}] after step {t}")
            np.testing.assert_allclose(net.b(l), bs[l - 1].detach().numpy(), rtol=0, atol=TOL,
                                       err_msg=f"{name} b[{l}] after step {t}")
    return net, opt


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("name", NAMES)
def test_step_matches_torch(name, weight_decay):
    _run_both(name, weight_decay, [0.05] * STEPS)


@pytest.mark.parametrize("name", NAMES)
def test_step_matches_torch_with_changing_lr(name):
    """A schedule changes the learning rate between steps; both follow it the same way."""
    lrs = [0.1 * 0.9 ** (t // 5) for t in range(STEPS)]
    _run_both(name, 0.01, lrs)


def test_adam_state_matches_torch():
    """The moments themselves, not only the parameters."""
    net = MLP([2, 2], seed=0)
    adam = optimizers.Adam()
    state = adam.new_state(net._n_params, np.float64)
    hyper = adam.hyper_array()
    p = torch.tensor(net.theta.copy(), requires_grad=True)
    topt = torch.optim.Adam([p], lr=0.01)
    rng = np.random.default_rng(0)
    for t in range(1, 6):
        g = rng.normal(size=net.theta.shape)
        p.grad = torch.tensor(g.copy())
        topt.step()
        K._update(adam.code, net.theta, g, state, 0.01, hyper, t, net._arch, 1)
    s = topt.state[p]
    np.testing.assert_allclose(state[0], s["exp_avg"].numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(state[1], s["exp_avg_sq"].numpy(), rtol=0, atol=TOL)
    np.testing.assert_allclose(net.theta, p.detach().numpy(), rtol=0, atol=TOL)


@pytest.mark.parametrize("name", NAMES)
def test_fit_matches_torch_training_loop(name):
    """The whole compiled epoch (no shuffling) against a PyTorch training loop on the same net."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 4))
    y = (X[:, 0] * X[:, 1] > 0).astype(float)
    net = MLP([4, 3, 2, 1], activation="sigmoid", loss="bce", seed=5)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 2),
                                torch.nn.Sigmoid(), torch.nn.Linear(2, 1)).double()
    with torch.no_grad():
        for lin, W, b in zip([model[0], model[2], model[4]], net.weights, net.biases):
            lin.weight.copy_(torch.tensor(W))
            lin.bias.copy_(torch.tensor(b))
    lr, wd = 0.05, 0.01
    weights = [model[i].weight for i in (0, 2, 4)]
    biases = [model[i].bias for i in (0, 2, 4)]
    opt = _torch_optimizer(name, [{"params": weights, "weight_decay": wd}, {"params": biases, "weight_decay": 0.0}],
                           lr, optimizers.DEFAULTS)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    Xt, yt = torch.tensor(X), torch.tensor(y).reshape(-1, 1)
    epochs, batch = 5, 8
    for _ in range(epochs):
        for start in range(0, len(X), batch):
            opt.zero_grad()
            loss_fn(model(Xt[start:start + batch]), yt[start:start + batch]).backward()
            opt.step()
    net.fit(X, y, epochs=epochs, batch_size=batch, learning_rate=lr, optimizer=name, shuffle=False,
            weight_decay=wd, progress=False)
    for lin, W, b in zip([model[0], model[2], model[4]], net.weights, net.biases):
        np.testing.assert_allclose(W, lin.weight.detach().numpy(), rtol=0, atol=1e-10)
        np.testing.assert_allclose(b, lin.bias.detach().numpy(), rtol=0, atol=1e-10)


def test_weight_decay_leaves_biases_alone():
    net = MLP([3, 2], seed=0)
    net.theta[...] = np.random.default_rng(0).normal(size=net.theta.shape)
    theta0 = net.theta.copy()
    sgd = optimizers.SGD(weight_decay=0.5)
    K._update(sgd.code, net.theta, np.zeros_like(net.theta), sgd.new_state(net._n_params, np.float64), 0.1,
              sgd.hyper_array(), 1, net._arch, 1)
    before = MLP.from_weights([theta0[:6].reshape(2, 3)], [theta0[6:]])
    np.testing.assert_allclose(net.W(1), before.W(1) * (1 - 0.1 * 0.5), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(net.b(1), before.b(1))


# -- the optimizer objects -----------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_name_and_object_train_identically(name):
    """fit(optimizer="adam", beta1=...) and fit(optimizer=Adam(beta1=...)) are the same run, bit for bit."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(30, 4)), rng.normal(size=30)
    options = dict(momentum=0.7, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01)
    by_name = MLP([4, 5, 1], seed=1)
    by_name.fit(X, y, epochs=3, batch_size=7, learning_rate=0.02, optimizer=name, seed=0, progress=False, **options)
    obj = optimizers.get_optimizer(name, dict(options, alpha=0.99))
    by_object = MLP([4, 5, 1], seed=1)
    by_object.fit(X, y, epochs=3, batch_size=7, learning_rate=0.02, optimizer=obj, seed=0, progress=False)
    assert by_name.theta.tobytes() == by_object.theta.tobytes()


def test_hyper_parameters_are_read_by_named_slot():
    """hyper_array puts each value at the slot its rule reads; defaults come from PARAMS."""
    adam = optimizers.Adam(beta1=0.8, eps=1e-5)
    hyper = adam.hyper_array()
    assert hyper[optimizers.BETA1] == 0.8 and hyper[optimizers.BETA2] == 0.999
    assert hyper[optimizers.EPS] == 1e-5 and hyper[optimizers.WEIGHT_DECAY] == 0.0
    assert optimizers.RMSprop(alpha=0.5).hyper_array()[optimizers.ALPHA] == 0.5
    assert optimizers.Momentum(momentum=0.3).hyper_array()[optimizers.MU] == 0.3
    assert optimizers.Adam().params() == {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    assert [optimizers.CLASSES[n]().n_state for n in NAMES] == [0, 1, 1, 2, 1]


@pytest.mark.parametrize("make, match", [
    (lambda: optimizers.Adam(beta1=1.0), r"beta1 must be < 1.0"),
    (lambda: optimizers.Adam(eps=0), r"eps must be > 0.0"),
    (lambda: optimizers.RMSprop(alpha=-0.1), r"alpha must be >= 0.0"),
    (lambda: optimizers.Momentum(momentum="0.9"), r"momentum must be a real number"),
    (lambda: optimizers.SGD(weight_decay=-1), r"weight_decay must be >= 0.0"),
    (lambda: optimizers.Adam(momentum=0.9), r"Adam takes \['beta1', 'beta2', 'eps', 'weight_decay'\]"),
    (lambda: optimizers.get_optimizer("adagrad"), r"optimizer must be one of"),
])
def test_bad_hyper_parameters(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make()


def test_estimator_names_in_messages():
    """Callers with their own names for a hyper-parameter (scikit-learn's beta_1) see those names."""
    with pytest.raises(ValueError, match=r"beta_1 must be < 1.0"):
        optimizers.Adam.from_options({"beta1": 1.0}, names={"beta1": "beta_1"})
