"""Sample weights: a mini-batch's loss is sum_i s_i C_i / sum_i s_i (scikit-learn's and Keras' meaning).

Oracles: integer weights are repeated rows (full-batch gradient descent on
weights (2, 0, 3, ...) gives the parameters of unweighted training on the rows
repeated that many times; scikit-learn's own MLP passes the same identity, as a
cross-check of the test), and PyTorch's weighted losses and gradients.
"""

import numpy as np
import pytest

from backprop_numba import MLP

torch = pytest.importorskip("torch")


def _data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    Y = np.stack([np.sin(X[:, 0]) + X[:, 1], X[:, 2] * X[:, 3]], axis=1)
    w = rng.integers(0, 4, size=n).astype(float)
    w[0] = 2.0
    return X, Y, w


@pytest.mark.parametrize("loss, out, optimizer", [("mse", "identity", "sgd"), ("huber", "identity", "adam"),
                                                  ("cross_entropy", "softmax", "momentum"), ("bce", "sigmoid", "sgd")])
def test_integer_weights_are_repeated_rows(loss, out, optimizer):
    X, Y, w = _data()
    if loss == "cross_entropy":
        Y = np.eye(2)[(Y[:, 0] > 0).astype(int)]
    elif loss == "bce":
        Y = (Y > 0).astype(float)
    reps = np.repeat(np.arange(len(X)), w.astype(int))
    kw = dict(epochs=15, learning_rate=0.05, optimizer=optimizer, shuffle=False, progress=False, weight_decay=0.01)
    a = MLP([4, 5, 2], activation="tanh", output_activation=out, loss=loss, seed=1)
    b = MLP([4, 5, 2], activation="tanh", output_activation=out, loss=loss, seed=1)
    ha = a.fit(X, Y, batch_size=len(X), sample_weight=w, **kw)
    hb = b.fit(X[reps], Y[reps], batch_size=len(reps), **kw)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-11)
    if "accuracy" in ha:
        np.testing.assert_allclose(ha["accuracy"], hb["accuracy"], rtol=1e-12)
    assert a.loss_value(X, Y, sample_weight=w) == pytest.approx(b.loss_value(X[reps], Y[reps]), rel=1e-12)
    assert a.evaluate(X, Y, sample_weight=w) == pytest.approx(b.evaluate(X[reps], Y[reps]), rel=1e-12)


