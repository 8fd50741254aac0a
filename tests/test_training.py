"""Training works: XOR, the digits set, histories, reproducibility, model files."""

import numpy as np
import pytest

from backprop_numba import MLP

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
XOR_Y = np.array([0, 1, 1, 0], dtype=float)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_xor_is_learned_by_a_2_4_1_network(dtype):
    net = MLP([2, 4, 1], activation="tanh", output_activation="sigmoid", loss="bce", seed=0, dtype=dtype)
    history = net.fit(XOR_X, XOR_Y, epochs=1500, batch_size=4, learning_rate=0.05, optimizer="adam",
                      progress=False)
    assert net.predict_classes(XOR_X).tolist() == [0, 1, 1, 0]
    assert history["loss"][-1] < 0.05 < history["loss"][0]
    assert history["accuracy"][-1] == 1.0


def test_xor_with_plain_gradient_descent_on_the_seed_network():
    """Seeds 002/004: sigmoid everywhere, full-batch gradient descent W <- W - eta dC/dW."""
    net = MLP([2, 4, 1], activation="sigmoid", output_activation="sigmoid", loss="half_sse", seed=1)
    net.fit(XOR_X, XOR_Y, epochs=6000, batch_size=4, learning_rate=2.0, optimizer="sgd", shuffle=False,
            progress=False)
    assert net.predict_classes(XOR_X).tolist() == [0, 1, 1, 0]


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split

    X, y = datasets.load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


@pytest.mark.parametrize("optimizer,learning_rate,activation", [("sgd", 0.5, "sigmoid"),
                                                                 ("momentum", 0.1, "tanh"),
                                                                 ("adam", 0.005, "relu")])
def test_digits_reach_95_percent_test_accuracy(digits, optimizer, learning_rate, activation):
    Xtr, Xte, ytr, yte = digits
    net = MLP([64, 32, 10], activation=activation, loss="cross_entropy", seed=0)
    history = net.fit(Xtr, ytr, epochs=30, batch_size=32, learning_rate=learning_rate, optimizer=optimizer,
                      validation_data=(Xte, yte), progress=False)
    accuracy = np.mean(net.predict_classes(Xte) == yte)
    assert accuracy >= 0.95, accuracy
    assert history["val_accuracy"][-1] == pytest.approx(accuracy)
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    assert all(len(v) == 30 for v in history.values())
    assert history["loss"][-1] < history["loss"][0]
    assert net.evaluate(Xte, yte)["accuracy"] == pytest.approx(accuracy)


def test_fit_is_reproducible_and_shuffling_matters():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(50, 3)), rng.normal(size=(50, 2))

    def train(seed, shuffle=True):
        net = MLP([3, 5, 2], activation="tanh", loss="mse", seed=seed)
        net.fit(X, Y, epochs=5, batch_size=8, learning_rate=0.05, shuffle=shuffle, progress=False)
        return net.theta.copy()

    np.testing.assert_array_equal(train(1), train(1))
    assert not np.array_equal(train(1), train(2))
    assert not np.array_equal(train(1, shuffle=True), train(1, shuffle=False))


def test_fit_matches_gradient_descent_by_hand_without_shuffling():
    """One epoch of mini-batch SGD equals the steps W <- W - eta * grad of each batch mean,
    the last batch being the smaller remainder."""
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    net = MLP([3, 4, 2], activation="sigmoid", loss="sse", seed=0)
    ref = MLP.from_weights(net.weights, net.biases, activation="sigmoid", output_activation="sigmoid", loss="sse")
    net.fit(X, Y, epochs=1, batch_size=4, learning_rate=0.1, shuffle=False, progress=False)
    for start in (0, 4, 8):
        _, grads = ref.loss_and_gradients(X[start:start + 4], Y[start:start + 4])
        for (W, b), (dW, db) in zip(zip(ref.weights, ref.biases), grads):
            W -= 0.1 * dW
            b -= 0.1 * db
    np.testing.assert_allclose(net.theta, ref.theta, rtol=1e-13, atol=1e-15)


def test_history_loss_is_the_mean_training_loss_of_the_epoch():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(6, 2)), rng.normal(size=(6, 1))
    net = MLP([2, 3, 1], activation="tanh", loss="mse", seed=0)
    before = MLP.from_weights(net.weights, net.biases, activation="tanh", output_activation="identity", loss="mse")
    history = net.fit(X, Y, epochs=1, batch_size=6, learning_rate=0.1, shuffle=False, progress=False)
    # one full batch: the reported loss is the loss before its single update
    assert history["loss"][0] == pytest.approx(before.loss_value(X, Y), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_save_and_load_round_trip(tmp_path, dtype):
    net = MLP([4, 3, 2], activation=["relu"], output_activation="softmax", loss="cross_entropy", seed=3,
              dtype=dtype)
    path = tmp_path / "model.npz"
    net.save(path)
    back = MLP.load(path)
    assert back.layer_sizes == net.layer_sizes and back.activations == net.activations
    assert back.loss == net.loss and back.dtype == net.dtype
    np.testing.assert_array_equal(back.theta, net.theta)
    X = np.random.default_rng(0).normal(size=(3, 4))
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    np.load(path, allow_pickle=False).close()  # a plain npz, readable without pickle
