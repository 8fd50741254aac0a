"""The compiled epoch (``_kernels._train_epoch``, used by ``MLP.fit``) is the
step-by-step algorithm: same weights, to rounding, as a reference loop built
from ``MLP.loss_and_gradients`` and the update rules written out in NumPy
(optimizers.py), for every optimizer, with and without shuffling, float32 and
float64, with a last partial batch; and the batched kernels, serial and
parallel (blocked) paths alike, agree with the naive per-sample oracle.
"""

import threading

import numpy as np
import pytest
from oracles import flat, naive_forward, naive_loss_and_gradients

from backprop_numba import MLP
from backprop_numba import _kernels as K

# float64: the two sides differ only in how the update is rounded (FMA, order);
# float32 adds the rounding of every kernel on both sides.
RTOL = {np.float64: 1e-10, np.float32: 2e-4}
ATOL = {np.float64: 1e-12, np.float32: 2e-5}

OPTIONS = {"momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


def reference_fit(net, X, Y, epochs, batch_size, lr, optimizer, weight_decay, shuffle_seeds):
    """Mini-batch training, one ``loss_and_gradients`` call per step, updates in NumPy (float64 state)."""
    theta = net.theta.astype(np.float64)
    is_weight = np.zeros(theta.size, dtype=bool)
    for l in range(1, net.n_layers + 1):
        start = net._arch[K.WOFF, l]
        is_weight[start:start + net.layer_sizes[l] * net.layer_sizes[l - 1]] = True
    v = np.zeros_like(theta)  # velocity / first moment
    s = np.zeros_like(theta)  # second moment
    t = 0
    n = X.shape[0]
    for epoch in range(epochs):
        perm = np.arange(n, dtype=np.int64)
        if shuffle_seeds is not None:
            K._shuffle(perm, shuffle_seeds[epoch])  # the kernel's own seeded Fisher-Yates
        for start in range(0, n, batch_size):
            rows = perm[start:start + batch_size]  # the last batch may be smaller
            net.theta[...] = theta
            _, grads = net.loss_and_gradients(X[rows], Y[rows])
            g = flat(grads).astype(np.float64)
            g = g + weight_decay * theta * is_weight
            t += 1
            if optimizer == "sgd":
                theta = theta - lr * g
            elif optimizer == "momentum":
                v = OPTIONS["momentum"] * v + g
                theta = theta - lr * v
            elif optimizer == "nesterov":
                v = OPTIONS["momentum"] * v + g
                theta = theta - lr * (g + OPTIONS["momentum"] * v)
            else:  # adam
                b1, b2, eps = OPTIONS["beta1"], OPTIONS["beta2"], OPTIONS["eps"]
                v = b1 * v + (1 - b1) * g
                s = b2 * s + (1 - b2) * g * g
                theta = theta - lr * (v / (1 - b1 ** t)) / (np.sqrt(s / (1 - b2 ** t)) + eps)
            net.theta[...] = theta  # the reference keeps the net's dtype between steps too
            theta = net.theta.astype(np.float64)
    return theta


CASES = [
    # sizes, hidden, output, loss: a small net, and one big enough for the parallel, blocked paths
    ([5, 7, 3], "tanh", "identity", "mse"),
    ([300, 64, 10], "sigmoid", "softmax", "cross_entropy"),  # large enough for the dot-product dC/dW
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
@pytest.mark.parametrize("optimizer,weight_decay", [("sgd", 0.0), ("momentum", 0.0), ("nesterov", 0.01),
                                                    ("adam", 0.0), ("adam", 0.05), ("sgd", 0.1)])
@pytest.mark.parametrize("case", range(len(CASES)), ids=["small", "wide"])
def test_compiled_epoch_matches_step_by_step_reference(case, optimizer, weight_decay, shuffle, dtype):
    sizes, hidden, output, loss = CASES[case]
    rng = np.random.default_rng(case)
    n, batch_size, epochs, lr = 37, 8, 2, 0.05  # 37 = 4 * 8 + 5: a last partial batch of 5
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    if loss == "cross_entropy":
        Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], size=n)]
    else:
        Y = rng.normal(size=(n, sizes[-1])).astype(dtype)
    kw = dict(activation=hidden, output_activation=output, loss=loss, dtype=dtype)
    net = MLP(sizes, seed=3, **kw)
    ref = MLP.from_weights(net.weights, net.biases, **kw)
    start = net.theta.copy()

    fit_seed = 11
    seeds = None
    if shuffle:
        draw = np.random.default_rng(fit_seed)  # fit(seed=...) draws one shuffle seed per epoch
        seeds = [int(draw.integers(0, 2**31 - 1)) for _ in range(epochs)]
    net.fit(X, Y, epochs=epochs, batch_size=batch_size, learning_rate=lr, optimizer=optimizer,
            shuffle=shuffle, weight_decay=weight_decay, seed=fit_seed, progress=False)
    expected = reference_fit(ref, X, Y, epochs, batch_size, lr, optimizer, weight_decay, seeds)

    assert not np.array_equal(net.theta, start)
    np.testing.assert_allclose(net.theta, expected, rtol=RTOL[dtype], atol=ATOL[dtype])


