"""The ``backprop-numba`` command line: train, sweep, evaluate and predict.

    backprop-numba train --dataset digits --hidden 32 --optimizer adam --epochs 30 --out runs/digits
    backprop-numba train --resume runs/digits/checkpoint.npz --epochs 50   # needs --checkpoint-every N
    backprop-numba evaluate --model runs/digits/model.npz --dataset digits  # its held-out test split
    backprop-numba predict --model runs/digits/model.npz --data new.csv --out predictions.csv
    backprop-numba sweep --config sweep.toml --out runs/sweep   # a [grid] of train's options on Dask (sweep.py)

(also ``python -m backprop_numba ...``).

``train`` writes into its ``--out`` folder: ``model.npz`` (the network plus the
preprocessing needed at predict time, see ``MODEL_EXTRAS``), ``metrics.json``
and ``loss.png``.  Options may come from a TOML file (``--config run.toml``,
keys named like the long options, at top level or under ``[train]``); the
command line overrides it.  Every user mistake ends with one line on stderr
and exit status 2 (bad arguments) or 1 (bad data, files, diverged training);
set ``BACKPROP_NUMBA_TRACEBACK=1`` to see the traceback instead.
"""

import argparse
import json
import os
import platform
import shlex
import signal
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np

from . import __version__, _compile, datasets, io, losses, optimizers, schedules
from ._validation import check_output_path
from .mlp import MLP, DivergenceError
from .training import TrainingInterrupted

# Entries the command line adds to a model file (io.py keeps every ``extra.*``
# entry under its checksum; MLP.load ignores them).  At predict time the
# network sees (X - x_offset) / x_scale, and for regression its output is
# mapped back as y = a * y_scale + y_offset.
MODEL_EXTRAS = ("extra.task", "extra.classes", "extra.feature_names", "extra.x_offset", "extra.x_scale",
                "extra.y_offset", "extra.y_scale", "extra.run")


class UsageError(ValueError):
    """A bad argument: exit status 2 (a ValueError to Python callers, e.g. of sweep.sweep)."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see --help)")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default (options without one, or a None default, say why in their help)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or isinstance(action, argparse._HelpAction):
            return action.help
        return super()._get_help_string(action)


# -- arguments ---------------------------------------------------------------

def _sizes(text, minimum_count=1):
    """Layer widths from "64,32,10" or a TOML list; every part a whole number >= 1, no empty part."""
    example = "64,32,10"
    if isinstance(text, (list, tuple)):
        parts = list(text)
    elif isinstance(text, str):
        parts = text.replace(" ", "").split(",")
    else:
        parts = [text]
    sizes = []
    for p in parts:
        if isinstance(p, bool) or not isinstance(p, (int, str)) or (isinstance(p, str) and not p.isdigit()):
            raise argparse.ArgumentTypeError(f"must be comma-separated whole numbers like {example}, got {text!r}")
        sizes.append(int(p))
    if len(sizes) < minimum_count or min(sizes) < 1:
        what = "at least 2 sizes" if minimum_count > 1 else "sizes"
        raise argparse.ArgumentTypeError(f"must be {what} >= 1 like {example}, got {text!r}")
    return sizes


def _layers(text):
    """--layers: all sizes (input first) or, when it does not start with the input size, hidden widths."""
    return _sizes(text)


def _hidden(text):
    """--hidden: hidden-layer widths only; the data fixes the input and output sizes."""
    return _sizes(text)


def _fraction(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _positive_int(text):
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def _nonneg_int(text):
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def _data_options(p, target_help="target column (CSV) or array (.npz) in --data", target_default="target"):
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", metavar="NAME", help=f"a dataset by name: {', '.join(sorted(datasets.NAMES))}")
    src.add_argument("--data", metavar="FILE", help="a .csv (header row) or .npz file")
    p.add_argument("--target", metavar="NAME", default=target_default, help=target_help)


SPLIT_HELP = ("auto: the held-out test split when the data is what the model was trained on (same --dataset, "
              "or the same --data file), else all rows; test: that test split (re-created from the seed and "
              "fraction stored in the model); all: every row")


def _train_arguments(t):
    """The options of `train` (its parser t)."""
    t.add_argument("--config", metavar="FILE", help="TOML file of options (the command line overrides it)")
    _data_options(t)
    t.add_argument("--task", choices=["auto", "classification", "regression"], default="auto",
                   help="for --data: integer/text targets are classes, other numbers regression")
    t.add_argument("--scale", choices=["auto", "standard", "none"], default="auto",
                   help="input scaling: auto (the named dataset's fixed divisor, e.g. 1/16 for digits, else "
                        "standard), standard (mean 0, std 1 from the training split), none")
    sizes = t.add_mutually_exclusive_group()
    sizes.add_argument("--hidden", type=_hidden, metavar="H1,H2,...",
                       help="hidden-layer widths, e.g. 32 or 64,32: the data fixes the input and output sizes")
    sizes.add_argument("--layers", type=_layers, metavar="N0,N1,...",
                       help="layer sizes, input to output, e.g. 64,32,10 (sizes that do not start with the "
                            "input size are read as --hidden)")
    t.add_argument("--activation", default="relu", help="hidden activation: sigmoid, tanh, relu, leaky_relu, identity")
    t.add_argument("--output-activation", default=None, help="default: what the loss needs")
    t.add_argument("--loss", default=None, help="sse, half_sse, mse, bce, cross_entropy, huber, mae, poisson (default: cross_entropy "
                                                "for classes, bce for 2 classes with 1 output, mse for regression)")
    t.add_argument("--optimizer", default="adam", help=f"{', '.join(optimizers.NAMES)} (default: adam)")
    lr_defaults = ", ".join(f"{cls.default_learning_rate:g} for {name}" for name, cls in optimizers.CLASSES.items())
    t.add_argument("--learning-rate", "--lr", type=float, default=None, help=f"default: {lr_defaults}")
    # Optimizer hyper-parameters: defaults and bounds are the optimizer classes' (optimizers.py).
    for key in sorted(optimizers.DEFAULTS):
        users = [name for name, cls in optimizers.CLASSES.items() if key in cls.PARAMS]
        t.add_argument("--" + key.replace("_", "-"), type=float, default=None,
                       help=f"{', '.join(users)} (default: {optimizers.DEFAULTS[key]:g})")
    t.add_argument("--schedule", default="cosine", choices=sorted(schedules.NAMES),
                   help="learning-rate schedule (cosine: from --learning-rate down to --eta-min)")
    t.add_argument("--step-size", type=_positive_int, default=10, help="step schedule: epochs per decay")
    t.add_argument("--gamma", type=float, default=None, help="step/exponential decay factor "
                                                             "(default: 0.1 / 0.95)")
    t.add_argument("--eta-min", type=float, default=0.0, help="cosine schedule: final learning rate")
    t.add_argument("--epochs", type=_positive_int, default=30, help="epochs in all (a resumed run counts its "
                                                                    "checkpoint's in)")
    t.add_argument("--batch-size", type=_positive_int, default=32, help="samples per optimizer step")
    t.add_argument("--seed", type=_nonneg_int, default=0, help="seeds weights, splits and shuffling")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                   help="the network's and the data's floating-point type")
    t.add_argument("--test-fraction", type=_fraction, default=0.2,
                   help="held-out test split (ignored when the dataset ships a test set)")
    t.add_argument("--validation-fraction", type=_fraction, default=0.1,
                   help="validation split of the training data (0: none)")
    t.add_argument("--dropout", type=float, default=0.0,
                   help="inverted dropout rate of the hidden layers while training, in [0, 1)")
    t.add_argument("--weight-column", metavar="NAME", default=None,
                   help="a column (CSV) or array (.npz) of --data holding one weight >= 0 per sample (not a "
                        "feature): a batch's loss is sum w_i C_i / sum w_i")
    t.add_argument("--class-weight", choices=["none", "balanced"], default="none",
                   help="balanced: weigh each class by n_samples / (n_classes * its count in the training rows), "
                        "multiplied into --weight-column")
    t.add_argument("--early-stopping", action=argparse.BooleanOptionalAction, default=False,
                   help="stop when val_loss stalls for --patience epochs; keep the best weights")
    t.add_argument("--patience", type=_positive_int, default=10,
                   help="early stopping: epochs without improvement before stopping")
    t.add_argument("--min-delta", type=float, default=0.0,
                   help="early stopping: the smallest drop of val_loss that counts as improvement")
    t.add_argument("--checkpoint-every", type=_positive_int, default=None,
                   help="write OUT/checkpoint.npz every N epochs (default: no checkpoints)")
    t.add_argument("--resume", metavar="CHECKPOINT", default=None,
                   help="continue from a checkpoint written with --checkpoint-every; every option that shapes "
                        "the run comes from it (a different value is refused); --epochs may grow")
    t.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: runs/<dataset>, or the checkpoint's with --resume)")
    t.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no summary")


def _positive_float(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {value}")
    return value


def _sweep_arguments(s):
    """The options of `sweep` (its parser s); the trials' options come from the --config file."""
    s.add_argument("--config", required=True, metavar="FILE",
                   help="TOML file: [train] the options every trial shares, [grid] a list of values per option "
                        "to vary (both named like train's long options)")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder (must not hold a sweep already)")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, metavar="N", default=None,
                       help="worker processes of the LocalCluster, one thread each (default: one per trial, at "
                            "most one per core)")
    where.add_argument("--scheduler", metavar="ADDRESS", default=None,
                       help="run on the Dask scheduler at ADDRESS (e.g. tcp://HOST:8786) instead of a LocalCluster")
    s.add_argument("--connect-timeout", type=_positive_float, metavar="SECONDS", default=10.0,
                   help="how long to wait for --scheduler")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress, no summary")


