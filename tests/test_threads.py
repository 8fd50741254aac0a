"""Concurrency (issue 4, part 5): kernels release the GIL and MLP allocates its buffers per
call, so threads using different networks, or one network read-only, get exactly the
results of a sequential run.

Each case runs in a subprocess (this file as a script): a threading bug in compiled code,
such as a parallel kernel launched from two threads at once under a threading layer
that forbids it, can abort or hang a process; here that shows up as a failed test, with
the child's output, instead of taking the whole test run down.
"""

import os
import subprocess
import sys
import threading

import numba
import numpy as np
import pytest

ROUNDS = 3


def _data(seed, n, n_in, n_out, classes):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    Y = rng.integers(0, n_out, size=n) if classes else rng.normal(size=(n, n_out))
    return X, Y


def _run_threads(targets):
    """Start every target at the same moment (a barrier) and re-raise the first failure."""
    barrier = threading.Barrier(len(targets))
    errors = []

    def wrap(fn):
        def run():
            try:
                barrier.wait()
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]


def case_train_two_networks():
    from backprop_numba import MLP

    specs = [
        dict(sizes=[12, 32, 16, 4], activation="tanh", loss="cross_entropy", optimizer="adam", seed=1,
             dtype=np.float64, data=_data(10, 600, 12, 4, True)),
        dict(sizes=[8, 24, 3], activation="relu", loss="mse", optimizer="momentum", seed=2,
             dtype=np.float32, data=_data(11, 500, 8, 3, False)),
        # big enough (64 x 64 x 64 multiply-adds a batch) for the kernels' blocked paths
        dict(sizes=[64, 64, 10], activation="sigmoid", loss="cross_entropy", optimizer="sgd", seed=3,
             dtype=np.float64, data=_data(12, 640, 64, 10, True), batch_size=64),
    ]

    def train(spec):
        net = MLP(spec["sizes"], activation=spec["activation"], loss=spec["loss"], seed=spec["seed"],
                  dtype=spec["dtype"])
        X, Y = spec["data"]
        history = net.fit(X, Y, epochs=15, batch_size=spec.get("batch_size", 8), learning_rate=0.01, optimizer=spec["optimizer"],
                          seed=spec["seed"], progress=False, validation_data=(X[:50], Y[:50]))
        return net.theta.copy(), history["loss"], history["val_loss"]

    expected = [train(spec) for spec in specs]
    for _ in range(ROUNDS):
        results = [None] * len(specs)

        def job(i):
            def run():
                results[i] = train(specs[i])
            return run

        _run_threads([job(i) for i in range(len(specs))])
        for (theta, loss, val), (theta_ref, loss_ref, val_ref) in zip(results, expected):
            np.testing.assert_array_equal(theta, theta_ref)
            assert loss == loss_ref and val == val_ref


def case_predict_one_network():
    from backprop_numba import MLP

    # 300 x 96 x 64 multiply-adds in the first layer: the kernels' blocked paths run
    net = MLP([64, 96, 20, 3], activation="sigmoid", loss="cross_entropy", seed=3)
    theta = net.theta.copy()
    inputs = [_data(20 + i, 300, 64, 3, True) for i in range(4)]

    def compute(X, Y):
        V = np.tile(np.array([1.0, -2.0, 0.5]), (X.shape[0], 1))
        loss, grads = net.loss_and_gradients(X, Y)
        return (net.forward(X), net.jacobian(X[:40]), net.vjp(X, V), loss,
                np.concatenate([g.ravel() for pair in grads for g in pair]), net.evaluate(X, Y)["loss"])

    expected = [compute(X, Y) for X, Y in inputs]
    for _ in range(ROUNDS):
        results = [None] * len(inputs)

        def job(i):
            def run():
                for _ in range(5):
                    results[i] = compute(*inputs[i])
                    for got, ref in zip(results[i], expected[i]):
                        np.testing.assert_array_equal(got, ref)
            return run

        _run_threads([job(i) for i in range(len(inputs))])
    np.testing.assert_array_equal(net.theta, theta)


def _parallel_spec(seed):
    """A network and data whose every matrix loop passes the kernels' PARALLEL_MIN_WORK (test_parallel.py)."""
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(280, 150)), rng.integers(0, 3, 280)
    return dict(sizes=[150, 280, 130, 3], X=X, Y=Y, seed=seed)


def _train_parallel(spec, batch_size=70):
    from backprop_numba import MLP

    net = MLP(spec["sizes"], activation="tanh", loss="cross_entropy", seed=spec["seed"])
    history = net.fit(spec["X"], spec["Y"], epochs=3, batch_size=batch_size, optimizer="adam",
                      learning_rate=0.01, progress=False)
    return net.theta.copy(), history["loss"]


def _require_parallel_kernels():
    from backprop_numba._threads import kernel_threads

    threads = kernel_threads()
    print(f"kernel threads: {threads}, layer: {numba.threading_layer()}")
    return threads


def case_parallel_kernels_from_two_threads():
    """Two Python threads each train a network whose loops run on numba's threads: tbb takes the
    nested launches (numba's workqueue layer would abort the process here)."""
    _require_parallel_kernels()
    specs = [_parallel_spec(1), _parallel_spec(2)]
    batch_sizes = [60, 70]  # the row-update and the dot-product forms (test_parallel.py)
    expected = [_train_parallel(spec, bs) for spec, bs in zip(specs, batch_sizes)]
    for _ in range(ROUNDS):
        results = [None, None]

        def job(i):
            def run():
                results[i] = _train_parallel(specs[i], batch_sizes[i])
            return run

        _run_threads([job(0), job(1)])
        for (theta, loss), (theta_ref, loss_ref) in zip(results, expected):
            np.testing.assert_array_equal(theta, theta_ref)
            assert loss == loss_ref


def _train_in_child(seed):
    return _train_parallel(_parallel_spec(seed))


def case_fork_after_parallel_training():
    """The parent trains on numba's threads, then a fork pool trains in its children: no hang, same results
    (GNU OpenMP, numba's omp layer, hangs a forked child that starts parallel work)."""
    import multiprocessing

    _require_parallel_kernels()
    expected = [_train_parallel(_parallel_spec(seed)) for seed in (1, 2, 3)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map_async(_train_in_child, [1, 2, 3]).get(timeout=240)
    for (theta, loss), (theta_ref, loss_ref) in zip(results, expected):
        np.testing.assert_array_equal(theta, theta_ref)
        assert loss == loss_ref


CASES = {"train_two_networks": case_train_two_networks, "predict_one_network": case_predict_one_network,
         "parallel_kernels_from_two_threads": case_parallel_kernels_from_two_threads,
         "fork_after_parallel_training": case_fork_after_parallel_training}


@pytest.mark.parametrize("case", sorted(CASES))
def test_threads(case):
    env = dict(os.environ)
    env.pop("NUMBA_DISABLE_JIT", None)
    done = subprocess.run([sys.executable, "-X", "faulthandler", "-W", "ignore", __file__, case], env=env,
                          capture_output=True, text=True, timeout=300)
    hint = ""
    if done.returncode < 0:
        hint = ("\n(the child died of a signal; if the faulthandler trace below shows the sequential reference "
                "run, not a thread, suspect a broken numba on-disk cache: see "
                "test_bounds.py::test_cached_kernels_across_processes)")
    assert done.returncode == 0, f"exit {done.returncode}{hint}\n" + done.stdout[-3000:] + done.stderr[-5000:]
    assert f"{case}: ok" in done.stdout


if __name__ == "__main__":
    name = sys.argv[1]
    CASES[name]()
    print(f"{name}: ok")
