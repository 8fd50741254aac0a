"""us/sample (thread CPU time, robust to a busy machine) of one training epoch (sgd, sigmoid hidden, identity output, mse), old vs new kernel,
interleaved in one process; min and median of N repetitions.  Usage: bench.py [f64|f32] [B ...] [--nets i,j]"""
import argparse
import os
import time

from common import K0, K1, make_problem, np, optimizers

NETS = [([4, 3, 2, 1], 20000), ([784, 16, 10], 4000), ([784, 128, 64, 10], 1000), ([784, 512, 512, 10], 200)]

p = argparse.ArgumentParser()
p.add_argument("--dtype", default="f64")
p.add_argument("--B", default="1,32")
p.add_argument("--nets", default="0,1,2,3")
p.add_argument("--reps", type=int, default=7)
p.add_argument("--opt", default="sgd")
args = p.parse_args()
dtype = np.float64 if args.dtype == "f64" else np.float32


def setup(K, sizes, n, B):
    arch, theta, X, Y, lc = make_problem(sizes, n=n, dtype=dtype)
    size = B * int(sum(sizes))
    bufs = [np.empty(size, dtype=dtype) for _ in range(3)]
    y_buf = np.empty(B * sizes[-1], dtype=dtype)
    grad = np.empty(theta.shape[0], dtype=dtype)
    perm = np.arange(n, dtype=np.int64)
    state = optimizers.new_state(theta.shape[0], dtype)
    hyper = optimizers.hyper_array(optimizers.DEFAULTS)
    opt = optimizers.CODES[args.opt]
    lr = 0.01 if args.opt != "adam" else 1e-4

    def once(seed):
        t0 = time.thread_time()
        K._train_epoch(theta, arch, lc, X, Y, perm, seed, B, opt, lr, hyper, state, 0, False, *bufs, y_buf, grad)
        return time.thread_time() - t0
    return once


print(f"dtype={args.dtype} opt={args.opt} loadavg={os.getloadavg()}")
print(f"{'net':22s} {'B':>3s} {'old min':>9s} {'old med':>9s} {'new min':>9s} {'new med':>9s} {'speedup':>7s}  (us/sample)")
for i in [int(x) for x in args.nets.split(",")]:
    sizes, n = NETS[i]
    for B in [int(b) for b in args.B.split(",")]:
        fo, fn = setup(K0, sizes, n, B), setup(K1, sizes, n, B)
        fo(1), fn(1)
        to, tn = [], []
        for r in range(args.reps):
            to.append(fo(r + 2) / n * 1e6)
            tn.append(fn(r + 2) / n * 1e6)
        print(f"{str(sizes):22s} {B:3d} {min(to):9.3f} {np.median(to):9.3f} {min(tn):9.3f} {np.median(tn):9.3f} "
              f"{np.median(to) / np.median(tn):7.2f}x", flush=True)
print(f"loadavg={os.getloadavg()}")
