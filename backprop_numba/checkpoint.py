"""Training checkpoints: a model file plus everything needed to resume ``fit``.

A checkpoint is an ordinary model file (``io.py``: same atomic writer, same
checksum, loaded with ``allow_pickle=False``, so ``MLP.load`` reads it as the
network at that epoch) with extra entries under the ``extra.`` prefix:

=========================  ===========  ============================================
key                        dtype        meaning
=========================  ===========  ============================================
``extra.kind``             str          ``"checkpoint"``
``extra.epoch``            int64        epochs completed
``extra.step``             int64        optimizer steps taken (Adam's t)
``extra.optimizer``        str          optimizer name
``extra.optimizer_state``  dtype (2,P)  velocity / first moment, second moment
``extra.rng_state``        str (JSON)   the NumPy Generator's bit-generator state
``extra.split_seed``       int64        seed of the validation_fraction split (-1: none)
``extra.history``          str (JSON)   the history so far
``extra.best_theta``       dtype (P,)   early stopping: best parameters so far
``extra.best``             float64 (3,) early stopping: best val_loss, its epoch, epochs without improvement
``extra.partial_epoch``    float64 (7,) optional: written in mid-epoch (Ctrl-C, SIGTERM): batches done,
                                        samples, steps, skipped, loss sum, correct count, weight sum
                                        of epoch+1
``extra.metadata``         str (JSON)   optional: a dict of the caller's own (``{}`` when absent)
=========================  ===========  ============================================

Resuming with ``MLP.fit(..., resume_from=path)`` and the same data and options
continues the run bit for bit: the result equals an uninterrupted run.

``read_checkpoint`` trusts nothing it reads, not even from a file whose
checksums hold (anyone can seal a file): every field is checked as strictly
as a model file, and a bad one is refused with a ``ValueError`` naming the
file and the entry.  ``epoch`` and ``step`` are integers >= 0; ``history`` is
a JSON object of lists of ``epoch`` numbers each, finite or NaN (a loss with
every step skipped); ``best_theta`` has the network's shape and dtype and is
finite; ``best`` is three floats: the best validation loss (+inf before the
first), its epoch and the epochs since it, both integers in ``[0, epoch]``
and adding up to at most ``epoch``; ``optimizer_state`` is 2-D, of the
network's dtype, with one column per parameter (one row per state vector:
none for plain SGD), and holds no NaN; ``partial_epoch``, when present, is 7
finite numbers, the first four whole, batches >= 1;
``rng_state`` is a state NumPy's default bit generator accepts;
``split_seed`` is an integer >= -1.
"""

import json
import math
import numbers

import numpy as np

from . import io

KIND = "checkpoint"
FIELDS = ("extra.epoch", "extra.step", "extra.optimizer", "extra.optimizer_state", "extra.rng_state",
          "extra.split_seed", "extra.history", "extra.best_theta", "extra.best")


def _metadata_json(metadata):
    """metadata (a dict or None) as JSON text."""
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}.")
    bad = [k for k in metadata if not isinstance(k, str)]
    if bad:
        raise TypeError(f"metadata keys must be strings (it is stored as JSON), got {bad[0]!r}.")
    try:
        return json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable (str, numbers, bools, None, lists, dicts), "
                        f"got {exc}.") from None


