"""Training: one SGD step (compiled, and through MLP.fit), one epoch, peak memory of fit, FLOP/s tracks."""

import time

from .common import (BATCHES, CONFIGS, DTYPES, EPOCH_SAMPLES, LEARNING_RATE, data, matmul_peak, network,
                     step_flops, workspace)


class TrainStep:
    params = [CONFIGS, BATCHES, DTYPES]
    param_names = ["sizes", "batch", "dtype"]

    def setup(self, config, B, dtype):
        self.net = network(config, dtype)
        self.X, self.Y = data(config, B, dtype)
        self.ws = workspace(self.net, B)
        self.time_kernel_step()
        self.time_mlp_fit_one_batch()

    def _step(self):
        self.ws.run_epoch(self.X, self.Y, LEARNING_RATE)

    def time_kernel_step(self, *params):
        self._step()

    def time_mlp_fit_one_batch(self, *params):
        self.net.fit(self.X, self.Y, epochs=1, batch_size=self.X.shape[0], learning_rate=LEARNING_RATE,
                     shuffle=False, progress=False)


class StepThroughput:
    """GFLOP/s of the compiled step and its fraction of NumPy's matmul peak on the same machine."""
    params = [CONFIGS, [32, 256], DTYPES]
    param_names = ["sizes", "batch", "dtype"]

    def setup(self, config, B, dtype):
        self.net = network(config, dtype)
        self.X, self.Y = data(config, B, dtype)
        self.ws = workspace(self.net, B)
        self.flops = step_flops(config, B)
        self._step()

    _step = TrainStep._step

    def _seconds(self):
        best = float("inf")
        end = time.perf_counter() + 0.2
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            self._step()
            best = min(best, time.perf_counter() - t0)
        return best

    def track_gflops(self, config, B, dtype):
        return self.flops / self._seconds() / 1e9
    track_gflops.unit = "GFLOP/s"

    def track_fraction_of_matmul_peak(self, config, B, dtype):
        return self.flops / self._seconds() / matmul_peak(dtype)
    track_fraction_of_matmul_peak.unit = "fraction"


class Epoch:
    params = [CONFIGS, BATCHES]
    param_names = ["sizes", "batch"]
    timeout = 300

    def setup(self, config, B):
        self.net = network(config)
        self.X, self.Y = data(config, EPOCH_SAMPLES)
        self.net.fit(self.X[:B], self.Y[:B], epochs=1, batch_size=B, progress=False)

    def time_epoch(self, config, B):
        self.net.fit(self.X, self.Y, epochs=1, batch_size=B, learning_rate=LEARNING_RATE, shuffle=True,
                     progress=False)


class FitMemory:
    """Peak resident memory of a 2-epoch fit (workspaces are allocated once per fit)."""
    params = [CONFIGS, [256]]
    param_names = ["sizes", "batch"]

    def setup(self, config, B):
        self.net = network(config)
        self.X, self.Y = data(config, EPOCH_SAMPLES)
        self.net.fit(self.X[:B], self.Y[:B], epochs=1, batch_size=B, progress=False)

    def peakmem_fit(self, config, B):
        self.net.fit(self.X, self.Y, epochs=2, batch_size=B, learning_rate=LEARNING_RATE, progress=False)
