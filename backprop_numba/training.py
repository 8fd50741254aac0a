"""The training loop of ``MLP.fit``, in small named parts.

- ``Workspace``: the buffers of one network and batch size plus the optimizer
  state, allocated once; the only caller of the compiled epoch
  (``_kernels._train_epoch``), so nothing else spells its argument list.  It
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
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np

from . import _kernels as K
from . import checkpoint as ckpt
from . import losses, optimizers, schedules
from ._validation import check_inputs, check_params, check_targets, check_theta

# A training loss this many times the first epoch's (still finite) gets a
# RuntimeWarning: the run is diverging slowly, on its way to a DivergenceError.
EXPLODING = 1e6

# Status of an epoch (beyond _kernels.OK/NONFINITE_*): an optimizer step
# turned finite parameters into inf/NaN (overflow of theta - lr * step).
NONFINITE_PARAMETERS = 3

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
# Every optimizer hyper-parameter fit takes as a keyword, with its constraint.
OPTIMIZER_PARAMS = {k: spec for cls in optimizers.CLASSES.values() for k, spec in cls.PARAMS.items()}


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
    """What one compiled epoch did: summed loss, samples and steps used, steps skipped, status."""

    loss_sum: float
    samples: int
    steps: int
    skipped: int
    status: int

    @property
    def loss(self):
        """Mean training loss over the samples used (NaN if none)."""
        return self.loss_sum / self.samples if self.samples else float("nan")


class Workspace:
    """Buffers sized once for a network and a batch size, plus the optimizer state.

    >>> ws = Workspace(net, batch_size=32, optimizer="adam")        # doctest: +SKIP
    >>> ws.run_epoch(X, Y, learning_rate=0.01, shuffle_seed=7)      # doctest: +SKIP
    EpochResult(loss_sum=..., samples=..., steps=..., skipped=0, status=0)

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
        self.grad = np.empty(net._n_params, dtype=net.dtype)
        self.state = self.optimizer.new_state(net._n_params, net.dtype)
        self.hyper = self.optimizer.hyper_array()
        self.step = 0
        self.perm = np.arange(0, dtype=np.int64)

    def prepare(self, X, Y):
        """X, Y validated and converted as ``run_epoch`` needs them."""
        X, _ = check_inputs(X, self.net.layer_sizes[0], self.net.dtype)
        return X, check_targets(Y, self.net.loss, self.net.layer_sizes[-1], X.shape[0], self.net.dtype)

    def run_epoch(self, X, Y, learning_rate, shuffle_seed=-1, skip_nonfinite=False):
        """One compiled epoch of mini-batch training over X, Y; returns an EpochResult.

        shuffle_seed >= 0 shuffles the rows first (seeded); -1 keeps their
        order.  A mini-batch with a non-finite loss or gradient, or whose step
        would make a parameter non-finite, gets no update: with
        skip_nonfinite the epoch goes on, otherwise it stops there.
        """
        if self.perm.shape[0] != X.shape[0]:
            self.perm = np.arange(X.shape[0], dtype=np.int64)
        result = EpochResult(*self._guarded(X, Y, float(learning_rate), int(shuffle_seed), bool(skip_nonfinite)))
        self.step += result.steps
        return result

    def _kernel(self, X, Y, perm, shuffle_seed, lr, t, skip):
        return K._train_epoch(self.net.theta, self.net._arch, self.net._loss_code, X, Y, perm, shuffle_seed,
                              self.batch_size, self.optimizer.code, lr, self.hyper, self.state, t, skip,
                              self.a, self.z, self.delta, self.y, self.grad)

    def _guarded(self, X, Y, lr, shuffle_seed, skip):
        """The compiled epoch, plus a guarantee the kernel alone does not give.

        The kernel checks each mini-batch's loss and gradient, but an
        optimizer step with a finite gradient can still overflow theta to inf
        (a huge learning rate or gradient).  So theta and the optimizer state
        are copied before the epoch and checked after it (O(P), once per
        epoch); only when theta is no longer finite is the epoch replayed from
        the copy one mini-batch at a time (same rows, same order, same
        arithmetic, so bit-identical up to the bad step), and the step that
        overflowed is undone and reported (NONFINITE_PARAMETERS), or skipped.
        """
        theta = self.net.theta
        theta0, state0 = theta.copy(), self.state.copy()
        result = self._kernel(X, Y, self.perm, shuffle_seed, lr, self.step, skip)
        if np.isfinite(theta).all():
            return result
        theta[...] = theta0
        self.state[...] = state0
        total, seen, steps, skipped = 0.0, 0, 0, 0
        for start in range(0, X.shape[0], self.batch_size):
            rows = self.perm[start:start + self.batch_size]  # this epoch's order (shuffled in place by the kernel)
            Xb, Yb = np.ascontiguousarray(X[rows]), np.ascontiguousarray(Y[rows])
            theta0[...] = theta
            state0[...] = self.state
            b_total, b_seen, b_steps, _, status = self._kernel(
                Xb, Yb, np.arange(rows.shape[0], dtype=np.int64), -1, lr, self.step + steps, False)
            if status == K.OK and not np.isfinite(theta).all():
                theta[...] = theta0
                self.state[...] = state0
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

    def __init__(self, net, patience, min_delta):
        self.net, self.patience, self.min_delta = net, patience, min_delta
        self.best_loss, self.best_epoch, self.wait = math.inf, 0, 0
        self.best_theta = net.theta.copy()
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
    """A tqdm bar over epochs (only on a terminal when progress is None; none without tqdm)."""

    SHOWN = ("loss", "val_loss", "val_accuracy")

    def __init__(self, epochs, progress, done=0):
        self.bar = None
        if progress is False:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional: no bar without it
            return
        # disable=None: tqdm turns itself off when stderr is not a terminal.
        self.bar = tqdm(total=epochs, unit="epoch", disable=None if progress is None else False, file=sys.stderr,
                        leave=False)
        if done:
            self.bar.update(min(done, epochs))

    def on_epoch_end(self, epoch, logs):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k in self.SHOWN})
        return False

    def close(self):
        if self.bar is not None:
            self.bar.close()


