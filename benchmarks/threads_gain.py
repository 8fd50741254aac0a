"""Two threads against one: Workspace.run_epoch with numba.set_num_threads(1) and (2), interleaved.

``python benchmarks/threads_gain.py`` on an otherwise idle machine, and
``--busy`` beside one busy process (a Python loop spinning on a core, started
after the warm-up): the two rules of README "Both cores" (at least 1.35x
idle at the compute-bound points; never more than 10% slower beside one busy
process).  SGD, sigmoid hidden layers, identity output, mse; medians of 9
epochs, us per sample.
"""

import os
import subprocess
import sys
import time

import numba
import numpy as np

from backprop_numba import MLP, training
from backprop_numba._threads import kernel_threads

CASES = [([784, 512, 512, 10], 256, 1024, np.float64), ([784, 512, 512, 10], 256, 1024, np.float32),
         ([784, 128, 64, 10], 256, 2048, np.float64), ([784, 128, 64, 10], 256, 2048, np.float32),
         ([784, 512, 512, 10], 32, 512, np.float64), ([784, 512, 512, 10], 32, 512, np.float32),
         ([784, 128, 64, 10], 32, 2048, np.float64), ([784, 16, 10], 256, 4096, np.float64)]


def main():
    busy = "--busy" in sys.argv
    print(f"threads {kernel_threads()}, layer {numba.threading_layer()}, load {os.getloadavg()}", flush=True)
    rng = np.random.default_rng(0)
    prepared = []
    for sizes, B, N, dtype in CASES:
        X = rng.standard_normal((N, sizes[0])).astype(dtype)
        Y = rng.standard_normal((N, sizes[-1])).astype(dtype)
        net = MLP(sizes, activation="sigmoid", loss="mse", dtype=dtype, seed=0)
        ws = training.Workspace(net, batch_size=B, optimizer="sgd")
        X, Y = ws.prepare(X, Y)
        for threads in (2, 1):  # warm-up: compile, and the first touch of every buffer
            numba.set_num_threads(threads)
            ws.run_epoch(X, Y, 0.01)
        prepared.append((sizes, B, dtype, N, ws, X, Y))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    time.sleep(0.5)
    try:
        for sizes, B, dtype, N, ws, X, Y in prepared:
            times = {1: [], 2: []}
            for _ in range(9):
                for threads in (1, 2):
                    numba.set_num_threads(threads)
                    started = time.perf_counter()
                    ws.run_epoch(X, Y, 0.01)
                    times[threads].append(time.perf_counter() - started)
            one, two = (np.median(times[t]) / N * 1e6 for t in (1, 2))
            print(f"{sizes} B={B} {dtype.__name__}{' beside a busy process' if busy else ''}: one thread "
                  f"{one:.1f} us/sample, two {two:.1f}: {one / two:.2f}x", flush=True)
    finally:
        if spinner is not None:
            spinner.kill()
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
