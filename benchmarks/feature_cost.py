"""What sample weights, dropout and the new losses cost: one epoch of [784,128,64,10] at batch 32.

Median of 7 epochs of 8,192 random samples each, against the plain run (mse, no weights, no dropout),
all in one process; prints the ratios.
"""

import os
import time

import numpy as np

from backprop_numba import MLP

rng = np.random.default_rng(0)
N = 8192
X = rng.standard_normal((N, 784))
Y = rng.standard_normal((N, 10))
Ycounts = rng.poisson(2.0, size=(N, 10)).astype(float)
w = rng.uniform(0.5, 2.0, size=N)
cases = {
    "plain (mse)": (dict(), dict(), Y),
    "sample_weight": (dict(), dict(sample_weight=w), Y),
    "dropout 0.2": (dict(dropout=0.2), dict(), Y),
    "huber": (dict(loss="huber"), dict(), Y),
    "mae": (dict(loss="mae"), dict(), Y),
    "poisson": (dict(loss="poisson", output_activation="exp"), dict(), Ycounts),
}
times = {name: [] for name in cases}
nets = {}
for name, (net_kw, fit_kw, targets) in cases.items():
    nets[name] = MLP([784, 128, 64, 10], activation="sigmoid", seed=0, **net_kw)
    nets[name].fit(X[:64], targets[:64], epochs=1, batch_size=32, learning_rate=0.001, progress=False,
                   **({k: v[:64] for k, v in fit_kw.items()}))  # compile outside the timing
for _ in range(7):  # interleaved, so load changes hit every case alike
    for name, (net_kw, fit_kw, targets) in cases.items():
        t0 = time.perf_counter()
        nets[name].fit(X, targets, epochs=1, batch_size=32, learning_rate=0.001, shuffle=False, progress=False,
                       **fit_kw)
        times[name].append(time.perf_counter() - t0)
base = np.median(times["plain (mse)"])
print(f"load average {os.getloadavg()}")
for name, t in times.items():
    print(f"{name:14s} {np.median(t) * 1e3:8.1f} ms/epoch  x{np.median(t) / base:.3f} of plain")