class Checkpointer:
    """Writes a checkpoint every `every` epochs, at the last epoch and when training stops early."""

    def __init__(self, path, every, epochs):
        self.path, self.every, self.epochs = path, every, epochs

    def after_epoch(self, trainer, epoch, stopping):
        if epoch % self.every == 0 or epoch == self.epochs or stopping:
            trainer.save_checkpoint(self.path, epoch)


# --------------------------------------------------------------------------
# One run of fit
# --------------------------------------------------------------------------

class Trainer:
    """One ``fit`` run: validated options, data, random state, workspace, history and callbacks.

    ``fit(net, X, Y, **options)`` below is the whole public behaviour; the
    methods are its steps, each sharing state only through attributes.
    """

    def __init__(self, net, X, Y, opts, callbacks):
        self.net, self.opts = net, opts
        self.optimizer = optimizers.get_optimizer(opts["optimizer"], opts)
        self.schedule = schedules.get_schedule(opts["lr_schedule"])
        self.rng = net._rng if opts["seed"] is None else np.random.default_rng(opts["seed"])
        self.X, self.Y = X, Y
        self.Xv = self.Yv = None
        self.split_seed = -1
        self.epoch = 0
        self.user_callbacks = list(callbacks)
        self.early = None
        self.warned = False

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
        return fields

    def split(self):
        """Hold out validation_fraction of X, Y (a seeded random split), or take validation_data."""
        fraction, given = self.opts["validation_fraction"], self.opts["validation_data"]
        if given is not None:
            self.Xv, self.Yv = given
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

    def build(self, resumed):
        """Workspace, history and callbacks, restored from a checkpoint's fields when resuming."""
        opts, net = self.opts, self.net
        self.workspace = Workspace(net, min(opts["batch_size"], self.X.shape[0]), self.optimizer)
        self.history = History(net.loss in losses.CLASSIFICATION, self.Xv is not None,
                               opts["on_nonfinite"] == "skip", opts["lr_schedule"] is not None)
        # Early stopping's state is stored in every checkpoint (a zero state when it is off).
        self.early = EarlyStopping(net, opts["patience"], opts["min_delta"])
        if resumed is not None:
            net.theta[...] = resumed["theta"]
            state = resumed["state"]
            self.workspace.state[...] = state[:self.optimizer.n_state]
            self.workspace.step = resumed["step"]
            self.epoch = resumed["epoch"]
            self.history.restore(resumed["history"])
            self.early.restore(resumed["best_theta"], resumed["best"])
        self.checkpointer = None
        if opts["checkpoint_every"] is not None:
            self.checkpointer = Checkpointer(opts["checkpoint_path"], opts["checkpoint_every"], opts["epochs"])

    def save_checkpoint(self, path, epoch):
        ws = self.workspace
        ckpt.save_checkpoint(path, self.net, epoch=epoch, step=ws.step, optimizer=self.optimizer.name,
                             state=ws.state, rng=self.rng, split_seed=self.split_seed, history=self.history,
                             best_theta=self.early.best_theta, best=self.early.state())

    # -- the loop -----------------------------------------------------------

    def run(self):
        opts, net = self.opts, self.net
        callbacks = ([self.early] if opts["early_stopping"] else []) + self.user_callbacks
        if opts["early_stopping"] and self.early.done():  # resumed from the checkpoint written when it stopped
            self.early.stopped = self.epoch
            self.epoch = opts["epochs"]
        bar = ProgressBar(opts["epochs"], opts["progress"], done=self.epoch)
        for cb in self.user_callbacks:
            _call(cb, "on_train_begin", net)
        try:
            while self.epoch < opts["epochs"]:
                self.epoch += 1
                logs = self.run_epoch(self.epoch)
                stop = False
                for cb in callbacks:  # every callback sees every epoch, even after one asked to stop
                    stop = bool(_call(cb, "on_epoch_end", self.epoch, logs)) or stop
                bar.on_epoch_end(self.epoch, logs)
                if self.checkpointer is not None:
                    self.checkpointer.after_epoch(self, self.epoch, stop)
                if stop:
                    break
        finally:
            bar.close()
        for cb in callbacks:
            _call(cb, "on_train_end", net, self.history)
        return self.history

    def run_epoch(self, epoch):
        """Train one epoch, record it in the history; returns the epoch's logs."""
        opts, net, history = self.opts, self.net, self.history
        started = time.perf_counter()
        lr = check_schedule_rate(self.schedule, opts["learning_rate"], epoch, opts["epochs"])
        shuffle_seed = int(self.rng.integers(0, 2**31 - 1)) if opts["shuffle"] else -1
        result = self.workspace.run_epoch(self.X, self.Y, lr, shuffle_seed, opts["on_nonfinite"] == "skip")
        self.check_divergence(epoch, result, lr)
        history["loss"].append(result.loss)
        if "accuracy" in history:
            history["accuracy"].append(_accuracy(net._forward_checked(self.X), self.Y, net.loss))
        if "skipped_steps" in history:
            history["skipped_steps"].append(result.skipped)
        if "lr" in history:
            history["lr"].append(lr)
        if self.Xv is not None:
            self.validate(epoch, lr)
        history["seconds"].append(time.perf_counter() - started)
        return history.last()

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
            f"(mini-batch {step} of {math.ceil(self.X.shape[0] / self.workspace.batch_size)}). The network keeps "
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
        history["val_loss"].append(net._loss_value_checked(self.Xv, self.Yv))
        if not math.isfinite(history["val_loss"][-1]):
            # Finite parameters whose outputs overflow: no history entry built on NaN.
            raise DivergenceError(
                f"training diverged: the validation loss is not finite after epoch {epoch} (the "
                "parameters are finite but the network's outputs overflow). Try a smaller "
                f"learning_rate (got {lr:g}).", epoch=epoch, step=self.workspace.step, history=history)
        if "val_accuracy" in history:
            history["val_accuracy"].append(_accuracy(net._forward_checked(self.Xv), self.Yv, net.loss))


