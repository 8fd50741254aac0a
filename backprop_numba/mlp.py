"""The MLP class: validate -> allocate buffers -> one kernel call -> wrap the result."""

import numpy as np

from . import _kernels as K
from . import activations, io, losses, training
from ._validation import (
    OVERFLOW_HINT,
    check_activation_names,
    check_choice,
    check_dtype,
    check_finite_result,
    check_inputs,
    check_layer_sizes,
    check_seed,
    check_targets,
    check_theta,
)
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
        "sse", "half_sse", "mse", "bce" or "cross_entropy" (see ``losses``).
    seed : int or None
        Seeds the initial weights and the shuffling in ``fit``.
    dtype : np.float32 or np.float64, default np.float64

    Notes
    -----
    Weights use the column convention of seeds 000/001/003: ``W[l]`` has shape
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

    def __init__(self, layer_sizes, activation="sigmoid", output_activation=None, loss="mse",
                 seed=None, dtype=np.float64):
        self._configure(layer_sizes, activation, output_activation, loss, dtype)
        self._rng = np.random.default_rng(check_seed("seed", seed))
        self.theta = np.zeros(self._n_params, dtype=self.dtype)
        self._initialise()

    # -- construction ------------------------------------------------------

    def _configure(self, layer_sizes, activation, output_activation, loss, dtype):
        sizes = check_layer_sizes(layer_sizes)
        L = len(sizes) - 1
        loss = check_choice("loss", loss, losses.CODES)
        if output_activation is None:
            output_activation = losses.DEFAULT_OUTPUT[loss]
        output_activation = check_choice("output_activation", output_activation, activations.OUTPUT)
        hidden = check_activation_names(activation, L - 1, activations.HIDDEN)
        needed = losses.REQUIRED_OUTPUT.get(loss)
        if needed is not None and output_activation != needed:
            raise ValueError(f"output_activation must be {needed!r} for loss={loss!r}, got {output_activation!r}.")
        if output_activation == "softmax" and sizes[-1] < 2:
            raise ValueError(f"output_activation='softmax' needs at least 2 outputs, got layer_sizes[-1]={sizes[-1]}.")
        self.layer_sizes = sizes
        self.activations = hidden + [output_activation]
        self.loss = loss
        self.dtype = check_dtype(dtype)
        self._arch, self._n_params = _arch_table(sizes, [activations.CODES[a] for a in self.activations])
        self._loss_code = losses.CODES[loss]

    def _initialise(self):
        for l in range(1, self.n_layers + 1):
            fan_in, fan_out = self.layer_sizes[l - 1], self.layer_sizes[l]
            # the activation's rule (activations.ACTIVATIONS): Glorot, or He for the rectifiers
            bound = activations.ACTIVATIONS[self.activations[l - 1]].init_bound(fan_in, fan_out)
            self.W(l)[...] = self._rng.uniform(-bound, bound, size=(fan_out, fan_in))
            self.b(l)[...] = 0.0

    @classmethod
    def from_weights(cls, weights, biases, layout="column", activation="sigmoid", output_activation=None,
                     loss="mse", dtype=None, seed=None):
        """Build a network from given parameters.

        Parameters
        ----------
        weights : sequence of 2-D arrays
            ``layout="column"``: W[l] of shape (n[l], n[l-1]) (seeds 000/001/003).
            ``layout="row"``: W[l] of shape (n[l-1], n[l]), ``z = a W + b`` (seeds 002/004).
        biases : sequence of 1-D arrays of shape (n[l],)
        dtype : float32 or float64; default: float32 if every weight is
            float32, else float64.
        """
        layout = check_choice("layout", layout, {"column", "row"})
        seed = check_seed("seed", seed)
        for name, value in (("weights", weights), ("biases", biases)):
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise TypeError(f"{name} must be a sequence of arrays (one per layer), got {type(value).__name__}.")
        if isinstance(weights, np.ndarray) or isinstance(biases, np.ndarray):
            raise TypeError("weights and biases must be sequences of arrays (one per layer), got a single ndarray.")
        weights, biases = list(weights), list(biases)
        if not weights:
            raise ValueError("weights must hold at least one layer, got an empty sequence.")
        if len(weights) != len(biases):
            raise ValueError(f"biases must have one array per layer ({len(weights)}), got {len(biases)}.")
        Ws, bs = [], []
        for l, (W, b) in enumerate(zip(weights, biases), start=1):
            W = _as_param(f"weights[{l - 1}]", W, 2)
            b = _as_param(f"biases[{l - 1}]", b, 1)
            if layout == "row":
                W = W.T
            Ws.append(W)
            bs.append(b)
        sizes = [Ws[0].shape[1]] + [W.shape[0] for W in Ws]
        for l in range(len(Ws)):
            if Ws[l].shape[1] != sizes[l]:
                expected = (sizes[l + 1], sizes[l]) if layout == "column" else (sizes[l], sizes[l + 1])
                got = Ws[l].shape if layout == "column" else Ws[l].T.shape
                raise ValueError(f"weights[{l}] must have shape {expected} to chain with the layer before ({layout} layout), got {got}.")
            if bs[l].shape != (sizes[l + 1],):
                raise ValueError(f"biases[{l}] must have shape ({sizes[l + 1]},), got {bs[l].shape}.")
        if dtype is None:  # any byte order: a big-endian float32 ('>f4') is float32 too
            dtype = np.float32 if all(W.dtype.newbyteorder("=") == np.float32 for W in Ws) else np.float64
        net = cls.__new__(cls)
        net._configure(sizes, activation, output_activation, loss, dtype)
        net._rng = np.random.default_rng(seed)
        net.theta = np.zeros(net._n_params, dtype=net.dtype)
        limit = np.finfo(net.dtype).max
        for l in range(len(Ws)):
            for name, arr in ((f"weights[{l}]", Ws[l]), (f"biases[{l}]", bs[l])):
                big = np.abs(arr.astype(np.float64)).max()
                if big > limit:
                    raise ValueError(f"{name} must fit in {np.dtype(net.dtype).name} (|value| <= {limit:.4g}), "
                                     f"got a value of magnitude {big:.4g}.")
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
        return (f"MLP({self.layer_sizes}, activation={activation!r}, output_activation={self.activations[-1]!r}, "
                f"loss={self.loss!r}, dtype={np.dtype(self.dtype).name!r})")

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
        K._predict(self.theta, self._arch, X, np.arange(B), out, a_buf, z_buf, chunk)
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

    def loss_and_gradients(self, X, Y):
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
            that mean loss (seed 002 eqs. 3-4 averaged over the batch).
        """
        X, _ = check_inputs(X, self.layer_sizes[0], self.dtype)
        Y = check_targets(Y, self.loss, self.layer_sizes[-1], X.shape[0], self.dtype)
        value, grad = self._loss_and_flat_gradient(X, Y)
        check_finite_result("the loss", value, OVERFLOW_HINT)
        check_finite_result("the gradient", grad, OVERFLOW_HINT)
        return value, self._unflatten(grad)

    def _loss_and_flat_gradient(self, X, Y):
        a_buf, z_buf, d_buf = self._unit_buffers(X.shape[0], 3)
        grad = np.empty(self._n_params, dtype=self.dtype)
        value = K._loss_and_gradients(self.theta, self._arch, self._loss_code, X, Y, a_buf, z_buf, d_buf, grad)
        return float(value), grad

    def loss_value(self, X, Y):
        """Mean loss over X, Y (forward passes only)."""
        X, _ = check_inputs(X, self.layer_sizes[0], self.dtype)
        Y = check_targets(Y, self.loss, self.layer_sizes[-1], X.shape[0], self.dtype)
        return check_finite_result("the loss", self._loss_value_checked(X, Y), OVERFLOW_HINT)

    def _loss_value_checked(self, X, Y):
        chunk = min(X.shape[0], PREDICT_CHUNK)
        a_buf, z_buf = self._unit_buffers(chunk, 2)
        return float(K._loss_value(self.theta, self._arch, self._loss_code, X, Y, a_buf, z_buf, chunk))

    def vjp(self, X, V):
        """Vector-Jacobian product V^T J of the output a[L] with respect to the input.

        X of shape (n[0],) with V of shape (n[L],), or X of shape (B, n[0])
        with V of shape (B, n[L]); returns the same rank as X.
        """
        X, one = check_inputs(X, self.layer_sizes[0], self.dtype)
        V, _ = check_inputs(V, self.layer_sizes[-1], self.dtype, name="V", what="the network's output size")
        if V.shape[0] != X.shape[0]:
            raise ValueError(f"V must have one row per sample of X ({X.shape[0]}), got {V.shape[0]}.")
        gx = check_finite_result("the vector-Jacobian product", self._vjp_checked(X, V), OVERFLOW_HINT)
        return gx[0] if one else gx

    def _vjp_checked(self, X, V):
        B = X.shape[0]
        a_buf, z_buf, d_buf = self._unit_buffers(B, 3)
        gx = np.empty((B, self.layer_sizes[0]), dtype=self.dtype)
        K._vjp(self.theta, self._arch, X, V, a_buf, z_buf, d_buf, gx)
        return gx

    def input_gradient(self, X):
        """Gradient of the single output a[L] with respect to the input x (seeds 000/001).

        Needs n[L] == 1.  X of shape (n[0],) -> (n[0],); (B, n[0]) -> (B, n[0]).
        For several outputs use ``jacobian`` or ``vjp``.
        """
        if self.layer_sizes[-1] != 1:
            raise ValueError(f"input_gradient needs a network with 1 output, got {self.layer_sizes[-1]} outputs; "
                             "use jacobian(x) or vjp(x, v) instead.")
        X, one = check_inputs(X, self.layer_sizes[0], self.dtype)
        gx = self._vjp_checked(X, np.ones((X.shape[0], 1), dtype=self.dtype))
        check_finite_result("the input gradient", gx, OVERFLOW_HINT)
        return gx[0] if one else gx

    def jacobian(self, X):
        """Jacobian d a[L] / d x: shape (n[L], n[0]) for one sample, (B, n[L], n[0]) for a batch.

        Row i is the vector-Jacobian product with the i-th unit vector: the
        input-gradient recursion of seeds 000/001 seeded with e_i.
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

    def fit(self, X, Y, epochs=10, batch_size=32, learning_rate=0.1, optimizer="sgd", shuffle=True,
            validation_data=None, progress=None, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8,
            weight_decay=0.0, on_nonfinite="raise", seed=None, lr_schedule=None, validation_fraction=None,
            early_stopping=False, patience=10, min_delta=0.0, checkpoint_every=None, checkpoint_path=None,
            resume_from=None, callbacks=None):
        """Train by mini-batch gradient descent (seeds 002, 004); return the history.

        Each epoch runs as one compiled call (``training.Workspace``):
        shuffling, mini-batches, forward, delta recursion, gradients and the
        optimizer step, over buffers allocated once.  Python runs only
        between epochs (learning-rate schedule, validation, callbacks: early
        stopping, checkpoints, progress bar); ``training.py`` holds the loop.

        Parameters
        ----------
        X : array of shape (n_samples, n[0])
        Y : targets (see ``loss_and_gradients``)
        epochs : int >= 1, the total number of epochs of the run (a resumed
            run counts the epochs of its checkpoint in)
        batch_size : int >= 1 (capped at n_samples); the last batch may be smaller
        learning_rate : float > 0, eta in W <- W - eta dC/dW (eta_0 of a schedule)
        optimizer : "sgd", "momentum", "nesterov", "adam", "rmsprop", or an
            ``optimizers.Optimizer`` instance such as ``Adam(beta1=0.8)`` (its
            own hyper-parameters then apply, not the keywords below)
        shuffle : bool, reshuffle the samples every epoch
        validation_data : (X_val, Y_val), optional, evaluated after each epoch
        progress : bool or None; None shows a tqdm bar only on a terminal
        momentum, beta1, beta2, eps : hyper-parameters of a named optimizer
            (each taken by the optimizers that have it)
        weight_decay : float >= 0, L2 penalty on weights (not biases)
        on_nonfinite : "raise" (default) stops with DivergenceError at the
            first non-finite loss or gradient, or optimizer step that would
            make a parameter non-finite, keeping the last finite parameters;
            "skip" skips such mini-batches and counts them in
            history["skipped_steps"].
        seed : int, optional; seeds the shuffling and the validation split
            (default: the network's generator)
        lr_schedule : None, "constant", "step", "exponential", "cosine" or a
            ``schedules.Schedule`` (e.g. ``schedules.Step(10, 0.5)``): the
            learning rate of each epoch; a name uses that schedule's defaults.
        validation_fraction : float in (0, 1), optional; hold out this fraction
            of X, Y (a seeded random split) as validation data.  Not with
            validation_data.
        early_stopping : bool; stop when val_loss has not improved by more
            than min_delta for `patience` epochs, and restore the parameters
            of the best epoch.  Needs validation_data or validation_fraction.
        patience : int >= 1;  min_delta : float >= 0
        checkpoint_every : int >= 1, optional; write a checkpoint to
            checkpoint_path every that many epochs (and after the last one).
        checkpoint_path : path of the checkpoint file (overwritten atomically);
            given together with checkpoint_every
        resume_from : path of a checkpoint written by an earlier ``fit``;
            training continues from its epoch with its parameters, optimizer
            state, step counter, random state and history.  With the same data
            and options, the result is bit-identical to an uninterrupted run.
            ``epochs`` may not be below the checkpoint's epoch.
        callbacks : sequence of objects with any of ``on_train_begin(net)``,
            ``on_epoch_end(epoch, logs)`` (return True to stop after that
            epoch; ``logs`` holds the epoch's latest history values) and
            ``on_train_end(net, history)`` (Keras' callback protocol).

        Returns
        -------
        history : dict of lists, one entry per epoch: "loss" (mean training
            loss over the epoch's mini-batches), and with validation data
            "val_loss" and, for bce/cross_entropy, "val_accuracy"; also
            "accuracy" for classification losses, "seconds", and "lr" when a
            schedule is given.  With early stopping, also the ints
            "best_epoch" (1-based) and "stopped_epoch" (0 if it ran to the end).
        """
        options = dict(locals())
        for key in ("self", "X", "Y"):
            del options[key]
        self._incremental = None  # fit starts its own optimizer state
        return training.fit(self, X, Y, **options)

    def partial_fit(self, X, Y, batch_size=32, learning_rate=0.1, optimizer="sgd", shuffle=True, momentum=0.9,
                    beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, on_nonfinite="raise", seed=None,
                    lr_schedule=None):
        """One pass of mini-batch training over X, Y that continues earlier calls (scikit-learn's partial_fit).

        The parameters AND the optimizer's state (momentum velocity, Adam's
        moments and step count) and the position in ``lr_schedule`` (one
        position per call; a schedule that needs the run's length, such as
        Cosine, must be given its ``t_max``) carry over from one call to the
        next, so calls over the chunks of a data set train like the epochs of
        one ``fit``.  The optimizer may not change between calls; its
        hyper-parameters and the batch size may.  ``fit`` and
        ``reset_training`` start afresh.  Options as in ``fit``; ``seed``
        seeds the shuffles from the first call on.

        Returns a dict: the pass's mean training "loss", "samples", "steps"
        and "skipped" mini-batches, its "lr", the number of "passes" so far
        and "optimizer_steps" (Adam's t).
        """
        options = dict(locals())
        for key in ("self", "X", "Y"):
            del options[key]
        return training.partial_fit(self, X, Y, **options)

    def reset_training(self):
        """Forget the optimizer state that partial_fit carries between calls (the parameters stay)."""
        self._incremental = None

    def evaluate(self, X, Y):
        """{"loss": mean loss, "accuracy": for bce/cross_entropy} on X, Y."""
        X, _ = check_inputs(X, self.layer_sizes[0], self.dtype)
        Y = check_targets(Y, self.loss, self.layer_sizes[-1], X.shape[0], self.dtype)
        result = {"loss": check_finite_result("the loss", self._loss_value_checked(X, Y), OVERFLOW_HINT)}
        if self.loss in losses.CLASSIFICATION:
            result["accuracy"] = _accuracy(self._forward_checked(X), Y, self.loss)
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
        }

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
        try:
            sizes = [int(n) for n in arrays["layer_sizes"]]
            acts = [str(a) for a in arrays["activations"]]
            net = cls.__new__(cls)
            net._configure(sizes, acts[:-1], acts[-1], str(arrays["loss"]), str(arrays["dtype"]))
        except (TypeError, ValueError, IndexError, OverflowError) as exc:
            raise ValueError(f"{path} describes an invalid network: {exc}") from None
        theta = arrays["theta"]
        if theta.shape != (net._n_params,) or theta.dtype != net.dtype:
            raise ValueError(f"{path} holds {theta.shape} parameters of dtype {theta.dtype}; the network it "
                             f"describes needs ({net._n_params},) of dtype {np.dtype(net.dtype).name}.")
        if not np.isfinite(theta).all():
            raise ValueError(f"{path} holds non-finite parameters.")
        net.theta = np.ascontiguousarray(theta.copy())
        net._rng = np.random.default_rng()
        return net


def _as_param(name, value, ndim):
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise ValueError(f"{name} must be a rectangular numeric array.") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}.")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got NaN or inf.")
    return arr
