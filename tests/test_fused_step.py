"""The fused small-batch step (``_kernels._backward_update``, batches of up to
FUSED_MAX_BATCH samples) against its plain reference: the blocked kernels one
step at a time (``_loss_and_gradients``, then ``_update``, the path of larger
batches), for every optimizer, hidden activation, loss, sample weights, weight
decay and dtype; the finiteness bound that lets it skip the gradient check;
and the fallback to the blocked path where the bound cannot prove anything.
"""

import copy

import numpy as np
import pytest

from backprop_numba import MLP, optimizers, training
from backprop_numba import _kernels as K
from backprop_numba.training import Workspace

# The two sides sum the same products in different orders (the fused step adds
# a sample's share to a row of the gradient; the blocked kernels use 4x4 tiles).
RTOL = {np.float64: 1e-12, np.float32: 1e-5}
ATOL = {np.float64: 1e-13, np.float32: 1e-6}

NETS = [  # layer sizes, hidden activation, output activation, loss
    ([5, 7, 3], "sigmoid", "identity", "mse"),
    ([6, 9, 4, 3], "tanh", "softmax", "cross_entropy"),
    ([4, 6, 5, 2], "relu", "sigmoid", "bce"),
    ([5, 8, 2], "leaky_relu", "identity", "huber"),
    ([3, 4, 1], "sigmoid", "exp", "poisson"),
    ([5, 6, 2], "tanh", "identity", "mae"),
    # layers over K.TINY_LAYER weights: the row pass (optimizers._step_outer at B = 1) and, on the first
    # layer, the lagged forward of the next sample; one softmax layer alone, whose lagged z is its output
    ([20, 9, 4], "sigmoid", "identity", "mse"),
    ([12, 10, 7, 3], "relu", "softmax", "cross_entropy"),
    ([15, 6], "tanh", "softmax", "cross_entropy"),
]
LAGGED = [case for case, (sizes, *_) in enumerate(NETS) if sizes[0] * sizes[1] > K.TINY_LAYER]


