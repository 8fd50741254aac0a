"""backprop_numba against PyTorch, JAX and NumPy, each at its best, in ONE run on one machine.

What it measures (issue 10, SPEC section 4).  The network of every point has
sigmoid hidden layers, an identity output and the mean squared error (mean over
outputs and samples), trained by plain SGD.  The grid: [4,3,2,1], [784,16,10],
[784,128,64,10], [784,512,512,10] x B = 1, 32, 256 in float64, and float32 at
B = 32, 256 for the two larger networks (19 points).  Per point:

- ``epoch``: one epoch over N samples in order (no shuffling), N a multiple of
  B chosen per point so that an epoch is a measurable amount of work;
  reported in microseconds per sample;
- ``step``: one training step, i.e. the same epoch over exactly B rows;

and ``input_gradient``: grad_x a[L](x) of [784,128,64,1] for one sample.

backprop_numba is measured through public names only, so that old commits stay
measurable: ``MLP.fit(X, Y, epochs=1, batch_size=B, learning_rate, optimizer="sgd",
shuffle=False, progress=False)`` (the number that counts), and, where the
package has it, ``backprop_numba.training.Workspace(net, B).run_epoch(X, Y, lr,
shuffle_seed=-1)``, also under ``numba.set_num_threads(1)`` (what the default
threads gain); ``net.input_gradient(x)``; per-loop rates through
``backprop_numba.loops`` (dense, dense_transpose, outer_sum) where it exists.

Every peer runs at its best (the variants are in benchmarks/peers.py, whose
docstrings say how each is written): JAX with the whole epoch in one
``jax.jit`` (``lax.scan``, donated parameters) and with one jit per step; PyTorch
eager (optim.SGD and a hand-written no_grad update) and ``torch.compile``;
NumPy with preallocated buffers and ``matmul(out=)``.  The best variant of a
peer is that peer's time; the best peer is the fastest of them; ``ratio`` =
best peer time / backprop_numba time (> 1: backprop_numba is faster).

Before a variant is timed, its parameters after its first call (one step for
``step`` rows, one epoch for ``epoch`` rows, from the same initial parameters)
are checked against backprop_numba's: the loss they give (evaluated in float64)
must agree to 1e-6 relative, and the parameter update itself must agree
(||theta_peer - theta_ours|| / ||theta_ours - theta_0|| at most 1e-9 in float64;
1e-4 for a float32 step, 1e-3 for a float32 epoch).  A variant that fails
is reported as invalid and not timed.

NumPy's BLAS with its best kernels: these machines may set
``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` (forcing older kernels, see
ENVIRONMENT.md).  A full run re-executes itself with both removed from its
environment (and says so); ``--quick`` (tests, CI) never touches them, nor does
``--keep-openblas-env``.  The header names the BLAS kernel(s) threadpoolctl
reports.

    python benchmarks/compare.py                 # full grid: about 20-40 minutes on an idle 2-core machine
                                                 # (torch.compile takes ~15-50 s to compile each point)
    python benchmarks/compare.py --quick         # small grid, short budgets (CI, well under a minute)
    python benchmarks/compare.py --threads 1     # every framework on one thread
    python benchmarks/compare.py --peers jax,numpy --no-torch-compile --budget 0.3

Run it on an otherwise idle machine: with other processes busy, every framework
with a spinning thread pool (OpenMP in torch and OpenBLAS) slows down by large and
erratic factors; the load average at the start and end is in the header.

Timing: each variant's first call is the warm-up (compilation) and the
validation; then calls are repeated until ``--budget`` seconds (at least 3
calls, at most a cap) and the median is reported.  backprop_numba's variants
(``MLP.fit``, ``run_epoch`` on numba's threads and on one) are called in turns
for their budgets together, and so are each per-loop pair (ours, NumPy) on
one thread: their ratios then see the same load (``interleaved_medians``).
On the default threads the loops are timed one after the other, ours first
and BLAS_SPIN_S after NumPy's last call: OpenBLAS's threads spin for ~0.1 s
after a call, and in turns they took the second core from ours (32x784->512
float64, ours two threads against one: 1.0x).  Writes JSON and a Markdown
table (default ``benchmarks/results/compare.json`` / ``compare.md``;
``--out``).
"""

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
CLEARED_FLAG = "--openblas-env-cleared"


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small grid, short budgets (for CI); never unsets OPENBLAS_*")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every framework (default: each library's default, all cores)")
    p.add_argument("--out", default=None, help="JSON output path (a .md table is written beside it)")
    p.add_argument("--peers", default="torch,jax,numpy", help="comma-separated peers (default: torch,jax,numpy)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timing per (variant, point), after the warm-up (default 1.0, quick 0.05)")
    p.add_argument("--no-torch-compile", action="store_true", help="skip the torch.compile variant (slow to compile)")
    p.add_argument("--no-steps", action="store_true", help="skip the one-step rows")
    p.add_argument("--no-loops", action="store_true", help="skip the per-loop GFLOP/s table")
    p.add_argument("--no-cold-start", action="store_true", help="skip the cold-start subprocesses")
    p.add_argument("--networks", default=None,
                   help="restrict the grid, e.g. '4-3-2-1,784-16-10' (default: the whole grid)")
    p.add_argument("--batches", default=None, help="restrict the grid's batch sizes, e.g. '1,256'")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help="do not remove OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for the full run")
    p.add_argument(CLEARED_FLAG, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def openblas_vars_to_clear(args, environ):
    """The OPENBLAS_* variables a run removes from its environment: only a full run, only once, only if set."""
    if args.quick or args.keep_openblas_env or args.openblas_env_cleared is not None:
        return {}
    return {v: environ[v] for v in OPENBLAS_VARS if v in environ}


def _reexec_without_openblas_vars(args, argv):
    """Full run: re-execute this script with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE removed (before numpy loads)."""
    present = openblas_vars_to_clear(args, os.environ)
    if not present:
        return
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    cleared = ",".join(f"{k}={v}" for k, v in present.items())
    print(f"note: re-executing with {', '.join(present)} removed from the environment ({cleared}), so that "
          "NumPy's OpenBLAS picks its best kernels for this CPU", flush=True)
    script = os.path.abspath(__file__)
    os.execve(sys.executable, [sys.executable, script] + list(argv) + [f"{CLEARED_FLAG}={cleared}"], env)


ARGS = None
if __name__ == "__main__":
    ARGS = _parse_args()
    _reexec_without_openblas_vars(ARGS, sys.argv[1:])
    if ARGS.threads is not None:
        # Must happen before numpy, torch, jax or numba start their thread pools.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[var] = str(ARGS.threads)
        if ARGS.threads == 1:
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run from a checkout without installing: measure THIS checkout's package
sys.path.insert(1, HERE)

import backprop_numba  # noqa: E402
from backprop_numba import MLP  # noqa: E402
from peers import JaxPeer, NotApplicable, NumPyPeer, TorchPeer  # noqa: E402

PACKAGE_DIR = os.path.dirname(os.path.abspath(backprop_numba.__file__))


def _own(module):
    """True if `module` comes from the package being measured.  An editable install of another checkout
    (pip install -e) can otherwise supply a submodule this checkout lacks (its finder resolves missing
    submodules in the installed tree): that would time another version's code."""
    return os.path.dirname(os.path.abspath(module.__file__)) == PACKAGE_DIR


try:  # the documented low-level entry, where this version of the package has it
    from backprop_numba import training as _training
    Workspace = _training.Workspace if _own(_training) else None
except (ImportError, AttributeError):
    Workspace = None
try:
    from backprop_numba import loops as LOOPS
    if not _own(LOOPS) or not all(hasattr(LOOPS, f) for f in ("dense", "dense_transpose", "outer_sum")):
        LOOPS = None
except ImportError:
    LOOPS = None


NETWORKS = [[4, 3, 2, 1], [784, 16, 10], [784, 128, 64, 10], [784, 512, 512, 10]]
FULL = dict(
    networks=NETWORKS, batches=[1, 32, 256],
    f32_networks=[[784, 128, 64, 10], [784, 512, 512, 10]], f32_batches=[32, 256],
    grad_network=[784, 128, 64, 1],
    epoch_flops=1.5e9,       # work per epoch: N ~ this / flops per sample ...
    max_samples=8192,        # ... at most this many samples ...
    min_steps=8,             # ... and at least this many steps
    budget=1.0, max_repeats=300,
    loop_networks=[[784, 512, 512, 10], [784, 128, 64, 10]], loop_batches=[32, 256], loop_budget=0.3,
)
QUICK = dict(
    networks=[[4, 3, 2, 1], [784, 16, 10]], batches=[1, 32],
    f32_networks=[], f32_batches=[],
    grad_network=[784, 128, 64, 1],
    epoch_flops=2e7, max_samples=512, min_steps=2,
    budget=0.05, max_repeats=20,
    loop_networks=[[784, 128, 64, 10]], loop_batches=[64], loop_budget=0.02,
)
COMPUTE_BOUND_MIN_WIDTH = 128   # points with B >= 32 on networks with a layer this wide: % of matmul peak reported
LR = 0.01
SEED = 1234
OURS = "backprop_numba MLP.fit"
OURS_WS = "backprop_numba Workspace.run_epoch"
OURS_WS1 = "backprop_numba Workspace.run_epoch, 1 thread"
LIBRARY = "backprop_numba"


# --------------------------------------------------------------------------
# timing and counting
# --------------------------------------------------------------------------

def median_seconds(fn, budget, max_repeats, min_repeats=3):
    """Median wall time of fn() (already warmed up by the caller): repeats until `budget` seconds
    have passed (at least min_repeats, at most max_repeats calls)."""
    times = []
    start = time.perf_counter()
    while len(times) < max_repeats:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= min_repeats and time.perf_counter() - start > budget:
            break
    return statistics.median(times), len(times)


# After a call, OpenBLAS's worker threads spin for about 2^28 cycles before they sleep
# (OPENBLAS_THREAD_TIMEOUT): ~0.1 s in which numba's second thread finds its core busy.
# Measured (32x784->512 float64, loops.dense on two threads, 2026-12-02): 110 GFLOP/s
# before any NumPy matmul, 64 right after one (one thread: 60), 110 a second later,
# and 110 right after one with OPENBLAS_THREAD_TIMEOUT=4.  So our runs on two threads
# start this long after a peer's.
BLAS_SPIN_S = 0.2


def interleaved_medians(fns, budget, max_repeats, min_repeats=3):
    """{name: (median wall time, calls)} of each fn (warmed up by the caller), called in turns, one call of each a
    round, until `budget` seconds have passed for all together (at least min_repeats, at most max_repeats rounds).

    Load that comes and goes on a shared machine then hits each alike, which
    their ratios need: measured one after the other (a second each), our
    epoch on two threads against one moved between 0.83x and 1.71x from
    point to point in one run (2026-12-02), and interleaved 1.14-1.54x.
    """
    times = {name: [] for name in fns}
    start = time.perf_counter()
    for r in range(max_repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if r + 1 >= min_repeats and time.perf_counter() - start > budget:
            break
    return {name: (statistics.median(t), len(t)) for name, t in times.items()}


def matmul_peak(dtype, n=1024, repeats=7):
    """NumPy matrix-multiply FLOP/s on n x n with NumPy's default threads (best of a few, as a peak)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)).astype(dtype)
    B = rng.standard_normal((n, n)).astype(dtype)
    C = np.empty((n, n), dtype=dtype)
    np.matmul(A, B, out=C)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(A, B, out=C)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


def n_weights(sizes):
    return sum(sizes[l] * sizes[l - 1] for l in range(1, len(sizes)))


def sample_flops(sizes):
    """2 x multiply-adds of one sample's training work: forward, delta recursion (not into the input), dC/dW."""
    W = n_weights(sizes)
    return 2.0 * (W + (W - sizes[0] * sizes[1]) + W)


def grad_flops(sizes):
    """Input gradient of one sample: forward plus the recursion down to the input."""
    return 2.0 * 2.0 * n_weights(sizes)


def epoch_samples(sizes, B, cfg):
    """N for one epoch of the point: a multiple of B, about cfg['epoch_flops'] of work, within limits."""
    steps = max(cfg["min_steps"], cfg["epoch_flops"] / (sample_flops(sizes) * B))
    steps = 2 ** math.ceil(math.log2(steps))
    while steps * B > cfg["max_samples"] and steps > cfg["min_steps"]:
        steps //= 2
    return steps * B


# --------------------------------------------------------------------------
# the network, data, backprop_numba's variants, validation
# --------------------------------------------------------------------------

def label(sizes):
    return "[" + ",".join(map(str, sizes)) + "]"


def make_data(sizes, n, dtype):
    rng = np.random.default_rng(SEED)
    X = np.ascontiguousarray(rng.standard_normal((n, sizes[0])).astype(dtype))
    Y = np.ascontiguousarray(rng.standard_normal((n, sizes[-1])).astype(dtype))
    return X, Y


def make_net(sizes, dtype):
    return MLP(sizes, activation="sigmoid", output_activation="identity", loss="mse", seed=SEED, dtype=dtype)


def initial_params(sizes, dtype):
    net = make_net(sizes, dtype)
    return [(np.array(W), np.array(b)) for W, b in zip(net.weights, net.biases)]


def _net_getter(net):
    return lambda: [(np.array(W), np.array(b)) for W, b in zip(net.weights, net.biases)]


def make_ours_fit(params, X, Y, B, lr):
    net = make_net([X.shape[1]] + [W.shape[0] for W, _ in params], X.dtype.type)

    def run():
        net.fit(X, Y, epochs=1, batch_size=B, learning_rate=lr, optimizer="sgd", shuffle=False, progress=False)
    return run, _net_getter(net)


def make_ours_workspace(params, X, Y, B, lr):
    net = make_net([X.shape[1]] + [W.shape[0] for W, _ in params], X.dtype.type)
    ws = Workspace(net, B)

    def run():
        ws.run_epoch(X, Y, lr, shuffle_seed=-1)
    return run, _net_getter(net)


def make_ours_workspace_one_thread(params, X, Y, B, lr):
    """run_epoch with numba.set_num_threads(1): what the default threads gain (README "Both cores")."""
    import numba
    run_default, get = make_ours_workspace(params, X, Y, B, lr)

    def run():
        previous = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            run_default()
        finally:
            numba.set_num_threads(previous)
    return run, get


def ours_variants():
    v = {OURS: make_ours_fit}
    if Workspace is not None:
        v[OURS_WS] = make_ours_workspace
        if ARGS is None or ARGS.threads != 1:
            v[OURS_WS1] = make_ours_workspace_one_thread
    return v


def loss64(params, X, Y):
    """The mse of the network with these parameters on X, Y, computed in float64."""
    a = X.astype(np.float64)
    L = len(params)
    for l, (W, b) in enumerate(params):
        a = a @ W.astype(np.float64).T + b.astype(np.float64)
        if l < L - 1:
            a = 1.0 / (1.0 + np.exp(-a))
    return float(np.mean((a - Y.astype(np.float64)) ** 2))


def flat64(params):
    return np.concatenate([np.concatenate([W.ravel(), b.ravel()]) for W, b in params]).astype(np.float64)


class Reference:
    """backprop_numba's parameters after the first call: what each peer variant must reproduce."""

    def __init__(self, params0, params1, X, Y, dtype, kind):
        n = min(X.shape[0], 1024)
        self.X, self.Y = X[:n], Y[:n]
        self.theta0 = flat64(params0)
        self.theta1 = flat64(params1)
        self.loss = loss64(params1, self.X, self.Y)
        self.loss0 = loss64(params0, self.X, self.Y)
        f32 = np.dtype(dtype) == np.float32
        self.loss_tol = 1e-6
        self.update_tol = (1e-3 if kind == "epoch" else 1e-4) if f32 else 1e-9

    def check(self, params1):
        loss = loss64(params1, self.X, self.Y)
        loss_rel = abs(loss - self.loss) / max(abs(self.loss), 1e-300)
        upd = np.linalg.norm(self.theta1 - self.theta0)
        update_rel = float(np.linalg.norm(flat64(params1) - self.theta1) / max(upd, 1e-300))
        ok = bool(np.isfinite(loss) and loss_rel <= self.loss_tol and update_rel <= self.update_tol)
        return {"loss_rel": loss_rel, "update_rel": update_rel, "ok": ok}


# --------------------------------------------------------------------------
# machine description
# --------------------------------------------------------------------------

def _lscpu():
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_info():
    model, flags = platform.processor() or platform.machine(), set()
    caches = {}
    for line in _lscpu().splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "Model name":
            model = val
        elif key == "Flags":
            flags = set(val.split())
        elif key in ("L1d cache", "L2 cache", "L3 cache"):
            caches[key] = val
    if not flags:
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    wanted = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16"]
    return {"cpu": model, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags], "caches": caches}


def blas_info():
    try:
        import threadpoolctl
    except ImportError:
        return [{"note": "threadpoolctl not installed"}]
    keys = ("user_api", "internal_api", "prefix", "version", "architecture", "threading_layer", "num_threads",
            "filepath")
    out = []
    for d in threadpoolctl.threadpool_info():
        info = {k: d.get(k) for k in keys if d.get(k) is not None}
        # whose library it is: the site-packages folder it was loaded from (numpy.libs, torch/lib, ...)
        parts = os.path.normpath(d.get("filepath", "")).split(os.sep)
        if "site-packages" in parts and parts.index("site-packages") + 1 < len(parts) - 1:
            info["loaded_by"] = parts[parts.index("site-packages") + 1].split(".")[0]
        out.append(info)
    return out


def _git_commit():
    try:
        out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def numba_info():
    import numba
    info = {"numba": numba.__version__, "numba_threads": numba.get_num_threads(),
            "threading_layer_requested": str(numba.config.THREADING_LAYER)}
    try:
        info["threading_layer"] = numba.threading_layer()
    except ValueError:
        info["threading_layer"] = "none loaded (no parallel kernel ran)"
    return info


def _load():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# --------------------------------------------------------------------------
# the grid
# --------------------------------------------------------------------------

class Runner:
    def __init__(self, args, cfg, peers):
        self.args, self.cfg, self.peers = args, cfg, peers
        self.budget = cfg["budget"]
        self.variants = {LIBRARY: ours_variants()}
        for p in peers:
            self.variants[p.name] = p.variants(quick=args.quick)
        self.invalid = set()      # (point, variant) that failed validation at the step row
        self.failures = []

    def _measure(self, name, make, params, X, Y, B, budget, min_rep=3):
        run, get_params = make(params, X, Y, B, LR)
        t0 = time.perf_counter()
        run()                                       # warm-up (compiles) and the call validated below
        first = time.perf_counter() - t0
        after = get_params()
        return run, first, after

    def point(self, kind, sizes, B, dtype, N):
        dname = np.dtype(dtype).name
        X, Y = make_data(sizes, N, dtype)
        params0 = initial_params(sizes, dtype)
        row = {"kind": kind, "network": label(sizes), "batch": B, "dtype": dname, "samples": N,
               "steps": N // B, "flops": sample_flops(sizes) * N, "seconds": {}, "us_per_sample": {},
               "repeats": {}, "first_call_s": {}, "validation": {}, "skipped": {}, "peer_of": {}}
        budget = self.budget if kind == "epoch" else self.budget / 2
        ref = None
        key = (label(sizes), B, dname)
        for peer_name, variants in self.variants.items():
            interleaved = {}  # our variants, measured in turns once all are set up (interleaved_medians)
            for name, make in variants.items():
                row["peer_of"][name] = peer_name
                if (key, name) in self.invalid:
                    row["skipped"][name] = "invalid at the step row"
                    continue
                try:
                    run, first, after = self._measure(name, make, params0, X, Y, B, budget)
                    if name == OURS:
                        ref = Reference(params0, after, X, Y, dtype, kind)
                    elif ref is not None:
                        v = ref.check(after)
                        row["validation"][name] = v
                        if not v["ok"]:
                            msg = (f"INVALID: loss rel. diff. {v['loss_rel']:.2e}, update rel. diff. "
                                   f"{v['update_rel']:.2e} (tolerances {ref.loss_tol:g}, {ref.update_tol:g})")
                            row["skipped"][name] = msg
                            self.invalid.add((key, name))
                            print(f"  {name} {kind} {label(sizes)} B={B} {dname}: {msg}", flush=True)
                            continue
                    row["first_call_s"][name] = first
                    if peer_name == LIBRARY:
                        interleaved[name] = run
                        continue
                    # a variant whose one call already exceeds the budget several times is not repeated 3 times
                    sec, n = median_seconds(run, budget, self.cfg["max_repeats"],
                                            min_repeats=1 if first > 5 * budget else 3)
                except NotApplicable as exc:
                    row["skipped"][name] = f"n/a: {exc}"
                    continue
                except Exception as exc:  # a variant failing must not lose the rest of the table
                    msg = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                    row["skipped"][name] = msg
                    self.failures.append(f"{name} {kind} {label(sizes)} B={B} {dname}: {msg}")
                    print(f"  {name} {kind} {label(sizes)} B={B} {dname}: {msg}", flush=True)
                    if name == OURS:
                        raise
                    continue
                self._record(row, name, sec, n, N)
            if interleaved:
                time.sleep(BLAS_SPIN_S)  # the last point's peers' threads still spinning would take a core
                slowest = max(row["first_call_s"][name] for name in interleaved)
                for name, (sec, n) in interleaved_medians(interleaved, budget * len(interleaved),
                                                          self.cfg["max_repeats"],
                                                          min_repeats=1 if slowest > 5 * budget else 3).items():
                    self._record(row, name, sec, n, N)
        if ref is not None:
            row["loss_before"], row["loss_after_ours"] = ref.loss0, ref.loss
        summarise(row, self.peak)
        print(format_row(row), flush=True)
        return row

    @staticmethod
    def _record(row, name, sec, n, N):
        row["seconds"][name] = sec
        row["us_per_sample"][name] = sec / N * 1e6
        row["repeats"][name] = n

    def input_gradient(self, sizes, dtype):
        dname = np.dtype(dtype).name
        params = initial_params(sizes, dtype)
        net = make_net(sizes, dtype)
        x = make_data(sizes, 1, dtype)[0][0].copy()
        row = {"kind": "input_gradient", "network": label(sizes), "batch": 1, "dtype": dname, "samples": 1,
               "flops": grad_flops(sizes), "seconds": {}, "us_per_sample": {}, "repeats": {}, "validation": {},
               "skipped": {}, "peer_of": {}}
        impls = [(LIBRARY, "backprop_numba MLP.input_gradient", lambda: (lambda: net.input_gradient(x)))]
        for p in self.peers:
            what = {"numpy": "numpy by hand", "jax": "jax jit(grad)", "torch": "torch.autograd.grad"}[p.name]
            impls.append((p.name, what, lambda p=p: p.input_gradient(params, x)))
        tol = 1e-9 if dname == "float64" else 1e-4
        ref = None
        for peer_name, name, make in impls:
            row["peer_of"][name] = peer_name
            try:
                fn = make()
                g = np.asarray(fn(), dtype=np.float64)
                if ref is None:
                    ref = g
                else:
                    rel = float(np.linalg.norm(g - ref) / np.linalg.norm(ref))
                    row["validation"][name] = {"grad_rel": rel, "ok": rel <= tol}
                    if rel > tol:
                        row["skipped"][name] = f"INVALID: gradient rel. diff. {rel:.2e} > {tol:g}"
                        continue
                sec, n = median_seconds(fn, self.budget / 2, self.cfg["max_repeats"] * 10)
            except Exception as exc:
                row["skipped"][name] = f"failed: {type(exc).__name__}: {exc}"[:300]
                if peer_name == LIBRARY:
                    raise
                continue
            row["seconds"][name] = sec
            row["us_per_sample"][name] = sec * 1e6
            row["repeats"][name] = n
        summarise(row, self.peak, ours="backprop_numba MLP.input_gradient")
        print(format_row(row), flush=True)
        return row


def summarise(row, peak, ours=OURS):
    """Best variant per peer, best peer, ratio = best peer time / ours, GFLOP/s, % of matmul peak."""
    secs = row["seconds"]
    row["ours_variant"] = ours
    best_by_peer = {}
    for name, sec in secs.items():
        peer = row["peer_of"][name]
        if peer == LIBRARY:
            continue
        if peer not in best_by_peer or sec < secs[best_by_peer[peer]]:
            best_by_peer[peer] = name
    row["best_variant_by_peer"] = best_by_peer
    lib = secs.get(ours)
    if lib:
        row["gflops"] = row["flops"] / lib / 1e9
        row["peak_fraction"] = row["flops"] / lib / peak[row["dtype"]]
        row["ratio_by_peer"] = {p: secs[v] / lib for p, v in best_by_peer.items()}
    if best_by_peer:
        bp = min(best_by_peer, key=lambda p: secs[best_by_peer[p]])
        row["best_peer"], row["best_peer_variant"] = bp, best_by_peer[bp]
        row["best_peer_seconds"] = secs[best_by_peer[bp]]
        if lib:
            row["ratio"] = row["best_peer_seconds"] / lib
    width = max(int(n) for n in row["network"].strip("[]").split(","))
    row["compute_bound"] = row["kind"] != "input_gradient" and row["batch"] >= 32 and \
        width >= COMPUTE_BOUND_MIN_WIDTH


def loops_table(cfg, threads_default):
    """GFLOP/s of backprop_numba.loops' three matrix loops against NumPy matmul on the same shapes."""
    import numba
    from threadpoolctl import threadpool_limits
    rows = []
    rng = np.random.default_rng(0)
    thread_counts = [1] if threads_default == 1 else [1, threads_default]
    for sizes, B, dtype in itertools.product(cfg["loop_networks"], cfg["loop_batches"], (np.float64, np.float32)):
        for l in range(1, len(sizes)):
            n_out, n_in = sizes[l], sizes[l - 1]
            W = rng.standard_normal((n_out, n_in)).astype(dtype)
            b = rng.standard_normal(n_out).astype(dtype)
            A = rng.standard_normal((B, n_in)).astype(dtype)
            D = rng.standard_normal((B, n_out)).astype(dtype)
            Z = np.empty((B, n_out), dtype=dtype)
            OUT = np.empty((B, n_in), dtype=dtype)
            dW = np.empty((n_out, n_in), dtype=dtype)
            Zr, OUTr, dWr = np.empty_like(Z), np.empty_like(OUT), np.empty_like(dW)
            # the loops' working space, allocated once as NumPy's outputs are (older versions: per call)
            S = np.empty(LOOPS.scratch_size(B, n_in, n_out), dtype) if hasattr(LOOPS, "scratch_size") else None
            extra = {} if S is None else {"scratch": S}
            flops = 2.0 * B * n_out * n_in
            cases = [
                ("z = W a + b (dense)", lambda: LOOPS.dense(W, b, A, Z), lambda: np.matmul(A, W.T, out=Zr),
                 lambda: (Z, A @ W.T + b)),
                ("W^T delta (dense_transpose)", lambda: LOOPS.dense_transpose(W, D, OUT, **extra),
                 lambda: np.matmul(D, W, out=OUTr), lambda: (OUT, D @ W)),
                ("dC/dW = delta a^T (outer_sum)", lambda: LOOPS.outer_sum(D, A, dW, 1.0, **extra),
                 lambda: np.matmul(D.T, A, out=dWr), lambda: (dW, D.T @ A)),
            ]
            for loop, ours, ref, check in cases:
                if loop.startswith("W^T") and l == 1:
                    continue        # training never takes delta into the input layer
                row = {"network": label(sizes), "layer": l, "shape": f"{B}x{n_in}->{n_out}",
                       "dtype": np.dtype(dtype).name, "loop": loop, "flops": flops}
                try:
                    ours()
                    got, want = check()
                    rel = float(np.linalg.norm(got.astype(np.float64) - want) / np.linalg.norm(want))
                    row["rel_err"] = rel
                    if rel > (1e-10 if dtype == np.float64 else 1e-4):
                        row["note"] = f"INVALID: rel. diff. from NumPy {rel:.2e}"
                        rows.append(row)
                        continue
                    ref()
                    for t in thread_counts:
                        numba.set_num_threads(t)
                        with threadpool_limits(t):
                            ours()
                            ref()
                            if t == 1:
                                medians = interleaved_medians({"ours": ours, "numpy": ref}, 2 * cfg["loop_budget"],
                                                              200)
                                s_ours, s_np = medians["ours"][0], medians["numpy"][0]
                            else:  # in turns, OpenBLAS's threads, still spinning after its call, took our second core
                                time.sleep(BLAS_SPIN_S)
                                s_ours, _ = median_seconds(ours, cfg["loop_budget"], 200)
                                s_np, _ = median_seconds(ref, cfg["loop_budget"], 200)
                        row[f"gflops_t{t}"] = flops / s_ours / 1e9
                        row[f"numpy_gflops_t{t}"] = flops / s_np / 1e9
                    numba.set_num_threads(threads_default)
                    row["vs_numpy_1thread"] = row["gflops_t1"] / row["numpy_gflops_t1"]
                except Exception as exc:
                    row["note"] = f"failed: {type(exc).__name__}: {exc}"[:300]
                rows.append(row)
                print("  loop " + " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in row.items()), flush=True)
    return rows


COLD_START_CODE = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
import backprop_numba
from backprop_numba import MLP
t2 = time.perf_counter()
net = MLP([784, 128, 64, 10], activation="sigmoid", output_activation="identity", loss="mse", seed=0)
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((32, 784)), rng.standard_normal((32, 10))
net.fit(X, Y, epochs=1, batch_size=32, learning_rate=0.01, optimizer="sgd", shuffle=False, progress=False)
t3 = time.perf_counter()
print(json.dumps({"import_numpy_s": t1 - t0, "import_backprop_numba_s": t2 - t1, "first_fit_s": t3 - t2}))
"""


def cold_start(quick=False):
    """`import backprop_numba` + a first fit of one batch of [784,128,64,10], in a fresh process with a warm
    on-disk cache (a first process warms it, the second is reported; --quick: one process, the cache being
    warmed by this run's own float64 fits)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = {}
    for attempt in (("measured",) if quick else ("warm-up", "measured")):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", COLD_START_CODE], capture_output=True, text=True, env=env,
                              timeout=600)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": proc.stderr[-500:]}
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        out["process_wall_s"] = wall
        out["attempt"] = attempt
    return out


def run(args):
    cfg = dict(QUICK if args.quick else FULL)
    if args.budget is not None:
        cfg["budget"] = args.budget
    started = time.perf_counter()
    load_start = _load()
    cleared = args.openblas_env_cleared
    if cleared:
        blas_env = f"{cleared} removed from this process's environment (full run), so OpenBLAS picks its own kernels"
    else:
        present = {v: os.environ[v] for v in OPENBLAS_VARS if v in os.environ}
        if present:
            blas_env = (", ".join(f"{k}={v}" for k, v in present.items()) + " kept (" +
                        ("--quick" if args.quick else "--keep-openblas-env") + "): NumPy's BLAS may not run its best "
                        "kernels in this run")
        else:
            blas_env = "OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE not set"
    print(f"load average at start: {load_start}; {blas_env}", flush=True)

    peers, notes = [], {}
    wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
    for peer in (NumPyPeer(), JaxPeer(), TorchPeer(threads=args.threads, compile_=not args.no_torch_compile)):
        if peer.name not in wanted:
            continue
        ok, note = peer.available()
        if ok:
            peers.append(peer)
            extra = ""
            if peer.name == "torch" and (args.quick or args.no_torch_compile):
                extra = "; torch.compile skipped (" + ("--quick" if args.quick else "--no-torch-compile") + ")"
            notes[peer.name] = note + extra
        else:
            notes[peer.name] = f"skipped: {note}"
            print(f"note: {peer.name} skipped: {note}", flush=True)
    if Workspace is None:
        notes[LIBRARY + " Workspace"] = "backprop_numba.training.Workspace not in this version: MLP.fit only"
    if LOOPS is None:
        notes[LIBRARY + " loops"] = "backprop_numba.loops not in this version: no per-loop table"

    peak = {"float64": matmul_peak(np.float64), "float32": matmul_peak(np.float32)}
    print(f"NumPy matmul peak (1024^2, NumPy's threads as in this run): float64 {peak['float64'] / 1e9:.1f} GFLOP/s, "
          f"float32 {peak['float32'] / 1e9:.1f} GFLOP/s", flush=True)
    runner = Runner(args, cfg, peers)
    runner.peak = peak

    nets = cfg["networks"]
    f32_nets = cfg["f32_networks"]
    batches, f32_batches = cfg["batches"], cfg["f32_batches"]
    if args.networks:
        keep = [[int(n) for n in s.split("-")] for s in args.networks.split(",")]
        nets = [s for s in keep]
        f32_nets = [s for s in keep if s in FULL["f32_networks"] or s in f32_nets]
    if args.batches:
        batches = [int(b) for b in args.batches.split(",")]
        f32_batches = [b for b in batches if b in FULL["f32_batches"] or b in f32_batches]
    grid = [(s, B, np.float64) for s in nets for B in batches]
    grid += [(s, B, np.float32) for s in f32_nets for B in f32_batches]

    rows = []
    for sizes, B, dtype in grid:
        N = epoch_samples(sizes, B, cfg)
        print(f"\n== {label(sizes)} B={B} {np.dtype(dtype).name}: step, then epoch over {N} samples "
              f"({time.perf_counter() - started:.0f} s into the run, load {_load()}) ==", flush=True)
        if not args.no_steps:
            rows.append(runner.point("step", sizes, B, dtype, B))
        rows.append(runner.point("epoch", sizes, B, dtype, N))
    print("\n== input gradient, one sample ==", flush=True)
    for dtype in (np.float64, np.float32):
        rows.append(runner.input_gradient(cfg["grad_network"], dtype))

    loops = []
    if LOOPS is not None and not args.no_loops:
        print("\n== the three matrix loops, GFLOP/s ==", flush=True)
        import numba
        loops = loops_table(cfg, numba.get_num_threads())
    cold = None
    if not args.no_cold_start:
        print("\n== cold start ==", flush=True)
        cold = cold_start(args.quick)
        print(f"  {cold}", flush=True)

    machine = cpu_info()
    machine.update(numba_info())
    machine.update({"python": platform.python_version(), "numpy": np.__version__,
                    "backprop_numba": getattr(backprop_numba, "__version__", "?"), "commit": _git_commit(),
                    "package_dir": PACKAGE_DIR,
                    "blas": blas_info(), "openblas_env": blas_env, "loadavg_start": load_start,
                    "loadavg_end": _load(), "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())})
    for mod in ("jax", "jaxlib", "torch", "threadpoolctl"):
        if mod in sys.modules:
            machine[mod] = getattr(sys.modules[mod], "__version__", "?")

    summary = {}
    for kind in ("epoch", "step"):
        rs = [r for r in rows if r["kind"] == kind and "ratio" in r]
        if rs:
            summary[kind] = {"points": len(rs), "faster": sum(r["ratio"] > 1 for r in rs),
                             "geomean_ratio": math.exp(sum(math.log(r["ratio"]) for r in rs) / len(rs))}
    # what the default threads gain over one, at the compute-bound epoch points (issue 10: >= 1.35x idle)
    gains = [r["seconds"][OURS_WS1] / r["seconds"][OURS_WS] for r in rows
             if r["kind"] == "epoch" and r.get("compute_bound") and OURS_WS1 in r["seconds"] and OURS_WS in r["seconds"]]
    if gains:
        summary["threads_gain"] = {"points": len(gains), "min": min(gains), "max": max(gains),
                                   "geomean": math.exp(sum(map(math.log, gains)) / len(gains))}
    return {"machine": machine, "quick": bool(args.quick), "threads": args.threads, "peak_flops": peak,
            "peers": notes, "library": LIBRARY, "ours": OURS, "learning_rate": LR, "rows": rows, "loops": loops,
            "cold_start": cold, "summary": summary, "failures": runner.failures,
            "how": {p.name: " ".join(type(p).__doc__.split()) for p in peers},
            "elapsed_s": time.perf_counter() - started}


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------

def _fmt_time(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def _fmt_us(us):
    if us is None:
        return "-"
    return f"{us:.3g}" if us < 100 else f"{us:.0f}"


def format_row(row):
    parts = [f"{row['kind']:<14} {row['network']:<18} B={row['batch']:<4} {row['dtype']:<8} N={row['samples']:<6}"]
    for name, us in row["us_per_sample"].items():
        parts.append(f"{name}={_fmt_us(us)}")
    if "ratio" in row:
        parts.append(f"best peer {row['best_peer_variant']}: ratio {row['ratio']:.2f}")
    if "gflops" in row:
        parts.append(f"{row['gflops']:.2f} GFLOP/s")
    return "  ".join(parts)


def _variant_columns(rows):
    names = []
    for row in rows:
        for n in list(row["seconds"]) + list(row["skipped"]):
            if n not in names:
                names.append(n)
    ours = [n for n in names if n.startswith(LIBRARY)]
    return ours + [n for n in names if not n.startswith(LIBRARY)]


def _table(rows, unit):
    names = _variant_columns(rows)
    short = {n: n.replace("backprop_numba ", "") for n in names}
    head = ["network", "B", "dtype", "N"] + [short[n] for n in names] + \
        ["best peer (variant)", "best peer / ours", "GFLOP/s", "% peak"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["network"], str(row["batch"]), row["dtype"], str(row["samples"])]
        for n in names:
            if n in row["us_per_sample"]:
                v = row["us_per_sample"][n] if unit == "us/sample" else row["seconds"][n] * 1e6
                cells.append(_fmt_us(v))
            elif n in row["skipped"]:
                why = row["skipped"][n]
                cells.append("invalid" if why.startswith("INVALID") else "n/a" if why.startswith("n/a") else
                             "failed")
            else:
                cells.append("-")
        cells.append(row.get("best_peer_variant", "-"))
        cells.append(f"**{row['ratio']:.2f}**" if "ratio" in row else "-")
        cells.append(f"{row['gflops']:.2f}" if "gflops" in row else "-")
        cells.append(f"{100 * row['peak_fraction']:.0f}%" if row.get("compute_bound") and "peak_fraction" in row
                     else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _loops_lines(loops):
    if not loops:
        return []
    lines = []
    lines += ["## The three matrix loops (backprop_numba.loops), GFLOP/s", "",
              "| network | layer | B x in -> out | dtype | loop | ours 1 thread | NumPy 1 thread | ours / NumPy "
              "(1 thread) | ours default threads | NumPy default threads |", "|" + "---|" * 10]
    for r in loops:
        g = lambda k: f"{r[k]:.1f}" if k in r else "-"  # noqa: E731
        tmax = [k for k in r if k.startswith("gflops_t") and k != "gflops_t1"]
        ntmax = [k for k in r if k.startswith("numpy_gflops_t") and k != "numpy_gflops_t1"]
        lines.append(f"| {r['network']} | {r['layer']} | {r['shape']} | {r['dtype']} | {r['loop']} | "
                     f"{g('gflops_t1')} | {g('numpy_gflops_t1')} | "
                     f"{(str(round(r['vs_numpy_1thread'], 2))) if 'vs_numpy_1thread' in r else r.get('note', '-')} | "
                     f"{g(tmax[0]) if tmax else '-'} | {g(ntmax[0]) if ntmax else '-'} |")
    lines.append("")
    return lines


def markdown(result):
    m = result["machine"]
    load = lambda x: ", ".join(f"{v:.2f}" for v in x) if x else "?"  # noqa: E731
    blas_keys = ("loaded_by", "internal_api", "version", "architecture", "num_threads", "threading_layer")
    blas = "; ".join(", ".join(f"{k} {d[k]}" for k in blas_keys if k in d) for d in m["blas"])
    vers = ", ".join(f"{k} {m[k]}" for k in ("python", "numpy", "numba", "jax", "jaxlib", "torch", "threadpoolctl")
                     if k in m)
    lines = [
        "# backprop_numba against its peers at their best" +
        (" (QUICK run: small grid, short budgets)" if result["quick"] else ""),
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores; CPU flags: {' '.join(m['flags']) or '?'}; "
        f"caches: {', '.join(f'{k} {v}' for k, v in m['caches'].items()) or '?'}.",
        f"- {vers}; backprop_numba {m['backprop_numba']} (commit {m['commit']}, {m['package_dir']}).",
        f"- Numba: {m['numba_threads']} threads, threading layer {m['threading_layer']} "
        f"(requested: {m['threading_layer_requested']}); --threads {result['threads']}.",
        f"- BLAS (threadpoolctl): {blas}. {m['openblas_env']}.",
        "- NumPy matmul peak (1024x1024, NumPy's threads as in this run): "
        f"float64 {result['peak_flops']['float64'] / 1e9:.1f} GFLOP/s, "
        f"float32 {result['peak_flops']['float32'] / 1e9:.1f} GFLOP/s.",
        f"- Load average at start {load(m['loadavg_start'])}, at end {load(m['loadavg_end'])}; {m['time_utc']} UTC; "
        f"run took {result['elapsed_s']:.0f} s.",
        "- Peers: " + "; ".join(f"{k}: {v}" for k, v in result["peers"].items()) + ".",
        "",
    ]
    s = result["summary"]
    if "epoch" in s:
        e = s["epoch"]
        lines.append(f"**Epoch (MLP.fit): faster than the best peer at {e['faster']} of {e['points']} points, "
                     f"geometric mean ratio {e['geomean_ratio']:.2f}** (best peer time / ours; > 1: we are faster).")
    if "threads_gain" in s:
        g = s["threads_gain"]
        lines.append(f"Default threads against one (Workspace.run_epoch), at the {g['points']} compute-bound epoch "
                     f"points: {g['min']:.2f}x-{g['max']:.2f}x faster (geometric mean {g['geomean']:.2f}x).")
    if "step" in s:
        e = s["step"]
        lines.append(f"One step (MLP.fit on B rows): faster than the best peer at {e['faster']} of {e['points']} "
                     f"points, geometric mean ratio {e['geomean_ratio']:.2f}.")
    lines += ["", "Medians; each variant validated against backprop_numba before it is timed (see below). "
              "'best peer / ours' > 1: backprop_numba is faster. GFLOP/s: backprop_numba's; % peak of the "
              "matmul peak above, for compute-bound points (B >= 32 on the two larger networks).", ""]
    for kind, title, unit in (("epoch", "One epoch, us per sample", "us/sample"),
                              ("step", "One step (an epoch of B rows), us per step", "us/step"),
                              ("input_gradient", "Input gradient of one sample, us", "us")):
        rs = [r for r in result["rows"] if r["kind"] == kind]
        if rs:
            lines += [f"## {title}", ""] + _table(rs, "us/sample" if kind != "step" else "us") + [""]
    lines += _loops_lines(result["loops"])
    if result["cold_start"]:
        c = result["cold_start"]
        if "error" in c:
            lines += [f"Cold start: failed ({c['error'][-200:]})", ""]
        else:
            lines += [f"Cold start (fresh process, warm cache): import numpy {c['import_numpy_s']:.2f} s, "
                      f"import backprop_numba {c['import_backprop_numba_s']:.2f} s, first fit of one batch of "
                      f"[784,128,64,10] (B=32) {c['first_fit_s']:.2f} s; whole process {c['process_wall_s']:.2f} s.",
                      ""]
    lines += ["## How each peer is measured", ""]
    for name, how in result["how"].items():
        lines.append(f"- **{name}**: {how}")
    lines += ["- **backprop_numba**: `MLP.fit(X, Y, epochs=1, batch_size=B, learning_rate, optimizer=\"sgd\", "
              "shuffle=False, progress=False)` (the ratio column); `Workspace(net, B).run_epoch(X, Y, lr, "
              "shuffle_seed=-1)` where the package has it.", ""]
    lines += ["## Validation (worst over the points)", "",
              "Parameters after the first call (one step, or one epoch) against backprop_numba's: relative "
              "difference of the loss they give (in float64) and of the update itself.", "",
              "| variant | dtype | worst loss (gradient) rel. diff. | worst update rel. diff. | invalid at |",
              "|---|---|---|---|---|"]
    worst = {}
    for r in result["rows"]:
        for n, v in r["validation"].items():
            w = worst.setdefault((n, r["dtype"]), {"loss": 0.0, "upd": 0.0, "bad": []})
            w["loss"] = max(w["loss"], v.get("loss_rel", v.get("grad_rel", 0.0)))
            w["upd"] = max(w["upd"], v.get("update_rel", 0.0))
            if not v["ok"]:
                w["bad"].append(f"{r['kind']} {r['network']} B={r['batch']} {r['dtype']}")
    for (n, dname), w in sorted(worst.items(), key=lambda kv: kv[0][1], reverse=True):
        lines.append(f"| {n} | {dname} | {w['loss']:.1e} | {w['upd']:.1e} | {', '.join(w['bad']) or '-'} |")
    if result["failures"]:
        lines += ["", "Failures:", ""] + [f"- {f}" for f in result["failures"]]
    return "\n".join(lines) + "\n"


def main(argv=None):
    global ARGS
    args = ARGS if argv is None and ARGS is not None else _parse_args(argv)
    ARGS = args
    result = run(args)
    out = args.out or os.path.join(HERE, "results", "compare-quick.json" if args.quick else "compare.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    md_path = os.path.splitext(out)[0] + ".md"
    with open(md_path, "w") as f:
        f.write(markdown(result))
    print()
    print(markdown(result))
    print(f"wrote {out}")
    print(f"wrote {md_path}")
    print(f"elapsed {result['elapsed_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