def build_parser():
    parser = _Parser(prog="backprop-numba",
                     description="Train, evaluate and apply fully-connected networks (backprop_numba).")
    parser.add_argument("--version", action="version", version=f"backprop_numba {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,sweep,evaluate,predict,export}", parser_class=_Parser)

    t = sub.add_parser("train", help="train a network, write model.npz, metrics.json, loss.png",
                       description="Train a network on a dataset; write model.npz, metrics.json and loss.png "
                                   "into --out.  Options may also come from --config FILE.toml.")
    _train_arguments(t)
    s = sub.add_parser("sweep", help="train every point of a grid of options on a Dask cluster",
                       description="Train the cartesian product of a [grid] of options (each a list of values) "
                                   "over fixed [train] options, one trial per Dask task; write DIR/results.csv, "
                                   "DIR/best/, DIR/sweep.png and DIR/trials/NNN/ (needs: pip install "
                                   "'backprop_numba[dask]').")
    _sweep_arguments(s)
    e = sub.add_parser("evaluate", help="metrics of a model on data (JSON on stdout)",
                       description="Loss, accuracy and confusion matrix of a saved model on a dataset or file.")
    e.add_argument("--model", required=True, metavar="FILE")
    _data_options(e, target_default=None,
                  target_help="target column (CSV) or array (.npz) in --data (default: the model's)")
    e.add_argument("--split", choices=["auto", "test", "all"], default="auto", help=SPLIT_HELP)
    e.add_argument("--out", metavar="FILE", help="also write the metrics JSON here")

    pr = sub.add_parser("predict", help="predictions of a model as CSV or .npy",
                        description="Predictions of a saved model; a target column in the data is ignored.")
    pr.add_argument("--model", required=True, metavar="FILE")
    _data_options(pr, target_default=None,
                  target_help="the target column (CSV) or array (.npz) to ignore in --data (default: the model's)")
    pr.add_argument("--split", choices=["auto", "test", "all"], default="auto", help=SPLIT_HELP)
    pr.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
    pr.add_argument("--out", metavar="FILE", help=".csv or .npy (default: CSV on stdout)")
    x = sub.add_parser("export", help="write a trained model as ONNX (served without this library)",
                       description="The network of a model file as an ONNX graph, with the input scaling, class "
                                   "labels or target scaling that predict applies (needs: pip install onnx).")
    x.add_argument("model", metavar="MODEL", help="a model.npz written by train (or by MLP.save)")
    x.add_argument("--onnx", required=True, metavar="OUT", help="the .onnx file to write")
    parser.train_parser = t
    return parser


def _toml_kind(action):
    """What a TOML value for this option must be, in words."""
    if action.type in (_positive_int, _nonneg_int):
        return "an integer"
    if action.type is not None:
        return "a number"
    return "a string"