def problem(sizes, loss, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    if loss == "cross_entropy":
        Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    elif loss == "bce":
        Y = (rng.random((n, sizes[-1])) > 0.5).astype(dtype)
    elif loss == "poisson":
        Y = rng.poisson(2.0, (n, sizes[-1])).astype(dtype)
    else:
        Y = rng.standard_normal((n, sizes[-1])).astype(dtype)
    return X, Y


def blocked_reference(net, X, Y, SW, batch_size, optimizer, lr, perm):
    """The epoch step by step through the blocked kernels: theta, state and the summed loss."""
    theta = net.theta.copy()
    state = optimizer.new_state(net._n_params, net.dtype)
    hyper = optimizer.hyper_array()
    total = 0.0
    twin = copy.deepcopy(net)
    for step, start in enumerate(range(0, X.shape[0], batch_size)):
        rows = perm[start:start + batch_size]
        twin.theta[...] = theta
        sw = None if SW is None else np.ascontiguousarray(SW[rows])
        value, grad = twin._loss_and_flat_gradient(np.ascontiguousarray(X[rows]), np.ascontiguousarray(Y[rows]), sw)
        assert np.all(np.isfinite(grad))
        K._update(optimizer.code, theta, grad, state, lr, hyper, step + 1, net._arch, 1)
        total += value * (len(rows) if sw is None else float(sw.sum()))
    return theta, state, total


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch_size", [1, 3, K.FUSED_MAX_BATCH])
@pytest.mark.parametrize("net_case", range(len(NETS)))
def test_fused_step_matches_blocked_kernels(net_case, batch_size, dtype):
    sizes, hidden, output, loss = NETS[net_case]
    n = 2 * K.FUSED_MAX_BATCH + 3  # a last partial batch
    X, Y = problem(sizes, loss, n, dtype, seed=net_case)
    SW = np.random.default_rng(1).uniform(0.0, 2.0, n).astype(dtype) if net_case % 2 else None
    for optimizer in (optimizers.SGD(), optimizers.Momentum(momentum=0.8, weight_decay=0.01),
                      optimizers.Nesterov(), optimizers.Adam(weight_decay=0.001), optimizers.RMSprop()):
        net = MLP(sizes, activation=hidden, output_activation=output, loss=loss, dtype=dtype, seed=3)
        perm = np.arange(n, dtype=np.int64)
        K._shuffle(perm, 11)
        theta, state, total = blocked_reference(net, X, Y, SW, batch_size, optimizer, 0.05, perm)
        ws = Workspace(net, batch_size, optimizer)
        result = ws.run_epoch(X, Y, 0.05, shuffle_seed=11, sample_weight=SW)
        assert (result.status, result.steps, result.skipped) == (K.OK, -(-n // batch_size), 0)
        np.testing.assert_allclose(net.theta, theta, rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=optimizer.name)
        np.testing.assert_allclose(ws.state, state, rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=optimizer.name)
        np.testing.assert_allclose(result.loss_sum, total, rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("net_case", LAGGED)
def test_one_sample_epoch_is_the_same_wherever_it_is_cut(net_case, dtype):
    """At B = 1 the fused step computes the next sample's W[1] x (the lagged forward) within one call,
    not across calls: an epoch in one call and the same epoch one batch a call (as Ctrl-C, a progress bar
    or the overflow guard's replay cut it) give bit-identical parameters, state and sums.  Zero sample
    weights skip batches, which must drop a lagged forward computed for them."""
    sizes, hidden, output, loss = NETS[net_case]
    n = 40
    X, Y = problem(sizes, loss, n, dtype, seed=net_case)
    SW = np.random.default_rng(2).uniform(0.0, 2.0, n).astype(dtype)
    SW[[3, 4, 17, 39]] = 0.0
    for optimizer in ("sgd", "momentum", "adam", "rmsprop"):
        nets = [MLP(sizes, activation=hidden, output_activation=output, loss=loss, dtype=dtype, seed=4)
                for _ in range(2)]
        whole = Workspace(nets[0], 1, optimizer).run_epoch(X, Y, 0.05, shuffle_seed=5, sample_weight=SW)
        ws, cut = Workspace(nets[1], 1, optimizer), None
        for stop in range(1, n + 1):
            cut = ws.run_epoch(X, Y, 0.05, shuffle_seed=5, sample_weight=SW, resume=cut, stop=stop)
        assert (whole.steps, whole.status) == (n - 4, K.OK) and cut.steps == whole.steps
        np.testing.assert_array_equal(nets[1].theta, nets[0].theta, err_msg=optimizer)
        assert (cut.loss_sum, cut.correct) == (whole.loss_sum, whole.correct)


def test_fused_and_blocked_batch_sizes_agree_on_one_sample_batches():
    """B = 1 through the fused step, and a batch of FUSED_MAX_BATCH + 1 copies of one row through the
    blocked path, give the same step (the gradient of a mean over copies is the row's gradient)."""
    sizes = [6, 10, 8, 3]
    X, Y = problem(sizes, "cross_entropy", 1, np.float64)
    copies = K.FUSED_MAX_BATCH + 1
    nets = [MLP(sizes, activation="tanh", loss="cross_entropy", seed=5) for _ in range(2)]
    Workspace(nets[0], 1, "adam").run_epoch(X, Y, 0.01)
    Workspace(nets[1], copies, "adam").run_epoch(np.repeat(X, copies, 0), np.repeat(Y, copies, 0), 0.01)
    np.testing.assert_allclose(nets[0].theta, nets[1].theta, rtol=1e-12, atol=1e-14)


def bound_inputs(net, X, Y, B):
    """The buffers _gradient_bound reads after the forward pass and delta[L] of a batch of B rows."""
    a_buf, z_buf, d_buf = (np.zeros(B * sum(net.layer_sizes)) for _ in range(3))
    grad = np.empty(net._n_params)
    K._loss_and_gradients(net.theta, net._arch, net._loss_code, net._loss_param, X[:B], Y[:B], np.empty(0),
                          a_buf, z_buf, d_buf, grad, net._drop_rates, -1, 1)
    # _loss_and_gradients leaves every delta; keep delta[L] only, as the fused step sees it
    L = net.n_layers
    d_buf[:B * net._arch[K.UOFF, L]] = np.nan
    w_abs = np.zeros(L + 1)
    K._abs_sum_weights(net.theta, net._arch, w_abs)
    return a_buf, d_buf, w_abs, grad


@pytest.mark.parametrize("seed", range(20))
def test_gradient_bound_holds(seed):
    """Where the bound says finite, it is an upper bound on every gradient entry (random nets, any scale)."""
    rng = np.random.default_rng(seed)
    sizes = [int(v) for v in rng.integers(1, 9, rng.integers(3, 6))]
    hidden = ["sigmoid", "tanh", "relu", "leaky_relu", "identity"][seed % 5]
    net = MLP(sizes, activation=hidden, output_activation="identity", loss="mse", seed=seed)
    net.theta *= 10.0 ** rng.uniform(-2, 2)
    B = int(rng.integers(1, K.FUSED_MAX_BATCH + 1))
    X = rng.standard_normal((B, sizes[0])) * 10.0 ** rng.uniform(-3, 3)
    Y = rng.standard_normal((B, sizes[-1]))
    a_buf, d_buf, w_abs, grad = bound_inputs(net, X, Y, B)
    G = K._gradient_bound(net._arch, a_buf, d_buf, B, 1.0 / B, 0.0, w_abs, np.finfo(np.float64).max / 4)
    assert np.abs(grad).max() <= G * (1 + 1e-12)  # the bound the step proof (optimizers._step_bound) starts from
    # the largest |gradient| is within the bound of its layer
    D = np.abs(d_buf[B * net._arch[K.UOFF, net.n_layers]:]).sum()
    for l in range(net.n_layers, 0, -1):
        A = np.abs(a_buf[B * net._arch[K.UOFF, l - 1]:B * net._arch[K.UOFF, l]]).sum()
        n = net.layer_sizes[l] * net.layer_sizes[l - 1] + net.layer_sizes[l]
        start = net._arch[K.WOFF, l]
        assert np.abs(grad[start:start + n]).max() <= (1.0 / B) * D * max(A, 1.0) * (1 + 1e-12)
        D *= w_abs[l]


def test_gradient_bound_refuses_inf_nan_and_huge_values():
    net = MLP([3, 4, 2], activation="tanh", output_activation="identity", loss="mse", seed=0)
    X, Y = problem([3, 4, 2], "mse", 2, np.float64)
    big = np.finfo(np.float64).max / 4
    a_buf, d_buf, w_abs, _ = bound_inputs(net, X, Y, 2)
    assert K._gradient_bound(net._arch, a_buf, d_buf, 2, 0.5, 0.0, w_abs, big) < big
    for where, value in [(a_buf, np.nan), (a_buf, np.inf), (a_buf, 1e308), (d_buf, np.nan), (w_abs, np.inf)]:
        saved = where.copy()
        index = 1 if where is w_abs else 0  # a[0] (an input) or, in d_buf, delta[L]'s first entry below
        if where is d_buf:
            index = 2 * net._arch[K.UOFF, net.n_layers]
        where[index] = value
        assert K._gradient_bound(net._arch, a_buf, d_buf, 2, 0.5, 0.0, w_abs, big) == np.inf
        where[...] = saved
    # weight decay enters the bound through sum |W|
    assert K._gradient_bound(net._arch, a_buf, d_buf, 2, 0.5, 1e308, w_abs, big) == np.inf


def test_huge_but_finite_gradient_takes_the_blocked_path_with_the_same_result():
    """Eight inputs of 1e307: sum |a[0]| is past the bound's limit (a quarter of the largest float), so
    the step runs the blocked path (exact check); the gradient is finite and the result the reference's."""
    sizes = [8, 3, 1]
    X = np.full((1, 8), 1e307)
    Y = np.array([[0.5]])
    net = MLP(sizes, activation="tanh", output_activation="identity", loss="mse", seed=1)
    net.theta[:24] = 1e-310  # W[1]: z[1] stays small
    perm = np.arange(1, dtype=np.int64)
    theta, _, _ = blocked_reference(net, X, Y, None, 1, optimizers.SGD(), 1e-320, perm)
    result = Workspace(net, 1, "sgd").run_epoch(X, Y, 1e-320)
    assert result.status == K.OK and result.steps == 1
    np.testing.assert_array_equal(net.theta, theta)


@pytest.mark.parametrize("skip", [False, True])
def test_overflowing_gradient_at_batch_size_one(skip):
    """A finite loss whose gradient overflows: no update, the same status as the blocked path's."""
    X = np.array([[1e308, 0.0], [1.0, 2.0]])
    Y = np.array([[1e3], [0.0]])
    net = MLP([2, 3, 1], activation="identity", output_activation="identity", loss="mse", seed=2)
    net.theta[:6] = 1e-300
    before = net.theta.copy()
    result = Workspace(net, 1, "sgd").run_epoch(X, Y, 0.01, skip_nonfinite=skip)
    if skip:
        assert (result.status, result.skipped, result.steps) == (K.OK, 1, 1)
    else:
        assert (result.status, result.steps) == (K.NONFINITE_GRADIENT, 0)
        np.testing.assert_array_equal(net.theta, before)


# --------------------------------------------------------------------------
# Steps without a copy of theta (_train_batches' prove, Workspace._guarded)
# --------------------------------------------------------------------------

OPTIMIZERS = [optimizers.SGD(), optimizers.Momentum(momentum=0.8, weight_decay=0.01), optimizers.Nesterov(),
              optimizers.Adam(beta1=0.5, weight_decay=0.001), optimizers.RMSprop(eps=1e-3)]


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: o.name)
def test_step_bound_holds_for_every_rule(optimizer, seed):
    """Every element moves by at most U, and the first moment ends at most V' (optimizers._step_bound), for
    gradients |g| <= G and a state whose first moment is at most V (optimizers._state_bound), t = 1..3."""
    rng = np.random.default_rng(seed)
    n = 200
    theta = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3)
    state = optimizer.new_state(n, np.float64)
    if state.shape[0]:
        state[0] = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3)
        if optimizer.code in (optimizers.ADAM_CODE, optimizers.RMSPROP_CODE):
            state[-1] = np.abs(state[-1]) * 10.0 ** rng.uniform(-20, 0)  # second moments >= 0, some tiny
    state[:, :5] = 0.0  # zero second moments: the division by eps alone
    hyper = optimizer.hyper_array()
    for t in (1, 2, 3):
        G = 10.0 ** rng.uniform(-3, 3)
        grad = rng.uniform(-G, G, n)
        grad[0] = G
        V = optimizers._state_bound(optimizer.code, state, t)
        c1, c2 = optimizers._step_factors(optimizer.code, 0.1, hyper, t)
        U, V_next = optimizers._step_bound(optimizer.code, hyper, c1, G, V)
        before = theta.copy()
        optimizers._step_range(optimizer.code, theta, grad, state, hyper, c1, c2, np.uint64(0), np.uint64(n))
        # (the rounding of theta - update to theta's precision on top)
        assert (np.abs(theta - before) <= U * (1 + 1e-12) + 2 * np.spacing(np.abs(before))).all()
        if optimizer.code in (optimizers.MOMENTUM_CODE, optimizers.NESTEROV_CODE, optimizers.ADAM_CODE):
            assert np.abs(state[0]).max() <= V_next * (1 + 1e-12)


def test_state_bound_refuses_nan_moments_and_skips_a_fresh_state():
    state = np.zeros((2, 4))
    assert optimizers._state_bound(optimizers.ADAM_CODE, state, 0) == 0.0
    state[0] = [1.0, -2.0, 0.5, 0.0]
    assert optimizers._state_bound(optimizers.ADAM_CODE, state, 3) == 3.5
    state[1, 2] = np.nan  # sqrt(NaN) would make theta NaN
    assert optimizers._state_bound(optimizers.ADAM_CODE, state, 3) == np.inf
    assert optimizers._state_bound(optimizers.RMSPROP_CODE, state[1:], 3) == np.inf
    assert np.isnan(optimizers._state_bound(optimizers.MOMENTUM_CODE, np.full((1, 2), np.nan), 3))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch_size", [1, K.FUSED_MAX_BATCH])
@pytest.mark.parametrize("net_case", [0, 1, 6, 7])
def test_proven_steps_equal_the_copied_path(net_case, batch_size, dtype):
    """An epoch whose steps the kernel proves (no copy of theta) is bit-identical to the same epoch
    through the copy-and-check path (Workspace._copied), for every optimizer: theta, state, sums."""
    sizes, hidden, output, loss = NETS[net_case]
    n = 3 * K.FUSED_MAX_BATCH + 1
    X, Y = problem(sizes, loss, n, dtype, seed=net_case)
    for optimizer in OPTIMIZERS:
        nets = [MLP(sizes, activation=hidden, output_activation=output, loss=loss, dtype=dtype, seed=6)
                for _ in range(2)]
        proven, copied = Workspace(nets[0], batch_size, optimizer), Workspace(nets[1], batch_size, optimizer)
        copied._guarded = copied._copied
        for epoch in range(2):  # the second starts from a state that is no longer zero
            a = proven.run_epoch(X, Y, 0.05, shuffle_seed=epoch)
            b = copied.run_epoch(X, Y, 0.05, shuffle_seed=epoch)
            assert (a.batches, a.steps, a.status, a.loss_sum, a.correct) == \
                (b.batches, b.steps, b.status, b.loss_sum, b.correct)
        np.testing.assert_array_equal(nets[0].theta, nets[1].theta, err_msg=optimizer.name)
        np.testing.assert_array_equal(proven.state, copied.state, err_msg=optimizer.name)
        assert proven.step == copied.step == 2 * -(-n // batch_size)


def test_kernel_proves_ordinary_steps_and_stops_before_an_unprovable_one():
    """Ordinary batches are all proven (the call needs no copy); a batch whose step could overflow theta
    stops the proven call (NOT_PROVEN) before it, and the copied path takes it: the epoch then equals one
    through the copied path alone, the overflowing step undone and skipped."""
    sizes = [1, 1]
    X = np.full((6, 1), 1e-4, np.float32)
    Y = np.float32(0.5) * X  # the net's own output: a zero gradient, a step that changes nothing
    X[3], Y[3] = 1e18, 0.0  # loss and gradient (~1e36) finite in float32, the SGD step at lr = 1e3 overflows theta
    nets = [MLP.from_weights([np.array([[0.5]], np.float32)], [np.zeros(1, np.float32)],
                             output_activation="identity", loss="mse") for _ in range(3)]
    ws = Workspace(nets[0], 1, "sgd")
    ws.perm = np.arange(6, dtype=np.int64)  # the row order, which the bare kernel call below reads unchecked
    done, seen, steps, skipped, status = ws._kernel(X, Y, ws.unweighted, 0, 6, 1e3, 0, True, prove=True)
    assert (done, steps, status) == (3, 3, K.NOT_PROVEN)
    assert np.isfinite(nets[0].theta).all()
    proven, copied = Workspace(nets[1], 1, "sgd"), Workspace(nets[2], 1, "sgd")
    copied._guarded = copied._copied
    a = proven.run_epoch(X, Y, 1e3, skip_nonfinite=True)
    b = copied.run_epoch(X, Y, 1e3, skip_nonfinite=True)
    assert (a.steps, a.skipped, a.status) == (b.steps, b.skipped, b.status) == (5, 1, K.OK)
    np.testing.assert_array_equal(nets[1].theta, nets[2].theta)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [0, 1, 1023, 1024, 1025, 3 * 1024 + 7])
def test_all_finite_blocks_agree_with_numpy(n, dtype):
    """_kernels._all_finite (the blocked path's gradient test, 1024 elements a block) against NumPy: the largest
    finite values pass; one NaN, +inf or -inf anywhere (first, a block's edges, the tail) fails."""
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    if n:
        x[-1] = np.finfo(dtype).max
        x[0] = -np.finfo(dtype).max
    assert K._all_finite(x)
    for i in sorted({0, 1023, 1024, n - 1} & set(range(n))):
        for bad in (np.nan, np.inf, -np.inf):
            y = x.copy()
            y[i] = bad
            assert K._all_finite(y) == bool(np.isfinite(y).all()) == False  # noqa: E712


# fit's and partial_fit's theta check hands the fused step its sums (check_theta_sums, Workspace.knows_sums)

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_theta_check_gives_the_kernels_sums_and_refuses_nan_and_inf(dtype):
    """check_theta_sums returns the S[l] = sum |W[l]| the kernel would compute (its own pass, _abs_sum_weights),
    raises fit's error on NaN or inf anywhere in theta, and passes finite values whose sums overflow (the bound
    then refuses the fused step, as from the kernel's own sums)."""
    net = MLP([6, 5, 3], dtype=dtype, seed=2)
    expected = np.zeros(3)
    K._abs_sum_weights(net.theta, net._arch, expected)
    w_abs = training.check_theta_sums(net)
    assert w_abs[0] == 0.0  # marked fresh
    np.testing.assert_array_equal(w_abs[1:], expected[1:])
    for i in (0, 6 * 5 - 1, 6 * 5, net._n_params - 1):  # W[1]'s first and last, b[1]'s first, b[2]'s last
        for bad in (np.nan, np.inf, -np.inf):
            broken = copy.deepcopy(net)
            broken.theta[i] = bad
            with pytest.raises(ValueError, match="theta must be finite"):
                training.check_theta_sums(broken)
    huge = copy.deepcopy(net)
    huge.theta[...] = np.finfo(dtype).max
    assert (training.check_theta_sums(huge)[1:] > np.finfo(dtype).max / 4).all()  # float64's overflow to inf


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_with_the_checks_sums_equals_fit_without(monkeypatch, optimizer):
    """fit and partial_fit with the check's sums handed over are bit-identical to the kernel summing itself."""
    sizes = [20, 9, 4]  # layer 1 over TINY_LAYER: the row pass
    X, Y = problem(sizes, "mse", 17, np.float64)
    results = []
    for handed in (True, False):
        if not handed:
            monkeypatch.setattr(Workspace, "knows_sums", lambda self, w_abs: None)
        nets = [MLP(sizes, activation="sigmoid", output_activation="identity", seed=3) for _ in range(2)]
        nets[0].fit(X, Y, epochs=2, batch_size=1, optimizer=optimizer, learning_rate=0.05, progress=False)
        for _ in range(2):
            nets[1].partial_fit(X, Y, batch_size=1, optimizer=optimizer, learning_rate=0.05)
        results.append([n.theta.copy() for n in nets])
    for handed, computed in zip(*results):
        np.testing.assert_array_equal(handed, computed)


def test_sums_are_handed_over_only_while_theta_is_unchanged(monkeypatch, tmp_path):
    """A resume replaces theta and a callback's on_train_begin may change it: then fit does not hand its
    sums over.  And a hand-over counts for one compiled call only: after it the kernel sums again."""
    handed = []
    monkeypatch.setattr(Workspace, "knows_sums", lambda self, w_abs: handed.append(w_abs.copy()))
    X, Y = problem([5, 7, 3], "mse", 8, np.float64)
    net = MLP([5, 7, 3], seed=1)
    opts = dict(epochs=1, batch_size=1, progress=False)
    net.fit(X, Y, **opts)
    assert len(handed) == 1

    class Begin:
        def on_train_begin(self, net):
            net.theta[...] *= 2.0

    net.fit(X, Y, callbacks=[Begin()], **opts)
    path = tmp_path / "run.ckpt"
    net.fit(X, Y, checkpoint_every=1, checkpoint_path=path, **opts)
    net.fit(X, Y, resume_from=path, **dict(opts, epochs=2))
    assert len(handed) == 2  # the checkpointed fit's, not the callback's or the resume's
    monkeypatch.undo()
    # a fit that handed its sums over and stopped before its first step leaves them to no later fit
    ws = Workspace.for_fit(net, 1, optimizers.get_optimizer("sgd"))
    ws.knows_sums(np.zeros(3))
    assert Workspace.for_fit(net, 1, optimizers.get_optimizer("sgd")) is ws and not ws.sums_fresh
    ws = Workspace(net, 1, "sgd")
    ws.perm = np.arange(8, dtype=np.int64)
    infinite = np.full(3, np.inf)  # sums no finite theta has: a step that takes them cannot be proven
    ws.knows_sums(infinite)
    assert ws._kernel(X, Y, ws.unweighted, 0, 1, 0.01, 0, False, prove=True)[4] == K.NOT_PROVEN
    assert not ws.sums_fresh
    ws.w_abs[...] = infinite  # not handed over: the next call sums theta itself, and proves its step
    done, _, steps, _, status = ws._kernel(X, Y, ws.unweighted, 0, 1, 0.01, 0, False, prove=True)
    assert (done, steps, status) == (1, 1, K.OK)
