"""Forward pass: the compiled loop z = W a + b of one layer (``loops.dense``), and MLP.forward."""

import numpy as np

from .common import BATCHES, CONFIGS, data, network, public_loops, sizes


class Forward:
    params = [CONFIGS, BATCHES]
    param_names = ["sizes", "batch"]

    def setup(self, config, B):
        self.net = network(config)
        self.X, _ = data(config, B)
        self.net.forward(self.X)  # compile / load from cache outside the timing

    def time_mlp_forward(self, *params):
        self.net.forward(self.X)


class DenseLoop:
    """The first layer's z = W a + b alone (the largest matrix product of the forward pass)."""
    params = [CONFIGS, BATCHES]
    param_names = ["sizes", "batch"]

    def setup(self, config, B):
        self.loops = public_loops()
        self.net = network(config)
        self.X, _ = data(config, B)
        self.W, self.b = self.net.weights[0].copy(), self.net.biases[0].copy()
        self.Z = np.empty((B, sizes(config)[1]))
        self.time_kernel_dense()

    def time_kernel_dense(self, *params):
        self.loops.dense(self.W, self.b, self.X, self.Z)


class ForwardFloat32:
    params = [CONFIGS, [256]]
    param_names = ["sizes", "batch"]

    def setup(self, config, B):
        self.net = network(config, "float32")
        self.X, _ = data(config, B, "float32")
        self.net.forward(self.X)

    def time_mlp_forward(self, config, B):
        self.net.forward(self.X)