def checkpoint_arrays(net, *, epoch, step, optimizer, state, rng, split_seed, history, best_theta, best,
                      partial=None, metadata=None):
    """The dict of arrays ``io.save_arrays`` writes for a checkpoint.

    partial : optional object with batches, samples, steps, skipped, loss_sum
        and correct; it marks a checkpoint written in the middle of epoch
        ``epoch + 1`` (Ctrl-C, SIGTERM), stored as ``extra.partial_epoch``;
        ``rng`` is then the state that epoch started from, so a resume
        reshuffles it the same way.
    metadata : optional dict of the caller's own, stored as JSON in
        ``extra.metadata`` (``{}`` when None) and returned by
        ``read_checkpoint`` as ``fields["metadata"]``.
    """
    arrays = net._to_arrays()
    arrays.update({
        "extra.kind": np.array(KIND),
        "extra.epoch": np.array(epoch, dtype=np.int64),
        "extra.step": np.array(step, dtype=np.int64),
        "extra.optimizer": np.array(optimizer),
        "extra.optimizer_state": np.array(state, copy=True),
        "extra.rng_state": np.array(json.dumps(rng.bit_generator.state)),
        "extra.split_seed": np.array(split_seed, dtype=np.int64),
        "extra.history": np.array(json.dumps(history)),
        "extra.best_theta": np.array(best_theta, copy=True),
        "extra.best": np.array(best, dtype=np.float64),
        "extra.metadata": np.array(_metadata_json(metadata)),
    })
    if partial is not None:
        arrays["extra.partial_epoch"] = np.array([partial.batches, partial.samples, partial.steps, partial.skipped,
                                                  partial.loss_sum, partial.correct, partial.weight_sum],
                                                 dtype=np.float64)
    return arrays


def save_checkpoint(path, net, *, metadata=None, **fields):
    """Write a checkpoint atomically (see the module docstring for the fields)."""
    io.save_arrays(path, checkpoint_arrays(net, metadata=metadata, **fields))


class _Bad(ValueError):
    """One malformed entry; read_checkpoint adds the file name."""


def _scalar(arrays, key, kinds):
    arr = arrays[key]
    if arr.shape != () or arr.dtype.kind not in kinds:
        what = "a string" if kinds == "U" else "an integer"
        raise _Bad(f"entry {key!r} must be {what}, got dtype {arr.dtype} of shape {arr.shape}")
    return arr[()]


def _int(arrays, key, minimum):
    value = int(_scalar(arrays, key, "iu"))
    if value < minimum:
        raise _Bad(f"entry {key!r} must be an integer >= {minimum}, got {value}")
    return value


def _json(arrays, key, kind):
    text = str(_scalar(arrays, key, "U"))
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise _Bad(f"entry {key!r} must be JSON text, got {text[:40]!r} ({exc})") from None
    if not isinstance(value, kind):
        raise _Bad(f"entry {key!r} must be a JSON object (a dict), got {type(value).__name__} {text[:40]!r}")
    return value


def _vector(arrays, key, n, dtype):
    arr = arrays[key]
    if arr.shape != (n,) or arr.dtype != dtype:
        raise _Bad(f"entry {key!r} must have shape ({n},) and dtype {dtype} (the network's parameters), got "
                   f"shape {arr.shape} and dtype {arr.dtype}")
    return arr


def _history(history, epoch):
    for name, values in history.items():
        if not isinstance(values, list):
            raise _Bad(f"entry 'extra.history' must map names to lists, got {type(values).__name__} for {name!r}")
        if len(values) != epoch:
            raise _Bad(f"entry 'extra.history' must hold one value per epoch ({epoch}), got {len(values)} "
                       f"for {name!r}")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or math.isinf(v):
                raise _Bad(f"entry 'extra.history' must hold finite numbers (or NaN), got {v!r} in {name!r}")
    return history


def _best(arrays, epoch):
    arr = arrays["extra.best"]
    if arr.shape != (3,) or arr.dtype != np.float64:
        raise _Bad(f"entry 'extra.best' must be 3 float64 values (best val_loss, its epoch, epochs since), got "
                   f"shape {arr.shape} and dtype {arr.dtype}")
    loss, best_epoch, wait = (float(v) for v in arr)
    for name, v in (("its epoch", best_epoch), ("epochs since", wait)):
        if not (math.isfinite(v) and v == int(v) and 0 <= v <= epoch):
            raise _Bad(f"entry 'extra.best' must hold {name} as an integer in [0, {epoch}], got {v!r}")
    if best_epoch + wait > epoch:
        raise _Bad(f"entry 'extra.best' must count at most {epoch} epochs (best epoch + epochs since), got "
                   f"{best_epoch:g} + {wait:g}")
    if math.isnan(loss) or loss == -math.inf or (best_epoch == 0) != (loss == math.inf):
        raise _Bad(f"entry 'extra.best' must hold a finite best val_loss from its epoch (or +inf with epoch 0), "
                   f"got {loss!r} at epoch {best_epoch:g}")
    return [loss, best_epoch, wait]