def check_schedule_rate(schedule, eta_0, epoch, epochs):
    """The learning rate a schedule (perhaps the user's own) gives for an epoch, checked: a real >= 0."""
    from ._validation import check_float
    return check_float(f"the learning rate of epoch {epoch} from lr_schedule {schedule!r}",
                       schedule.lr(eta_0, epoch - 1, epochs), low=0.0)


def check_fit_options(net, opts):
    """Validate fit's options (the declarative tables above); returns them checked."""
    opts = check_params(FIT_PARAMS, opts)
    opts.update(check_params(OPTIMIZER_PARAMS, {k: opts[k] for k in OPTIMIZER_PARAMS if k in opts}))
    if opts["checkpoint_every"] is not None and opts["checkpoint_path"] is None:
        raise ValueError("checkpoint_path must be given with checkpoint_every, got None.")
    if opts["checkpoint_path"] is not None and opts["checkpoint_every"] is None:
        raise ValueError("checkpoint_every must be given with checkpoint_path (how many epochs between "
                         "checkpoints), got None.")
    if opts["validation_fraction"] is not None and opts["validation_data"] is not None:
        raise ValueError("validation_fraction must be None when validation_data is given, "
                         f"got {opts['validation_fraction']}.")
    given = opts["validation_data"]
    if given is not None:
        if not isinstance(given, (tuple, list)) or len(given) != 2:
            raise TypeError(f"validation_data must be a tuple (X_val, Y_val), got {type(given).__name__}.")
        Xv, _ = check_inputs(given[0], net.layer_sizes[0], net.dtype, name="validation X")
        Yv = check_targets(given[1], net.loss, net.layer_sizes[-1], Xv.shape[0], net.dtype, name="validation Y")
        opts["validation_data"] = (Xv, Yv)
    if opts["early_stopping"] and given is None and opts["validation_fraction"] is None:
        raise ValueError("early_stopping needs validation_data or validation_fraction, got neither.")
    schedules.get_schedule(opts["lr_schedule"])  # a bad name fails here, before any work
    for cb in opts.get("callbacks") or ():
        if not any(callable(getattr(cb, m, None)) for m in ("on_train_begin", "on_epoch_end", "on_train_end")):
            raise TypeError("callbacks must be objects with on_train_begin, on_epoch_end or on_train_end "
                            f"methods, got {type(cb).__name__}.")
    return opts