def _read_toml(path):
    """The TOML file at path as a dict (its options are checked by _config_values)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise UsageError("--config needs Python >= 3.11 or: pip install tomli") from None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None


def _option_names(train):
    """train's options by each name a config may give them: the dest and every long option without its
    dashes (learning_rate, learning-rate, lr), so a config file takes what the command line takes."""
    names = {}
    for action in train._actions:
        if action.dest in ("config", "help"):
            continue
        names[action.dest] = action
        for option in action.option_strings:
            if option.startswith("--") and not option.startswith("--no-"):  # --no-X is X = false
                names[option[2:].replace("-", "_")] = action
    return names


def _config_values(train, config, where):
    """{dest: value} of a config's {key: value}, each value checked and converted as the command line
    would; an unknown key, or two keys for one option, is refused (where: the file, for the message)."""
    names = _option_names(train)
    values, given_as = {}, {}
    for key, value in config.items():
        action = names.get(key.replace("-", "_"))
        if action is None:
            options = sorted({o[2:] for a in names.values() for o in a.option_strings
                              if o.startswith("--") and not o.startswith("--no-")})
            raise UsageError(f"{where}: unknown option {key!r}; options are the long names of "
                             f"`backprop-numba train --help`: {', '.join(options)}")
        if action.dest in given_as:
            raise UsageError(f"{where}: {given_as[action.dest]!r} and {key!r} are the same option; give one")
        given_as[action.dest] = key
        values[action.dest] = _config_value(action, key, value, where)
    return values


def _config_value(action, key, value, where):
    """One config value for action, checked and converted (TOML already has lists, numbers and booleans)."""
    flag = isinstance(action, argparse.BooleanOptionalAction) or action.const is True
    try:
        if action.dest == "layers":
            value = _layers(value)
        elif isinstance(value, bool) and not flag:
            raise argparse.ArgumentTypeError(f"must be {_toml_kind(action)}, got {value!r}")
        elif action.type in (_positive_int, _nonneg_int) and isinstance(value, float):
            # TOML has integers: 3.9 is not silently truncated to 3 (the command line refuses it too)
            raise argparse.ArgumentTypeError(f"must be an integer, got {value!r}")
        elif action.type is not None and not isinstance(value, bool):
            value = action.type(value)
        elif action.type is None and not flag and action.nargs is None and not isinstance(value, str):
            raise argparse.ArgumentTypeError(f"must be a string, got {value!r}")
        if action.choices is not None and value not in action.choices:
            raise argparse.ArgumentTypeError(f"must be one of {sorted(action.choices)}, got {value!r}")
        if flag and not isinstance(value, bool):
            raise argparse.ArgumentTypeError(f"must be true or false, got {value!r}")
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        raise UsageError(f"{where}: option {key!r} {exc}") from None
    return value


def _config_defaults(train, path):
    """Set train's defaults from a TOML file (options at top level or under [train]); returns them by dest."""
    config = _read_toml(path)
    if isinstance(config.get("train"), dict):
        config = {**{k: v for k, v in config.items() if k != "train"}, **config["train"]}
    defaults = _config_values(train, config, path)
    train.set_defaults(**defaults)
    return defaults


# -- data and preprocessing ----------------------------------------------------

def _load_data(args):
    if args.dataset is None and args.data is None:
        raise UsageError("give the data with --dataset NAME or --data FILE")
    if args.dataset is not None:
        return datasets.load(args.dataset, dtype=np.dtype(getattr(args, "dtype", "float64")).type)
    return datasets.load_file(args.data, target=args.target, task=getattr(args, "task", "auto"),
                              weight=getattr(args, "weight_column", None))


def _stratified_split(y, fraction, rng, classify):
    """Indices (keep, held_out): held_out ~ fraction of the samples, per class when classifying."""
    n = len(y)
    if fraction <= 0:
        return np.arange(n), np.arange(0)
    held = []
    groups = [np.flatnonzero(y == c) for c in np.unique(y)] if classify else [np.arange(n)]
    for idx in groups:
        idx = rng.permutation(idx)
        held.append(idx[:int(round(fraction * len(idx)))])
    held = np.sort(np.concatenate(held))
    keep = np.setdiff1d(np.arange(n), held)
    if len(held) == 0 or len(keep) == 0:
        raise ValueError(f"a split of {n} samples with fraction {fraction} leaves one side empty; "
                         "use more data or another fraction")
    return keep, held


def _splits(data, test_fraction, seed):
    """(train indices, test indices) of data.X, or data's own test set when it has one."""
    classify = data.task == "classification"
    if data.X_test is not None:
        return np.arange(len(data.X)), None
    return _stratified_split(data.y, test_fraction, np.random.default_rng(seed), classify)


def _model_arrays(net, data, x_offset, x_scale, y_offset, y_scale, run):
    arrays = net._to_arrays()
    arrays.update({
        "extra.task": np.array(data.task),
        "extra.classes": np.array(list(data.classes), dtype=str),
        "extra.feature_names": np.array(list(data.feature_names), dtype=str),
        "extra.x_offset": np.asarray(x_offset, dtype=np.float64),
        "extra.x_scale": np.asarray(x_scale, dtype=np.float64),
        "extra.y_offset": np.asarray(y_offset, dtype=np.float64),
        "extra.y_scale": np.asarray(y_scale, dtype=np.float64),
        "extra.run": np.array(json.dumps(run)),
    })
    return arrays


