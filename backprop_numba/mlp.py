"""The MLP class: validate -> allocate buffers -> one kernel call -> wrap the result."""

import numpy as np

from . import _kernels as K
from . import activations, io, losses, training
from ._validation import (
    OVERFLOW_HINT,
    check_dropout,
    check_finite_result,
    check_fits_dtype,
    check_inputs,
    check_layer_parameters,
    check_network,
    check_same_rows,
    check_sample_weight,
    check_seed,
    check_single_output,
    check_stored_theta,
    check_targets,
    check_theta,
)
from ._threads import call_kernel
from .training import DivergenceError, _accuracy

__all__ = ["MLP", "DivergenceError"]

# Samples per forward pass when predicting or evaluating large arrays: bounds
# the a/z buffers to PREDICT_CHUNK * sum(n) values whatever the data size.
PREDICT_CHUNK = 1024


def _arch_table(sizes, act_codes):
    """The int64 (5, L+1) table the kernels read (see _kernels.py)."""
    L = len(sizes) - 1
    arch = np.zeros((5, L + 1), dtype=np.int64)
    arch[K.N] = sizes
    arch[K.ACT, 1:] = act_codes
    off = 0
    for l in range(1, L + 1):
        arch[K.WOFF, l] = off
        off += sizes[l] * sizes[l - 1]
        arch[K.BOFF, l] = off
        off += sizes[l]
    arch[K.UOFF] = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    return arch, off