def fit(net, X, Y, **options):
    """``MLP.fit``: validate, split, resume, build, run (see ``MLP.fit`` for the options)."""
    check_theta(net.theta, net._n_params, net.dtype)  # e.g. NaN written into net.weights[0]
    X, _ = check_inputs(X, net.layer_sizes[0], net.dtype)
    Y = check_targets(Y, net.loss, net.layer_sizes[-1], X.shape[0], net.dtype)
    opts = check_fit_options(net, options)
    callbacks = opts.pop("callbacks", None) or ()
    trainer = Trainer(net, X, Y, opts, callbacks)
    resumed = trainer.resume(opts["resume_from"]) if opts["resume_from"] is not None else None
    trainer.split()
    trainer.build(resumed)
    return trainer.run()


# --------------------------------------------------------------------------
# Incremental training
# --------------------------------------------------------------------------

PARTIAL_FIT_PARAMS = {k: FIT_PARAMS[k] for k in ("batch_size", "learning_rate", "on_nonfinite", "shuffle", "seed")}


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


def partial_fit(net, X, Y, **options):
    """``MLP.partial_fit``: one pass over X, Y continuing the parameters and the optimizer state."""
    check_theta(net.theta, net._n_params, net.dtype)
    X, _ = check_inputs(X, net.layer_sizes[0], net.dtype)
    Y = check_targets(Y, net.loss, net.layer_sizes[-1], X.shape[0], net.dtype)
    opts = check_params(PARTIAL_FIT_PARAMS, options)
    opts.update(check_params(OPTIMIZER_PARAMS, {k: options[k] for k in OPTIMIZER_PARAMS if k in options}))
    optimizer = optimizers.get_optimizer(opts["optimizer"], opts)
    schedule = schedules.get_schedule(opts["lr_schedule"])
    if getattr(schedule, "t_max", 1) is None:
        raise ValueError(f"lr_schedule must know the run's length in partial_fit (there is no epochs), got "
                         f"{schedule!r}: give it t_max.")
    state = net._incremental
    if state is None:
        rng = net._rng if opts["seed"] is None else np.random.default_rng(opts["seed"])
        state = net._incremental = Incremental(net, optimizer, opts["batch_size"], rng)
    else:
        state.adopt(net, optimizer, opts["batch_size"])
    lr = check_schedule_rate(schedule, opts["learning_rate"], state.passes + 1, None)
    shuffle_seed = int(state.rng.integers(0, 2**31 - 1)) if opts["shuffle"] else -1
    result = state.workspace.run_epoch(X, Y, lr, shuffle_seed, opts["on_nonfinite"] == "skip")
    if result.status != K.OK or result.steps == 0:
        what = "every mini-batch was skipped" if result.status == K.OK else "a loss, gradient or step was not finite"
        raise DivergenceError(f"training diverged in partial_fit pass {state.passes + 1}: {what}. The network keeps "
                              f"the parameters of the last finite step. Try a smaller learning_rate (got {lr:g}).",
                              epoch=state.passes + 1, step=result.steps + result.skipped + 1, history=None)
    state.passes += 1
    return {"loss": result.loss, "samples": result.samples, "steps": result.steps, "skipped": result.skipped,
            "lr": lr, "passes": state.passes, "optimizer_steps": state.workspace.step}


def _accuracy(out, Y, loss):
    """Fraction correct: argmax against the one-hot target for cross_entropy;
    elementwise a > 0.5 against y > 0.5 otherwise (Keras' binary accuracy)."""
    if loss == "cross_entropy":
        return float(np.mean(np.argmax(out, axis=1) == np.argmax(Y, axis=1)))
    return float(np.mean((out > 0.5) == (Y > 0.5)))
