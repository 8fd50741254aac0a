"""What ``MLP.fit`` and ``MLP.partial_fit`` cost per call beyond the compiled epoch, at B=1, one step a call.

For [4,3,2,1] (where the step is nothing, so the figure is all overhead) and
[784,512,512,10] (where the target is at most 10% of one step), the median
thread time of many calls of: the compiled call alone (``kernel``),
``Workspace.run_epoch`` on one row (the step as fit runs it: the compiled call
inside the overflow guard), ``fit(epochs=1)`` and ``partial_fit`` on the same
row; interleaved, so load changes hit every case alike.  ``python
benchmarks/fit_overhead.py [calls] [--optimizer NAME]``; add ``--profile``
for a cProfile of fit's calls on [4,3,2,1].

Where the time goes on [784,512,512,10] (sgd, load ~3.5, thread time): the
compiled call 0.8 ms; run_epoch 1.9 ms, the overflow guard's copy of theta
before the call (~0.75 ms) and finiteness test after it (~0.2-0.3 ms) being
more than half of it (the compiled step can overflow theta to inf with a
finite gradient, so both are needed until the kernel itself refuses such a
step); fit 0.6 ms more: its up-front finiteness test of theta (~0.2 ms, one
read of 5.3 MB) and its Python (~70 us on the small network, ~3-5x that
here: each call's 5 MB passes leave the caches cold for it).  With adam the
guard also copies the two state vectors (run_epoch 5.0 ms against a 1.8 ms
compiled call); fit skips that copy on its first step, when the state is
still zero.  Thread times on a shared machine vary by 2x with its load:
compare figures from one run.
"""

import cProfile
import os
import pstats
import sys
import time

import numpy as np

from backprop_numba import MLP, training

NETS = ([4, 3, 2, 1], [784, 512, 512, 10])
FIT = dict(epochs=1, batch_size=1, learning_rate=0.01, shuffle=False, progress=False)
PARTIAL = dict(batch_size=1, learning_rate=0.01, shuffle=False)


def cases(sizes, optimizer="sgd"):
    """{name: a call of one step} on a fresh network of these sizes, each run once (compiled, buffers built)."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((1, sizes[0])), rng.standard_normal((1, sizes[-1]))
    # one network each: fit drops partial_fit's state, and a 5 MB theta shared by all would be cache-hot for the
    # last only
    nets = [MLP(sizes, activation="sigmoid", output_activation="identity", loss="mse", seed=1) for _ in range(4)]
    ws, bare = (training.Workspace(net, 1, optimizer) for net in nets[:2])
    calls = {
        # the compiled call alone, without run_epoch's overflow guard (a copy of theta and of the optimizer
        # state before it, a finiteness test of theta after it)
        "kernel": lambda: bare._kernel(X, Y, bare.unweighted, 0, 1, 0.01, bare.step, False),
        "run_epoch": lambda: ws.run_epoch(X, Y, 0.01),
        "fit": lambda: nets[2].fit(X, Y, optimizer=optimizer, **FIT),
        "partial_fit": lambda: nets[3].partial_fit(X, Y, optimizer=optimizer, **PARTIAL),
    }
    bare.run_epoch(X, Y, 0.01)  # (sets its row order, which the kernel reads unchecked)
    for call in calls.values():
        call()
    return calls


def medians(calls, n, block=5):
    """Median thread time (us) of each call over n calls, in interleaved blocks of `block` calls: the first call
    of a block finds the caches holding another case's buffers (a repeated fit finds its own)."""
    times = {name: [] for name in calls}
    for _ in range(-(-n // block)):
        for name, call in calls.items():
            for _ in range(block):
                t0 = time.thread_time()
                call()
                times[name].append(time.thread_time() - t0)
    return {name: np.median(t) * 1e6 for name, t in times.items()}


def main(argv):
    n = int(next((a for a in argv if a.isdigit()), 2000))
    optimizer = argv[argv.index("--optimizer") + 1] if "--optimizer" in argv else "sgd"
    print(f"load average {os.getloadavg()}; median thread time of {n} calls, B=1, one step a call, {optimizer}")
    for sizes in NETS:
        calls = cases(sizes, optimizer)
        t = medians(calls, n if sizes[1] < 100 else max(1, n // 4))
        step = t["run_epoch"]
        print(f"{str(sizes):18s} kernel {t['kernel']:7.1f} us   run_epoch {step:7.1f} us   fit {t['fit']:7.1f} us "
              f"(+{t['fit'] - step:6.1f}, {(t['fit'] - step) / step:6.1%} of a step)   partial_fit "
              f"{t['partial_fit']:7.1f} us (+{t['partial_fit'] - step:6.1f})")
    if "--profile" in argv:
        fit = cases(NETS[0], optimizer)["fit"]
        profile = cProfile.Profile()
        profile.runcall(lambda: [fit() for _ in range(300)])
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main(sys.argv[1:])