class MLP:
    """A fully-connected network trained and differentiated by backpropagation.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n[0], n[1], ..., n[L]]``: input size, hidden widths, output size.
    activation : str or sequence of str, default "sigmoid"
        Activation of the hidden layers (one name, or one per hidden layer):
        "sigmoid", "tanh", "relu", "leaky_relu" or "identity".
    output_activation : str, optional
        Activation of the output layer; adds "softmax".  Default: the one the
        loss needs ("sigmoid" for bce, "softmax" for cross_entropy), "sigmoid"
        for sse/half_sse (as in the seeds) and "identity" for mse.
    loss : str, default "mse"
        "sse", "half_sse", "mse", "bce", "cross_entropy", "huber", "mae" or
        "poisson" (needs ``output_activation="exp"``; see ``losses``).
    huber_delta : float > 0, default 1.0
        Where the huber loss turns from quadratic to linear (PyTorch's ``delta``).
    dropout : float in [0, 1) or one per hidden layer, default 0.0
        Inverted dropout on the hidden layers, in ``fit``/``partial_fit`` only
        (``forward``, ``predict`` and the gradient methods never drop): each
        unit is kept with probability 1 - rate and scaled by 1 / (1 - rate),
        with masks drawn inside the compiled epoch from the run's seed.
    seed : int or None
        Seeds the initial weights and the shuffling in ``fit``.
    dtype : np.float32 or np.float64, default np.float64

    Notes
    -----
    Weights use the column convention of notes 000/001/003: ``W[l]`` has shape
    ``(n[l], n[l-1])`` and ``z[l] = W[l] a[l-1] + b[l]``.  Layers are numbered
    from ``a[0] = x``.  All parameters live in one flat vector ``theta``;
    ``weights`` and ``biases`` are views into it, so writing to them changes
    the network.  Initial weights are uniform in +-sqrt(f/(fan_in+fan_out))
    (Glorot; f=2 for sigmoid, 6 otherwise) or +-sqrt(6/fan_in) for relu and
    leaky_relu (He);
    biases start at zero.

    Examples
    --------
    >>> import numpy as np
    >>> from backprop_numba import MLP
    >>> net = MLP([2, 4, 1], activation="tanh", loss="bce", seed=0)
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    >>> y = np.array([0, 1, 1, 0], dtype=float)
    >>> history = net.fit(X, y, epochs=2000, batch_size=4, learning_rate=0.5,
    ...                   optimizer="adam", progress=False)
    >>> (net.predict(X)[:, 0] > 0.5).astype(int).tolist()
    [0, 1, 1, 0]
    """

    _incremental = None  # partial_fit's state between calls (training.Incremental)
    _workspace = None    # fit's buffers, kept for the next fit of the same batch size (training.Workspace.for_fit)

    def __init__(self, layer_sizes, activation="sigmoid", output_activation=None, loss="mse",
                 seed=None, dtype=np.float64, huber_delta=1.0, dropout=0.0):
        self._configure(layer_sizes, activation, output_activation, loss, dtype, huber_delta, dropout)
        self._rng = np.random.default_rng(check_seed("seed", seed))
        self.theta = np.zeros(self._n_params, dtype=self.dtype)
        self._initialise()

    # -- construction ------------------------------------------------------

    def _configure(self, layer_sizes, activation, output_activation, loss, dtype, huber_delta=1.0, dropout=0.0):
        spec = check_network(layer_sizes, activation, output_activation, loss, dtype, huber_delta,
                             losses, activations.HIDDEN, activations.OUTPUT)
        self.layer_sizes, self.activations, self.loss, self.dtype, self.huber_delta = spec
        self.dropout = check_dropout(dropout, len(self.layer_sizes) - 2)
        # the kernels' rates, indexed by layer l (0 at the input and the output)
        self._drop_rates = np.array([0.0, *self.dropout, 0.0], dtype=np.float64)
        self._arch, self._n_params = _arch_table(self.layer_sizes, [activations.CODES[a] for a in self.activations])
        self._loss_code = losses.CODES[self.loss]
        self._loss_param = self.huber_delta if self.loss == "huber" else 0.0  # the kernels' loss_param

    def _initialise(self):
        for l in range(1, self.n_layers + 1):
            fan_in, fan_out = self.layer_sizes[l - 1], self.layer_sizes[l]
            # the activation's rule (activations.ACTIVATIONS): Glorot, or He for the rectifiers
            bound = activations.ACTIVATIONS[self.activations[l - 1]].init_bound(fan_in, fan_out)
            self.W(l)[...] = self._rng.uniform(-bound, bound, size=(fan_out, fan_in))
            self.b(l)[...] = 0.0

    @classmethod
    def from_weights(cls, weights, biases, layout="column", activation="sigmoid", output_activation=None,
                     loss="mse", dtype=None, seed=None, huber_delta=1.0, dropout=0.0):
        """Build a network from given parameters.

        Parameters
        ----------
        weights : sequence of 2-D arrays
            ``layout="column"``: W[l] of shape (n[l], n[l-1]) (notes 000/001/003).
            ``layout="row"``: W[l] of shape (n[l-1], n[l]), ``z = a W + b`` (notes 002/004).
        biases : sequence of 1-D arrays of shape (n[l],)
        dtype : float32 or float64; default: float32 if every weight is
            float32, else float64.
        """
        seed = check_seed("seed", seed)
        Ws, bs = check_layer_parameters(weights, biases, layout)
        if dtype is None:  # any byte order: a big-endian float32 ('>f4') is float32 too
            dtype = np.float32 if all(W.dtype.newbyteorder("=") == np.float32 for W in Ws) else np.float64
        net = cls.__new__(cls)
        net._configure([Ws[0].shape[1]] + [W.shape[0] for W in Ws], activation, output_activation, loss, dtype,
                       huber_delta, dropout)
        net._rng = np.random.default_rng(seed)
        net.theta = np.zeros(net._n_params, dtype=net.dtype)
        check_fits_dtype(Ws, bs, net.dtype)
        for l in range(1, net.n_layers + 1):
            net.W(l)[...] = Ws[l - 1]
            net.b(l)[...] = bs[l - 1]
        return net

    # -- parameters --------------------------------------------------------

    @property
    def theta(self):
        """All parameters in one flat vector of shape (P,): W[1], b[1], W[2], b[2], ...

        Assigning to it is checked (shape, dtype, finite) and converts where
        needed, so no kernel ever sees a vector that does not fit the network.
        """
        return self._theta

    @theta.setter
    def theta(self, value):
        self._theta = check_theta(value, self._n_params, self.dtype)

    @property
    def n_layers(self):
        """L, the number of weight layers (len(layer_sizes) - 1)."""
        return len(self.layer_sizes) - 1

    def W(self, l):
        """W[l], 1 <= l <= L, shape (n[l], n[l-1]): a view into theta."""
        start = self._arch[K.WOFF, l]
        n_out, n_in = self.layer_sizes[l], self.layer_sizes[l - 1]
        return self.theta[start:start + n_out * n_in].reshape(n_out, n_in)

    def b(self, l):
        """b[l], 1 <= l <= L, shape (n[l],): a view into theta."""
        start = self._arch[K.BOFF, l]
        return self.theta[start:start + self.layer_sizes[l]]

    @property
    def weights(self):
        """[W[1], ..., W[L]], column convention, views into theta."""
        return [self.W(l) for l in range(1, self.n_layers + 1)]

    @property
    def biases(self):
        """[b[1], ..., b[L]], views into theta."""
        return [self.b(l) for l in range(1, self.n_layers + 1)]

    def _unflatten(self, flat):
        """[(dW[l], db[l]) for l = 1..L] as views into a vector laid out like theta."""
        out = []
        for l in range(1, self.n_layers + 1):
            w0, b0 = self._arch[K.WOFF, l], self._arch[K.BOFF, l]
            n_out, n_in = self.layer_sizes[l], self.layer_sizes[l - 1]
            out.append((flat[w0:w0 + n_out * n_in].reshape(n_out, n_in), flat[b0:b0 + n_out]))
        return out

    def __repr__(self):
        """A valid constructor call for this architecture (the parameters are not shown)."""
        hidden = self.activations[:-1]
        activation = hidden[0] if len(set(hidden)) == 1 else hidden  # [] for a network without hidden layers
        delta = f", huber_delta={self.huber_delta!r}" if self.huber_delta != 1.0 else ""
        if any(self.dropout):
            delta += f", dropout={self.dropout[0] if len(set(self.dropout)) == 1 else self.dropout!r}"
        return (f"MLP({self.layer_sizes}, activation={activation!r}, output_activation={self.activations[-1]!r}, "
                f"loss={self.loss!r}, dtype={np.dtype(self.dtype).name!r}{delta})")

    # -- buffers -----------------------------------------------------------

    def _unit_buffers(self, B, count):
        """`count` flat buffers for a, z, delta over B samples (see _kernels.py)."""
        size = B * sum(self.layer_sizes)
        return [np.empty(size, dtype=self.dtype) for _ in range(count)]

    # -- forward and gradients ---------------------------------------------

    def forward(self, X):
        """The network output a[L].

        Parameters
        ----------
        X : array of shape (n[0],) or (n_samples, n[0])

        Returns
        -------
        ndarray of shape (n[L],) or (n_samples, n[L]), in the network's dtype.
        """
        X, one = check_inputs(X, self.layer_sizes[0], self.dtype)
        out = check_finite_result("the network output", self._forward_checked(X), OVERFLOW_HINT)
        return out[0] if one else out

    def _forward_checked(self, X):
        B = X.shape[0]
        chunk = min(B, PREDICT_CHUNK)
        a_buf, z_buf = self._unit_buffers(chunk, 2)
        out = np.empty((B, self.layer_sizes[-1]), dtype=self.dtype)
        call_kernel(K._predict, self.theta, self._arch, X, np.arange(B), out, a_buf, z_buf, chunk)
        return out

    def predict(self, X):
        """Same as forward: the output a[L] for X (probabilities for bce/cross_entropy)."""
        return self.forward(X)

    def predict_classes(self, X):
        """Predicted labels.

        Several outputs with a softmax: the argmax, shape (n_samples,).
        One output: a[L] > 0.5 as 0/1, shape (n_samples,).  Several sigmoid
        outputs (multi-label bce): a[L] > 0.5 per output, shape (n_samples, n[L]).
        One sample (1-D X) gives one label (or one row).
        """
        X, one = check_inputs(X, self.layer_sizes[0], self.dtype)
        out = check_finite_result("the network output", self._forward_checked(X), OVERFLOW_HINT)
        if self.activations[-1] == "softmax":
            labels = np.argmax(out, axis=1)
        elif out.shape[1] == 1:
            labels = (out[:, 0] > 0.5).astype(np.int64)
        else:
            labels = (out > 0.5).astype(np.int64)
        return labels[0] if one else labels

    def loss_and_gradients(self, X, Y, sample_weight=None):
        """Mean loss over a batch and its gradient with respect to every W[l] and b[l].

        Parameters
        ----------
        X : array of shape (n[0],) or (n_samples, n[0])
        Y : array of targets, shape (n_samples, n[L]) (or (n_samples,) with
            one output, or integer class labels for cross_entropy).

        Returns
        -------
        loss : float
            Mean over the samples of the per-sample loss (see ``losses``).
        grads : list of (dW, db)
            For l = 1..L, arrays shaped like W[l] and b[l]: the gradient of
            that mean loss (note 002 eqs. 3-4 averaged over the batch).
        """
        X, _ = check_inputs(X, self.layer_sizes[0], self.dtype)
        Y = check_targets(Y, self.loss, self.layer_sizes[-1], X.shape[0], self.dtype)
        value, grad = self._loss_and_flat_gradient(X, Y, check_sample_weight(sample_weight, X.shape[0], self.dtype))
        check_finite_result("the loss", value, OVERFLOW_HINT)
        check_finite_result("the gradient", grad, OVERFLOW_HINT)
        return value, self._unflatten(grad)

    def _loss_and_flat_gradient(self, X, Y, SW=None, drop_seed=-1):
        a_buf, z_buf, d_buf = self._unit_buffers(X.shape[0], 3)
        grad = np.empty(self._n_params, dtype=self.dtype)
        SW = np.empty(0, dtype=self.dtype) if SW is None else SW
        value = call_kernel(K._loss_and_gradients, self.theta, self._arch, self._loss_code, self._loss_param, X, Y,
                            SW, a_buf, z_buf, d_buf, grad, self._drop_rates, drop_seed)
        return float(value), grad

    def loss_value(self, X, Y, sample_weight=None):
        """Mean loss over X, Y (forward passes only); with sample_weight, sum_i s_i C_i / sum_i s_i."""
        X, _ = check_inputs(X, self.layer_sizes[0], self.dtype)
        Y = check_targets(Y, self.loss, self.layer_sizes[-1], X.shape[0], self.dtype)
        SW = check_sample_weight(sample_weight, X.shape[0], self.dtype)
        return check_finite_result("the loss", self._loss_value_checked(X, Y, SW), OVERFLOW_HINT)

    def _loss_value_checked(self, X, Y, SW=None):
        chunk = min(X.shape[0], PREDICT_CHUNK)
        a_buf, z_buf = self._unit_buffers(chunk, 2)
        SW = np.empty(0, dtype=self.dtype) if SW is None else SW
        return float(call_kernel(K._loss_value, self.theta, self._arch, self._loss_code, self._loss_param, X, Y, SW,
                                 a_buf, z_buf, chunk))

    def vjp(self, X, V):
        """Vector-Jacobian product V^T J of the output a[L] with respect to the input.

        X of shape (n[0],) with V of shape (n[L],), or X of shape (B, n[0])
        with V of shape (B, n[L]); returns the same rank as X.
        """
        X, one = check_inputs(X, self.layer_sizes[0], self.dtype)
        V, _ = check_inputs(V, self.layer_sizes[-1], self.dtype, name="V", what="the network's output size")
        check_same_rows("V", V, "X", X)
        gx = check_finite_result("the vector-Jacobian product", self._vjp_checked(X, V), OVERFLOW_HINT)
        return gx[0] if one else gx

    def _vjp_checked(self, X, V):
        B = X.shape[0]
        a_buf, z_buf, d_buf = self._unit_buffers(B, 3)
        gx = np.empty((B, self.layer_sizes[0]), dtype=self.dtype)
        K._vjp(self.theta, self._arch, X, V, a_buf, z_buf, d_buf, gx)
        return gx

    def input_gradient(self, X):
        """Gradient of the single output a[L] with respect to the input x (notes 000/001).

        Needs n[L] == 1.  X of shape (n[0],) -> (n[0],); (B, n[0]) -> (B, n[0]).
        For several outputs use ``jacobian`` or ``vjp``.
        """
        check_single_output(self.layer_sizes[-1])
        X, one = check_inputs(X, self.layer_sizes[0], self.dtype)
        gx = self._vjp_checked(X, np.ones((X.shape[0], 1), dtype=self.dtype))
        check_finite_result("the input gradient", gx, OVERFLOW_HINT)
        return gx[0] if one else gx

    def jacobian(self, X):
        """Jacobian d a[L] / d x: shape (n[L], n[0]) for one sample, (B, n[L], n[0]) for a batch.

        Row i is the vector-Jacobian product with the i-th unit vector: the
        input-gradient recursion of notes 000/001 seeded with e_i.
        """
        X, one = check_inputs(X, self.layer_sizes[0], self.dtype)
        n_out = self.layer_sizes[-1]
        B = X.shape[0]
        Xr = np.ascontiguousarray(np.repeat(X, n_out, axis=0))
        V = np.ascontiguousarray(np.tile(np.eye(n_out, dtype=self.dtype), (B, 1)))
        J = self._vjp_checked(Xr, V).reshape(B, n_out, self.layer_sizes[0])
        check_finite_result("the Jacobian", J, OVERFLOW_HINT)
        return J[0] if one else J

    # -- training ------------------------------------------------------------

    def fit(self, X, Y=None, epochs=10, batch_size=32, learning_rate=0.1, optimizer="sgd", shuffle=True,
            validation_data=None, progress=None, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8,
            weight_decay=0.0, on_nonfinite="raise", seed=None, lr_schedule=None, validation_fraction=None,
            early_stopping=False, patience=10, min_delta=0.0, checkpoint_every=None, checkpoint_path=None,
            resume_from=None, callbacks=None, sample_weight=None, checkpoint_metadata=None):
        # The docstring is training.FIT_DOC (set below the class), beside the table of fit's options.
        options = dict(locals())
        for key in ("self", "X", "Y"):
            del options[key]
        self._incremental = None  # fit starts its own optimizer state
        return training.fit(self, X, Y, options)  # one dict, not **options: re-packing 25 keywords took ~4 us

    def partial_fit(self, X, Y, batch_size=32, learning_rate=0.1, optimizer="sgd", shuffle=True, momentum=0.9,
                    beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, on_nonfinite="raise", seed=None,
                    lr_schedule=None, sample_weight=None):
        # The docstring is training.PARTIAL_FIT_DOC (set below the class).
        options = dict(locals())
        for key in ("self", "X", "Y"):
            del options[key]
        return training.partial_fit(self, X, Y, options)

    def reset_training(self):
        """Forget the optimizer state that partial_fit carries between calls (the parameters stay)."""
        self._incremental = None

    def evaluate(self, X, Y, sample_weight=None):
        """{"loss": mean loss, "accuracy": for bce/cross_entropy} on X, Y (both weighted by sample_weight)."""
        X, _ = check_inputs(X, self.layer_sizes[0], self.dtype)
        Y = check_targets(Y, self.loss, self.layer_sizes[-1], X.shape[0], self.dtype)
        SW = check_sample_weight(sample_weight, X.shape[0], self.dtype)
        result = {"loss": check_finite_result("the loss", self._loss_value_checked(X, Y, SW), OVERFLOW_HINT)}
        if self.loss in losses.CLASSIFICATION:
            result["accuracy"] = _accuracy(self._forward_checked(X), Y, self.loss, SW)
        return result

    # -- files -------------------------------------------------------------

    def _to_arrays(self):
        return {
            "format": np.array(io.FORMAT),
            "format_version": np.array(io.FORMAT_VERSION, dtype=np.int64),
            "layer_sizes": np.array(self.layer_sizes, dtype=np.int64),
            "activations": np.array(self.activations),
            "loss": np.array(self.loss),
            "dtype": np.array(np.dtype(self.dtype).name),
            "theta": self.theta.copy(),
            **({"extra.huber_delta": np.array(self.huber_delta)} if self.loss == "huber" else {}),
            **({"extra.dropout": np.array(self.dropout, dtype=np.float64)} if any(self.dropout) else {}),
        }

    def to_onnx(self, path):
        """Write the network as an ONNX model (input "X", output "Y" = a[L]); see ``onnx_export``.

        Needs the ``onnx`` package (``pip install 'backprop_numba[onnx]'``);
        any ONNX runtime then serves the model without this library.
        """
        from . import onnx_export
        return onnx_export.export(self, path)

    def save(self, path):
        """Write the network to an .npz model file (format: ``backprop_numba.io``), atomically."""
        io.save_arrays(path, self._to_arrays())

    @classmethod
    def load(cls, path):
        """Read a network saved by ``save``; refuses altered, truncated or foreign files."""
        arrays = io.load_arrays(path)
        return cls._from_arrays(arrays, path)

    @classmethod
    def _from_arrays(cls, arrays, path="model file"):
        net = cls.__new__(cls)
        try:
            delta = arrays.get("extra.huber_delta", np.array(1.0))
            dropout = arrays.get("extra.dropout", np.zeros(len(arrays["layer_sizes"]) - 2))
            net._configure([int(n) for n in arrays["layer_sizes"]], [str(a) for a in arrays["activations"][:-1]],
                           str(arrays["activations"][-1]), str(arrays["loss"]), str(arrays["dtype"]),
                           float(delta) if delta.shape == () and delta.dtype.kind == "f" else "invalid",
                           dropout.tolist() if dropout.dtype.kind == "f" and dropout.ndim == 1 else "invalid")
        except (TypeError, ValueError, IndexError, OverflowError) as exc:
            raise ValueError(f"{path} describes an invalid network: {exc}") from None
        net.theta = check_stored_theta(arrays["theta"], net._n_params, net.dtype, path)
        net._rng = np.random.default_rng()
        return net


MLP.fit.__doc__ = training.FIT_DOC
MLP.partial_fit.__doc__ = training.PARTIAL_FIT_DOC