def test_shuffle_is_a_seeded_permutation():
    a = np.empty(50, dtype=np.int64)
    b = np.empty(50, dtype=np.int64)
    K._shuffle(a, 5)
    K._shuffle(b, 5)
    np.testing.assert_array_equal(a, b)
    assert sorted(a.tolist()) == list(range(50)) and a.tolist() != list(range(50))


# -- the blocked and parallel kernels against the naive oracle -------------------

SHAPES = [
    # (sizes, batch): tiles with remainders in every direction, small and large
    ([4, 3, 2, 1], 1),
    ([9, 6, 5, 3], 7),
    ([130, 37, 11], 13),        # the blocked row-update paths
    ([300, 129, 66, 5], 23),    # parallel forward, delta recursion and dC/dW, K_BLOCK remainders
    ([784, 16, 10], 257),       # two SAMPLE_BLOCKs and a remainder
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("sizes,B", SHAPES, ids=[f"{'-'.join(map(str, s))}xB{b}" for s, b in SHAPES])
def test_blocked_kernels_match_naive_oracle(sizes, B, dtype):
    rng = np.random.default_rng(len(sizes) * 100 + B)
    acts = ["tanh"] * (len(sizes) - 2) + ["sigmoid"]
    net = MLP(sizes, activation="tanh", output_activation="sigmoid", loss="half_sse", seed=1, dtype=dtype)
    X = rng.normal(size=(B, sizes[0])).astype(dtype)
    Y = rng.uniform(size=(B, sizes[-1])).astype(dtype)
    Ws = [W.astype(np.float64) for W in net.weights]
    bs = [b.astype(np.float64) for b in net.biases]
    rtol = 1e-10 if dtype == np.float64 else 2e-4

    out = net.forward(X)
    expected = np.array([naive_forward(Ws, bs, acts, x)[1][-1] for x in X.astype(np.float64)])
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol * 1e-2)

    value, grads = net.loss_and_gradients(X, Y)
    ref_value, ref_grads = naive_loss_and_gradients(Ws, bs, acts, "half_sse", X.astype(np.float64),
                                                    Y.astype(np.float64))
    np.testing.assert_allclose(value, ref_value, rtol=rtol)
    scale = np.abs(flat(ref_grads)).max()
    np.testing.assert_allclose(flat(grads), flat(ref_grads), rtol=rtol, atol=rtol * scale)

    V = rng.normal(size=(B, sizes[-1])).astype(dtype)
    gx = net.vjp(X, V)
    h = 1e-6
    # a central difference of v . a[L](x) along a random direction, in float64
    u = rng.normal(size=X.shape)
    ref64 = MLP.from_weights(Ws, bs, activation="tanh", output_activation="sigmoid", loss="half_sse")
    fp = (ref64.forward(X + h * u) * V).sum(axis=1)
    fm = (ref64.forward(X - h * u) * V).sum(axis=1)
    np.testing.assert_allclose((gx * u).sum(axis=1), (fp - fm) / (2 * h), rtol=max(rtol, 1e-6), atol=1e-7)


def test_kernels_from_several_threads_at_once():
    """Two networks trained in two threads and four threads predicting on a third, all
    on the blocked paths at once (the kernels release the GIL): same results as one after the other."""
    rng = np.random.default_rng(0)
    sizes = [300, 128, 10]
    X = rng.normal(size=(96, 300))
    Y = rng.normal(size=(96, 10))
    nets = [MLP(sizes, loss="mse", seed=s) for s in (1, 2)]
    twins = [MLP.from_weights(n.weights, n.biases, activation="sigmoid", output_activation="identity",
                              loss="mse") for n in nets]
    reader = MLP(sizes, loss="mse", seed=3)
    for twin in twins:
        twin.fit(X, Y, epochs=3, batch_size=32, learning_rate=0.05, shuffle=False, progress=False)
    expected_out = reader.forward(X)

    outs = [None] * 4
    errors = []
    barrier = threading.Barrier(6)

    def train(i):
        try:
            barrier.wait()
            nets[i].fit(X, Y, epochs=3, batch_size=32, learning_rate=0.05, shuffle=False, progress=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    def read(i):
        try:
            barrier.wait()
            for _ in range(5):
                outs[i] = reader.forward(X)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=train, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive()
    assert not errors, errors
    for net, twin in zip(nets, twins):
        np.testing.assert_array_equal(net.theta, twin.theta)
    for out in outs:
        np.testing.assert_array_equal(out, expected_out)
