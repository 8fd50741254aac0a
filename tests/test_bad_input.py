"""Bad input at every public entry point: a clear ValueError/TypeError naming the problem.

SPEC section 3, issue 4.  Each row of BAD is (id, call, exception type, regex
the message must match); ``call`` takes the fixtures below.  Every row must
fail at the Python boundary, before any kernel runs.
"""

import os
import pathlib

import numpy as np
import pytest

from backprop_numba import MLP, check_gradients

RNG = np.random.default_rng(0)
X = RNG.normal(size=(6, 3))
Y_REG = RNG.normal(size=(6, 2))
Y_BCE = (RNG.random(size=(6, 1)) > 0.5).astype(float)
LABELS = np.array([0, 1, 2, 0, 1, 2])


def reg():
    return MLP([3, 4, 2], activation="tanh", loss="mse", seed=0)


def clf():
    return MLP([3, 4, 3], activation="relu", loss="cross_entropy", seed=0)


def bin1():
    return MLP([3, 4, 1], loss="bce", seed=0)


def fit(net, x, y, **kw):
    kw.setdefault("epochs", 1)
    kw.setdefault("progress", False)
    return net.fit(x, y, **kw)


def _poisoned():
    net = reg()
    net.weights[0][0, 0] = np.nan  # weights are writeable views into theta
    return net


W_OK = [np.ones((4, 3)), np.ones((2, 4))]
B_OK = [np.zeros(4), np.zeros(2)]


def _tmp_file(name, data):
    import tempfile
    folder = tempfile.mkdtemp(prefix="bpn-bad-")
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