class Model:
    """A model file written by ``train``: the network and its preprocessing."""

    def __init__(self, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model file not found: {path}")
        arrays = io.load_arrays(path)
        self.net = MLP._from_arrays(arrays, path)
        n_in, n_out = self.net.layer_sizes[0], self.net.layer_sizes[-1]
        if "extra.x_offset" in arrays:
            self.task = str(arrays["extra.task"])
            self.classes = [str(c) for c in arrays["extra.classes"]]
            self.feature_names = [str(c) for c in arrays["extra.feature_names"]]
            self.x_offset, self.x_scale = arrays["extra.x_offset"], arrays["extra.x_scale"]
            self.y_offset, self.y_scale = arrays["extra.y_offset"], arrays["extra.y_scale"]
            self.run = json.loads(str(arrays["extra.run"]))
        else:  # a plain MLP.save file: no preprocessing
            self.task = "classification" if self.net.loss in losses.CLASSIFICATION else "regression"
            self.classes = ([str(c) for c in range(max(n_out, 2))] if self.task == "classification" else [])
            self.feature_names = []
            self.x_offset, self.x_scale = np.zeros(n_in), np.ones(n_in)
            self.y_offset, self.y_scale = np.zeros(n_out), np.ones(n_out)
            self.run = {}

    def features(self, data, source):
        """data.X in the model's feature order, checked against the model's input size.

        When both the model and the data name their features from a CSV header,
        columns are matched by name (any order; extra columns are ignored; a
        missing one is an error naming it).  Otherwise (.npz files, named
        datasets, plain ``MLP.save`` models) they are taken in order.
        """
        X = data.X
        n_in = self.net.layer_sizes[0]
        names = list(data.feature_names)
        trained_on_csv = str(self.run.get("data") or "").endswith((".csv", ".txt"))
        if self.feature_names and trained_on_csv and getattr(data, "named_features", False):
            missing = [n for n in self.feature_names if n not in names]
            if missing:
                raise ValueError(f"{source} must have the model's feature columns (matched by name), but it lacks "
                                 f"{missing[:10]}{' ...' if len(missing) > 10 else ''}; its columns are {names[:20]}")
            if names != self.feature_names:
                X = X[:, [names.index(n) for n in self.feature_names]]
        if X.shape[1] != n_in:
            raise ValueError(f"{source} has {X.shape[1]} features but the model expects {n_in}"
                             + (f" ({', '.join(self.feature_names[:5])}, ...)" if self.feature_names else ""))
        return (X - self.x_offset) / self.x_scale

    def targets(self, data, source):
        """data.y as class indices of this model, or scaled regression targets."""
        if data.task != self.task and not (data.task == "classification" and self.task == "regression"):
            raise ValueError(f"{source} holds {data.task} targets but the model does {self.task}")
        if self.task == "classification":
            if data.classes != self.classes:
                lookup = {c: i for i, c in enumerate(self.classes)}
                unknown = sorted(set(data.classes) - set(lookup))
                if unknown:
                    raise ValueError(f"{source} has classes the model does not know: {unknown[:10]}")
                return np.array([lookup[data.classes[i]] for i in data.y], dtype=np.int64)
            return data.y
        y = data.y.astype(np.float64).reshape(len(data.y), -1)
        if y.shape[1] != self.net.layer_sizes[-1]:
            raise ValueError(f"{source} has {y.shape[1]} target columns but the model has "
                             f"{self.net.layer_sizes[-1]} outputs")
        return (y - self.y_offset) / self.y_scale


# -- metrics and plot -------------------------------------------------------------

def _net_targets(net, y, task):
    """Targets in the form the network's loss takes."""
    if task == "classification" and net.loss == "bce" and net.layer_sizes[-1] == 1:
        return y.astype(np.float64)
    if task == "classification" and net.loss != "cross_entropy":
        return np.eye(net.layer_sizes[-1])[y]
    return y


def _metrics(net, X, y, task, classes, y_scale=None):
    out = net.predict(X)
    result = {"n_samples": int(len(X)), "loss": net.loss_value(X, _net_targets(net, y, task))}
    if task == "classification":
        pred = (out[:, 0] > 0.5).astype(np.int64) if out.shape[1] == 1 else np.argmax(out, axis=1)
        k = len(classes)
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (y, pred), 1)
        result["accuracy"] = float(np.mean(pred == y))
        result["classes"] = list(classes)
        result["confusion_matrix"] = cm.tolist()  # rows: true class, columns: predicted class
    else:
        err = (out - y.reshape(out.shape)) * (1.0 if y_scale is None else np.asarray(y_scale))
        result["mse"] = float(np.mean(err ** 2))
        result["mae"] = float(np.mean(np.abs(err)))
    return result