def test_scikit_learn_passes_the_same_identity():
    """The test's own premise, checked on another library: scikit-learn 1.9's MLP with sample_weight."""
    sklearn_nn = pytest.importorskip("sklearn.neural_network")
    import inspect
    if "sample_weight" not in inspect.signature(sklearn_nn.MLPRegressor.fit).parameters:
        pytest.skip("this scikit-learn's MLP has no sample_weight")
    X, Y, w = _data()
    reps = np.repeat(np.arange(len(X)), w.astype(int))
    kw = dict(hidden_layer_sizes=(5,), solver="sgd", momentum=0.0, learning_rate_init=0.05, max_iter=10,
              shuffle=False, random_state=0, tol=0, n_iter_no_change=100)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = sklearn_nn.MLPRegressor(batch_size=len(X), **kw).fit(X, Y, sample_weight=w)
        b = sklearn_nn.MLPRegressor(batch_size=len(reps), **kw).fit(X[reps], Y[reps])
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_allclose(ca, cb, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss, out", [("mse", "identity"), ("cross_entropy", "softmax"), ("mae", "identity")])
def test_weighted_loss_and_gradients_against_torch(loss, out):
    X, Y, w = _data(12, seed=3)
    w = w + np.random.default_rng(0).uniform(0, 1, size=w.shape)  # not only integers
    if loss == "cross_entropy":
        Y = np.eye(2)[(Y[:, 0] > 0).astype(int)]
    net = MLP([4, 6, 2], activation="sigmoid", output_activation=out, loss=loss, seed=2)
    value, grads = net.loss_and_gradients(X, Y, sample_weight=w)
    params = []
    a = torch.tensor(X)
    for l in range(1, net.n_layers + 1):
        W = torch.tensor(net.W(l).copy(), requires_grad=True)
        b = torch.tensor(net.b(l).copy(), requires_grad=True)
        params += [W, b]
        z = a @ W.T + b
        a = torch.sigmoid(z) if l < net.n_layers else (torch.softmax(z, 1) if out == "softmax" else z)
    y, tw = torch.tensor(Y), torch.tensor(w)
    if loss == "mse":
        per = ((a - y) ** 2).mean(1)
    elif loss == "mae":
        per = (a - y).abs().mean(1)
    else:
        per = -(y * torch.log_softmax(z, 1)).sum(1)
    ref = (tw * per).sum() / tw.sum()
    ref_grads = torch.autograd.grad(ref, params)
    assert value == pytest.approx(float(ref.detach()), rel=1e-12)
    for g, r in zip([g for pair in grads for g in pair], ref_grads):
        np.testing.assert_allclose(g, r.numpy(), rtol=1e-10, atol=1e-14)


def test_validation_weights_and_the_split():
    X, Y, w = _data(40)
    net = MLP([4, 5, 2], seed=0)
    h = net.fit(X, Y, epochs=2, sample_weight=w, validation_data=(X, Y, w), progress=False)
    assert h["val_loss"][-1] == pytest.approx(net.loss_value(X, Y, sample_weight=w), rel=1e-12)
    h2 = MLP([4, 5, 2], seed=0).fit(X, Y, epochs=2, sample_weight=w + 1, validation_fraction=0.25, progress=False)
    assert len(h2["val_loss"]) == 2


@pytest.mark.parametrize("weights, error, match", [
    (-np.ones(30), ValueError, r"sample_weight must be >= 0"),
    (np.zeros(30), ValueError, r"sample_weight must not be all zero"),
    (np.ones(29), ValueError, r"sample_weight must have shape \(30,\)"),
    (np.full(30, np.nan), ValueError, r"sample_weight must be finite"),
    (np.array(["a"] * 30), TypeError, r"sample_weight must hold real numbers"),
])
def test_bad_sample_weights(weights, error, match):
    X, Y, _ = _data()
    with pytest.raises(error, match=match):
        MLP([4, 2]).fit(X, Y, sample_weight=weights, progress=False)
    with pytest.raises(error, match=match):
        MLP([4, 2]).loss_and_gradients(X, Y, sample_weight=weights)


def test_partial_fit_takes_weights():
    X, Y, w = _data()
    reps = np.repeat(np.arange(len(X)), w.astype(int))
    a, b = MLP([4, 3, 2], seed=0), MLP([4, 3, 2], seed=0)
    a.partial_fit(X, Y, batch_size=len(X), sample_weight=w, shuffle=False)
    b.partial_fit(X[reps], Y[reps], batch_size=len(reps), shuffle=False)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-12)


def test_cli_weight_column_and_class_weight(tmp_path):
    """--weight-column NAME: that column is a weight, not a feature; --class-weight balanced multiplies in."""
    pytest.importorskip("sklearn")
    import json

    from backprop_numba.cli import main
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] > 0.8).astype(int)  # imbalanced
    w = rng.integers(1, 3, size=300)
    lines = ["a,b,c,w,target"] + [f"{r[0]},{r[1]},{r[2]},{wi},{yi}" for r, wi, yi in zip(X, w, y)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    common = ["train", "--data", str(tmp_path / "d.csv"), "--hidden", "4", "--epochs", "2", "--quiet"]
    assert main(common + ["--weight-column", "w", "--class-weight", "balanced", "--out", str(tmp_path / "r")]) == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["config"]["weight_column"] == "w" and metrics["config"]["class_weight"] == "balanced"
    from backprop_numba import MLP
    assert MLP.load(tmp_path / "r" / "model.npz").layer_sizes[0] == 3  # w is not a feature
    assert main(common + ["--weight-column", "nope", "--out", str(tmp_path / "r2")]) == 1
    assert main(["train", "--dataset", "digits", "--hidden", "4", "--epochs", "1", "--weight-column", "w",
                 "--out", str(tmp_path / "r3")]) == 2
