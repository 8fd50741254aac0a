"""The MLP class: validate -> allocate buffers -> one kernel call -> wrap the result."""

import math
import sys
import time

import numpy as np

from . import _kernels as K
from . import activations, io, losses, optimizers
from ._validation import (
    OVERFLOW_HINT,
    check_activation_names,
    check_bool,
    check_choice,
    check_dtype,
    check_finite_result,
    check_float,
    check_inputs,
    check_int,
    check_layer_sizes,
    check_seed,
    check_targets,
    check_theta,
)

# Samples per forward pass when predicting or evaluating large arrays: bounds
# the a/z buffers to PREDICT_CHUNK * sum(n) values whatever the data size.
PREDICT_CHUNK = 1024


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or gradient.

    The network keeps the parameters of the last finite step; ``history`` holds
    the epochs completed before it happened.
    """

    def __init__(self, message, epoch, step, history):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.history = history


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
        "sigmoid", "tanh", "relu" or "identity".
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
    (Glorot; f=2 for sigmoid, 6 otherwise) or +-sqrt(6/fan_in) for relu (He);
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
            act = self.activations[l - 1]
            if act == "relu":
                bound = math.sqrt(6.0 / fan_in)
            else:
                bound = math.sqrt(activations.GLOROT_FACTOR[act] / (fan_in + fan_out))
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
        if dtype is None:
            dtype = np.float32 if all(W.dtype == np.float32 for W in Ws) else np.float64
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
        return (f"MLP({self.layer_sizes}, activations={self.activations}, loss={self.loss!r}, "
                f"dtype={np.dtype(self.dtype).name})")

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
        out = self._forward_checked(X)
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
            resume_from=None, checkpoint_metadata=None):
        """Train by mini-batch gradient descent (seeds 002, 004); return the history.

        Each epoch runs as one compiled call (``_kernels._train_epoch``):
        shuffling, mini-batches, forward, delta recursion, gradients and the
        optimizer step, over buffers allocated once here.  Python runs only
        between epochs (learning-rate schedule, validation, early stopping,
        checkpoints, progress bar).

        Parameters
        ----------
        X : array of shape (n_samples, n[0])
        Y : targets (see ``loss_and_gradients``)
        epochs : int >= 1, the total number of epochs of the run (a resumed
            run counts the epochs of its checkpoint in)
        batch_size : int >= 1 (capped at n_samples); the last batch may be smaller
        learning_rate : float > 0, eta in W <- W - eta dC/dW (eta_0 of a schedule)
        optimizer : "sgd", "momentum", "nesterov" or "adam" (see ``optimizers``)
        shuffle : bool, reshuffle the samples every epoch
        validation_data : (X_val, Y_val), optional, evaluated after each epoch
        progress : bool or None; None shows a tqdm bar only on a terminal
        momentum, beta1, beta2, eps : optimizer hyper-parameters
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
        checkpoint_path : path of the checkpoint file (overwritten atomically)
        checkpoint_metadata : JSON-serialisable dict, optional; stored in each
            checkpoint as ``extra.metadata`` (``checkpoint.read_checkpoint``).
        resume_from : path of a checkpoint written by an earlier ``fit``;
            training continues from its epoch with its parameters, optimizer
            state, step counter, random state and history.  With the same data
            and options, the result is bit-identical to an uninterrupted run.

        Returns
        -------
        history : dict of lists, one entry per epoch: "loss" (mean training
            loss over the epoch's mini-batches), and with validation data
            "val_loss" and, for bce/cross_entropy, "val_accuracy"; also
            "accuracy" for classification losses, "seconds", and "lr" when a
            schedule is given.  With early stopping, also the ints
            "best_epoch" (1-based) and "stopped_epoch" (0 if it ran to the end).
        """
        from . import checkpoint as ckpt
        from . import schedules

        check_theta(self.theta, self._n_params, self.dtype)  # e.g. NaN written into net.weights[0]
        X, _ = check_inputs(X, self.layer_sizes[0], self.dtype)
        Y = check_targets(Y, self.loss, self.layer_sizes[-1], X.shape[0], self.dtype)
        epochs = check_int("epochs", epochs, minimum=1)
        lr = check_float("learning_rate", learning_rate, low=0.0, low_open=True)
        optimizer = check_choice("optimizer", optimizer, optimizers.CODES)
        on_nonfinite = check_choice("on_nonfinite", on_nonfinite, {"raise", "skip"})
        shuffle = check_bool("shuffle", shuffle)
        progress = check_bool("progress", progress, allow_none=True)
        options = {
            "momentum": check_float("momentum", momentum, low=0.0, high=1.0, high_open=True),
            "beta1": check_float("beta1", beta1, low=0.0, high=1.0, high_open=True),
            "beta2": check_float("beta2", beta2, low=0.0, high=1.0, high_open=True),
            "eps": check_float("eps", eps, low=0.0, low_open=True),
            "weight_decay": check_float("weight_decay", weight_decay, low=0.0),
        }
        schedule = schedules.get_schedule(lr_schedule)
        early_stopping = bool(early_stopping)
        patience = check_int("patience", patience, minimum=1)
        min_delta = check_float("min_delta", min_delta, low=0.0)
        if checkpoint_every is not None:
            checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
            if checkpoint_path is None:
                raise ValueError("checkpoint_path must be given with checkpoint_every, got None.")
        if validation_fraction is not None:
            validation_fraction = check_float("validation_fraction", validation_fraction, low=0.0, high=1.0,
                                              low_open=True, high_open=True)
            if validation_data is not None:
                raise ValueError("validation_fraction must be None when validation_data is given, "
                                 f"got {validation_fraction}.")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a tuple (X_val, Y_val), "
                                f"got {type(validation_data).__name__}.")
            Xv, _ = check_inputs(validation_data[0], self.layer_sizes[0], self.dtype, name="validation X")
            Yv = check_targets(validation_data[1], self.loss, self.layer_sizes[-1], Xv.shape[0], self.dtype,
                               name="validation Y")
        if early_stopping and validation_data is None and validation_fraction is None:
            raise ValueError("early_stopping needs validation_data or validation_fraction, got neither.")
        rng = self._rng if seed is None else np.random.default_rng(check_int("seed", seed, minimum=0))

        resumed = None
        if resume_from is not None:
            arrays, resumed = ckpt.read_checkpoint(resume_from)
            saved = type(self)._from_arrays(arrays, resume_from)
            if (saved.layer_sizes, saved.activations, saved.loss, saved.dtype) != \
                    (self.layer_sizes, self.activations, self.loss, self.dtype):
                raise ValueError(f"resume_from must be a checkpoint of this network ({self!r}), got {saved!r}.")
            if resumed["optimizer"] != optimizer:
                raise ValueError(f"optimizer must be the checkpoint's ({resumed['optimizer']!r}) to resume, "
                                 f"got {optimizer!r}.")
            rng.bit_generator.state = resumed["rng_state"]
            split_seed = resumed["split_seed"]
        else:
            split_seed = int(rng.integers(0, 2**31 - 1)) if validation_fraction is not None else -1

        if validation_fraction is not None:
            n = X.shape[0]
            n_val = int(round(validation_fraction * n))
            if n_val < 1 or n - n_val < 1:
                raise ValueError(f"validation_fraction must leave at least one sample on each side of the split "
                                 f"of {n} samples, got {validation_fraction}.")
            order = np.random.default_rng(split_seed).permutation(n)
            Xv, Yv = X[order[:n_val]], Y[order[:n_val]]
            X, Y = np.ascontiguousarray(X[order[n_val:]]), np.ascontiguousarray(Y[order[n_val:]])
            Xv, Yv = np.ascontiguousarray(Xv), np.ascontiguousarray(Yv)
        validate = validation_data is not None or validation_fraction is not None
        batch_size = min(check_int("batch_size", batch_size, minimum=1), X.shape[0])

        # Everything the epoch kernel touches, allocated once.
        a_buf, z_buf, d_buf = self._unit_buffers(batch_size, 3)
        y_buf = np.empty(batch_size * self.layer_sizes[-1], dtype=self.dtype)
        grad = np.empty(self._n_params, dtype=self.dtype)
        perm = np.arange(X.shape[0], dtype=np.int64)
        state = optimizers.new_state(self._n_params, self.dtype)
        hyper = optimizers.hyper_array(options)
        opt_code = optimizers.CODES[optimizer]
        classify = self.loss in losses.CLASSIFICATION

        history = {"loss": [], "seconds": []}
        if classify:
            history["accuracy"] = []
        if validate:
            history["val_loss"] = []
            if classify:
                history["val_accuracy"] = []
        if on_nonfinite == "skip":
            history["skipped_steps"] = []
        if lr_schedule is not None:
            history["lr"] = []
        # Early stopping: best val_loss, its epoch (1-based), epochs since.
        best_loss, best_epoch, wait = math.inf, 0, 0
        best_theta = self.theta.copy()
        t = 0
        first = 1
        if resumed is not None:
            self.theta[...] = arrays["theta"]
            state[...] = resumed["state"]
            t = resumed["step"]
            first = resumed["epoch"] + 1
            history.update({k: list(v) for k, v in resumed["history"].items() if isinstance(v, list)})
            best_theta[...] = resumed["best_theta"]
            best_loss, best_epoch, wait = resumed["best"][0], int(resumed["best"][1]), int(resumed["best"][2])

        def save_checkpoint(epoch):
            ckpt.save_checkpoint(checkpoint_path, self, epoch=epoch, step=t, optimizer=optimizer, state=state,
                                 rng=rng, split_seed=split_seed, history=history, best_theta=best_theta,
                                 best=(best_loss, best_epoch, wait), metadata=checkpoint_metadata)

        stopped = 0
        if early_stopping and wait >= patience:  # resumed from the checkpoint written when it stopped
            stopped, first = first - 1, epochs + 1
        bar = _progress_bar(epochs, progress)
        if bar is not None and first > 1:
            bar.update(min(first - 1, epochs))
        try:
            for epoch in range(first, epochs + 1):
                started = time.perf_counter()
                lr_epoch = schedule.lr(lr, epoch - 1, epochs)
                shuffle_seed = int(rng.integers(0, 2**31 - 1)) if shuffle else -1
                total, seen, steps, skipped, status = _guarded_epoch(
                    self.theta, self._arch, self._loss_code, X, Y, perm, shuffle_seed, batch_size,
                    opt_code, lr_epoch, hyper, state, t, on_nonfinite == "skip", a_buf, z_buf, d_buf, y_buf, grad)
                t += steps
                if status != K.OK:
                    what = {K.NONFINITE_LOSS: "loss", K.NONFINITE_GRADIENT: "gradient"}.get(
                        status, "parameters after the optimizer step")
                    step = steps + skipped + 1
                    raise DivergenceError(
                        f"training diverged: non-finite {what} at epoch {epoch}, step {step} "
                        f"(mini-batch {step} of {math.ceil(X.shape[0] / batch_size)}). The network keeps the "
                        f"parameters of the last finite step. Try a smaller learning_rate (got {lr_epoch:g}), "
                        "or on_nonfinite='skip'.", epoch=epoch, step=step, history=history)
                history["loss"].append(total / seen if seen else float("nan"))
                if classify:
                    history["accuracy"].append(_accuracy(self._forward_checked(X), Y, self.loss))
                if on_nonfinite == "skip":
                    history["skipped_steps"].append(skipped)
                if lr_schedule is not None:
                    history["lr"].append(lr_epoch)
                if validate:
                    history["val_loss"].append(self._loss_value_checked(Xv, Yv))
                    if not math.isfinite(history["val_loss"][-1]):
                        # Finite parameters whose outputs overflow: no history entry built on NaN.
                        raise DivergenceError(
                            f"training diverged: the validation loss is not finite after epoch {epoch} (the "
                            "parameters are finite but the network's outputs overflow). Try a smaller "
                            f"learning_rate (got {lr_epoch:g}).", epoch=epoch, step=steps, history=history)
                    if classify:
                        history["val_accuracy"].append(_accuracy(self._forward_checked(Xv), Yv, self.loss))
                history["seconds"].append(time.perf_counter() - started)
                if early_stopping:
                    if history["val_loss"][-1] < best_loss - min_delta:
                        best_loss, best_epoch, wait = history["val_loss"][-1], epoch, 0
                        best_theta[...] = self.theta
                    else:
                        wait += 1
                    if wait >= patience:
                        stopped = epoch
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in history.items()
                                     if k in ("loss", "val_loss", "val_accuracy")})
                if checkpoint_every is not None and (epoch % checkpoint_every == 0 or epoch == epochs or stopped):
                    save_checkpoint(epoch)
                if stopped:
                    break
        finally:
            if bar is not None:
                bar.close()
        if early_stopping:
            if best_epoch > 0:
                self.theta[...] = best_theta
            history["best_epoch"] = best_epoch
            history["stopped_epoch"] = stopped
        return history

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


def _accuracy(out, Y, loss):
    """Fraction correct: argmax against the one-hot target for cross_entropy;
    elementwise a > 0.5 against y > 0.5 otherwise (Keras' binary accuracy)."""
    if loss == "cross_entropy":
        return float(np.mean(np.argmax(out, axis=1) == np.argmax(Y, axis=1)))
    return float(np.mean((out > 0.5) == (Y > 0.5)))


def _progress_bar(epochs, progress):
    if progress is False:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar without it
        return None
    # disable=None: tqdm turns itself off when stderr is not a terminal.
    return tqdm(total=epochs, unit="epoch", disable=None if progress is None else False, file=sys.stderr,
                leave=False)


# Status of _guarded_epoch (beyond _kernels.OK/NONFINITE_*): an optimizer step
# turned finite parameters into inf/NaN (overflow of theta - lr * step).
NONFINITE_PARAMETERS = 3


def _guarded_epoch(theta, arch, loss_code, X, Y, perm, shuffle_seed, batch_size, opt_code, lr, hyper, state, t,
                   skip, a_buf, z_buf, d_buf, y_buf, grad):
    """``_kernels._train_epoch``, plus a guarantee the kernel alone does not give.

    The kernel checks each mini-batch's loss and gradient, but an optimizer step
    with a finite gradient can still overflow theta to inf (a huge learning
    rate or gradient).  Here theta and the optimizer state are copied before
    the epoch and checked after it (O(P), once per epoch); only when theta is
    no longer finite is the epoch replayed from the copy one mini-batch at a
    time (same rows, same order, same arithmetic, so bit-identical up to the
    bad step), and the step that overflowed is undone and reported
    (NONFINITE_PARAMETERS), or skipped with ``skip``.  Same arguments and
    return value as the kernel.
    """
    theta0, state0 = theta.copy(), state.copy()
    result = K._train_epoch(theta, arch, loss_code, X, Y, perm, shuffle_seed, batch_size, opt_code, lr, hyper,
                            state, t, skip, a_buf, z_buf, d_buf, y_buf, grad)
    if np.isfinite(theta).all():
        return result
    theta[...] = theta0
    state[...] = state0
    total, seen, steps, skipped = 0.0, 0, 0, 0
    for start in range(0, X.shape[0], batch_size):
        rows = perm[start:start + batch_size]  # perm holds this epoch's order (shuffled in place by the kernel)
        Xb, Yb = np.ascontiguousarray(X[rows]), np.ascontiguousarray(Y[rows])
        theta0[...] = theta
        state0[...] = state
        b_total, b_seen, b_steps, _, status = K._train_epoch(
            theta, arch, loss_code, Xb, Yb, np.arange(rows.shape[0], dtype=np.int64), -1, batch_size, opt_code,
            lr, hyper, state, t + steps, False, a_buf, z_buf, d_buf, y_buf, grad)
        if status == K.OK and not np.isfinite(theta).all():
            theta[...] = theta0
            state[...] = state0
            status = NONFINITE_PARAMETERS
        if status != K.OK:
            if skip:
                skipped += 1
                continue
            return total, seen, steps, skipped, status
        total += b_total
        seen += b_seen
        steps += b_steps
    return total, seen, steps, skipped, K.OK