def _plot(history, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    panels = 2 if "accuracy" in history else 1
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.2), dpi=100, squeeze=False)
    ax = axes[0, 0]
    ax.plot(epochs, history["loss"], label="train")
    if "val_loss" in history:
        ax.plot(epochs, history["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    if panels == 2:
        ax = axes[0, 1]
        ax.plot(epochs, history["accuracy"], label="train")
        if "val_accuracy" in history:
            ax.plot(epochs, history["val_accuracy"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- commands ---------------------------------------------------------------------

def _check_out_dir(out, checkpoint=False):
    """Refuse an output folder train could not write into, before anything is trained."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out must be a folder (train writes model.npz, metrics.json and loss.png into it), "
                         f"got {out!r}, which is an existing file")
    existing = os.path.abspath(out)
    while not os.path.exists(existing):  # the folder train would create under
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(f"--out must be a folder that can be created, got {out!r}, but {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"--out must be a writable folder, got {out!r} ({existing} is not writable)")
    if os.path.isdir(out):
        for name in ("model.npz", "metrics.json", "loss.png") + (("checkpoint.npz",) if checkpoint else ()):
            check_output_path("--out", os.path.join(out, name))


# Options that shape a training run.  A checkpoint records them (``extra.metadata``,
# see ``_run_metadata``); ``train --resume`` takes them from it and refuses a
# different value given on the command line or in --config.
SHAPING = ("dataset", "data", "target", "task", "scale", "layers", "activation", "output_activation", "loss",
           "optimizer", "learning_rate", "schedule", "step_size", "gamma", "eta_min", "batch_size", "seed",
           "dtype", "test_fraction", "validation_fraction", "early_stopping", "patience", "min_delta",
           "weight_column", "class_weight", "dropout") + \
    tuple(sorted(set(optimizers.DEFAULTS) | {"weight_decay"}))  # every optimizer hyper-parameter option
# Taken from the checkpoint when not given, but free to change.
CARRIED = ("epochs", "checkpoint_every", "out")
# Integer targets with more distinct values than this are not taken for classes
# without --task: a numeric target of whole numbers (151.0, 75.0, ...) is a
# regression target far more often than a 200-class problem.
MAX_AUTO_CLASSES = 20


def _option(dest):
    return "--" + dest.replace("_", "-")


def _resolve_sizes(args, data):
    """Full layer sizes from --hidden, or --layers (all sizes, or hidden widths when not starting with n_in)."""
    n_in, n_out = data.n_features, data.n_outputs
    classify = data.task == "classification"
    if args.hidden is None and args.layers is None:
        raise UsageError(f"give the hidden-layer widths with --hidden, e.g. --hidden 32 (for {data.name}: "
                         f"{n_in} inputs, {n_out} outputs), or every size with --layers {n_in},32,{n_out}")
    if args.hidden is not None:
        return [n_in, *args.hidden, n_out]
    sizes = list(args.layers)
    if len(sizes) == 1 or sizes[0] != n_in:
        return [n_in, *sizes, n_out]  # hidden widths only
    binary_single = classify and n_out == 2 and sizes[-1] == 1
    if sizes[-1] != n_out and not binary_single:
        what = "classes" if classify else "target columns"
        raise UsageError(f"--layers must end with the number of {what} of {data.name} ({n_out}), got "
                         f"{sizes[-1]} (or give only the hidden widths: --hidden {','.join(map(str, sizes[1:]))})")
    return sizes


def _same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _show(value):
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return "unset" if value is None else str(value)


def _apply_checkpoint_options(args, explicit):
    """Take the options of the run that wrote args.resume; refuse explicit ones that differ.

    Returns (fields of the checkpoint, its recorded options or None for a
    checkpoint without them, the notes to print).
    """
    from . import checkpoint
    path = args.resume
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    _, fields = checkpoint.read_checkpoint(path)
    saved = fields["metadata"].get("cli_options") if fields["metadata"] else None
    done = fields["epoch"]
    notes = []
    if saved is None:
        notes.append(f"{path} does not record the options of its run (written by MLP.fit or an older "
                     "version): the options given now are assumed to be the same")
        if "epochs" in explicit and args.epochs < done:
            raise UsageError(f"--epochs {args.epochs} is fewer than the {done} epochs {path} has already done")
        return fields, None, notes

    def conflict(option, given, recorded):
        raise UsageError(f"{option} {_show(given)} conflicts with the checkpoint's {recorded} ({path}): a "
                         "resumed run keeps every option that shapes it; leave the option out, or start a new "
                         "run without --resume")

    # The data source: --dataset or --data (a file compared by its real path), and the target.
    if "dataset" in explicit or "data" in explicit:
        given = ("--dataset", args.dataset) if args.dataset is not None else ("--data", os.path.realpath(args.data))
        recorded = ("--dataset", saved["dataset"]) if saved.get("dataset") is not None else \
            ("--data", saved.get("data_path"))
        if given != recorded:
            conflict(given[0], args.dataset or args.data,
                     f"{recorded[0]} {saved.get('dataset') or saved.get('data')}")
    args.dataset, args.data = saved.get("dataset"), saved.get("data_path") or saved.get("data")
    if args.data is not None and not os.path.isfile(args.data) and saved.get("data") and \
            os.path.isfile(saved["data"]):
        args.data = saved["data"]
    for dest in SHAPING:
        if dest in ("dataset", "data") or dest not in saved:
            continue
        if dest == "layers":
            if "layers" in explicit or "hidden" in explicit:
                continue  # compared once the data fixes the input and output sizes (cmd_train)
            args.layers, args.hidden = saved["layers"], None
            continue
        recorded = saved[dest]
        if recorded is None and dest in optimizers.DEFAULTS:  # an optimizer option left at its default
            recorded = optimizers.DEFAULTS[dest]
        if dest in explicit and not _same(getattr(args, dest), recorded):
            conflict(_option(dest), getattr(args, dest), f"{_option(dest)} {_show(recorded)}")
        setattr(args, dest, saved[dest])
    for dest in ("checkpoint_every", "out"):
        if dest not in explicit and saved.get(dest) is not None:
            setattr(args, dest, saved[dest])
    total = saved.get("epochs", done)
    if "epochs" not in explicit:
        args.epochs = max(total, done)
    elif args.epochs < done:
        raise UsageError(f"--epochs {args.epochs} is fewer than the {done} epochs {path} has already done; "
                         f"give --epochs {done} or more (the run was started with --epochs {total})")
    elif args.epochs != total:
        note = f"--epochs {args.epochs} instead of the {total} the run was started with"
        if args.schedule != "constant":
            note += f" (the {args.schedule} learning-rate schedule spans {args.epochs} epochs from epoch {done + 1} on)"
        notes.append(note)
    return fields, saved, notes


def _sample_weights(args, data, y, fit_idx, classify):
    """One weight per row of the data (None: unweighted): --weight-column times the --class-weight factors
    (balanced: n / (n_classes * count) over the training rows, scikit-learn's "balanced")."""
    if args.weight_column is not None and args.dataset is not None:
        raise UsageError("--weight-column needs --data FILE (the named datasets have no weight column)")
    weights = None if data.sample_weight is None else np.asarray(data.sample_weight, dtype=np.float64)
    if args.class_weight == "balanced":
        if not classify:
            raise UsageError("--class-weight balanced needs classification targets, got a regression target")
        counts = np.bincount(y[fit_idx], minlength=len(data.classes)).astype(np.float64)
        present = counts > 0
        factor = np.zeros(len(counts))
        factor[present] = len(fit_idx) / (present.sum() * counts[present])
        weights = factor[y] if weights is None else weights * factor[y]
    return weights


def _take_rows_in_place(X, rows, chunk=4096):
    """X[rows] as the view X[:len(rows)], moving the rows to the front of X a chunk at a time.

    For strictly increasing rows (rows[i] >= i), a chunk's source rows lie at or
    after its destination and after every row written before it, so nothing is
    read after being overwritten; the extra memory is one chunk, not a copy of X.
    X must be the caller's own array (its other rows are lost).
    """
    rows = np.asarray(rows)
    if len(rows) and (rows[0] < 0 or np.any(np.diff(rows) <= 0)):
        return X[rows]  # not sorted: an ordinary copy
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        if part[0] != i or part[-1] != i + len(part) - 1:  # rows already in place need no copy
            X[i:i + len(part)] = X[part]
    return X[:len(rows)]


def _column_stats(X, rows, chunk=8192):
    """Mean and standard deviation of X[rows] per column, in float64, a chunk of rows at a time (no full copy)."""
    n, total = len(rows), np.zeros(X.shape[1])
    for i in range(0, n, chunk):
        total += X[rows[i:i + chunk]].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(X.shape[1])
    for i in range(0, n, chunk):
        block = X[rows[i:i + chunk]].astype(np.float64)
        block -= mean
        squares += np.einsum("ij,ij->j", block, block)
    return mean, np.sqrt(squares / n)


def cmd_train(args, explicit=frozenset()):
    """train: resolve the options (and a resume), prepare the data, compile, fit, write the outputs."""
    _train_run(args, explicit)
    return 0


def _train_run(args, explicit=frozenset()):
    """The steps of train; returns the run (its data, splits, network, history) for a sweep's trial."""
    r = _train_options(args, explicit)
    _train_data(args, r)
    _train_fit(args, r)
    _train_outputs(args, r)
    return r


def _train_options(args, explicit):
    """The run's options, from the command line, --config and a checkpoint (--resume), checked."""
    r = SimpleNamespace(resumed=None, saved=None, notes=[])
    if args.resume:
        r.resumed, r.saved, r.notes = _apply_checkpoint_options(args, explicit)
    r.data = data = _load_data(args)
    r.classify = classify = data.task == "classification"
    if classify and getattr(args, "task", "auto") == "auto" and len(data.classes) > MAX_AUTO_CLASSES and \
            all(c.lstrip("-").isdigit() for c in data.classes):
        raise UsageError(f"{data.name}: target {args.target!r} holds {len(data.classes)} different whole numbers "
                         f"({', '.join(data.classes[:3])}, ...), which would be {len(data.classes)} classes; give "
                         "--task regression for a numeric target (or --task classification to keep the classes)")
    r.sizes = sizes = _resolve_sizes(args, data)
    if r.saved is not None and not _same(sizes, r.saved["layers"]):
        given = "--hidden" if args.hidden is not None else "--layers"
        raise UsageError(f"{given} {_show(args.hidden or args.layers)} (layers {_show(sizes)}) conflicts with the "
                         f"checkpoint's --layers {_show(r.saved['layers'])} ({args.resume}): a resumed run keeps "
                         "every option that shapes it; leave the option out, or start a new run without --resume")
    binary_single = classify and data.n_outputs == 2 and sizes[-1] == 1
    r.loss = args.loss or ("bce" if binary_single else "cross_entropy" if classify else "mse")
    if r.loss not in losses.CODES:
        raise UsageError(f"--loss must be one of {sorted(losses.CODES)}, got {r.loss!r}")
    if args.optimizer not in optimizers.CLASSES:
        raise UsageError(f"--optimizer must be one of {optimizers.NAMES}, got {args.optimizer!r}")
    # The optimizer object carries its own hyper-parameters (optimizers.py states their defaults).
    r.optimizer = optimizers.get_optimizer(args.optimizer, {k: getattr(args, k) for k in optimizers.DEFAULTS
                                                            if getattr(args, k) is not None})
    r.lr = args.learning_rate if args.learning_rate is not None else r.optimizer.default_learning_rate
    sched_opts = {"step": {"step_size": args.step_size, "gamma": 0.1 if args.gamma is None else args.gamma},
                  "exponential": {"gamma": 0.95 if args.gamma is None else args.gamma},
                  "cosine": {"eta_min": args.eta_min}}.get(args.schedule, {})
    r.schedule = schedules.get_schedule(args.schedule, **sched_opts)
    r.out = args.out or os.path.join("runs", args.dataset or os.path.splitext(os.path.basename(args.data))[0])
    _check_out_dir(r.out, checkpoint=bool(args.checkpoint_every))
    r.dtype = np.dtype(args.dtype)
    return r


def _train_data(args, r):
    """Splits (test, stratified and seeded, then validation), scaling fitted on the training rows, the network,
    weights; the data in the run's dtype, each part copied once and scaled in place."""
    data, classify, dtype = r.data, r.classify, r.dtype
    train_idx, test_idx = _splits(data, args.test_fraction, args.seed)
    rng = np.random.default_rng([args.seed, 1])
    keep, val = _stratified_split(data.y[train_idx], args.validation_fraction, rng, classify)
    r.fit_idx, r.val_idx = fit_idx, val_idx = train_idx[keep], train_idx[val]
    if args.early_stopping and len(val_idx) == 0:
        raise UsageError("--early-stopping needs a validation split: --validation-fraction > 0")
    n_features = data.n_features
    X, y = np.ascontiguousarray(data.X, dtype=dtype), data.y  # C order: row blocks are contiguous
    data.X = None  # the loader's float64 copy goes once nothing else holds it
    if args.scale == "none":
        r.x_offset, r.x_scale = np.zeros(n_features), np.ones(n_features)
    elif args.scale == "auto" and data.x_scale is not None:
        r.x_offset, r.x_scale = np.zeros(n_features), np.full(n_features, data.x_scale)
    else:
        r.x_offset, r.x_scale = _column_stats(X, fit_idx)
        r.x_scale[r.x_scale == 0] = 1.0
    r.y_offset, r.y_scale = np.zeros(r.sizes[-1]), np.ones(r.sizes[-1])
    if not classify:
        Y2 = y.reshape(len(y), -1)
        r.y_offset, r.y_scale = Y2[fit_idx].mean(axis=0), Y2[fit_idx].std(axis=0)
        r.y_scale[r.y_scale == 0] = 1.0
    offset, scale = r.x_offset.astype(dtype), r.x_scale.astype(dtype)

    def prep(Xs, ys):
        """(Xs - x_offset) / x_scale in place (Xs is a fresh copy), targets scaled for regression."""
        Xs -= offset
        Xs /= scale
        return (Xs, ys) if classify else (Xs, (ys.reshape(len(ys), -1) - r.y_offset) / r.y_scale)

    if data.X_test is not None:
        r.X_test, y_test = np.ascontiguousarray(data.X_test, dtype=dtype), data.y_test  # ours: scaled in place
        data.X_test = None
    else:
        r.X_test, y_test = X[test_idx], y[test_idx]
    r.Xt, r.yt = prep(r.X_test, y_test)
    r.net = MLP(r.sizes, activation=args.activation, output_activation=args.output_activation, loss=r.loss,
                seed=args.seed, dtype=dtype.type, dropout=args.dropout)
    weights = _sample_weights(args, data, y, fit_idx, classify)
    r.validation = None
    if len(val_idx):
        Xv, yv = prep(X[val_idx], y[val_idx])
        r.validation = (Xv, _net_targets(r.net, yv, data.task), None if weights is None else weights[val_idx])
    # The training rows move to the front of X, in order (no second copy of the largest part).
    r.Xf, yf = prep(_take_rows_in_place(X, fit_idx), y[fit_idx])
    r.yf = _net_targets(r.net, yf, data.task)
    r.fit_options = dict(batch_size=args.batch_size, learning_rate=r.lr, optimizer=r.optimizer, seed=args.seed,
                         lr_schedule=r.schedule, sample_weight=None if weights is None else weights[fit_idx])


def _train_fit(args, r):
    """Compile before the clock (reported apart as compile_time_s), then fit with checkpoints and resume."""
    checkpoint_path = os.path.join(r.out, "checkpoint.npz")
    if args.checkpoint_every:
        os.makedirs(r.out, exist_ok=True)

    def one_step():  # every kernel the run needs, on a throwaway copy of the network, arrays of the same types
        m = min(len(r.Xf), args.batch_size)
        twin = MLP(r.sizes, activation=args.activation, output_activation=args.output_activation, loss=r.loss,
                   seed=args.seed, dtype=r.dtype.type, dropout=args.dropout)
        twin.fit(r.Xf[:m], r.yf[:m], epochs=1, progress=False,
                 validation_data=None if r.validation is None else (r.validation[0][:m], r.validation[1][:m]),
                 **dict(r.fit_options, sample_weight=None))
        twin.predict(r.Xf[:m])
        twin.loss_value(r.Xf[:m], r.yf[:m])

    r.compile_seconds, r.compiled = _compile.warm_up(one_step, r.dtype)
    r.run = {"dataset": args.dataset, "data": args.data, "target": args.target, "seed": args.seed,
             "test_fraction": args.test_fraction, "task": r.data.task,
             "data_path": os.path.realpath(args.data) if args.data else None}
    metadata = {"cli_options": {**{d: getattr(args, d) for d in SHAPING + CARRIED if d != "layers"},
                                "layers": r.sizes, "loss": r.loss, "learning_rate": r.lr, "out": r.out,
                                "data_path": r.run["data_path"]},
                "backprop_numba_version": __version__}
    if r.resumed is not None and not args.quiet:
        for note in r.notes:
            print(f"backprop-numba: note: {note}", file=sys.stderr)
        print(f"backprop-numba: resuming from {args.resume}: epoch {r.resumed['epoch']} done, training to "
              f"epoch {args.epochs}", file=sys.stderr)
    started = time.perf_counter()
    r.history = r.net.fit(
        r.Xf, r.yf, epochs=args.epochs, validation_data=r.validation, progress=False if args.quiet else None,
        early_stopping=args.early_stopping, patience=args.patience, min_delta=args.min_delta,
        checkpoint_every=args.checkpoint_every, checkpoint_path=checkpoint_path if args.checkpoint_every else None,
        resume_from=args.resume, checkpoint_metadata=metadata, **r.fit_options)
    r.wall = time.perf_counter() - started


def _train_outputs(args, r):
    """model.npz, metrics.json, loss.png and the summary lines."""
    history, data, classify = r.history, r.data, r.classify
    epochs_run = len(history["loss"])
    first_epoch = r.resumed["epoch"] + 1 if r.resumed is not None else 1
    fit_seconds = float(np.sum(history["seconds"][first_epoch - 1:]))
    epochs_now = epochs_run - (first_epoch - 1)
    test = _metrics(r.net, r.Xt, r.yt, data.task, data.classes, y_scale=None if classify else r.y_scale) \
        if len(r.X_test) else None
    config = {k: v for k, v in vars(args).items() if k not in ("command",)}
    config.update({"layers": r.sizes, "loss": r.loss, "learning_rate": r.lr, "out": r.out,
                   "optimizer": r.optimizer.name, "optimizer_params": r.optimizer.params(),
                   "schedule_options": r.schedule.params()})
    model_path = os.path.join(r.out, "model.npz")
    os.makedirs(r.out, exist_ok=True)
    io.save_arrays(model_path, _model_arrays(r.net, data, r.x_offset, r.x_scale, r.y_offset, r.y_scale, r.run))
    per_epoch = {"epoch": list(range(1, epochs_run + 1))}
    per_epoch.update({k: v for k, v in history.items() if isinstance(v, list)})
    metrics = {
        "backprop_numba_version": __version__, "python": platform.python_version(), "dataset": data.name,
        "task": data.task, "classes": list(data.classes),
        "n_train": int(len(r.fit_idx)), "n_validation": int(len(r.val_idx)), "n_test": int(len(r.X_test)),
        "config": config, "epochs_run": epochs_run,
        "resumed_from": None if r.resumed is None else {"file": args.resume, "epoch": r.resumed["epoch"]},
        "best_epoch": history.get("best_epoch"), "stopped_epoch": history.get("stopped_epoch"),
        "history": per_epoch, "test": test,
        "compile_time_s": r.compile_seconds, "wall_time_s": r.wall, "train_time_s": fit_seconds,
        "samples_per_s": len(r.fit_idx) * epochs_now / fit_seconds if fit_seconds > 0 else None,
        "files": {"model": model_path, "metrics": os.path.join(r.out, "metrics.json"),
                  "loss_curve": os.path.join(r.out, "loss.png")},
    }
    with open(os.path.join(r.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2, allow_nan=True)
    try:
        title = f"{data.name}: {'-'.join(map(str, r.sizes))}, {r.optimizer.name}, lr {r.lr:g} ({r.schedule.name})"
        if test is not None and "accuracy" in test:
            title += f", test accuracy {100 * test['accuracy']:.1f}%"
        _plot(history, os.path.join(r.out, "loss.png"), title)
    except ImportError:
        metrics["files"]["loss_curve"] = None
        print("backprop-numba: note: matplotlib is not installed, no loss.png "
              "(pip install 'backprop_numba[train]')", file=sys.stderr)
    if not args.quiet:
        last = {k: history[k][-1] for k in ("loss", "val_loss", "val_accuracy") if k in history}
        what = f"{epochs_now} epochs" if r.resumed is None else f"{epochs_now} more epochs ({epochs_run} in all)"
        speed = f"{metrics['samples_per_s']:.0f} samples/s" if metrics["samples_per_s"] else "nothing to train"
        if r.compiled:
            speed += f"; kernels compiled first in {r.compile_seconds:.1f} s"
        print(f"trained {data.name} {'-'.join(map(str, r.sizes))} for {what} in {r.wall:.2f} s ({speed}): "
              + ", ".join(f"{k} {v:.4f}" for k, v in last.items()))
        if test is not None:
            shown = {k: test[k] for k in ("loss", "accuracy", "mse", "mae") if k in test}
            print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()) + f" ({len(r.X_test)} samples)")
        print(f"wrote {model_path}, {metrics['files']['metrics']}, {metrics['files']['loss_curve']}")


def _model_and_data(args, need_target):
    model = Model(args.model)
    if args.dataset is None and args.data is None:
        raise UsageError("give the data with --dataset NAME or --data FILE")
    # The target column/array the model was trained on, unless --target names another.
    target = args.target or model.run.get("target") or "target"
    if args.dataset is not None:
        data = datasets.load(args.dataset)
    elif need_target:
        data = datasets.load_file(args.data, target=target, task=model.task)
    else:
        # The model's own target column, if the file has it, is read apart (and ignored).
        data = datasets.load_file(args.data, target=target, task="auto", target_optional=args.target is None)
    return model, data


def _resolve_split(args, model, data):
    """"test" or "all": --split auto is the test split when the data is the model's training data."""
    if args.split != "auto":
        return args.split
    run = model.run
    if not run or data.y is None:
        return "all"
    if args.dataset is not None:
        return "test" if args.dataset == run.get("dataset") else "all"
    trained_on = run.get("data_path") or (os.path.realpath(run["data"]) if run.get("data") else None)
    return "test" if trained_on is not None and os.path.realpath(args.data) == trained_on else "all"


def _select_split(args, model, data):
    """(split name, Dataset restricted to that split)."""
    from dataclasses import replace
    split = _resolve_split(args, model, data)
    if split == "all":
        return split, data
    run = model.run
    if not run:
        raise UsageError("--split test needs a model written by `backprop-numba train`")
    if data.X_test is not None:
        return split, replace(data, X=data.X_test, y=data.y_test, X_test=None, y_test=None)
    if data.y is None:
        raise UsageError(f"--split test re-creates the test split from the target, and "
                         f"{args.dataset or args.data} has no target {run.get('target')!r}; give --split all")
    _, test_idx = _splits(data, run["test_fraction"], run["seed"])
    return split, replace(data, X=data.X[test_idx], y=data.y[test_idx])


def cmd_evaluate(args):
    model, data = _model_and_data(args, need_target=True)
    source = args.dataset or args.data
    split, sub = _select_split(args, model, data)
    Xp = model.features(sub, source)
    yp = model.targets(sub, source)
    _compile.notice_if_compiling(model.net.dtype, _compile.PREDICT_KERNELS)
    result = _metrics(model.net, Xp, yp, model.task, model.classes,
                      y_scale=None if model.task == "classification" else model.y_scale)
    result = {"model": args.model, "data": source, "split": split, **result}
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


def cmd_predict(args):
    model, data = _model_and_data(args, need_target=False)
    source = args.dataset or args.data
    _, data = _select_split(args, model, data)
    X = model.features(data, source)
    _compile.notice_if_compiling(model.net.dtype, ("_predict",))
    out = model.net.predict(X)
    if model.task == "classification":
        if out.shape[1] == 1:
            proba = np.hstack([1.0 - out, out])
        else:
            proba = out
        labels = np.array(model.classes)[np.argmax(proba, axis=1)]
        if args.proba:
            result, header = proba, [f"p_{c}" for c in model.classes]
        else:
            result, header = labels, ["prediction"]
    else:
        result = out * model.y_scale + model.y_offset
        header = ["prediction"] if result.shape[1] == 1 else [f"prediction_{j}" for j in range(result.shape[1])]
    if args.out and args.out.endswith(".npy"):
        arr = np.asarray(result)
        if arr.dtype.kind == "U":
            try:
                arr = arr.astype(np.int64)
            except ValueError:
                pass
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        np.save(args.out, arr, allow_pickle=False)
        return 0
    if args.out and not args.out.endswith(".csv"):
        raise UsageError(f"--out must end in .csv or .npy, got {args.out!r}")
    rows = np.asarray(result)
    if rows.ndim == 1:
        rows = rows[:, None]
    lines = [",".join(header)]
    for r in rows:
        lines.append(",".join(v if isinstance(v, str) else repr(float(v)) for v in r.tolist()))
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_export(args):
    """The model as ONNX: input X (raw features, as predict takes them), the model's scaling around the network;
    classification gives "label" and "probabilities", regression "Y" in the target's units."""
    from . import onnx_export
    model = Model(args.model)
    check_output_path("--onnx", args.onnx)
    processing = dict(x_offset=model.x_offset, x_scale=model.x_scale)
    if model.task == "classification":
        processing["classes"] = np.array(model.classes)
    else:
        processing.update(y_offset=model.y_offset, y_scale=model.y_scale)
    onnx_export.export(model.net, args.onnx, **processing)
    print(f"wrote {args.onnx} (input X: {model.net.layer_sizes[0]} features, {np.dtype(model.net.dtype).name}; "
          f"outputs: {'label, probabilities' if model.task == 'classification' else 'Y'})")
    return 0


def cmd_sweep(args):
    from . import sweep  # imports this module: loaded on use
    return sweep.cmd_sweep(args)


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "export": cmd_export}


def _given_options(argv):
    """The dests of the `train` options given on the command line (not their defaults)."""
    parser = build_parser()
    for action in parser.train_parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv))) - {"command"}