def _partial_epoch(arrays):
    """extra.partial_epoch as 7 floats, or None when absent (a checkpoint written between epochs)."""
    if "extra.partial_epoch" not in arrays:
        return None
    p = arrays["extra.partial_epoch"]
    if p.shape != (7,) or p.dtype != np.float64 or not np.isfinite(p).all() or (p[:4] < 0).any() \
            or (p[:4] != np.round(p[:4])).any() or p[0] < 1 or p[6] < 0:
        raise _Bad(f"entry 'extra.partial_epoch' must be 7 finite float64 numbers (batches >= 1, samples, steps, "
                   f"skipped: whole and >= 0; loss sum, correct count, weight sum >= 0), got {p.tolist()!r}")
    return [float(v) for v in p]


def _rng_state(arrays):
    state = _json(arrays, "extra.rng_state", dict)
    bit_generator = type(np.random.default_rng().bit_generator)()
    try:
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise _Bad(f"entry 'extra.rng_state' must be a {type(bit_generator).__name__} state, got one NumPy "
                   f"refuses ({type(exc).__name__}: {exc})") from None
    return state


def read_checkpoint(path):
    """Read and verify a checkpoint; return (arrays, fields) with fields decoded.

    fields: epoch, step, optimizer, state, rng_state, split_seed, history,
    best_theta, best, partial (None, or the 6 numbers of a mid-epoch
    checkpoint) and metadata (a dict; ``{}`` for checkpoints written
    without it).  Raises ValueError, naming the file, for a model file that is
    not a checkpoint, or one whose entries are missing or malformed (see the
    module docstring for what each must be).
    """
    arrays = io.load_arrays(path)
    kind = arrays.get("extra.kind")
    if kind is None or kind.shape != () or kind.dtype.kind != "U" or str(kind) != KIND:
        raise ValueError(f"{path} is a model file but not a training checkpoint (no optimizer state); "
                         "load it with MLP.load instead.")
    theta = arrays["theta"]
    n, dtype = theta.shape[0], theta.dtype
    try:
        missing = [k for k in FIELDS if k not in arrays]
        if missing:
            raise _Bad(f"missing entries {missing}")
        if str(arrays["dtype"]) != dtype.name:
            raise _Bad(f"entry 'theta' must have the dtype the file names ({arrays['dtype']}), got {dtype}")
        epoch = _int(arrays, "extra.epoch", 0)
        optimizer = str(_scalar(arrays, "extra.optimizer", "U"))
        if not optimizer:
            raise _Bad("entry 'extra.optimizer' must be an optimizer name, got ''")
        state = arrays["extra.optimizer_state"]
        if state.ndim != 2 or state.shape[1] != n or state.dtype != dtype:
            raise _Bad(f"entry 'extra.optimizer_state' must be 2-D with {n} columns (one per parameter) and "
                       f"dtype {dtype}, got shape {state.shape} and dtype {state.dtype}")
        if np.isnan(state).any():
            raise _Bad("entry 'extra.optimizer_state' must not hold NaN")
        best_theta = _vector(arrays, "extra.best_theta", n, dtype)
        if not np.isfinite(best_theta).all():
            raise _Bad("entry 'extra.best_theta' must be finite, got NaN or inf")
        fields = {
            "epoch": epoch,
            "step": _int(arrays, "extra.step", 0),
            "optimizer": optimizer,
            "state": state,
            "rng_state": _rng_state(arrays),
            "split_seed": _int(arrays, "extra.split_seed", -1),
            "history": _history(_json(arrays, "extra.history", dict), epoch),
            "best_theta": best_theta,
            "best": _best(arrays, epoch),
            "partial": _partial_epoch(arrays),
            "metadata": _json(arrays, "extra.metadata", dict) if "extra.metadata" in arrays else {},
        }
    except _Bad as exc:
        raise ValueError(f"{path} is a malformed checkpoint: {exc}.") from None
    return arrays, fields
