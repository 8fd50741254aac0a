"""The training loop of ``MLP.fit``, in small named parts.

- ``Workspace``: the buffers of one network and batch size plus the optimizer
  state, allocated once; the only caller of the compiled epoch
  (``_kernels._train_batches``), so nothing else spells its argument list.  It
  is also the documented low-level entry for benchmarks.
- ``History``: the per-epoch record ``fit`` returns (a dict of lists).
- Callbacks in the Keras sense: any object with any of
  ``on_train_begin(net)``, ``on_epoch_end(epoch, logs)`` (returning True
  stops training after that epoch) and ``on_train_end(net, history)``.
  Early stopping and the progress bar are callbacks of that kind;
  ``Checkpointer`` writes what a resume needs after the callbacks have spoken.
- ``Trainer``: one run of ``fit``: its options, data, random state and the
  pieces above, with no state hidden in closures.

Everything here runs between epochs; the epoch itself is one compiled call.
"""

import math
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np

from . import _kernels as K
from . import checkpoint as ckpt
from . import losses, optimizers, schedules
from ._threads import call_kernel
from ._validation import (check_float, check_inputs, check_output_path, check_params,
                          check_sample_weight, check_targets, check_theta, theta_is_finite)

# A training loss this many times the first epoch's (still finite) gets a
# RuntimeWarning: the run is diverging slowly, on its way to a DivergenceError.
EXPLODING = 1e6

# Status of an epoch (beyond _kernels.OK/NONFINITE_*): an optimizer step
# turned finite parameters into inf/NaN (overflow of theta - lr * step).
NONFINITE_PARAMETERS = 3

FIT_DOC = """Train by mini-batch gradient descent (notes 002, 004); return the history.

Each epoch runs as one compiled call (``training.Workspace``):
shuffling, mini-batches, forward, delta recursion, gradients and the
optimizer step, over buffers allocated once.  Python runs only
between epochs (learning-rate schedule, validation, callbacks: early
stopping, checkpoints, progress bar); ``training.py`` holds the loop.

Parameters
----------
X : array of shape (n_samples, n[0]); or data larger than memory, read
    one block of rows at a time (memory bounded by the block and batch
    sizes, see ``training.Blocks``): an ``np.memmap`` (``np.load(path,
    mmap_mode="r")``, Y and sample_weight arrays or memmaps of the same
    length; blocks of ~32 MB in shuffled order, rows shuffled within each
    block), or an iterable of ``(X, Y)`` or ``(X, Y, sample_weight)``
    chunks with Y omitted (a list, or a callable returning a fresh iterator
    each epoch; rows shuffled within each chunk).  Such data needs
    validation_data rather than validation_fraction.
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
checkpoint_metadata : JSON-serialisable dict, optional; stored in each
    checkpoint as ``extra.metadata`` (``checkpoint.read_checkpoint``
    returns it), e.g. the options of the run that wrote it.
callbacks : sequence of objects with any of ``on_train_begin(net)``,
    ``on_epoch_end(epoch, logs)`` (return True to stop after that
    epoch; ``logs`` holds the epoch's latest history values) and
    ``on_train_end(net, history)`` (Keras' callback protocol).
sample_weight : array of shape (n_samples,), optional; weights >= 0 (not
    all 0).  A mini-batch's loss is ``sum_i s_i C_i / sum_i s_i``
    (scikit-learn's and Keras' meaning), so integer weights train like
    repeated rows; the weight enters the kernels once, as a factor on
    delta[L].  The training loss and accuracy in the history are weighted
    too; validation_data may carry its own weights as a third element, and
    validation_fraction splits the weights with the rows.

Returns
-------
history : dict of lists, one entry per epoch: "loss" (mean training
    loss over the epoch's mini-batches), and with validation data
    "val_loss" and, for bce/cross_entropy, "val_accuracy"; also
    "accuracy" for classification losses (counted on each mini-batch
    before its step, inside the compiled epoch, as Keras does), "seconds",
    and "lr" when a schedule is given.  With early stopping, also the ints
    "best_epoch" (1-based) and "stopped_epoch" (0 if it ran to the end).
"""

PARTIAL_FIT_DOC = """One pass of mini-batch training over X, Y that continues earlier calls (scikit-learn's partial_fit).

The parameters AND the optimizer's state (momentum velocity, Adam's
moments and step count) and the position in ``lr_schedule`` (one
position per call; a schedule that needs the run's length, such as
Cosine, must be given its ``t_max``) carry over from one call to the
next, so calls over the chunks of a data set train like the epochs of
one ``fit``.  The optimizer may not change between calls; its
hyper-parameters and the batch size may.  ``fit`` and
``reset_training`` start afresh.  Options as in ``fit`` (``sample_weight``
included); ``seed`` seeds the shuffles from the first call on.

Returns a dict: the pass's mean training "loss", "samples", "steps"
and "skipped" mini-batches, its "lr", the number of "passes" so far
and "optimizer_steps" (Adam's t).
"""

# fit's options and their constraints, stated once (the optimizer's
# hyper-parameters are stated by the optimizer classes).
FIT_PARAMS = {
    "epochs": dict(kind="int", minimum=1),
    "batch_size": dict(kind="int", minimum=1),
    "learning_rate": dict(kind="real", low=0.0, low_open=True),
    "on_nonfinite": dict(kind="choice", options={"raise", "skip"}),
    "shuffle": dict(kind="bool"),
    "progress": dict(kind="bool", allow_none=True),
    "early_stopping": dict(kind="bool"),
    "patience": dict(kind="int", minimum=1),
    "min_delta": dict(kind="real", low=0.0),
    "checkpoint_every": dict(kind="int", minimum=1, allow_none=True),
    "validation_fraction": dict(kind="real", low=0.0, high=1.0, low_open=True, high_open=True, allow_none=True),
    "seed": dict(kind="int", minimum=0, allow_none=True),
}
# (checkpoint_metadata, a JSON-serialisable dict, is checked by checkpoint.py when written.)
# Every optimizer hyper-parameter fit takes as a keyword, with its constraint.
OPTIMIZER_PARAMS = {k: spec for cls in optimizers.CLASSES.values() for k, spec in cls.PARAMS.items()}
# Both in one table, checked in one call (two calls and a sub-dict took ~3.5 us more a fit).
FIT_AND_OPTIMIZER_PARAMS = {**FIT_PARAMS, **OPTIMIZER_PARAMS}


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


# --------------------------------------------------------------------------
# The compiled epoch and its buffers
# --------------------------------------------------------------------------

@dataclass
class EpochResult:
    """What one epoch (or its first part, when interrupted) did: summed loss, correct
    classifications, samples and steps used, steps skipped, batches done, status."""

    loss_sum: float = 0.0
    correct: float = 0.0
    weight_sum: float = 0.0
    samples: int = 0
    steps: int = 0
    skipped: int = 0
    batches: int = 0
    status: int = K.OK

    @property
    def loss(self):
        """(Weighted) mean training loss over the samples used (NaN if none)."""
        return self.loss_sum / self.weight_sum if self.weight_sum else float("nan")

    def add(self, batches, samples, steps, skipped, status, acc):
        self.loss_sum, self.correct, self.weight_sum = (float(acc[K.LOSS_SUM]), float(acc[K.CORRECT]),
                                                        float(acc[K.WEIGHT_SUM]))
        self.samples += samples
        self.steps += steps
        self.skipped += skipped
        self.batches += batches
        self.status = status