def _one_line(exc):
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv=None):
    """Entry point of ``backprop-numba``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    previous = _terminate_like_ctrl_c()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("backprop-numba: choose a command: train, sweep, evaluate, predict or export (see --help)")
        if args.command == "train":
            explicit = _given_options(argv)
            if args.config:
                explicit |= set(_config_defaults(parser.train_parser, args.config))
                args = parser.parse_args(argv)
            status = cmd_train(args, explicit)
        else:
            status = COMMANDS[args.command](args)
        sys.stdout.flush()  # inside the try: a closed pipe is seen here, not at exit
        return status
    except BrokenPipeError:
        # The reader went away (`backprop-numba predict ... | head`): not an error of ours.  Point
        # stdout at devnull so that the interpreter's own flush at exit does not complain (as the
        # Python docs recommend for SIGPIPE); what was written is all the reader wanted.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except UsageError as exc:
        message = _one_line(exc)
        if not message.startswith("backprop-numba"):
            message = "backprop-numba: error: " + message
        print(message, file=sys.stderr)
        return 2
    except TrainingInterrupted as exc:
        # Ctrl-C or SIGTERM between two steps (training.Interrupt): say where, and how to go on.
        how = f"; resume with: backprop-numba train --resume {shlex.quote(exc.checkpoint)}" if exc.checkpoint \
            else "; give --checkpoint-every N to be able to resume an interrupted run"
        print(f"backprop-numba: {_one_line(exc)}{how}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("backprop-numba: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, DivergenceError, KeyError, ImportError) as exc:
        if os.environ.get("BACKPROP_NUMBA_TRACEBACK"):
            raise
        print(f"backprop-numba: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate_like_ctrl_c():
    """SIGTERM (``timeout``, a cluster's scheduler) handled as Ctrl-C for the whole command: during
    training it stops between two steps (training.Interrupt); elsewhere it raises KeyboardInterrupt, so
    a save in progress removes its temporary file.  Returns the previous handler (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