BAD = [
    # -- constructor --------------------------------------------------------
    ("sizes-one-layer", lambda: MLP([3]), ValueError, r"layer_sizes must have at least 2 layers"),
    ("sizes-zero", lambda: MLP([3, 0, 1]), ValueError, r"layer_sizes\[1\] must be >= 1, got 0"),
    ("sizes-negative", lambda: MLP([3, -2]), ValueError, r"layer_sizes\[1\] must be >= 1, got -2"),
    ("sizes-float", lambda: MLP([3, 2.5]), TypeError, r"layer_sizes\[1\] must be an integer, got 2.5"),
    ("sizes-bool", lambda: MLP([3, True]), TypeError, r"layer_sizes\[1\] must be an integer"),
    ("sizes-string", lambda: MLP("3,2"), TypeError, r"layer_sizes must be a sequence of integers"),
    ("sizes-int", lambda: MLP(3), TypeError, r"layer_sizes must be a sequence of integers"),
    ("sizes-absurd", lambda: MLP([10**12, 10**12]), ValueError, r"layer_sizes must describe at most 2\*\*40"),
    ("activation-unknown", lambda: MLP([3, 4, 1], activation="swish"), ValueError,
     r"activation must be one of \['identity', 'leaky_relu', 'relu', 'sigmoid', 'tanh'\], got 'swish'"),
    ("activation-softmax-hidden", lambda: MLP([3, 4, 2], activation="softmax"), ValueError,
     r"activation must be one of"),
    ("activation-count", lambda: MLP([3, 4, 4, 1], activation=["tanh"]), ValueError,
     r"activation must be one name or one per hidden layer \(2\), got 1"),
    ("activation-not-iterable", lambda: MLP([3, 4, 1], activation=5), TypeError,
     r"activation must be a name or a sequence of names"),
    ("loss-unknown", lambda: MLP([3, 1], loss="hinge"), ValueError, r"loss must be one of \['bce', 'cross_entropy'"),
    ("loss-not-str", lambda: MLP([3, 1], loss=None), TypeError, r"loss must be a string"),
    ("output-unknown", lambda: MLP([3, 1], output_activation="swish"), ValueError, r"output_activation must be one of"),
    ("softmax-one-output", lambda: MLP([3, 1], output_activation="softmax"), ValueError,
     r"output_activation='softmax' needs at least 2 outputs"),
    ("bce-needs-sigmoid", lambda: MLP([3, 1], loss="bce", output_activation="identity"), ValueError,
     r"output_activation must be 'sigmoid' for loss='bce'"),
    ("ce-needs-softmax", lambda: MLP([3, 2], loss="cross_entropy", output_activation="sigmoid"), ValueError,
     r"output_activation must be 'softmax' for loss='cross_entropy'"),
    ("dtype-int", lambda: MLP([3, 1], dtype=np.int32), ValueError, r"dtype must be float32 or float64, got int32"),
    ("dtype-float16", lambda: MLP([3, 1], dtype="float16"), ValueError, r"dtype must be float32 or float64"),
    ("dtype-nonsense", lambda: MLP([3, 1], dtype="banana"), TypeError, r"dtype must be float32 or float64"),
    ("seed-negative", lambda: MLP([3, 1], seed=-1), ValueError, r"seed must be >= 0, got -1"),
    ("seed-string", lambda: MLP([3, 1], seed="abc"), TypeError, r"seed must be None, an integer >= 0"),
    # -- from_weights -------------------------------------------------------
    ("fw-no-chain", lambda: MLP.from_weights([np.ones((4, 3)), np.ones((2, 5))], [np.zeros(4), np.zeros(2)]),
     ValueError, r"weights\[1\] must have shape \(2, 4\) to chain"),
    ("fw-bias-shape", lambda: MLP.from_weights(W_OK, [np.zeros(4), np.zeros(3)]), ValueError,
     r"biases\[1\] must have shape \(2,\), got \(3,\)"),
    ("fw-count", lambda: MLP.from_weights(W_OK, B_OK[:1]), ValueError, r"biases must have one array per layer \(2\), got 1"),
    ("fw-empty", lambda: MLP.from_weights([], []), ValueError, r"weights must hold at least one layer"),
    ("fw-none", lambda: MLP.from_weights(None, None), TypeError, r"weights must be a sequence of arrays"),
    ("fw-single-ndarray", lambda: MLP.from_weights(np.ones((4, 3)), np.zeros(4)), TypeError,
     r"weights and biases must be sequences of arrays"),
    ("fw-1d-weight", lambda: MLP.from_weights([np.ones(3)], [np.zeros(1)]), ValueError, r"weights\[0\] must be 2-D"),
    ("fw-nan", lambda: MLP.from_weights([np.full((2, 3), np.nan)], [np.zeros(2)]), ValueError,
     r"weights\[0\] must be finite"),
    ("fw-complex", lambda: MLP.from_weights([np.ones((2, 3), complex)], [np.zeros(2)]), TypeError,
     r"weights\[0\] must hold real numbers"),
    ("fw-overflow-float32", lambda: MLP.from_weights([np.full((2, 3), 1e39)], [np.zeros(2)], dtype=np.float32),
     ValueError, r"weights\[0\] must fit in float32"),
    ("fw-layout", lambda: MLP.from_weights(W_OK, B_OK, layout="transposed"), ValueError,
     r"layout must be one of \['column', 'row'\]"),
    # -- forward / predict ----------------------------------------------------
    ("forward-features", lambda: reg().forward(np.ones((2, 4))), ValueError, r"X must have 3 features"),
    ("forward-3d", lambda: reg().forward(np.ones((2, 3, 1))), ValueError, r"X must be 1-D .* or 2-D .*got 3-D"),
    ("forward-0d", lambda: reg().forward(np.float64(1.0)), ValueError, r"X must be 1-D .*got 0-D"),
    ("forward-empty", lambda: reg().forward(np.ones((0, 3))), ValueError, r"X must hold at least one sample"),
    ("forward-nan", lambda: reg().forward(np.array([[1.0, np.nan, 0.0]])), ValueError, r"X must be finite, got NaN"),
    ("forward-inf", lambda: reg().forward(np.array([[1.0, np.inf, 0.0]])), ValueError, r"X must be finite, got inf"),
    ("forward-float32-overflow", lambda: MLP([3, 1], dtype=np.float32).forward(np.full((1, 3), 1e300)),
     ValueError, r"X must be finite, got inf \(after conversion to float32\)"),
    ("forward-object", lambda: reg().forward(np.ones((2, 3), dtype=object)), TypeError, r"X must hold real numbers.*object"),
    ("forward-complex", lambda: reg().forward(np.ones((2, 3), dtype=complex)), TypeError, r"X must hold real numbers.*complex"),
    ("forward-strings", lambda: reg().forward(np.array([["a", "b", "c"]])), TypeError, r"X must hold real numbers.*<U1"),
    ("forward-str", lambda: reg().forward("1,2,3"), TypeError, r"X must be a numeric array, got a string"),
    ("forward-bool", lambda: reg().forward(np.ones((2, 3), dtype=bool)), TypeError, r"X must hold real numbers.*bool"),
    ("forward-ragged", lambda: reg().forward([[1, 2, 3], [1, 2]]), ValueError, r"X must be a rectangular numeric array"),
    ("forward-none", lambda: reg().forward(None), TypeError, r"X must hold real numbers"),
    ("predict-features", lambda: clf().predict(np.ones(4)), ValueError, r"X must have 3 features"),
    ("forward-overflow", lambda: MLP.from_weights([np.full((1, 3), 1e300)], [np.zeros(1)], output_activation="identity")
     .forward(np.full((1, 3), 1e10)), ValueError, r"the network output must be finite.*overflowed"),
    # -- loss_and_gradients / loss_value ---------------------------------------
    ("lg-y-shape", lambda: reg().loss_and_gradients(X, np.ones((6, 3))), ValueError, r"Y must have shape \(6, 2\)"),
    ("lg-y-rows", lambda: reg().loss_and_gradients(X, Y_REG[:5]), ValueError, r"Y must have shape \(6, 2\)"),
    ("lg-y-nan", lambda: reg().loss_and_gradients(X, np.full((6, 2), np.nan)), ValueError, r"Y must be finite"),
    ("lg-bce-range", lambda: bin1().loss_and_gradients(X, np.full(6, 2.0)), ValueError,
     r"Y must lie in \[0, 1\] for loss='bce'"),
    ("lg-ce-rowsum", lambda: clf().loss_and_gradients(X, np.full((6, 3), 0.5)), ValueError,
     r"Y rows must sum to 1 for loss='cross_entropy'"),
    ("lg-ce-negative", lambda: clf().loss_and_gradients(X, -np.eye(3)[LABELS]), ValueError, r"Y must be one-hot rows"),
    ("lg-ce-label-range", lambda: clf().loss_and_gradients(X, LABELS + 1), ValueError,
     r"Y class labels must be integers in \[0, 2\], got values in \[1, 3\]"),
    ("lg-ce-float-labels", lambda: clf().loss_and_gradients(X, LABELS.astype(float)), ValueError,
     r"Y must have shape \(6, 3\) \(or integer class labels"),
    ("lg-y-complex", lambda: reg().loss_and_gradients(X, np.ones((6, 2), complex)), TypeError, r"Y must hold real numbers"),
    ("lg-x-empty", lambda: reg().loss_and_gradients(np.ones((0, 3)), np.ones((0, 2))), ValueError,
     r"X must hold at least one sample"),
    ("loss-value-y", lambda: reg().loss_value(X, None), TypeError, r"Y must hold real numbers"),
    # -- vjp / input_gradient / jacobian -------------------------------------
    ("vjp-v-size", lambda: reg().vjp(X, np.ones((6, 3))), ValueError, r"V must have 2 features \(the network's output size\)"),
    ("vjp-v-rows", lambda: reg().vjp(X, np.ones((5, 2))), ValueError, r"V must have one row per sample of X \(6\), got 5"),
    ("vjp-v-nan", lambda: reg().vjp(X, np.full((6, 2), np.nan)), ValueError, r"V must be finite"),
    ("input-gradient-outputs", lambda: reg().input_gradient(X), ValueError, r"input_gradient needs a network with 1 output"),
    ("input-gradient-x", lambda: bin1().input_gradient(np.ones((2, 2))), ValueError, r"X must have 3 features"),
    ("jacobian-x", lambda: reg().jacobian(np.ones((2, 3), complex)), TypeError, r"X must hold real numbers"),
    # -- fit and its hyper-parameters ------------------------------------------
    ("fit-epochs-zero", lambda: fit(reg(), X, Y_REG, epochs=0), ValueError, r"epochs must be >= 1, got 0"),
    ("fit-epochs-float", lambda: fit(reg(), X, Y_REG, epochs=2.0), TypeError, r"epochs must be an integer"),
    ("fit-batch-zero", lambda: fit(reg(), X, Y_REG, batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
    ("fit-lr-zero", lambda: fit(reg(), X, Y_REG, learning_rate=0.0), ValueError, r"learning_rate must be > 0.0"),
    ("fit-lr-negative", lambda: fit(reg(), X, Y_REG, learning_rate=-0.1), ValueError, r"learning_rate must be > 0.0"),
    ("fit-lr-nan", lambda: fit(reg(), X, Y_REG, learning_rate=float("nan")), ValueError, r"learning_rate must be finite"),
    ("fit-lr-string", lambda: fit(reg(), X, Y_REG, learning_rate="0.1"), TypeError, r"learning_rate must be a real number"),
    ("fit-optimizer", lambda: fit(reg(), X, Y_REG, optimizer="adagrad"), ValueError,
     r"optimizer must be one of \['adam', 'momentum', 'nesterov', 'rmsprop', 'sgd'\], got 'adagrad'"),
    ("fit-momentum", lambda: fit(reg(), X, Y_REG, momentum=1.0), ValueError, r"momentum must be < 1.0"),
    ("fit-beta2", lambda: fit(reg(), X, Y_REG, beta2=-0.5), ValueError, r"beta2 must be >= 0.0"),
    ("fit-eps", lambda: fit(reg(), X, Y_REG, eps=0.0), ValueError, r"eps must be > 0.0"),
    ("fit-weight-decay", lambda: fit(reg(), X, Y_REG, weight_decay=-1e-3), ValueError, r"weight_decay must be >= 0.0"),
    ("fit-on-nonfinite", lambda: fit(reg(), X, Y_REG, on_nonfinite="ignore"), ValueError,
     r"on_nonfinite must be one of \['raise', 'skip'\]"),
    ("fit-shuffle", lambda: fit(reg(), X, Y_REG, shuffle="no"), TypeError, r"shuffle must be True or False, got 'no'"),
    ("fit-progress", lambda: fit(reg(), X, Y_REG, progress="yes"), TypeError, r"progress must be True, False or None"),
    ("fit-seed", lambda: fit(reg(), X, Y_REG, seed=-3), ValueError, r"seed must be >= 0"),
    ("fit-validation-type", lambda: fit(reg(), X, Y_REG, validation_data=X), TypeError,
     r"validation_data must be a tuple \(X_val, Y_val\)"),
    ("fit-validation-shape", lambda: fit(reg(), X, Y_REG, validation_data=(X, Y_REG[:, :1])), ValueError,
     r"validation Y must have shape \(6, 2\)"),
    ("fit-x-nan", lambda: fit(reg(), np.where(X > 1, np.nan, X), Y_REG), ValueError, r"X must be finite, got NaN"),
    ("fit-y-labels", lambda: fit(clf(), X, LABELS - 1), ValueError, r"Y class labels must be integers in \[0, 2\]"),
    # -- evaluate ------------------------------------------------------------------
    ("evaluate-y", lambda: bin1().evaluate(X, np.full(6, -1.0)), ValueError, r"Y must lie in \[0, 1\]"),
    ("evaluate-x", lambda: bin1().evaluate(X[:, :2], Y_BCE), ValueError, r"X must have 3 features"),
    # -- check_gradients -------------------------------------------------------------
    ("cg-net", lambda: check_gradients("net", X, Y_REG), TypeError, r"net must be an MLP, got str"),
    ("cg-eps", lambda: check_gradients(reg(), X, Y_REG, eps=0), ValueError, r"eps must be > 0.0"),
    ("cg-tolerance", lambda: check_gradients(reg(), X, Y_REG, tolerance=-1), ValueError, r"tolerance must be > 0.0"),
    ("cg-x", lambda: check_gradients(reg(), X[:, :2], Y_REG), ValueError, r"X must have 3 features"),
    ("cg-y", lambda: check_gradients(bin1(), X, np.full(6, 3.0)), ValueError, r"Y must lie in \[0, 1\]"),
    ("cg-indices-type", lambda: check_gradients(reg(), X, Y_REG, indices=[0.5]), TypeError,
     r"indices must be a 1-D integer array"),
    ("cg-indices-range", lambda: check_gradients(reg(), X, Y_REG, indices=[0, 999]), ValueError,
     r"indices must be non-empty positions"),
    # -- the parameter vector ------------------------------------------------------------
    ("theta-assign-shape", lambda: setattr(reg(), "theta", np.zeros(3)), ValueError,
     r"theta must have shape \(26,\) \(the network's parameter count\), got shape \(3,\)"),
    ("theta-assign-nan", lambda: setattr(reg(), "theta", np.full(26, np.nan)), ValueError, r"theta must be finite"),
    ("theta-assign-strings", lambda: setattr(reg(), "theta", ["a"] * 26), TypeError, r"theta must hold real numbers"),
    ("fit-nan-weights", lambda: fit(_poisoned(), X, Y_REG), ValueError, r"theta must be finite"),
    ("forward-nan-weights", lambda: _poisoned().forward(X), ValueError, r"the network output must be finite"),
    ("save-nan-weights", lambda: _poisoned().save(_tmp_file("m.npz", b"")), ValueError,
     r"theta must be finite to be saved"),
    # -- load / save --------------------------------------------------------------------
    ("load-missing", lambda: MLP.load("/nonexistent/dir/model.npz"), FileNotFoundError, r"model file not found"),
    ("load-int-path", lambda: MLP.load(5), TypeError, r"path must be a file path"),
    ("load-empty-path", lambda: MLP.load(""), ValueError, r"path must be a non-empty file path"),
    ("load-directory", lambda: MLP.load(os.path.dirname(__file__)), ValueError, r"is a directory"),
    ("load-empty-file", lambda: MLP.load(_tmp_file("empty.npz", b"")), ValueError, r"is empty"),
    ("load-text-file", lambda: MLP.load(_tmp_file("text.npz", b"not a model, just text" * 20)), ValueError,
     r"not a backprop_numba model file"),
    ("save-int-path", lambda: reg().save(3.5), TypeError, r"path must be a file path"),
    ("save-directory", lambda: reg().save(os.path.dirname(__file__)), ValueError, r"got a directory"),
    ("save-no-folder", lambda: reg().save("/nonexistent-folder-i4/m.npz"), FileNotFoundError,
     r"folder does not exist"),
]


def test_table_is_large_enough():
    assert len(BAD) >= 40
    assert len({row[0] for row in BAD}) == len(BAD)


@pytest.mark.parametrize("call, exc, match", [row[1:] for row in BAD], ids=[row[0] for row in BAD])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# -- what must work: conversions and copies -------------------------------------------

def test_integer_arrays_are_converted():
    net = reg()
    Xi = np.arange(12, dtype=np.int32).reshape(4, 3)
    np.testing.assert_array_equal(net.forward(Xi), net.forward(Xi.astype(np.float64)))
    loss_i, _ = net.loss_and_gradients(Xi, np.ones((4, 2), dtype=np.uint8))
    loss_f, _ = net.loss_and_gradients(Xi.astype(float), np.ones((4, 2)))
    assert loss_i == loss_f
    # Python lists, big-endian and float16 are converted too.
    np.testing.assert_array_equal(net.forward(Xi.tolist()), net.forward(Xi.astype(">f8")))
    assert net.forward(Xi.astype(np.float16)).dtype == np.float64


@pytest.mark.parametrize("kind", ["readonly", "noncontiguous", "fortran", "unaligned"])
def test_awkward_arrays_work_and_are_not_written(kind):
    net = clf()
    base = RNG.normal(size=(5, 3))
    if kind == "readonly":
        x = base.copy()
        x.flags.writeable = False
    elif kind == "noncontiguous":
        x = np.repeat(base, 2, axis=0)[::2]
    elif kind == "fortran":
        x = np.asfortranarray(base)
    else:
        raw = np.zeros(base.nbytes + 1, dtype=np.uint8)
        x = np.frombuffer(raw.data, dtype=np.float64, count=base.size, offset=1).reshape(base.shape)
        x[...] = base
        assert not x.flags.aligned
    before = x.copy()
    y = np.array([0, 1, 2, 0, 1])
    expected = net.forward(base)
    np.testing.assert_array_equal(net.forward(x), expected)
    np.testing.assert_array_equal(net.jacobian(x), net.jacobian(base))
    np.testing.assert_array_equal(net.vjp(x, x[:, :3]), net.vjp(base, base[:, :3]))
    assert net.loss_and_gradients(x, y)[0] == net.loss_and_gradients(base, y)[0]
    fit(net, x, y, epochs=2, batch_size=2)
    np.testing.assert_array_equal(x, before)


def test_theta_assignment_converts_and_aliases():
    net = reg()
    x = RNG.normal(size=(2, 3))
    new = RNG.normal(size=26)
    net.theta = new.astype(np.float32)  # converted to the network's dtype
    assert net.theta.dtype == np.float64
    np.testing.assert_array_equal(net.forward(x), MLP.from_weights(
        [w.copy() for w in net.weights], [b.copy() for b in net.biases], activation="tanh",
        output_activation="identity", loss="mse").forward(x))
    exact = new.copy()
    net.theta = exact  # the right dtype and layout: kept as is
    assert net.theta is exact


def test_pathlike_and_bytes_paths(tmp_path):
    net = reg()
    net.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(MLP.load(pathlib.Path(tmp_path / "m.npz")).theta, net.theta)
    np.testing.assert_array_equal(MLP.load(os.fsencode(tmp_path / "m.npz")).theta, net.theta)


def test_bad_input_leaves_the_network_unchanged():
    net = reg()
    theta = net.theta.copy()
    for call in (lambda: fit(net, X, Y_REG, learning_rate=-1), lambda: fit(net, X, Y_REG[:3]),
                 lambda: fit(net, X, Y_REG, optimizer="x"), lambda: net.loss_and_gradients(X, np.nan * Y_REG)):
        with pytest.raises((ValueError, TypeError)):
            call()
    np.testing.assert_array_equal(net.theta, theta)


@pytest.mark.parametrize("options", [{}, {"shuffle": True}, {"optimizer": "adam", "on_nonfinite": "skip"},
                                     {"seed": 3}, {"epochs": 3, "batch_size": 2}])
def test_non_finite_theta_of_a_large_network_is_refused_as_before(options):
    """A network past a few thousand parameters with a NaN or inf in theta, after a fit: the ValueError, named
    before other bad input, with theta and the random state as they were; a fixed theta then trains as usual."""
    net = MLP([784, 16, 10], seed=1, dropout=0.2)  # 12,730 parameters; dropout draws a seed per epoch
    Xl, Yl = RNG.normal(size=(5, 784)), RNG.normal(size=(5, 10))
    options = {"epochs": 1, "progress": False, **options}
    net.fit(Xl, Yl, **options)
    for index, bad in ((784 * 16 + 16 + 3 * 16 + 2, np.nan), (784 * 16, -np.inf)):  # W[2][3, 2], b[1][0]
        net.theta[index] = bad
        theta, rng = net.theta.copy(), net._rng.bit_generator.state
        with pytest.raises(ValueError, match=r"^theta must be finite, got NaN or inf \(after conversion to "
                                             r"float64\)\.$"):
            net.fit(Xl, Yl, **options)
        with pytest.raises(ValueError, match=r"^theta must be finite"):  # before the bad X, as when tested first
            net.fit(Xl[:, :3], Yl, **options)
        np.testing.assert_array_equal(net.theta, theta)
        assert net._rng.bit_generator.state == rng
        net.theta[index] = 0.0
    assert np.isfinite(net.fit(Xl, Yl, **options)["loss"]).all()


@pytest.mark.parametrize("options", [{}, {"shuffle": True}, {"optimizer": "adam"}, {"seed": 5}])
def test_non_finite_theta_of_a_large_network_is_refused_by_partial_fit_as_before(options):
    """partial_fit on a large network whose theta turned non-finite between passes: the ValueError, first among
    bad inputs; theta, the optimizer state and step, the pass count and the random state as they were."""
    net = MLP([784, 16, 10], seed=1, dropout=0.1)
    Xl, Yl = RNG.normal(size=(5, 784)), RNG.normal(size=(5, 10))
    net.partial_fit(Xl, Yl, **options)
    net.theta[784 * 16 + 16 + 3 * 16 + 2] = np.nan
    kept = net._incremental
    theta, rng, state, step = net.theta.copy(), kept.rng.bit_generator.state, kept.workspace.state.copy(), \
        kept.workspace.step
    for X_, batch_size in ((Xl, 32), (Xl[:, :3], 32), (Xl, 2)):  # deferred; bad X; a new batch size (tested first)
        with pytest.raises(ValueError, match=r"^theta must be finite, got NaN or inf"):
            net.partial_fit(X_, Yl, batch_size=batch_size, **options)
    np.testing.assert_array_equal(net.theta, theta)
    assert net._incremental is kept and kept.passes == 1 and kept.workspace.step == step
    assert kept.rng.bit_generator.state == rng
    np.testing.assert_array_equal(kept.workspace.state, state)
    net.theta[784 * 16 + 16 + 3 * 16 + 2] = 0.0
    assert net.partial_fit(Xl, Yl, **options)["passes"] == 2


# -- the command line (run in a subprocess) ---------------------------------------------

CLI_ROWS = [
    # id, argv, exit status, regex on stderr
    ("no-command", [], 2, r"choose a command"),
    ("layers-zero", ["train", "--data", "good.csv", "--layers", "3,0,2"], 2, r"--layers"),
    ("layers-text", ["train", "--data", "good.csv", "--layers", "abc"], 2, r"--layers"),
    ("epochs-zero", ["train", "--data", "good.csv", "--layers", "3,4,2", "--epochs", "0"], 2, r"--epochs"),
    ("batch-negative", ["train", "--data", "good.csv", "--layers", "3,4,2", "--batch-size", "-1"], 2, r"--batch-size"),
    ("lr-nan", ["train", "--data", "good.csv", "--layers", "3,4,2", "--learning-rate", "nan", "--out", "o"], 1,
     r"learning_rate must be finite"),
    ("lr-negative", ["train", "--data", "good.csv", "--layers", "3,4,2", "--learning-rate", "-1", "--out", "o"], 1,
     r"learning_rate must be > 0"),
    ("momentum", ["train", "--data", "good.csv", "--layers", "3,4,2", "--optimizer", "momentum", "--momentum", "2",
                  "--out", "o"], 1, r"momentum must be < 1"),
    ("activation", ["train", "--data", "good.csv", "--layers", "3,4,2", "--activation", "swish", "--out", "o"], 1,
     r"activation must be one of \['identity', 'leaky_relu', 'relu', 'sigmoid', 'tanh'\]"),
    ("optimizer", ["train", "--data", "good.csv", "--layers", "3,4,2", "--optimizer", "adagrad"], 2,
     r"optimizer.*'adam', 'momentum', 'nesterov', 'rmsprop', 'sgd'"),
    ("dtype", ["train", "--data", "good.csv", "--layers", "3,4,2", "--dtype", "float16"], 2, r"--dtype"),
    ("test-fraction", ["train", "--data", "good.csv", "--layers", "3,4,2", "--test-fraction", "1.5"], 2,
     r"--test-fraction"),
    ("dataset", ["train", "--dataset", "nosuch"], 1, r"dataset must be one of"),
    ("data-missing", ["train", "--data", "missing.csv", "--layers", "3,4,2"], 1, r"missing.csv"),
    ("data-nan", ["train", "--data", "nan.csv", "--layers", "3,4,2", "--out", "o"], 1, r"finite"),
    ("data-strings", ["train", "--data", "strings.csv", "--layers", "3,4,2", "--out", "o"], 1, r"numeric"),
    ("data-empty", ["train", "--data", "empty.csv", "--layers", "3,4,2", "--out", "o"], 1, r"empty.csv"),
    ("config", ["train", "--data", "good.csv", "--config", "bad.toml"], 2, r"bad.toml"),
    ("model-corrupt", ["evaluate", "--model", "corrupt.npz", "--data", "good.csv"], 1, r"checksum"),
    ("model-not-a-model", ["predict", "--model", "good.csv", "--data", "good.csv"], 1,
     r"not a backprop_numba model file"),
    ("model-missing", ["evaluate", "--model", "missing.npz", "--data", "good.csv"], 1, r"not found"),
    ("predict-features", ["predict", "--model", "model.npz", "--data", "wide.csv"], 1, r"features"),
]

CLI_DRIVER = """
import contextlib, io, json, sys
from backprop_numba import cli
rows = json.loads(sys.argv[1])
out = {}
for name, argv in rows:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = cli.main(argv)
    except BaseException as exc:  # anything escaping main() is a bug
        status = f"{type(exc).__name__}: {exc}"
    out[name] = [status, err.getvalue()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    pytest.importorskip("backprop_numba.cli")
    import json
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    Xc = rng.normal(size=(30, 3))
    lines = ["a,b,c,target"] + [",".join(f"{v:.4f}" for v in row) + f",{int(row[0] > 0)}" for row in Xc]
    (folder / "good.csv").write_text("\n".join(lines) + "\n")
    (folder / "nan.csv").write_text("\n".join(lines[:5] + ["1.0,nan,2.0,1"] + lines[5:]) + "\n")
    (folder / "strings.csv").write_text("\n".join(lines[:5] + ["1.0,hello,2.0,1"] + lines[5:]) + "\n")
    (folder / "empty.csv").write_text("")
    (folder / "wide.csv").write_text("a,b,c,d,target\n" + "1,2,3,4,0\n1,2,3,5,1\n")
    (folder / "bad.toml").write_text("epochs = [\n")
    MLP([3, 4, 2], loss="cross_entropy", seed=0).save(folder / "model.npz")
    data = bytearray((folder / "model.npz").read_bytes())
    data[100] ^= 1
    (folder / "corrupt.npz").write_bytes(bytes(data))
    rows = [[row[0], row[1]] for row in CLI_ROWS]
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", CLI_DRIVER, json.dumps(rows)], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    # and the real console entry point once: an exit status, one line, no traceback
    real = subprocess.run([sys.executable, "-m", "backprop_numba.cli", "train", "--data", "good.csv", "--layers",
                           "3,0,2"], cwd=folder, capture_output=True, text=True, timeout=120)
    results["console-entry-point"] = [real.returncode, real.stderr]
    return results


@pytest.mark.parametrize("name, argv, status, match", CLI_ROWS + [("console-entry-point", None, 2, r"--layers")],
                         ids=[row[0] for row in CLI_ROWS] + ["console-entry-point"])
def test_cli_bad_input(cli_results, name, argv, status, match):
    import re

    got_status, stderr = cli_results[name]
    assert got_status == status, f"exit status {got_status!r}, stderr: {stderr}"
    assert "Traceback" not in stderr
    assert stderr.startswith("backprop-numba"), stderr
    assert re.search(match, stderr), stderr


# -- the scikit-learn estimators ----------------------------------------------------------

def _estimators():
    return pytest.importorskip("backprop_numba.estimators")


XE = RNG.normal(size=(12, 3))
YE = np.array([0, 1, 2] * 4)


def _clf(**kw):
    return _estimators().MLPClassifier(**{"hidden_layer_sizes": (4,), "max_iter": 2, "random_state": 0, **kw})


def _reg(**kw):
    return _estimators().MLPRegressor(**{"hidden_layer_sizes": (4,), "max_iter": 2, "random_state": 0, **kw})


ESTIMATOR_ROWS = [
    ("est-hidden-zero", lambda: _clf(hidden_layer_sizes=(0,)).fit(XE, YE), ValueError,
     r"hidden_layer_sizes\[0\] must be >= 1"),
    ("est-hidden-float", lambda: _clf(hidden_layer_sizes=(2.5,)).fit(XE, YE), TypeError,
     r"hidden_layer_sizes\[0\] must be an integer"),
    ("est-solver", lambda: _clf(solver="lbfgs").fit(XE, YE), ValueError, r"solver must be one of"),
    ("est-activation", lambda: _clf(activation="swish").fit(XE, YE), ValueError, r"activation must be one of"),
    ("est-schedule", lambda: _clf(learning_rate="adaptive").fit(XE, YE), ValueError, r"learning_rate must be one of"),
    # named "learning_rate" (MLP.fit's name; the estimator's learning_rate is the schedule): left to the owner
    ("est-lr", lambda: _clf(learning_rate_init=0.0).fit(XE, YE), ValueError, r"learning_rate(_init)? must be > 0"),
    ("est-alpha", lambda: _reg(alpha=-1.0).fit(XE, XE[:, 0]), ValueError, r"alpha must be >= 0"),
    ("est-beta", lambda: _clf(beta_1=1.0).fit(XE, YE), ValueError, r"beta_1 must be < 1"),
    ("est-epsilon", lambda: _clf(epsilon=0.0).fit(XE, YE), ValueError, r"epsilon must be > 0"),
    ("est-shuffle", lambda: _clf(shuffle="yes").fit(XE, YE), TypeError, r"shuffle must be True or False"),
    ("est-max-iter", lambda: _clf(max_iter=0).fit(XE, YE), ValueError, r"max_iter must be >= 1"),
    ("est-batch", lambda: _clf(batch_size="big").fit(XE, YE), ValueError, r"batch_size must be 'auto' or an int"),
    ("est-validation-fraction", lambda: _clf(early_stopping=True, validation_fraction=1.5).fit(XE, YE), ValueError,
     r"validation_fraction must be < 1"),
    ("est-dtype", lambda: _clf(dtype="float16").fit(XE, YE), ValueError, r"dtype must be float32 or float64"),
    ("est-x-nan", lambda: _clf().fit(np.where(XE > 1, np.nan, XE), YE), ValueError, r"NaN"),
    ("est-x-complex", lambda: _clf().fit(XE.astype(complex), YE), ValueError, r"[Cc]omplex"),
    ("est-one-class", lambda: _clf().fit(XE, np.zeros(12)), ValueError, r"at least 2 classes"),
    ("est-continuous-y", lambda: _clf().fit(XE, XE[:, 0]), ValueError, r"[Uu]nknown label type"),
    ("est-y-nan", lambda: _reg().fit(XE, np.where(XE[:, 0] > 1, np.nan, 0.0)), ValueError, r"NaN"),
    ("est-predict-features", lambda: _reg().fit(XE, XE[:, 0]).predict(XE[:, :2]), ValueError, r"features"),
    ("est-not-fitted", lambda: _clf().predict(XE), ValueError, r"not fitted"),
]


@pytest.mark.parametrize("call, exc, match", [row[1:] for row in ESTIMATOR_ROWS], ids=[row[0] for row in ESTIMATOR_ROWS])
def test_estimator_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# check_params' fast test (_validation._remember_accepts) lets a value through unchecked only where the full
# check (check_one) would return it unchanged: over every spec of every table and values at and beyond bounds.
def _every_spec():
    from backprop_numba import data_parallel, estimators, optimizers, training
    tables = [training.FIT_AND_OPTIMIZER_PARAMS, training.PARTIAL_FIT_AND_OPTIMIZER_PARAMS, estimators.PARAMS,
              data_parallel.DP_PARAMS] + [cls.PARAMS for cls in optimizers.CLASSES.values()]
    return [(name, spec) for table in tables for name, spec in sorted(table.items())]


def _edge_values():
    from hypothesis import strategies as st
    tiny, big = np.nextafter(0.0, 1.0), np.finfo(np.float64).max
    edges = [0.0, -0.0, 1.0, -1.0, tiny, -tiny, float(np.nextafter(1.0, 0.0)), float(np.nextafter(1.0, 2.0)),
             big, -big, np.inf, -np.inf, np.nan, 0, 1, -1, 2, True, False, None, "", "raise", "skip", "sgd",
             "adam", "mse", "relu", "constant", np.float64(0.5), np.float32(0.5), np.int64(3), np.bool_(True)]
    return st.one_of(st.sampled_from(edges), st.floats(), st.integers(-5, 5))


def test_the_fast_test_accepts_only_what_the_full_check_returns_unchanged():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from backprop_numba._validation import _remember_accepts, check_one

    specs = _every_spec()
    assert {spec["kind"] for _, spec in specs} == {"real", "int", "bool", "choice"}

    @settings(max_examples=3000, deadline=None)
    @given(st.sampled_from(specs), _edge_values())
    def check(named, value):
        name, spec = named
        if _remember_accepts(dict(spec))(value):
            out = check_one(name, value, spec)
            assert type(out) is type(value) and (out == value or (out is value))
            assert np.copysign(1.0, out) == np.copysign(1.0, value) if type(value) is float else True

    check()
