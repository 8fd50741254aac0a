"""Export a network to ONNX, so that any ONNX runtime can serve it without this library.

Built with the ``onnx`` package's own helpers and checked with
``onnx.checker`` (an optional extra: ``pip install 'backprop_numba[onnx]'``).
The graph is the forward pass of notes 000/001, one ``Gemm`` per layer
(``z = a W^T + b`` on a batch of rows, ``W`` in the column convention) and
the layer's activation:

============  ==============================
activation    ONNX operator
============  ==============================
sigmoid       Sigmoid
tanh          Tanh
relu          Relu
leaky_relu    Max(z, 0.01 z)  (ONNX's LeakyRelu has a float32 alpha)
identity      (none)
softmax       Softmax (axis 1)
============  ==============================

Around it, what ``predict`` applies to raw inputs and outputs, when given:
the input scaling ``(X - x_offset) / x_scale`` (the command line's model
files), the target scaling ``a * y_scale + y_offset`` (regression), and for
classifiers the labels: output ``label`` (the class of the largest
probability, as skl2onnx's classifiers) and ``probabilities`` (one column per
class; a single sigmoid output becomes ``[1 - p, p]``).  The input is named
``X``, of shape (N, n[0]), in the network's dtype (float32 or float64).
"""

import os
import tempfile

import numpy as np

from ._validation import check_path

OPSET = 17
_ACTIVATION_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "softmax": "Softmax", "exp": "Exp"}


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install onnx "
                          "(or pip install 'backprop_numba[onnx]').") from None
    return onnx, helper, numpy_helper


def build_graph(net, x_offset=None, x_scale=None, y_offset=None, y_scale=None, classes=None):
    """The ONNX ModelProto of ``net`` with the optional pre/post-processing (see the module docstring)."""
    from .activations import LEAKY_SLOPE

    onnx, helper, numpy_helper = _onnx()
    dtype = np.dtype(net.dtype)
    elem = onnx.TensorProto.FLOAT if dtype == np.float32 else onnx.TensorProto.DOUBLE
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype=dtype)), name))
        return name

    current = "X"
    if x_offset is not None:
        nodes.append(helper.make_node("Sub", [current, const("x_offset", x_offset)], ["x_centred"]))
        current = "x_centred"
    if x_scale is not None:
        nodes.append(helper.make_node("Div", [current, const("x_scale", x_scale)], ["x_scaled"]))
        current = "x_scaled"
    for l in range(1, net.n_layers + 1):
        # notes 001: z[l] = W[l] a[l-1] + b[l], for a batch of rows: a W^T + b
        z = f"z{l}"
        nodes.append(helper.make_node("Gemm", [current, const(f"W{l}", net.W(l)), const(f"b{l}", net.b(l))], [z],
                                      transB=1))
        act = net.activations[l - 1]
        if act == "identity":
            current = z
            continue
        if act == "leaky_relu":
            # max(z, slope z) (slope < 1): ONNX's LeakyRelu takes its alpha as a float32
            # attribute, 0.0099999998, which float64 results would show at 1e-10
            nodes.append(helper.make_node("Mul", [z, const(f"slope{l}", [LEAKY_SLOPE])], [f"sz{l}"]))
            nodes.append(helper.make_node("Max", [z, f"sz{l}"], [f"a{l}"]))
        else:
            attrs = {"axis": 1} if act == "softmax" else {}
            nodes.append(helper.make_node(_ACTIVATION_OPS[act], [z], [f"a{l}"], **attrs))
        current = f"a{l}"
    outputs = []
    n_out = net.layer_sizes[-1]
    if classes is not None:
        classes = np.asarray(classes)
        if n_out == 1:  # one sigmoid output: P(class 1) = p, P(class 0) = 1 - p
            nodes.append(helper.make_node("Sub", [const("one", [1.0]), current], ["p0"]))
            nodes.append(helper.make_node("Concat", ["p0", current], ["probabilities"], axis=1))
        else:
            nodes.append(helper.make_node("Identity", [current], ["probabilities"]))
        nodes.append(helper.make_node("ArgMax", ["probabilities"], ["class_index"], axis=1, keepdims=0))
        if classes.dtype.kind in "iu":
            label_type, values = onnx.TensorProto.INT64, classes.astype(np.int64)
        else:
            label_type, values = onnx.TensorProto.STRING, classes.astype(str).astype(object)
        inits.append(numpy_helper.from_array(values, "classes"))
        nodes.append(helper.make_node("Gather", ["classes", "class_index"], ["label"], axis=0))
        outputs = [helper.make_tensor_value_info("label", label_type, [None]),
                   helper.make_tensor_value_info("probabilities", elem, [None, max(n_out, 2)])]
    else:
        if y_scale is not None:
            nodes.append(helper.make_node("Mul", [current, const("y_scale", y_scale)], ["y_scaled"]))
            current = "y_scaled"
        if y_offset is not None:
            nodes.append(helper.make_node("Add", [current, const("y_offset", y_offset)], ["y_shifted"]))
            current = "y_shifted"
        nodes.append(helper.make_node("Identity", [current], ["Y"]))
        outputs = [helper.make_tensor_value_info("Y", elem, [None, n_out])]
    graph = helper.make_graph(nodes, "backprop_numba_mlp",
                              [helper.make_tensor_value_info("X", elem, [None, net.layer_sizes[0]])], outputs,
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="backprop_numba")
    model.ir_version = min(model.ir_version, 8)  # readable by onnxruntime releases of the last years
    onnx.checker.check_model(model)
    return model


def save_onnx(model, path):
    """Write a ModelProto to path atomically (temporary file in the same folder, then rename)."""
    path = check_path("path", path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"path must be a file path, got a directory: {path}.")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"folder does not exist: {folder} (exporting {path}).")
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.path.basename(path)}-", suffix=".onnx", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def export(net, path, **processing):
    """``build_graph`` then ``save_onnx``; returns path."""
    return save_onnx(build_graph(net, **processing), path)
