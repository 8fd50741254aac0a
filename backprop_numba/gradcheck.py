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
    Raises ValueError when the loss, the gradient or a difference is not
    finite (rel_error would be NaN: neither a pass nor a failure).
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
    value, analytic = net64._loss_and_flat_gradient(X, Y)
    if not (np.isfinite(value) and np.isfinite(analytic).all()):
        bad = int(np.count_nonzero(~np.isfinite(analytic)))
        raise ValueError(f"the loss and its gradient must be finite to be checked, got loss {value!r} and "
                         f"{bad} non-finite gradient entries of {analytic.size} (at the network's parameters, in "
                         "float64): the inputs or the parameters are too large; rescale X or check the weights.")
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
        if not np.isfinite(numeric[out]):
            raise ValueError(f"the finite difference for theta[{i}] must be finite, got {float(numeric[out])!r} (loss "
                             f"{up!r} at theta[{i}] + eps, {down!r} at theta[{i}] - eps, eps={eps!r}): use a "
                             "smaller eps, or rescale X.")
    diff = analytic - numeric
    # Norms of the scaled vectors: rel_error does not depend on the scale, and huge finite gradients
    # (|g| ~ 1e200) would otherwise overflow the sums of squares into inf / inf = NaN.
    scale = max(float(np.abs(analytic).max()), float(np.abs(numeric).max()), floor)
    rel = np.linalg.norm(diff / scale) / max(np.linalg.norm(analytic / scale) + np.linalg.norm(numeric / scale),
                                             floor / scale)
    return GradientCheck(float(rel), float(np.abs(diff).max()), analytic, numeric, tolerance)
