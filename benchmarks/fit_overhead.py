"""What ``MLP.fit`` and ``MLP.partial_fit`` cost per call beyond the compiled epoch, at B=1, one step a call.

For [4,3,2,1] (where the step is nothing, so the figure is all overhead) and
[784,512,512,10] (where the target is at most 10% of one step), the median
thread time of many calls of: the compiled call alone (``kernel``),
``Workspace.run_epoch`` on one row (the step as fit runs it: the compiled call
under ``Workspace._guarded``), ``fit(epochs=1)`` and ``partial_fit`` on the same
row; interleaved, so load changes hit every case alike.  ``python
benchmarks/fit_overhead.py [calls] [--optimizer NAME]``; add ``--profile``
for a cProfile of fit's calls on [4,3,2,1].

Where the time goes on [784,512,512,10] (sgd, thread time, AMD EPYC with
AVX-512, load ~0.1, 2026-12-02, two interleaved runs each): the compiled
call 0.25-0.32 ms; run_epoch 0.24-0.33 ms, the step alone: the kernel proves
each ordinary step cannot overflow theta or the optimizer state
(``_train_batches``' ``prove``), so the copy of theta before the call and
the finiteness test after it (``Workspace._copied``, which took run_epoch to
0.48-0.62 ms) run only from a batch it cannot prove.  fit 0.17-0.24 ms more
(71-78% of a step; the target is 10%): its up-front finiteness test of theta
(one read of 5.3 MB: 0.10-0.19 ms more, 40-66% of a step, once that test was
compiled, _validation.theta_is_finite, in three interleaved runs against
NumPy's 0.16-0.21 ms) and its Python (~30-50 us on the small network, more
here, where each call's passes over theta leave the caches cold for it).
The step itself holds one more pass than a step inside an epoch: the
kernel's entry pass summing |W| for the bound.  With adam:
run_epoch 1.85 -> 0.94 ms, fit 1.70 -> 1.38 ms, partial_fit 2.24 -> 1.22 ms
(the bound reads both state vectors once per call; the copied path copied
them).  Then fit's and partial_fit's test of theta became the pass that sums
|W[l]| for the fused step's bound (training.check_theta_sums), which the
kernel's first step had read theta for once more: three interleaved runs
against the commit before (sgd, load ~0.5), fit +175-189 -> +81-111 us over
run_epoch (57-59% -> 31-38% of a step), partial_fit +106-130 -> +35-52;
with adam fit +224-399 -> +209-219 (fit also zeroes both state vectors,
~0.1 ms).  What is left of fit's is Python: ~23 us building the Trainer
(options checked), ~15 us around the compiled call.  Trimmed (check_params'
fast test of values valid as they are, X and Y tested for finiteness by the
compiled pass, the sum |theta| returned by the check's kernel, the row order
reset only after a shuffle): three runs each, [4,3,2,1] fit 30.0-30.5 ->
27.6-27.8 us thread time, partial_fit 18.5 -> 16.1-16.3; on
[784,512,512,10] fit +24-51 -> +30-42 us over run_epoch (10-24% -> 15-20%
of a step, run_epoch's own spread 204-242 us): the Python left is ~22 us, so
10% of this step needs half of it gone.  On the session's final code
(ce93723, three runs, load ~0.5): [4,3,2,1] fit 28.6-29.0 us, partial_fit
16.9-17.3; [784,512,512,10] fit +43-60 us (19-28% of a step, run_epoch
218-274 us).  Thread times on a shared machine vary by 2x with its load: compare
figures from one run.
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
        # the compiled call alone, without run_epoch's guard (Workspace._guarded: its proven steps, or a copy
        # of theta and of the optimizer state before the call and a finiteness test of theta after it)
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
