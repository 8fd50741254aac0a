"""Central finite differences over theta: an oracle for the backpropagated gradient."""

from dataclasses import dataclass

import numpy as np

from ._validation import check_float, check_inputs, check_targets


@dataclass
class GradientCheck:
    """Result of ``check_gradients``.

    rel_error : ||g - g_fd|| / max(||g|| + ||g_fd||, floor), Euclidean norms
        over all parameters (small where the two agree to many digits)
    max_abs_error : max over parameters of |g_i - g_fd_i|
    analytic, numeric : flat gradients laid out like ``net.theta``
    tolerance : the rel_error below which the check counts as passed
    """

    rel_error: float
    max_abs_error: float
    analytic: np.ndarray
    numeric: np.ndarray
    tolerance: float = 1e-6

    def __bool__(self):
        return bool(self.rel_error < self.tolerance)


def check_gradients(net, X, Y, eps=1e-6, tolerance=1e-6, indices=None, floor=1e-12):
    """Compare ``net.loss_and_gradients`` with central differences of the mean loss.

    dC/dtheta_i ~ (C(theta + eps e_i) - C(theta - eps e_i)) / (2 eps), in float64
    on a float64 copy of the network (float32 differences carry too little
    precision for a meaningful check; the network itself is never modified).

    indices : optional 1-D integer array of positions in theta to check
        (default: all of them; large networks may check a random subset, since
        each coordinate costs two passes over the batch).  ``analytic`` and
        ``numeric`` then hold just those coordinates.

    Returns a ``GradientCheck``; it is truthy when ``rel_error < tolerance``.
    Points where a relu sits exactly at its kink (z = 0) have no derivative;
    differences there disagree with any backpropagation, as they should.
    """
    from .mlp import MLP

    eps = check_float("eps", eps, low=0.0, low_open=True)
    tolerance = check_float("tolerance", tolerance, low=0.0, low_open=True)
    floor = check_float("floor", floor, low=0.0, low_open=True)
    if not isinstance(net, MLP):
        raise TypeError(f"net must be an MLP, got {type(net).__name__}.")
    # A float64 copy: the caller's network is never perturbed, whatever its dtype.
    net64 = MLP.from_weights(
        net.weights, net.biases, activation=net.activations[:-1], output_activation=net.activations[-1],
        loss=net.loss, dtype=np.float64, huber_delta=net.huber_delta)
    X, _ = check_inputs(X, net64.layer_sizes[0], np.float64)
    Y = check_targets(Y, net64.loss, net64.layer_sizes[-1], X.shape[0], np.float64)
    _, analytic = net64._loss_and_flat_gradient(X, Y)
    theta = net64.theta
    if indices is None:
        indices = np.arange(theta.shape[0])
    else:
        indices = np.asarray(indices)
        if indices.ndim != 1 or indices.dtype.kind not in "iu":
            raise TypeError(f"indices must be a 1-D integer array, got {indices.dtype} of shape {indices.shape}.")
        if indices.size == 0 or indices.min() < 0 or indices.max() >= theta.shape[0]:
            raise ValueError(f"indices must be non-empty positions in [0, {theta.shape[0] - 1}].")
    analytic = analytic[indices]
    numeric = np.empty_like(analytic)
    for out, i in enumerate(indices):
        saved = theta[i]
        theta[i] = saved + eps
        up = net64._loss_value_checked(X, Y)
        theta[i] = saved - eps
        down = net64._loss_value_checked(X, Y)
        theta[i] = saved
        numeric[out] = (up - down) / (2 * eps)
    diff = analytic - numeric
    rel = np.linalg.norm(diff) / max(np.linalg.norm(analytic) + np.linalg.norm(numeric), floor)
    return GradientCheck(float(rel), float(np.abs(diff).max()), analytic, numeric, tolerance)
