"""Forward pass a[L](X): the compiled kernel alone and through MLP.forward (validation + allocation)."""

import numpy as np

from .common import BATCHES, CONFIGS, data, network


class Forward:
    params = [CONFIGS, BATCHES]
    param_names = ["sizes", "batch"]

    def setup(self, config, B):
        from backprop_numba import _kernels as K
        self.K = K
        self.net = network(config)
        self.X, _ = data(config, B)
        self.rows = np.arange(B)
        self.out = np.empty((B, self.net.layer_sizes[-1]))
        self.a, self.z = self.net._unit_buffers(B, 2)
        self.time_kernel_forward()  # compile / load from cache outside the timing
        self.net.forward(self.X)

    def time_kernel_forward(self, *params):
        self.K._predict(self.net.theta, self.net._arch, self.X, self.rows, self.out, self.a, self.z,
                        self.X.shape[0])

    def time_mlp_forward(self, *params):
        self.net.forward(self.X)


class ForwardFloat32:
    params = [CONFIGS, [256]]
    param_names = ["sizes", "batch"]

    def setup(self, config, B):
        self.net = network(config, "float32")
        self.X, _ = data(config, B, "float32")
        self.net.forward(self.X)

    def time_mlp_forward(self, config, B):
        self.net.forward(self.X)
