"""What one data-parallel sync costs on Dask, and a data-parallel epoch against one process.

For [784,64,10] and [784,512,512,10], with SGD (theta travels: P float64 values each way per worker)
and Adam (theta and the two moments: 3 P), on a LocalCluster of 1 and 2 worker processes (one thread
each, no dashboard), this measures

- "sync": the round trip of one average with no training in it (``data_parallel._Run.round`` over
  empty stretches of the epoch): the parameters sent, one task per worker that loads them into its
  network and copies them out, gather, weighted mean.  Median of REPEATS, with the parameters
  scattered (``Client.scatter(broadcast=True)``) and with them inside each task (the implementation
  picks by size, ``data_parallel.INLINE_BYTES``);
  [4,3,2] (23 parameters) gives the fixed cost of a round, whatever the size;
- "epoch": an epoch of ROWS random rows at batch 32 with Adam: ``MLP.fit`` in this process against
  ``fit_data_parallel`` on 1 and 2 workers, averaging once per epoch and every SYNC_STEPS steps; the
  median epoch (history["seconds"]) over EPOCH_REPEATS runs of EPOCHS epochs, and apart the rest of
  each call (mostly shipping the shards to the workers, once per call).

Prints a table, the machine's load average and CPU, and writes benchmarks/results/data_parallel_cost.json.
Run: ``PYTHONPATH=. python benchmarks/data_parallel_cost.py [--quick]``.
"""

import json
import os
import platform
import sys
import time
import warnings

import numpy as np

from backprop_numba import MLP
from backprop_numba import data_parallel as dp

QUICK = "--quick" in sys.argv
REPEATS = 5 if QUICK else 30
EPOCH_REPEATS = 1 if QUICK else 3
EPOCHS = 2
SYNC_STEPS = 16
ROWS = {"784-64-10": 16384, "784-512-512-10": 4096}
NETS = {"784-64-10": [784, 64, 10], "784-512-512-10": [784, 512, 512, 10]}
TINY = {"4-3-2": [4, 3, 2]}  # a sync of a few bytes: the fixed cost of a Dask round
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "data_parallel_cost.json")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def sync_times(client, sizes, optimizer, n_workers):
    """Seconds per sync (median; scattered and in the task) and the bytes one worker receives per sync."""
    net = MLP(sizes, activation="relu", loss="cross_entropy", seed=0)
    X = np.random.default_rng(0).random((8 * n_workers, sizes[0]))
    Y = np.eye(sizes[-1])[np.arange(8 * n_workers) % sizes[-1]]
    addresses = dp._workers(client, n_workers, 30.0)
    opts = dict(optimizer=optimizer, on_nonfinite="raise")
    run = dp._Run(client, addresses, net, dp._place(client, addresses, dp._shards(X, Y, None, n_workers, 8)), opts)
    jobs = [dict(first=0, stop=0, lr=0.01, shuffle_seed=-1, dropout_seed=-1, skip=False, t=0, sums=(0.0, 0.0, 0.0))
            for _ in addresses]  # empty stretches: the round trip alone
    try:
        out = {}
        for name, inline in (("scattered", False), ("in the task", True)):
            run.inline = inline  # the implementation picks by size (data_parallel.INLINE_BYTES); both timed here
            run.round(jobs)  # warm: the workers build their network and buffers
            times = []
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                run.round(jobs)
                times.append(time.perf_counter() - t0)
            out[name] = float(np.median(times))
        return out, run.params.nbytes
    finally:
        run.close()


def epoch_times(client, name, sizes):
    """Seconds of an epoch (median over runs of EPOCHS epochs, from the history) and of the rest of a call
    (starting, shipping the shards, the workers' set-up): fit here, fit_data_parallel on 1 and 2 workers."""
    rng = np.random.default_rng(1)
    X = rng.random((ROWS[name], sizes[0]))
    y = rng.integers(0, sizes[-1], size=ROWS[name])
    kw = dict(epochs=EPOCHS, batch_size=32, learning_rate=0.001, optimizer="adam", seed=0)
    cases = {"one process (fit)": None}
    for n in (1, 2):
        cases[f"{n} worker{'s' * (n > 1)}, sync once an epoch"] = (n, None)
        cases[f"{n} worker{'s' * (n > 1)}, sync every {SYNC_STEPS} steps"] = (n, SYNC_STEPS)
    MLP(sizes, activation="relu", loss="cross_entropy", seed=0).fit(X[:64], y[:64], progress=False, **kw)  # compile
    epochs = {case: [] for case in cases}
    setup = {case: [] for case in cases}
    for _ in range(EPOCH_REPEATS):  # interleaved, so load changes hit every case alike
        for case, how in cases.items():
            net = MLP(sizes, activation="relu", loss="cross_entropy", seed=0)
            t0 = time.perf_counter()
            if how is None:
                history = net.fit(X, y, progress=False, **kw)
            else:
                history = dp.fit_data_parallel(net, X, y, client=client, n_workers=how[0], sync_every=how[1], **kw)
            epochs[case] += history["seconds"]
            setup[case].append(time.perf_counter() - t0 - sum(history["seconds"]))
    return {case: dict(epoch=float(np.median(epochs[case])), setup=float(np.median(setup[case]))) for case in cases}


def main():
    import distributed
    warnings.simplefilter("ignore", UserWarning)  # "Large object ... in task graph" for the in-task variant
    result = dict(machine=dict(cpu=cpu_name(), cores=os.cpu_count(), load_before=os.getloadavg()),
                  quick=QUICK, repeats=REPEATS, sync={}, epoch={})
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       scheduler_kwargs={"dashboard_address": ":0"})  # 8787 may be taken
    client = distributed.Client(cluster)
    try:
        for name, sizes in {**TINY, **NETS}.items():
            for optimizer in ("sgd", "adam"):
                for n in (1, 2):
                    seconds, nbytes = sync_times(client, sizes, optimizer, n)
                    key = f"{name} {optimizer} {n}w"
                    result["sync"][key] = dict(seconds=seconds, bytes_each_way_per_worker=nbytes,
                                               bytes_per_sync=2 * n * nbytes)
                    print(f"sync  {key:26s} {seconds['scattered'] * 1e3:8.1f} ms scattered, "
                          f"{seconds['in the task'] * 1e3:7.1f} ms in the task  {2 * n * nbytes / 1e6:7.2f} MB moved",
                          flush=True)
        for name, sizes in NETS.items():
            result["epoch"][name] = epoch_times(client, name, sizes)
            for case, seconds in result["epoch"][name].items():
                print(f"epoch {name:16s} {ROWS[name]} rows  {case:34s} {seconds['epoch']:7.2f} s an epoch "
                      f"(+ {seconds['setup']:5.2f} s a call)", flush=True)
    finally:
        client.close()
        cluster.close()
    result["machine"]["load_after"] = os.getloadavg()
    print(f"CPU {result['machine']['cpu']}, {result['machine']['cores']} cores; load average before "
          f"{result['machine']['load_before']}, after {result['machine']['load_after']}")
    if not QUICK:
        with open(OUT, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