class Interrupted(Exception):
    """Raised between two chunks of an epoch when an Interrupt flag was set (Ctrl-C, SIGTERM)."""

    def __init__(self, result, signum):
        super().__init__("interrupted")
        self.result, self.signum = result, signum


# A chunk of an epoch (one compiled call) aims at this much work, so that
# Ctrl-C is acted on within a fraction of a second; each return to Python
# costs ~20 us, 0.02% of a chunk.
CHUNK_SECONDS = 0.1


class Workspace:
    """Buffers sized once for a network and a batch size, plus the optimizer state.

    >>> ws = Workspace(net, batch_size=32, optimizer="adam")        # doctest: +SKIP
    >>> ws.run_epoch(X, Y, learning_rate=0.01, shuffle_seed=7)      # doctest: +SKIP
    EpochResult(loss_sum=..., correct=..., samples=..., steps=..., skipped=0, batches=..., status=0)

    ``run_epoch`` takes X, Y as C-contiguous arrays of the network's dtype
    (``MLP.fit`` validates them first; ``prepare`` does the same here), Y 2-D.
    It updates ``net.theta``, ``state`` and ``step`` (optimizer steps taken,
    Adam's t) in place.
    """

    def __init__(self, net, batch_size, optimizer="sgd"):
        self.net = net
        self.optimizer = optimizers.get_optimizer(optimizer)
        self.batch_size = check_params(FIT_PARAMS, {"batch_size": batch_size})["batch_size"]
        size = self.batch_size * sum(net.layer_sizes)
        self.a, self.z, self.delta = (np.empty(size, dtype=net.dtype) for _ in range(3))
        self.y = np.empty(self.batch_size * net.layer_sizes[-1], dtype=net.dtype)
        self.w = np.empty(self.batch_size, dtype=net.dtype)
        self.unweighted = np.empty(0, dtype=net.dtype)
        self.grad = np.empty(net._n_params, dtype=net.dtype)
        self.state = self.optimizer.new_state(net._n_params, net.dtype)
        self.hyper = self.optimizer.hyper_array()
        self.step = 0
        self.perm = np.arange(0, dtype=np.int64)
        self.perm_in_order = True  # perm is 0..N-1 (not shuffled since): no reset for an unshuffled epoch
        self.acc = np.zeros(K.N_ACC, dtype=np.float64)
        self.w_abs = np.empty(len(net.layer_sizes), dtype=np.float64)  # the fused step's sum |W[l]|
        self.sums_fresh = False  # w_abs holds the sums of theta as it is now (knows_sums)
        self.dropout_seed = -1
        self._theta0, self._state0, self._acc0 = (np.empty_like(net.theta), np.empty_like(self.state),
                                                  np.empty_like(self.acc))
        self.seconds_per_batch = None  # measured on the chunks run so far

    @classmethod
    def for_fit(cls, net, batch_size, optimizer):
        """The network's workspace for a new fit: the one of its last fit when the batch size and the
        optimizer's kind match (buffers reused, state and step reset), else a new one."""
        ws = net._workspace
        if ws is None or ws.net is not net or ws.batch_size != batch_size or ws.optimizer.name != optimizer.name \
                or ws.grad.dtype != net.theta.dtype:
            ws = net._workspace = cls(net, batch_size, optimizer)
        else:
            ws.optimizer, ws.hyper = optimizer, optimizer.hyper_array()
            ws.state[...] = 0
            ws.step = 0
            ws.sums_fresh = False  # a fit that stopped before its first step may have left them fresh
        return ws

    def prepare(self, X, Y):
        """X, Y validated and converted as ``run_epoch`` needs them."""
        X, _ = check_inputs(X, self.net.layer_sizes[0], self.net.dtype)
        return X, check_targets(Y, self.net.loss, self.net.layer_sizes[-1], X.shape[0], self.net.dtype)

    def n_batches(self, n_rows):
        return -(-n_rows // self.batch_size)

    def run_epoch(self, X, Y, learning_rate, shuffle_seed=-1, skip_nonfinite=False, resume=None, interrupt=None,
                  on_chunk=None, sample_weight=None, dropout_seed=-1, stop=None):
        """One compiled epoch of mini-batch training over X, Y; returns an EpochResult.

        shuffle_seed >= 0 shuffles the rows first (seeded); -1 keeps their
        order.  A mini-batch with a non-finite loss or gradient, or whose step
        would make a parameter non-finite, gets no update: with
        skip_nonfinite the epoch goes on, otherwise it stops there.

        With ``interrupt`` (an ``Interrupt``) or ``on_chunk`` (called with the
        batches done so far and the total), the epoch runs in chunks of about
        CHUNK_SECONDS, and a set interrupt raises ``Interrupted`` between two
        chunks, theta holding the parameters of the last finished step.
        ``resume`` (an EpochResult of the same epoch's first batches, same
        shuffle_seed) continues an interrupted epoch where it stopped.
        ``sample_weight``: one weight per row of X, of the network's dtype
        (``check_sample_weight``), or None.  ``dropout_seed`` >= 0 applies
        the network's dropout with masks drawn from it (-1: none).  ``stop``
        ends the call before that mini-batch of the epoch (None: at its end);
        with ``resume`` it runs one stretch of an epoch, as data-parallel
        training does between two averages (``data_parallel.py``).
        """
        self.dropout_seed = int(dropout_seed)
        SW = self.unweighted if sample_weight is None else sample_weight
        if self.perm.shape[0] != X.shape[0]:
            self.perm, self.perm_in_order = np.arange(X.shape[0], dtype=np.int64), True
        if shuffle_seed >= 0:
            K._shuffle(self.perm, int(shuffle_seed))
            self.perm_in_order = False
        elif not self.perm_in_order:
            self.perm[:] = np.arange(X.shape[0])
            self.perm_in_order = True
        result = EpochResult() if resume is None else resume
        self.acc[K.LOSS_SUM], self.acc[K.CORRECT], self.acc[K.WEIGHT_SUM] = (result.loss_sum, result.correct,
                                                                             result.weight_sum)
        total = self.n_batches(X.shape[0]) if stop is None else min(stop, self.n_batches(X.shape[0]))
        chunked = interrupt is not None or on_chunk is not None
        lr, skip = float(learning_rate), bool(skip_nonfinite)
        while result.batches < total and result.status == K.OK:
            if interrupt is not None and interrupt.signum is not None:
                raise Interrupted(result, interrupt.signum)
            before = result.batches
            last = min(total, before + self._chunk() if chunked else total)
            started = time.perf_counter()
            result.add(*self._guarded(X, Y, SW, before, last, lr, skip), self.acc)
            elapsed = time.perf_counter() - started
            if result.batches > before and elapsed > 1e-4:
                self.seconds_per_batch = elapsed / (result.batches - before)
            if on_chunk is not None:
                on_chunk(result.batches, total)
        return result

    def _chunk(self):
        """Batches for the next compiled call: about CHUNK_SECONDS of work (guessed from the FLOPs at first)."""
        if self.seconds_per_batch is None:
            # ~1 GFLOP/s and 1 us a batch: pessimistic on purpose, so the first chunk is short.
            self.seconds_per_batch = 1e-6 + 6.0 * self.batch_size * self.net._n_params / 1e9
        return max(1, int(CHUNK_SECONDS / self.seconds_per_batch))

    def knows_sums(self, w_abs):
        """The next compiled call takes w_abs (from check_theta_sums of theta as it is now, unchanged until
        then) as the fused step's S[l] = sum |W[l]|, instead of reading theta once more for them."""
        self.w_abs[...] = w_abs
        self.sums_fresh = True

    def _kernel(self, X, Y, SW, first, last, lr, t, skip, prove=False):
        net = self.net
        if not self.sums_fresh:
            self.w_abs[0] = -1.0  # stale: the kernel sums |W[l]| again before its first fused step
        self.sums_fresh = False
        return call_kernel(K._train_batches, net.theta, net._arch, net._loss_code, net._loss_param, X, Y, SW, self.perm,
                           first, last, self.batch_size, self.optimizer.code, lr, self.hyper, self.state, t, skip,
                           self.a, self.z, self.delta, self.y, self.w, self.grad, self.acc, self.w_abs,
                           net._drop_rates, self.dropout_seed, prove)

    def _guarded(self, X, Y, SW, first, last, lr, skip):
        """Batches first..last-1 through the kernel, none of whose steps leaves theta non-finite.

        Batches that all take the fused small-batch step (batch_size <=
        FUSED_MAX_BATCH, no dropout) go to the kernel with ``prove``: it
        takes a step only when a bound proves theta and the optimizer state
        finite after it, so no copy of theta is needed.  From the first batch
        it cannot prove (huge values; never in the tests' ordinary training)
        the rest goes through _copied.  Measured (2026-12-02, one B = 1 step
        a call on [784,512,512,10], thread time, benchmarks/fit_overhead.py):
        run_epoch 0.48-0.62 -> 0.24-0.33 ms with sgd (the compiled call alone
        0.25-0.32), 1.85 -> 0.94 ms with adam.
        """
        done = seen = steps = skipped = 0
        if self.batch_size <= K.FUSED_MAX_BATCH and (self.dropout_seed < 0 or not self.net._drop_rates.any()):
            done, seen, steps, skipped, status = self._kernel(X, Y, SW, first, last, lr, self.step, skip, prove=True)
            self.step += steps
            if status != K.NOT_PROVEN:
                return done, seen, steps, skipped, status
        more = self._copied(X, Y, SW, first + done, last, lr, skip)
        return done + more[0], seen + more[1], steps + more[2], skipped + more[3], more[4]

    def _copied(self, X, Y, SW, first, last, lr, skip):
        """Batches first..last-1 through the kernel, plus a guarantee the kernel alone does not give.

        The kernel checks each mini-batch's loss and gradient, but an
        optimizer step with a finite gradient can still overflow theta to inf
        (a huge learning rate or gradient).  So theta, the optimizer state and
        the running sums are copied before the call and theta checked after it
        (O(P) per call); only when theta is no longer finite are the batches
        replayed from the copy one at a time (same rows, same order, same
        arithmetic, so bit-identical up to the bad step), and the step that
        overflowed is undone and reported (NONFINITE_PARAMETERS), or skipped.
        Returns the kernel's tuple (batches done, samples, steps, skipped, status).

        Its cost is more than half of a B=1 step on [784,512,512,10] (sgd,
        load ~3.5: copy ~0.75 ms and test ~0.25 ms against a 0.8 ms compiled
        call; benchmarks/fit_overhead.py): the compiled call does return OK
        with theta at -inf (float32 [1,1] net, x = 1e18, lr = 1e4).  Batches
        the kernel can prove (_guarded) do without it.
        """
        theta = self.net.theta
        # snapshots into buffers kept for the workspace's life: a fresh 5 MB copy per call page-faults
        theta0, state0, acc0 = self._theta0, self._state0, self._acc0
        np.copyto(theta0, theta)
        # Before the first optimizer step the state is new_state's zeros (it changes only in a step), so it is
        # restored by zeroing, not copied: a fit of one B=1 step on [784,512,512,10] took 1.1 ms less with
        # momentum (5.0 -> 3.9 ms) and 2.0 ms less with adam (6.7 -> 4.6), load ~3.1 (fit's first call copied
        # the state for_fit had just zeroed).
        fresh = self.step == 0
        if not fresh:
            np.copyto(state0, self.state)
        np.copyto(acc0, self.acc)
        result = self._kernel(X, Y, SW, first, last, lr, self.step, skip)
        if theta_is_finite(theta):
            self.step += result[2]
            return result
        theta[...], self.acc[...] = theta0, acc0
        if fresh:
            self.state[...] = 0
        else:
            self.state[...] = state0
        done, seen, steps, skipped = 0, 0, 0, 0
        for i in range(first, last):
            theta0[...], state0[...], acc0[...] = theta, self.state, self.acc
            _, b_seen, b_steps, b_skipped, status = self._kernel(X, Y, SW, i, i + 1, lr, self.step, False)
            if status == K.OK and not theta_is_finite(theta):
                theta[...], self.state[...], self.acc[...] = theta0, state0, acc0
                status = NONFINITE_PARAMETERS
            if status != K.OK:
                if skip:
                    done, skipped = done + 1, skipped + 1
                    continue
                return done, seen, steps, skipped, status
            self.step += b_steps
            done, seen, steps = done + 1, seen + b_seen, steps + b_steps
        return done, seen, steps, skipped, K.OK


try:
    # The C function under signal.signal, which also turns the old handler into an enum member by raising and
    # catching a ValueError when it is a function: 4 calls a fit took 43 us that way, 2.5 us this way.
    from _signal import signal as _set_handler
except ImportError:  # pragma: no cover - an interpreter without CPython's _signal module
    _set_handler = signal.signal


class Interrupt:
    """Turns SIGINT (Ctrl-C) and SIGTERM into a flag that the epoch checks between chunks.

    Used as a context manager around training; a second Ctrl-C while the
    flag is set interrupts at once (Python's default).  Outside the main
    thread signals cannot be caught: the flag then stays unset.
    """

    def __init__(self):
        self.signum = None
        self._saved = {}

    def _handler(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = _set_handler(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._saved.items():
            _set_handler(sig, handler)
        return False


def record_epoch(history, net, result, lr):
    """An epoch's training entries of a fit history: loss, accuracy, skipped steps, learning rate.

    The accuracy is counted inside the compiled epoch, on each batch before its
    step (as Keras does); for bce it is per output unit.
    """
    history["loss"].append(result.loss)
    if "accuracy" in history:
        per_sample = net.layer_sizes[-1] if net.loss == "bce" else 1
        history["accuracy"].append(result.correct / (result.weight_sum * per_sample))
    if "skipped_steps" in history:
        history["skipped_steps"].append(result.skipped)
    if "lr" in history:
        history["lr"].append(lr)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C or SIGTERM between two optimizer steps.

    The network holds the parameters of the last finished step; ``epoch``
    and ``batch`` say where (the epoch in progress and the batches of it
    done), ``checkpoint`` is the file written (None without checkpoints), and
    ``history`` holds the epochs completed before.
    """

    def __init__(self, message, epoch, batch, checkpoint, history, signum):
        super().__init__(message)
        self.epoch, self.batch, self.checkpoint, self.history, self.signum = epoch, batch, checkpoint, history, signum


# --------------------------------------------------------------------------
# History and callbacks
# --------------------------------------------------------------------------

class History(dict):
    """The per-epoch record ``fit`` returns: a dict of lists (plus a few ints at the end).

    Keys: "loss" and "seconds" always; "accuracy" for classification losses;
    "val_loss" (and "val_accuracy") with validation data; "skipped_steps"
    with on_nonfinite="skip"; "lr" with a schedule.
    """

    def __init__(self, classify, validate, skip, scheduled):
        super().__init__(loss=[], seconds=[])
        if classify:
            self["accuracy"] = []
        if validate:
            self["val_loss"] = []
            if classify:
                self["val_accuracy"] = []
        if skip:
            self["skipped_steps"] = []
        if scheduled:
            self["lr"] = []

    def restore(self, saved):
        """Take the lists of a checkpoint's history."""
        self.update({k: list(v) for k, v in saved.items() if isinstance(v, list)})

    def last(self):
        """The latest value of every per-epoch list (the ``logs`` callbacks get)."""
        return {k: v[-1] for k, v in self.items() if isinstance(v, list) and v}


class Callback:
    """Base class for callbacks (any object with some of these methods will do)."""

    def on_train_begin(self, net):
        pass

    def on_epoch_end(self, epoch, logs):
        """Return True to stop training after this epoch."""
        return False

    def on_train_end(self, net, history):
        pass


def _call(callback, method, *args):
    fn = getattr(callback, method, None)
    return fn(*args) if fn is not None else None


class EarlyStopping(Callback):
    """Stop when val_loss has not improved by more than min_delta for `patience` epochs.

    At the end of training the parameters of the best epoch are restored, and
    the history gets "best_epoch" (1-based, 0 if none) and "stopped_epoch" (0
    if it ran to the end).
    """

    def __init__(self, net, patience, min_delta, keep_theta=True):
        self.net, self.patience, self.min_delta = net, patience, min_delta
        self.best_loss, self.best_epoch, self.wait = math.inf, 0, 0
        # A copy of theta (O(P)) only where it can be used: early stopping on, or checkpoints to write.
        self.best_theta = net.theta.copy() if keep_theta else None
        self.stopped = 0

    def state(self):
        return (self.best_loss, self.best_epoch, self.wait)

    def restore(self, best_theta, best):
        self.best_theta[...] = best_theta
        self.best_loss, self.best_epoch, self.wait = best[0], int(best[1]), int(best[2])

    def done(self):
        """True when a resumed run had already stopped (its checkpoint was written when it stopped)."""
        return self.wait >= self.patience

    def on_epoch_end(self, epoch, logs):
        if logs["val_loss"] < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.wait = logs["val_loss"], epoch, 0
            self.best_theta[...] = self.net.theta
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self.stopped = epoch
            return True
        return False

    def on_train_end(self, net, history):
        if self.best_epoch > 0:
            net.theta[...] = self.best_theta
        history["best_epoch"] = self.best_epoch
        history["stopped_epoch"] = self.stopped


class ProgressBar(Callback):
    """A tqdm bar over epochs, moved within an epoch as its chunks finish (only on a terminal when progress is
    None; none without tqdm)."""

    SHOWN = ("loss", "val_loss", "val_accuracy")

    def __init__(self, epochs, progress, done=0):
        self.bar = None
        self.shown = 0.0
        if progress is False or (progress is None and not _terminal()):  # no import, no tqdm object: ~25 us a fit
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional: no bar without it
            return
        # disable=None: tqdm turns itself off when stderr is not a terminal.
        self.bar = tqdm(total=epochs, unit="epoch", disable=None if progress is None else False, file=sys.stderr,
                        leave=False, bar_format="{l_bar}{bar}| {n:.3g}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]")
        self.shown = self.done = float(min(done, epochs))
        self.bar.update(self.shown)

    def on_chunk(self, batches, total):
        """Part of an epoch done: move the bar to done + batches / total."""
        if self.bar is not None:
            target = self.done + batches / total
            self.bar.update(target - self.shown)
            self.shown = target

    def on_epoch_end(self, epoch, logs):
        if self.bar is not None:
            self.done = float(epoch)
            self.bar.update(self.done - self.shown)
            self.shown = self.done
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k in self.SHOWN})
        return False

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _terminal():
    """Whether tqdm, given disable=None, would show a bar: its file (stderr; stdout in a notebook) is a terminal
    or does not say (no isatty)."""
    return any(getattr(f, "isatty", None) is None or f.isatty() for f in (sys.stderr, sys.stdout))


class Checkpointer:
    """Writes a checkpoint every `every` epochs, at the last epoch and when training stops early."""

    def __init__(self, path, every, epochs):
        self.path, self.every, self.epochs = path, every, epochs

    def after_epoch(self, trainer, epoch, stopping):
        if epoch % self.every == 0 or epoch == self.epochs or stopping:
            trainer.save_checkpoint(self.path, epoch)


# --------------------------------------------------------------------------
# Data larger than memory
# --------------------------------------------------------------------------

# Rows per block of out-of-core data: about this many bytes of inputs at a time.
BLOCK_BYTES = 32 << 20


def is_out_of_core(X, Y):
    """Training data ``fit`` reads a block at a time: a memory-mapped array, or chunks (Y omitted)."""
    return isinstance(X, np.memmap) or (Y is None and not isinstance(X, np.ndarray))


class Blocks:
    """Training data read one block of rows at a time, so memory is bounded by the block and batch sizes.

    ``source`` is an ``np.memmap`` (``np.load(path, mmap_mode="r")``), with Y and
    sample_weight as arrays or memmaps of the same length; or an iterable of
    ``(X, Y)`` / ``(X, Y, sample_weight)`` chunks (a list, or a callable
    returning a fresh iterator each epoch; a one-shot generator serves one
    epoch).  Shuffling: memory-mapped data is cut into blocks of about
    BLOCK_BYTES whose order is shuffled every epoch, and the rows within each
    block are shuffled; chunks are used in the order given, their rows
    shuffled within each chunk.  Blocks are whole multiples of the batch size,
    so without shuffling the mini-batches are those of the same data in memory.
    """

    def __init__(self, net, source, Y, sample_weight, batch_size):
        self.net, self.source, self.Y, self.SW = net, source, Y, sample_weight
        self.mapped = isinstance(source, np.memmap)
        self.epochs_served = 0
        if self.mapped:
            if source.ndim != 2 or source.shape[1] != net.layer_sizes[0]:
                raise ValueError(f"X must have shape (n_samples, {net.layer_sizes[0]}), got {source.shape}.")
            if Y is None or len(Y) != source.shape[0]:
                raise ValueError(f"Y must have one row per row of X ({source.shape[0]}), got "
                                 f"{None if Y is None else len(Y)}.")
            row_bytes = source.shape[1] * np.dtype(net.dtype).itemsize
            self.block_rows = max(1, BLOCK_BYTES // row_bytes // batch_size) * batch_size
            self.n_rows = source.shape[0]
            for _ in self._mapped_blocks(np.arange(self._n_blocks())):  # every value checked before training
                pass
        elif callable(source):
            self.n_rows = None
        else:
            try:
                iter(source)
            except TypeError:
                raise TypeError("X must be an array, an np.memmap, or an iterable of (X, Y) chunks with Y "
                                f"omitted, got {type(source).__name__}.") from None
            self.n_rows = None

    def _n_blocks(self):
        return -(-self.n_rows // self.block_rows)

    def _checked(self, Xb, Yb, SWb, where):
        net = self.net
        try:
            Xb, _ = check_inputs(Xb, net.layer_sizes[0], net.dtype)
            Yb = check_targets(Yb, net.loss, net.layer_sizes[-1], Xb.shape[0], net.dtype)
            SWb = None if SWb is None else check_sample_weight(SWb, Xb.shape[0], net.dtype)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
        return Xb, Yb, SWb

    def _mapped_blocks(self, order):
        for b in order:
            start, stop = int(b) * self.block_rows, min(self.n_rows, (int(b) + 1) * self.block_rows)
            yield self._checked(self.source[start:stop], self.Y[start:stop],
                                None if self.SW is None else self.SW[start:stop], f"rows {start}..{stop - 1} of X")

    def epoch(self, rng, shuffle):
        """The blocks of one epoch, validated and converted (each one a bounded copy)."""
        if self.mapped:
            order = rng.permutation(self._n_blocks()) if shuffle else np.arange(self._n_blocks())
            yield from self._mapped_blocks(order)
            return
        chunks = self.source() if callable(self.source) else self.source
        if self.epochs_served and not callable(self.source) and iter(chunks) is chunks:
            raise ValueError("X is a one-shot iterator of chunks, already used up by an earlier epoch: give a list, "
                             "or a callable that returns a fresh iterator of (X, Y) chunks.")
        self.epochs_served += 1
        rows = 0
        for i, chunk in enumerate(chunks):
            if not isinstance(chunk, (tuple, list)) or len(chunk) not in (2, 3):
                raise TypeError(f"X must yield (X, Y) or (X, Y, sample_weight) chunks, got {type(chunk).__name__} "
                                f"as chunk {i}.")
            Xb, Yb, SWb = self._checked(chunk[0], chunk[1], chunk[2] if len(chunk) == 3 else None, f"chunk {i}")
            rows += Xb.shape[0]
            yield Xb, Yb, SWb
        self.n_rows = rows


# --------------------------------------------------------------------------
# One run of fit
# --------------------------------------------------------------------------

class Trainer:
    """One ``fit`` run: validated options, data, random state, workspace, history and callbacks.

    ``fit(net, X, Y, options)`` below is the whole public behaviour; the
    methods are its steps, each sharing state only through attributes.
    """

    def __init__(self, net, X, Y, opts, callbacks):
        self.net, self.opts = net, opts
        self.optimizer = optimizers.get_optimizer(opts["optimizer"], opts)
        self.schedule = schedules.get_schedule(opts["lr_schedule"])
        self.rng = net._rng if opts["seed"] is None else np.random.default_rng(opts["seed"])
        self.X, self.Y, self.SW = X, Y, opts.pop("sample_weight")
        self.blocks = None  # out-of-core data (Blocks), set by fit
        self.Xv = self.Yv = None
        self.SWv = None
        self.split_seed = -1
        self.epoch = 0
        self.user_callbacks = list(callbacks)
        self.early = None
        self.warned = False
        self.partial = None  # the first part of an epoch a checkpoint was written in

    # -- set-up -------------------------------------------------------------

    def resume(self, path):
        """Read a checkpoint; returns its fields (applied by ``restore`` once the workspace exists)."""
        arrays, fields = ckpt.read_checkpoint(path)
        net = self.net
        saved = type(net)._from_arrays(arrays, path)
        if (saved.layer_sizes, saved.activations, saved.loss, saved.dtype) != \
                (net.layer_sizes, net.activations, net.loss, net.dtype):
            raise ValueError(f"resume_from must be a checkpoint of this network ({net!r}), got {saved!r}.")
        if fields["optimizer"] != self.optimizer.name:
            raise ValueError(f"optimizer must be the checkpoint's ({fields['optimizer']!r}) to resume, "
                             f"got {self.optimizer.name!r}.")
        if fields["epoch"] > self.opts["epochs"]:
            raise ValueError(f"epochs must be at least the checkpoint's epoch ({fields['epoch']}) to resume "
                             f"{path} (epochs counts the whole run), got {self.opts['epochs']}.")
        self.rng.bit_generator.state = fields["rng_state"]
        self.split_seed = fields["split_seed"]
        fields["theta"] = arrays["theta"]
        if fields.get("partial") is not None:
            batches, samples, steps, skipped, loss_sum, correct, weight_sum = fields["partial"]
            fields["partial"] = EpochResult(loss_sum=loss_sum, correct=correct, weight_sum=weight_sum,
                                            samples=int(samples), steps=int(steps), skipped=int(skipped),
                                            batches=int(batches))
        return fields

    def split(self):
        """Hold out validation_fraction of X, Y (a seeded random split), or take validation_data."""
        fraction, given = self.opts["validation_fraction"], self.opts["validation_data"]
        if fraction is not None and self.blocks is not None:
            raise ValueError("validation_fraction needs the data in memory; with memory-mapped or chunked X "
                             f"give validation_data instead, got validation_fraction={fraction}.")
        if given is not None:
            self.Xv, self.Yv, self.SWv = given
        if fraction is None:
            return
        if self.split_seed < 0:
            self.split_seed = int(self.rng.integers(0, 2**31 - 1))
        n = self.X.shape[0]
        n_val = int(round(fraction * n))
        if n_val < 1 or n - n_val < 1:
            raise ValueError(f"validation_fraction must leave at least one sample on each side of the split "
                             f"of {n} samples, got {fraction}.")
        order = np.random.default_rng(self.split_seed).permutation(n)
        X, Y = self.X, self.Y
        self.Xv, self.Yv = np.ascontiguousarray(X[order[:n_val]]), np.ascontiguousarray(Y[order[:n_val]])
        self.X, self.Y = np.ascontiguousarray(X[order[n_val:]]), np.ascontiguousarray(Y[order[n_val:]])
        if self.SW is not None:
            self.SWv, self.SW = self.SW[order[:n_val]].copy(), self.SW[order[n_val:]].copy()
            for part, weights in (("validation", self.SWv), ("training", self.SW)):
                if not weights.any():
                    raise ValueError(f"sample_weight must not be all zero on the {part} side of the "
                                     "validation_fraction split, got all zeros there.")

    def build(self, resumed):
        """Workspace, history and callbacks, restored from a checkpoint's fields when resuming."""
        opts, net = self.opts, self.net
        n_rows = self.X.shape[0] if self.blocks is None else self.blocks.n_rows or opts["batch_size"]
        self.workspace = Workspace.for_fit(net, min(opts["batch_size"], n_rows), self.optimizer)
        self.history = History(net.loss in losses.CLASSIFICATION, self.Xv is not None,
                               opts["on_nonfinite"] == "skip", opts["lr_schedule"] is not None)
        # Early stopping's state is stored in every checkpoint (a zero state when it is off).
        self.early = EarlyStopping(net, opts["patience"], opts["min_delta"],
                                   keep_theta=opts["early_stopping"] or opts["checkpoint_every"] is not None
                                   or resumed is not None)
        if resumed is not None:
            net.theta[...] = resumed["theta"]
            state = resumed["state"]
            self.workspace.state[...] = state[:self.optimizer.n_state]
            self.workspace.step = resumed["step"]
            self.epoch = resumed["epoch"]
            self.history.restore(resumed["history"])
            self.early.restore(resumed["best_theta"], resumed["best"])
            self.partial = resumed.get("partial")
        self.checkpointer = None
        if opts["checkpoint_every"] is not None:
            self.checkpointer = Checkpointer(opts["checkpoint_path"], opts["checkpoint_every"], opts["epochs"])

    def save_checkpoint(self, path, epoch, partial=None):
        """A checkpoint after `epoch` epochs, or in the middle of the next one (``partial``: its batches
        done and running sums; the random state is then the one that epoch started from)."""
        ws = self.workspace
        rng = self.rng
        if partial is not None:
            rng = np.random.default_rng()
            rng.bit_generator.state = self.epoch_rng_state
        ckpt.save_checkpoint(path, self.net, epoch=epoch, step=ws.step, optimizer=self.optimizer.name,
                             state=ws.state, rng=rng, split_seed=self.split_seed, history=self.history,
                             best_theta=self.early.best_theta, best=self.early.state(), partial=partial,
                             metadata=self.opts["checkpoint_metadata"])

    # -- the loop -----------------------------------------------------------

    def run(self):
        opts, net = self.opts, self.net
        callbacks = ([self.early] if opts["early_stopping"] else []) + self.user_callbacks
        if opts["early_stopping"] and self.early.done():  # resumed from the checkpoint written when it stopped
            self.early.stopped = self.epoch
            self.epoch = opts["epochs"]
        self.bar = ProgressBar(opts["epochs"], opts["progress"], done=self.epoch)
        for cb in self.user_callbacks:
            _call(cb, "on_train_begin", net)
        try:
            with Interrupt() as interrupt:
                while self.epoch < opts["epochs"]:
                    logs = self.run_epoch(self.epoch + 1, interrupt)
                    self.epoch += 1
                    stop = False
                    for cb in callbacks:  # every callback sees every epoch, even after one asked to stop
                        stop = bool(_call(cb, "on_epoch_end", self.epoch, logs)) or stop
                    self.bar.on_epoch_end(self.epoch, logs)
                    if self.checkpointer is not None:
                        self.checkpointer.after_epoch(self, self.epoch, stop)
                    if interrupt.signum is not None:  # arrived during validation or a callback
                        raise Interrupted(EpochResult(), interrupt.signum)
                    if stop:
                        break
        except Interrupted as exc:
            self.interrupted(exc)
        finally:
            self.bar.close()
        for cb in callbacks:
            _call(cb, "on_train_end", net, self.history)
        return self.history

    def run_epoch(self, epoch, interrupt=None):
        """Train one epoch, record it in the history; returns the epoch's logs."""
        opts, net, history = self.opts, self.net, self.history
        started = time.perf_counter()
        lr = check_schedule_rate(self.schedule, opts["learning_rate"], epoch, opts["epochs"])
        if self.checkpointer is not None:  # what a checkpoint in mid-epoch restores (a dict built: ~3 us)
            self.epoch_rng_state = self.rng.bit_generator.state
        shuffle_seed = int(self.rng.integers(0, 2**31 - 1)) if opts["shuffle"] else -1
        # drawn only with dropout on, so a network without it trains exactly as before
        dropout_seed = int(self.rng.integers(0, 2**31 - 1)) if any(net.dropout) else -1
        resume, self.partial = self.partial, None
        if self.blocks is None:
            result = self.workspace.run_epoch(self.X, self.Y, lr, shuffle_seed, opts["on_nonfinite"] == "skip",
                                              resume=resume, interrupt=interrupt, on_chunk=self.bar.on_chunk,
                                              sample_weight=self.SW, dropout_seed=dropout_seed)
        else:
            result = self.run_blocks(lr, shuffle_seed, interrupt, dropout_seed)
        self.check_divergence(epoch, result, lr)
        record_epoch(history, net, result, lr)
        if self.Xv is not None:
            self.validate(epoch, lr)
        history["seconds"].append(time.perf_counter() - started)
        return history.last()

    def run_blocks(self, lr, shuffle_seed, interrupt, dropout_seed=-1):
        """One epoch over out-of-core data, block after block; the running sums go on across blocks."""
        total = EpochResult()
        block_rng = np.random.default_rng(shuffle_seed) if shuffle_seed >= 0 else None
        for Xb, Yb, SWb in self.blocks.epoch(block_rng, shuffle_seed >= 0):
            seed = int(block_rng.integers(0, 2**31 - 1)) if block_rng is not None else -1
            carried = EpochResult(loss_sum=total.loss_sum, correct=total.correct, weight_sum=total.weight_sum)
            part = self.workspace.run_epoch(Xb, Yb, lr, seed, self.opts["on_nonfinite"] == "skip", resume=carried,
                                            interrupt=interrupt, sample_weight=SWb,
                                            dropout_seed=dropout_seed + total.batches if dropout_seed >= 0 else -1)
            total.loss_sum, total.correct, total.weight_sum = part.loss_sum, part.correct, part.weight_sum
            total.samples += part.samples
            total.steps += part.steps
            total.skipped += part.skipped
            total.batches += part.batches
            total.status = part.status
            if part.status != K.OK:
                break
        return total

    def n_rows(self):
        return self.X.shape[0] if self.blocks is None else self.blocks.n_rows

    def interrupted(self, exc):
        """Ctrl-C or SIGTERM between two steps: write a checkpoint if they are on, then raise TrainingInterrupted."""
        batch = exc.result.batches
        epoch = self.epoch + 1 if batch else self.epoch  # the epoch in progress, or the last one finished
        path = None
        if self.checkpointer is not None and (self.blocks is None or not batch):
            path = self.checkpointer.path
            self.save_checkpoint(path, self.epoch, partial=exc.result if exc.result.batches else None)
        if self.blocks is not None:
            where = f"in epoch {epoch}" if batch else f"after epoch {epoch}"
        else:
            where = (f"in epoch {epoch} after {batch} of {self.workspace.n_batches(self.X.shape[0])} mini-batches"
                     if batch else f"after epoch {epoch}")
        name = "SIGTERM" if exc.signum == signal.SIGTERM else "Ctrl-C"
        message = (f"training interrupted ({name}) {where} (optimizer step {self.workspace.step}); the network "
                   "holds the parameters of the last finished step")
        if path:
            message += f"; checkpoint written to {path}"
        elif self.checkpointer is not None:
            message += f" (memory-mapped or chunked data: no mid-epoch checkpoint; {self.checkpointer.path} holds " \
                       "the last finished epoch)"
        else:
            message += " (no checkpoint: checkpoint_every is off)"
        raise TrainingInterrupted(message, epoch, batch, path, self.history, exc.signum) from None

    def check_divergence(self, epoch, result, lr):
        if result.status == K.OK and result.steps == 0 and result.skipped > 0:
            raise DivergenceError(
                f"training diverged: every mini-batch of epoch {epoch} ({result.skipped}) had a non-finite loss "
                "or gradient and was skipped (on_nonfinite='skip'), so the epoch has no loss. The network keeps "
                f"the parameters of the last finite step. Try a smaller learning_rate (got {lr:g}).",
                epoch=epoch, step=result.skipped, history=self.history)
        if result.status == K.OK:
            self.warn_if_exploding(epoch, result.loss, lr)
            return
        what = {K.NONFINITE_LOSS: "loss", K.NONFINITE_GRADIENT: "gradient"}.get(
            result.status, "parameters after the optimizer step")
        step = result.steps + result.skipped + 1
        raise DivergenceError(
            f"training diverged: non-finite {what} at epoch {epoch}, step {step} "
            f"(mini-batch {step} of {math.ceil((self.n_rows() or 0) / self.workspace.batch_size)}). The network keeps "
            f"the parameters of the last finite step. Try a smaller learning_rate (got {lr:g}), "
            "or on_nonfinite='skip'.", epoch=epoch, step=step, history=self.history)

    def warn_if_exploding(self, epoch, loss, lr):
        """Warn once when the training loss grows by EXPLODING x over the first epoch's, still finite."""
        first = self.history["loss"][0] if self.history["loss"] else loss
        if not self.warned and epoch > 1 and loss > EXPLODING * max(first, np.finfo(np.float64).tiny):
            self.warned = True
            warnings.warn(f"the training loss grew from {first:.4g} (epoch 1) to {loss:.4g} (epoch {epoch}): "
                          f"training is diverging; try a smaller learning_rate (got {lr:g}).",
                          RuntimeWarning, stacklevel=4)

    def validate(self, epoch, lr):
        net, history = self.net, self.history
        history["val_loss"].append(net._loss_value_checked(self.Xv, self.Yv, self.SWv))
        if not math.isfinite(history["val_loss"][-1]):
            # Finite parameters whose outputs overflow: no history entry built on NaN.
            raise DivergenceError(
                f"training diverged: the validation loss is not finite after epoch {epoch} (the "
                "parameters are finite but the network's outputs overflow). Try a smaller "
                f"learning_rate (got {lr:g}).", epoch=epoch, step=self.workspace.step, history=history)
        if "val_accuracy" in history:
            history["val_accuracy"].append(_accuracy(net._forward_checked(self.Xv), self.Yv, net.loss, self.SWv))


def check_schedule_rate(schedule, eta_0, epoch, epochs):
    """The learning rate a schedule (perhaps the user's own) gives for an epoch, checked: a real >= 0."""
    rate = schedule.lr(eta_0, epoch - 1, epochs)
    if type(rate) is float and 0.0 <= rate < math.inf:  # the common case, without the message's repr (~8 us)
        return rate
    return check_float(f"the learning rate of epoch {epoch} from lr_schedule {schedule!r}", rate, low=0.0)


def check_fit_options(net, opts):
    """Validate fit's options (the declarative tables above); returns them checked."""
    opts = check_params(FIT_AND_OPTIMIZER_PARAMS, opts)
    if opts["checkpoint_every"] is not None and opts["checkpoint_path"] is None:
        raise ValueError("checkpoint_path must be given with checkpoint_every, got None.")
    if opts["checkpoint_path"] is not None and opts["checkpoint_every"] is None:
        raise ValueError("checkpoint_every must be given with checkpoint_path (how many epochs between "
                         "checkpoints), got None.")
    if opts["checkpoint_path"] is not None:  # a folder that is missing or read-only fails now, not after training
        opts["checkpoint_path"] = check_output_path("checkpoint_path", opts["checkpoint_path"])
        ckpt._metadata_json(opts.get("checkpoint_metadata"))
    if opts["validation_fraction"] is not None and opts["validation_data"] is not None:
        raise ValueError("validation_fraction must be None when validation_data is given, "
                         f"got {opts['validation_fraction']}.")
    given = opts["validation_data"]
    if given is not None:
        if not isinstance(given, (tuple, list)) or len(given) not in (2, 3):
            raise TypeError("validation_data must be a tuple (X_val, Y_val) or (X_val, Y_val, sample_weight_val), "
                            f"got {type(given).__name__}.")
        Xv, _ = check_inputs(given[0], net.layer_sizes[0], net.dtype, name="validation X")
        Yv = check_targets(given[1], net.loss, net.layer_sizes[-1], Xv.shape[0], net.dtype, name="validation Y")
        SWv = check_sample_weight(given[2], Xv.shape[0], net.dtype, name="validation sample_weight") \
            if len(given) == 3 and given[2] is not None else None
        opts["validation_data"] = (Xv, Yv, SWv)
    if opts["early_stopping"] and given is None and opts["validation_fraction"] is None:
        raise ValueError("early_stopping needs validation_data or validation_fraction, got neither.")
    schedules.get_schedule(opts["lr_schedule"])  # a bad name fails here, before any work
    for cb in opts.get("callbacks") or ():
        if not any(callable(getattr(cb, m, None)) for m in ("on_train_begin", "on_epoch_end", "on_train_end")):
            raise TypeError("callbacks must be objects with on_train_begin, on_epoch_end or on_train_end "
                            f"methods, got {type(cb).__name__}.")
    return opts


def check_theta_sums(net):
    """Raise unless net.theta is finite (e.g. NaN written into net.weights[0]); returns w_abs for
    ``Workspace.knows_sums``.

    fit and partial_fit test theta before every call, and the fused step's
    bound needs S[l] = sum |W[l]| before its first step: one compiled pass
    gives both (every sum finite: so is every element), so the kernel does
    not read theta a second time.  The pass and the kernel's own took 63-65
    us each on [784,512,512,10]'s float64 theta, a quarter of a B = 1 step
    (AMD EPYC with AVX-512, 2026-12-02).
    """
    w_abs = np.empty(len(net.layer_sizes), dtype=np.float64)
    # sum |theta| is not finite: NaN or inf in theta, or finite values whose sum overflows
    if not math.isfinite(K._theta_abs_sums(net.theta, net._arch, w_abs)):
        check_theta(net.theta, net._n_params, net.dtype)  # raises on the first; the bound refuses the second
    return w_abs


def fit(net, X, Y, options):
    """``MLP.fit``: validate, split, resume, build, run (``options``: a dict of ``MLP.fit``'s keywords, used up)."""
    w_abs = check_theta_sums(net)
    return _trainer(net, X, Y, options, w_abs).run()


def _trainer(net, X, Y, options, w_abs):
    """fit's checks of its data and options, and its Trainer, built (resumed, split) and ready to run
    (w_abs: check_theta_sums of net.theta, given to the workspace unless theta changes before the first step)."""
    blocks = None
    if is_out_of_core(X, Y):
        opts = check_fit_options(net, options)
        blocks = Blocks(net, X, Y, opts.pop("sample_weight"), opts["batch_size"])
        opts["sample_weight"] = None
        X = Y = None
    else:
        if Y is None:
            raise ValueError("Y must be given with an array X (Y is omitted only for an iterable of (X, Y) chunks).")
        X, _ = check_inputs(X, net.layer_sizes[0], net.dtype)
        Y = check_targets(Y, net.loss, net.layer_sizes[-1], X.shape[0], net.dtype)
        weights = options.get("sample_weight")
        options["sample_weight"] = None if weights is None else check_sample_weight(weights, X.shape[0], net.dtype)
        opts = check_fit_options(net, options)
    callbacks = opts.pop("callbacks", None) or ()
    trainer = Trainer(net, X, Y, opts, callbacks)
    trainer.blocks = blocks
    resumed = trainer.resume(opts["resume_from"]) if opts["resume_from"] is not None else None
    trainer.split()
    trainer.build(resumed)
    # a resume replaced theta, and a callback's on_train_begin may change it
    if resumed is None and not trainer.user_callbacks:
        trainer.workspace.knows_sums(w_abs)
    return trainer


# --------------------------------------------------------------------------
# Incremental training
# --------------------------------------------------------------------------

PARTIAL_FIT_PARAMS = {k: FIT_PARAMS[k] for k in ("batch_size", "learning_rate", "on_nonfinite", "shuffle", "seed")}
PARTIAL_FIT_AND_OPTIMIZER_PARAMS = {**PARTIAL_FIT_PARAMS, **OPTIMIZER_PARAMS}


class Incremental:
    """What ``MLP.partial_fit`` keeps between calls: the optimizer, its state and step count, the pass count and
    the random generator of the shuffles (the network's unless a seed was given on the first call)."""

    def __init__(self, net, optimizer, batch_size, rng):
        self.optimizer = optimizer
        self.workspace = Workspace(net, batch_size, optimizer)
        self.rng = rng
        self.passes = 0

    def adopt(self, net, optimizer, batch_size):
        """Continue with (perhaps) new hyper-parameters or batch size; the state carries over."""
        if optimizer.name != self.optimizer.name:
            raise ValueError(f"optimizer must stay {self.optimizer.name!r} across partial_fit calls (its state "
                             f"continues), got {optimizer.name!r}; call net.reset_training() to start afresh.")
        if batch_size != self.workspace.batch_size or optimizer != self.optimizer:
            old = self.workspace
            self.workspace = Workspace(net, batch_size, optimizer)
            self.workspace.state[...] = old.state
            self.workspace.step = old.step
            self.optimizer = optimizer


def partial_fit(net, X, Y, options):
    """``MLP.partial_fit``: one pass over X, Y continuing the parameters and the optimizer state (``options``: a dict
    of its keywords, used up)."""
    w_abs = check_theta_sums(net)
    X, Y, weights, opts, optimizer, schedule = _partial_fit_checks(net, X, Y, options)
    state = net._incremental
    if state is None:
        rng = net._rng if opts["seed"] is None else np.random.default_rng(opts["seed"])
        state = net._incremental = Incremental(net, optimizer, opts["batch_size"], rng)
    else:
        state.adopt(net, optimizer, opts["batch_size"])
    lr = check_schedule_rate(schedule, opts["learning_rate"], state.passes + 1, None)
    shuffle_seed = int(state.rng.integers(0, 2**31 - 1)) if opts["shuffle"] else -1
    dropout_seed = int(state.rng.integers(0, 2**31 - 1)) if any(net.dropout) else -1
    state.workspace.knows_sums(w_abs)
    result = state.workspace.run_epoch(X, Y, lr, shuffle_seed, opts["on_nonfinite"] == "skip",
                                       sample_weight=weights, dropout_seed=dropout_seed)
    if result.status != K.OK or result.steps == 0:
        what = "every mini-batch was skipped" if result.status == K.OK else "a loss, gradient or step was not finite"
        raise DivergenceError(f"training diverged in partial_fit pass {state.passes + 1}: {what}. The network keeps "
                              f"the parameters of the last finite step. Try a smaller learning_rate (got {lr:g}).",
                              epoch=state.passes + 1, step=result.steps + result.skipped + 1, history=None)
    state.passes += 1
    return {"loss": result.loss, "samples": result.samples, "steps": result.steps, "skipped": result.skipped,
            "lr": lr, "passes": state.passes, "optimizer_steps": state.workspace.step}


def _partial_fit_checks(net, X, Y, options):
    """partial_fit's data and options, checked: (X, Y, sample weights, options, optimizer, schedule)."""
    X, _ = check_inputs(X, net.layer_sizes[0], net.dtype)
    Y = check_targets(Y, net.loss, net.layer_sizes[-1], X.shape[0], net.dtype)
    weights = options.pop("sample_weight", None)
    weights = None if weights is None else check_sample_weight(weights, X.shape[0], net.dtype)
    opts = check_params(PARTIAL_FIT_AND_OPTIMIZER_PARAMS, options)
    optimizer = optimizers.get_optimizer(opts["optimizer"], opts)
    schedule = schedules.get_schedule(opts["lr_schedule"])
    if getattr(schedule, "t_max", 1) is None:
        raise ValueError(f"lr_schedule must know the run's length in partial_fit (there is no epochs), got "
                         f"{schedule!r}: give it t_max.")
    return X, Y, weights, opts, optimizer, schedule


def _accuracy(out, Y, loss, sample_weight=None):
    """Fraction correct (weighted by sample_weight): argmax against the one-hot target for cross_entropy;
    elementwise a > 0.5 against y > 0.5 otherwise (Keras' binary accuracy)."""
    if loss == "cross_entropy":
        correct = (np.argmax(out, axis=1) == np.argmax(Y, axis=1)).astype(np.float64)
    else:
        correct = np.mean((out > 0.5) == (Y > 0.5), axis=1)
    if sample_weight is None or sample_weight.shape[0] == 0:
        return float(np.mean(correct))
    return float(np.dot(correct, sample_weight) / np.sum(sample_weight, dtype=np.float64))


def dropout_masks(net, seed, n_rows):
    """The 0/1 dropout masks fit uses for rows 0..n_rows-1 of an epoch with this dropout seed: one
    (n_rows, n[l]) array per hidden layer l (all ones where the rate is 0).  For tests and inspection."""
    masks = []
    for l in range(1, net.n_layers):
        rate = net._drop_rates[l]
        m = np.ones((n_rows, net.layer_sizes[l]))
        if rate > 0:
            for s in range(n_rows):
                for j in range(net.layer_sizes[l]):
                    m[s, j] = float(K._dropout_keep(seed, s, l, j, rate))
        masks.append(m)
    return masks
