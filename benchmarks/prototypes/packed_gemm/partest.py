"""Two threads vs one on the compute-bound shapes; run idle and with a busy process beside it.

python partest.py [reps]  -> median and min of serial vs parallel dispatcher per shape.
"""
import ctypes, os, sys, time
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".nbcache"))
_tbb = os.path.join(sys.prefix, "lib", "libtbb.so.12")
if os.path.exists(_tbb):
    ctypes.CDLL(_tbb, mode=ctypes.RTLD_GLOBAL)
import numpy as np, numba
import loops as L
reps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
shapes = [(256, 784, 512), (256, 512, 512), (256, 784, 128), (32, 784, 512)][: int(os.environ.get("NSHAPES", "6"))]
rng = np.random.default_rng(0)
print("layer", numba.threading_layer() if False else "", "load", os.getloadavg())
for dt in (np.float64, np.float32):
    Ap, Bp = L.make_scratch(dt, 784, 2)
    for B, ni, no in shapes:
        W = rng.standard_normal((no, ni)).astype(dt); b = rng.standard_normal(no).astype(dt)
        A = rng.standard_normal((B, ni)).astype(dt); D = rng.standard_normal((B, no)).astype(dt)
        Z, O, G = np.empty((B, no), dt), np.empty((B, ni), dt), np.empty((no, ni), dt)
        pairs = {"fwd": (lambda: L.dense_forward(W, b, A, Z, Ap, Bp), lambda: L.dense_forward_par(W, b, A, Z, Ap, Bp), lambda: L.dense(W, b, A, Z, Ap, Bp)),
                 "bwd": (lambda: L.backprop_linear(W, D, O, Ap, Bp), lambda: L.backprop_linear_par(W, D, O, Ap, Bp), lambda: L.backprop(W, D, O, Ap, Bp)),
                 "dW": (lambda: L.outer_sum(D, A, 0.5, G, Ap, Bp), lambda: L.outer_sum_par(D, A, 0.5, G, Ap, Bp), lambda: L.weight_gradient(D, A, 0.5, G, Ap, Bp))}
        for name, fs in pairs.items():
            for f in fs: f()
            ts = [[], [], []]
            for _ in range(reps):
                for i, f in enumerate(fs):
                    t = time.perf_counter(); f(); ts[i].append(time.perf_counter() - t)
            mi = [min(t) for t in ts]; me = [float(np.median(t)) for t in ts]
            print(f"{np.dtype(dt).name} {name:3} B={B:3} {ni}->{no}: 1thr {me[0]*1e3:7.3f} ms  2thr {me[1]*1e3:7.3f} ms  dispatch {me[2]*1e3:7.3f} ms | "
                  f"speedup 2thr median {me[0]/me[1]:.2f} min {mi[0]/mi[1]:.2f}; dispatch/1thr median {me[2]/me[0]:.2f}", flush=True)
print("layer", numba.threading_layer(), "load", os.getloadavg())
