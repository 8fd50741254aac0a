"""Both cores: every parallel loop against its serial form, bit for bit, and the epoch on 1 vs 2 threads.

The parallel loops (``_kernels._dense_slices``, ``_backprop_linear_slices``,
``_outer_sum_slices``) give each thread whole slices of the output, computed
with the serial loop's own arithmetic, so their results must equal the
serial loop's exactly, whatever the slice remainders and the thread count.
The epoch takes them where the work passes ``PARALLEL_MIN_WORK``; trained on
one thread (``numba.set_num_threads(1)``) and on the default threads, a
network must come out identical.  Safety (threads, fork, cache, bounds) is
in test_threads.py and test_bounds.py.
"""

import numba
import numpy as np
import pytest

from backprop_numba import MLP
from backprop_numba import _kernels as K
from backprop_numba._threads import call_kernel, kernel_threads

# widths around the slice steps (4 units, 12 where the 6 x 4 forward tiles run, 16 inputs) and the slice
# count (threads x SLICES_PER_THREAD); the forward cut by samples (150 x 100 -> 30 with AVX-512, float64)
SHAPES = [(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 130, 67), (70, 129, 130), (5, 200, 4), (150, 40, 10), (70, 600, 30), (150, 100, 30)]


def _data(B, n_in, n_out, dtype, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_out, n_in)).astype(dtype), rng.standard_normal(n_out).astype(dtype),
            rng.standard_normal((B, n_in)).astype(dtype), rng.standard_normal((B, n_out)).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B, n_in, n_out", SHAPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_loops_equal_serial_loops_exactly(B, n_in, n_out, dtype, threads):
    W, b, A, D = _data(B, n_in, n_out, dtype, seed=B * n_in + n_out)
    z_serial, z_par = np.empty((B, n_out), dtype), np.full((B, n_out), np.nan, dtype)
    K._dense_units(W, b, A, z_serial, 0, n_out)
    K._dense_slices(W, b, A, z_par, threads)
    np.testing.assert_array_equal(z_par, z_serial)

    o_serial, o_par = np.empty((B, n_in), dtype), np.full((B, n_in), np.nan, dtype)
    K._backprop_linear_inputs(W, D, o_serial, 0, 0, n_in)
    K._backprop_linear_slices(W, D, o_par, np.empty(0, dtype), np.empty(0, dtype), 0, n_in, min((n_in + 15) // 16, threads * K.SLICES_PER_THREAD))
    np.testing.assert_array_equal(o_par, o_serial)

    scale = dtype(0.5)
    g_serial, g_par = np.empty((n_out, n_in), dtype), np.full((n_out, n_in), np.nan, dtype)
    K._outer_sum_units(D, A, scale, g_serial, 0, n_out)
    K._outer_sum_slices(D, A, scale, g_par, np.empty(0, dtype), np.empty(0, dtype), 0, n_out, min((n_out + 3) // 4, threads * K.SLICES_PER_THREAD))
    np.testing.assert_array_equal(g_par, g_serial)


@pytest.mark.parametrize("n, n_slices, step", [(1, 1, 4), (7, 8, 4), (130, 8, 4), (129, 8, 16), (784, 12, 16)])
def test_slices_cover_the_range_once(n, n_slices, step):
    bounds = [K._slice_bounds(n, p, n_slices, step) for p in range(n_slices)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    for (lo, hi), (lo_next, _) in zip(bounds, bounds[1:]):
        assert lo <= hi == lo_next and lo % step == 0


def test_dispatch_takes_the_parallel_loop_only_where_it_pays():
    assert not K._parallel_pays(1, 10 ** 9, 8)
    assert not K._parallel_pays(2, K.PARALLEL_MIN_WORK - 1, 8)
    assert K._parallel_pays(2, K.PARALLEL_MIN_WORK, 8)
    # float32: twice the multiply-adds (a core does twice as many a cycle)
    assert not K._parallel_pays(2, 2 * K.PARALLEL_MIN_WORK - 1, 4)
    assert K._parallel_pays(2, 2 * K.PARALLEL_MIN_WORK, 4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_activation_equals_serial_activation_exactly(dtype, threads):
    from backprop_numba.activations import CODES, SOFTMAX
    rng = np.random.default_rng(threads)
    z = (rng.standard_normal((67, 130)) * 30).astype(dtype)  # saturating values too (exp under- and overflow)
    for name, code in CODES.items():
        if code == SOFTMAX:
            continue
        serial, par, rows = np.empty_like(z), np.full_like(z, np.nan), np.full_like(z, np.nan)
        K._activate(code, z, serial)
        K._activate_slices(code, z, par, threads)
        np.testing.assert_array_equal(par, serial, err_msg=name)
        K._activate_rows(code, z, rows, threads)  # 67 x 130 >= ACTIVATE_PARALLEL_MIN: the slices where threads > 1
        np.testing.assert_array_equal(rows, serial, err_msg=name)
    assert 67 * 130 >= K.ACTIVATE_PARALLEL_MIN


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch_size, optimizer", [(60, "adam"), (70, "momentum"), (256, "sgd")])
def test_epoch_on_two_threads_equals_one_thread(dtype, batch_size, optimizer):
    """[150, 280, 130, 3]: from B = 60 every matrix loop but the output layer's passes PARALLEL_MIN_WORK
    (twice that in float32); B = 60 takes the row updates of W^T delta and dC/dW in layer 2, B = 70 the
    dot-product forms, B = 256 a partial last batch."""
    # layer 2 at B = 60: both row-update forms (B < TRANSPOSE_MIN_BATCH, B n_out < DOT_MIN_WORK), in parallel
    assert 60 * 280 * 130 >= 2 * K.PARALLEL_MIN_WORK and 60 < K.TRANSPOSE_MIN_BATCH and 60 * 130 < K.DOT_MIN_WORK
    if kernel_threads() < 2:
        pytest.skip("the kernels run on one thread here (no tbb layer or NUMBA_NUM_THREADS=1)")
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(300, 150)), rng.integers(0, 3, 300)
    nets = []
    for threads in (1, kernel_threads()):
        net = MLP([150, 280, 130, 3], activation="tanh", loss="cross_entropy", seed=1, dtype=dtype)
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            history = net.fit(X, Y, epochs=2, batch_size=batch_size, optimizer=optimizer, learning_rate=0.01,
                              validation_data=(X[:50], Y[:50]), progress=False)
            loss, grads = net.loss_and_gradients(X, Y)
            out = net.forward(X)
        finally:
            numba.set_num_threads(previous)
        nets.append((net.theta.copy(), history["loss"], history["val_loss"], loss, out))
    (theta1, h1, v1, l1, o1), (theta2, h2, v2, l2, o2) = nets
    np.testing.assert_array_equal(theta2, theta1)
    np.testing.assert_array_equal(o2, o1)
    assert h2 == h1 and v2 == v1 and l2 == l1


def test_tbb_layer_is_picked_when_the_tbb_package_is_installed():
    """pip's tbb wheel puts libtbb where a venv's loader does not look; _threads preloads it, so numba's
    default choice is tbb (without the preload it falls to omp or workqueue and the kernels stay serial)."""
    import importlib.metadata
    try:
        importlib.metadata.distribution("tbb")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the tbb package is not installed")
    kernel_threads()
    assert numba.threading_layer() == "tbb"


def test_kernel_threads_follows_numba():
    """kernel_threads() is numba's thread count on the tbb layer (set_num_threads lowers it), else 1."""
    threads = kernel_threads()
    if numba.threading_layer() != "tbb":
        assert threads == 1
        return
    assert threads == numba.get_num_threads()
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert kernel_threads() == 1
    finally:
        numba.set_num_threads(previous)


@numba.njit
def _chunk_size_inside(threads):
    return numba.get_parallel_chunksize()


def test_call_kernel_deals_one_slice_at_a_time_and_restores_the_chunk_size():
    """call_kernel runs a kernel with numba's chunk size 1 where it has threads (through numba's C entry points,
    _threads._fast_calls) and leaves the caller's chunk size as it was."""
    previous = numba.set_parallel_chunksize(7)
    try:
        inside = call_kernel(_chunk_size_inside)
        assert inside == (1 if kernel_threads() > 1 else 7)
        assert numba.get_parallel_chunksize() == 7
    finally:
        numba.set_parallel_chunksize(previous)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "rmsprop"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_parallel_optimizer_step_equals_serial_step(name, dtype):
    """_step_slices runs each rule on its own slice of theta: the same numbers as the whole-theta rule."""
    from backprop_numba import optimizers
    opt = optimizers.CLASSES[name]()
    rng = np.random.default_rng(3)
    P = K.PARALLEL_MIN_PARAMS + 77
    theta = rng.standard_normal(P).astype(dtype)
    state = opt.new_state(P, dtype)
    hyper = opt.hyper_array()
    grads = [rng.standard_normal(P).astype(dtype) for _ in range(3)]
    no_layers = np.zeros((5, 1), np.int64)  # arch is read only for weight decay (0 here)
    results = []
    for threads in (1, 2, 3):
        th, st = theta.copy(), state.copy()
        for t, grad in enumerate(grads, start=1):
            K._update(opt.code, th, grad.copy(), st, 0.01, hyper, t, no_layers, threads)
        results.append((th, st))
    for th, st in results[1:]:
        np.testing.assert_array_equal(th, results[0][0])
        np.testing.assert_array_equal(st, results[0][1])
