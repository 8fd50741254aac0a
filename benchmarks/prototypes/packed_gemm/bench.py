"""GFLOP/s of the three loops against NumPy matmul (1 and 2 OpenBLAS threads), interleaved, min-of-N.

python bench.py [--dtypes float64,float32] [--batches 1,32,256] [--budget 0.15] [--layers 784x512,...]
                [--only fwd,bwd,dW] [--nopar]
Each series is timed in rounds: every round calls ours (1 thread), ours (2 threads, prange + tbb),
NumPy 1 thread and NumPy 2 threads once each, so a load spike hits all four alike.
GF = 2 * B * n_in * n_out / time.  For B = 1 the table also gives GB/s of W streamed (W bytes / time).
"""
import argparse
import ctypes
import os
import sys
import time

os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".nbcache"))
_tbb = os.path.join(sys.prefix, "lib", "libtbb.so.12")
if os.path.exists(_tbb):
    ctypes.CDLL(_tbb, mode=ctypes.RTLD_GLOBAL)  # before numba's first parallel call: it then picks tbb

import numba  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import loops as L  # noqa: E402

LAYERS = [(784, 512), (512, 512), (512, 10), (784, 128), (128, 64), (64, 10), (784, 16), (16, 10)]


def cpu_flags():
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":")[1].split())
                break
    model = [line.split(":")[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")][0]
    keep = sorted(x for x in flags if x in ("avx", "avx2", "fma") or x.startswith("avx512"))
    return model, keep


def series(fns, budget):
    """fns: list of callables; returns per-fn (min, median) seconds, timed interleaved."""
    for f in fns:
        f()
    t0 = time.perf_counter()
    for f in fns:
        f()
    one = time.perf_counter() - t0
    reps = int(min(300, max(7, budget / max(one, 1e-7))))
    ts = [[] for _ in fns]
    for _ in range(reps):
        for i, f in enumerate(fns):
            t = time.perf_counter()
            f()
            ts[i].append(time.perf_counter() - t)
    return [(min(t), float(np.median(t))) for t in ts], reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--layers", default=None)
    ap.add_argument("--only", default="fwd,bwd,dW")
    ap.add_argument("--budget", type=float, default=0.15)
    ap.add_argument("--nopar", action="store_true")
    a = ap.parse_args()
    layers = LAYERS if a.layers is None else [tuple(int(v) for v in x.split("x")) for x in a.layers.split(",")]
    only = a.only.split(",")
    model, flags = cpu_flags()
    blas = [(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()]
    rng = np.random.default_rng(0)
    if not a.nopar:  # compile + pick the threading layer before printing it
        Ap, Bp = L.make_scratch(np.float64, 8)
        L.dense_forward_par(np.ones((4, 4)), np.ones(4), np.ones((4, 4)), np.empty((4, 4)), Ap, Bp)
    print(f"# {model}; flags {' '.join(flags)}; BLAS {blas}; numba {numba.__version__} "
          f"threading layer {numba.threading_layer() if not a.nopar else '-'}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    print(f"# loadavg at start {os.getloadavg()}")
    hdr = (f"{'loop':4} {'dtype':7} {'B':>4} {'n_in':>4} {'n_out':>5} | {'ours1':>6} {'ours2':>6} {'np1':>6} {'np2':>6}"
           f" | {'o1/np1':>6} {'o2/np2':>6} {'o2/o1':>5} | {'med o1/np1':>10} | reps  load | GB/s W (o1, np1)")
    print(hdr)
    for dn in a.dtypes.split(","):
        dt = np.dtype(dn)
        Ap, Bp = L.make_scratch(dt, 784, 2)
        for B in [int(x) for x in a.batches.split(",")]:
            for (ni, no) in layers:
                W = rng.standard_normal((no, ni)).astype(dt)
                b = rng.standard_normal(no).astype(dt)
                A = rng.standard_normal((B, ni)).astype(dt)
                D = rng.standard_normal((B, no)).astype(dt)
                Z, O, G = np.empty((B, no), dt), np.empty((B, ni), dt), np.empty((no, ni), dt)
                Z2, O2, G2 = Z.copy(), O.copy(), G.copy()
                WT = W.T
                DT = D.T
                cases = {
                    "fwd": (lambda: L.dense_forward(W, b, A, Z, Ap, Bp),
                            lambda: L.dense_forward_par(W, b, A, Z, Ap, Bp),
                            lambda: np.matmul(A, WT, out=Z2)),
                    "bwd": (lambda: L.backprop_linear(W, D, O, Ap, Bp),
                            lambda: L.backprop_linear_par(W, D, O, Ap, Bp),
                            lambda: np.matmul(D, W, out=O2)),
                    "dW": (lambda: L.outer_sum(D, A, 0.5, G, Ap, Bp),
                           lambda: L.outer_sum_par(D, A, 0.5, G, Ap, Bp),
                           lambda: np.matmul(DT, A, out=G2)),
                }
                for name in only:
                    o1, o2, mm = cases[name]
                    # ours1, ours2, np1 interleaved under a 1-thread BLAS limit; np2 right after
                    fns = [o1, mm] if a.nopar else [o1, o2, mm]
                    with threadpool_limits(1):
                        res1, reps = series(fns, a.budget)
                    with threadpool_limits(2):
                        res2, _ = series([mm], a.budget / 3)
                    fl = 2.0 * B * ni * no
                    t_o1 = res1[0][0]
                    t_o2 = res1[1][0] if not a.nopar else float("nan")
                    t_np1 = res1[-1][0]
                    t_np2 = res2[0][0]
                    gf = [fl / t / 1e9 for t in (t_o1, t_o2, t_np1, t_np2)]
                    med = res1[-1][1] / res1[0][1]
                    extra = ""
                    if B == 1:
                        extra = f"{W.nbytes / t_o1 / 1e9:6.1f} {W.nbytes / t_np1 / 1e9:6.1f}"
                    print(f"{name:4} {dn:7} {B:4d} {ni:4d} {no:5d} | {gf[0]:6.1f} {gf[1]:6.1f} {gf[2]:6.1f} {gf[3]:6.1f}"
                          f" | {t_np1 / t_o1:6.2f} {t_np2 / t_o2:6.2f} {t_o1 / t_o2:5.2f} | {med:10.2f} |"
                          f" {reps:4d} {os.getloadavg()[0]:5.2f} | {extra}", flush=True)
    print(f"# loadavg at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
