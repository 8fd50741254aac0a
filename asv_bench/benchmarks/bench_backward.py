"""Backward pass: loss and gradients of a batch (forward + delta recursion + dC/dW), and the input gradient."""

import numpy as np

from .common import BATCHES, CONFIGS, GRAD_CONFIG, data, network


class Backward:
    params = [CONFIGS, BATCHES]
    param_names = ["sizes", "batch"]

    def setup(self, config, B):
        from backprop_numba import _kernels as K
        self.K = K
        self.net = network(config)
        self.X, self.Y = data(config, B)
        self.a, self.z, self.d = self.net._unit_buffers(B, 3)
        self.grad = np.empty(self.net._n_params)
        self.time_kernel_loss_and_gradients()
        self.net.loss_and_gradients(self.X, self.Y)

    def time_kernel_loss_and_gradients(self, *params):
        self.K._loss_and_gradients(self.net.theta, self.net._arch, self.net._loss_code, self.X, self.Y,
                                   self.a, self.z, self.d, self.grad)

    def time_mlp_loss_and_gradients(self, *params):
        self.net.loss_and_gradients(self.X, self.Y)


class InputGradient:
    """grad_x a[L](x) of the single-output network (seeds 000/001), one sample or a batch."""
    params = [[GRAD_CONFIG], BATCHES]
    param_names = ["sizes", "batch"]

    def setup(self, config, B):
        from backprop_numba import _kernels as K
        self.K = K
        self.net = network(config)
        X, _ = data(config, B)
        self.X = X
        self.x = X[0] if B == 1 else X
        self.V = np.ones((B, 1))
        self.a, self.z, self.d = self.net._unit_buffers(B, 3)
        self.gx = np.empty_like(X)
        self.time_kernel_vjp()
        self.net.input_gradient(self.x)

    def time_kernel_vjp(self, *params):
        self.K._vjp(self.net.theta, self.net._arch, self.X, self.V, self.a, self.z, self.d, self.gx)

    def time_mlp_input_gradient(self, *params):
        self.net.input_gradient(self.x)
