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
``extra.metadata``         str (JSON)   optional: the caller's description of the run
                                        (``fit(checkpoint_metadata=...)``; the CLI
                                        stores its options there)
=========================  ===========  ============================================

Resuming with ``MLP.fit(..., resume_from=path)`` and the same data and options
continues the run bit for bit: the result equals an uninterrupted run.
"""

import json

import numpy as np

from . import io

KIND = "checkpoint"


def checkpoint_arrays(net, *, epoch, step, optimizer, state, rng, split_seed, history, best_theta, best,
                      metadata=None):
    """The dict of arrays ``io.save_arrays`` writes for a checkpoint.

    metadata: a JSON-serialisable dict stored as ``extra.metadata`` (None: none).
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
    })
    if metadata is not None:
        arrays["extra.metadata"] = np.array(json.dumps(metadata))
    return arrays


def save_checkpoint(path, net, **fields):
    """Write a checkpoint atomically (see the module docstring for the fields)."""
    io.save_arrays(path, checkpoint_arrays(net, **fields))


def read_checkpoint(path):
    """Read and verify a checkpoint; return (arrays, fields) with fields decoded.

    Raises ValueError for a model file that is not a checkpoint, or one whose
    entries are malformed.
    """
    arrays = io.load_arrays(path)
    if "extra.kind" not in arrays or str(arrays["extra.kind"]) != KIND:
        raise ValueError(f"{path} is a model file but not a training checkpoint (no optimizer state); "
                         "load it with MLP.load instead.")
    try:
        fields = {
            "epoch": int(arrays["extra.epoch"]),
            "step": int(arrays["extra.step"]),
            "optimizer": str(arrays["extra.optimizer"]),
            "state": arrays["extra.optimizer_state"],
            "rng_state": json.loads(str(arrays["extra.rng_state"])),
            "split_seed": int(arrays["extra.split_seed"]),
            "history": json.loads(str(arrays["extra.history"])),
            "best_theta": arrays["extra.best_theta"],
            "best": [float(v) for v in arrays["extra.best"]],
            "metadata": json.loads(str(arrays["extra.metadata"])) if "extra.metadata" in arrays else {},
        }
        if not isinstance(fields["metadata"], dict):
            raise ValueError(f"extra.metadata must be a JSON object, got {type(fields['metadata']).__name__}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is a malformed checkpoint: {exc}") from None
    return arrays, fields
