"""Backward pass: loss and gradients of a batch (forward + delta recursion + dC/dW), and the input gradient."""

import numpy as np

from .common import BATCHES, CONFIGS, GRAD_CONFIG, data, network, public_loops, sizes


class Backward:
    params = [CONFIGS, BATCHES]
    param_names = ["sizes", "batch"]

    def setup(self, config, B):
        self.net = network(config)
        self.X, self.Y = data(config, B)
        self.net.loss_and_gradients(self.X, self.Y)

    def time_mlp_loss_and_gradients(self, *params):
        self.net.loss_and_gradients(self.X, self.Y)


class BackwardLoops:
    """The last hidden layer's W^T delta and dC/dW = delta a^T alone (``loops``)."""
    params = [CONFIGS, BATCHES]
    param_names = ["sizes", "batch"]

    def setup(self, config, B):
        self.loops = public_loops()
        s = sizes(config)
        rng = np.random.default_rng(0)
        n_out, n_in = s[-2], s[-3] if len(s) > 2 else s[0]
        self.W = rng.standard_normal((n_out, n_in))
        self.D = rng.standard_normal((B, n_out))
        self.A = rng.standard_normal((B, n_in))
        self.OUT = np.empty((B, n_in))
        self.dW = np.empty((n_out, n_in))
        self.scratch = np.empty(B * (n_in + n_out))
        self.time_kernel_dense_transpose()
        self.time_kernel_outer_sum()

    def time_kernel_dense_transpose(self, *params):
        self.loops.dense_transpose(self.W, self.D, self.OUT)

    def time_kernel_outer_sum(self, *params):
        self.loops.outer_sum(self.D, self.A, self.dW, 1.0, self.scratch)


class InputGradient:
    """grad_x a[L](x) of the single-output network (notes 000/001), one sample or a batch."""
    params = [[GRAD_CONFIG], BATCHES]
    param_names = ["sizes", "batch"]

    def setup(self, config, B):
        self.net = network(config)
        X, _ = data(config, B)
        self.x = X[0] if B == 1 else X
        self.net.input_gradient(self.x)

    def time_mlp_input_gradient(self, *params):
        self.net.input_gradient(self.x)
