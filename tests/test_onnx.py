"""ONNX export against onnxruntime: the served model gives what predict gives.

For every hidden activation x output activation, float32 and float64, batches
of 1 and 1000: onnxruntime's output equals ``net.predict`` within 1e-5
(float32) and 1e-10 (float64), and ``onnx.checker`` accepts the graph.
"""

import numpy as np
import pytest

from backprop_numba import MLP
from backprop_numba import onnx_export

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = {np.float32: 1e-5, np.float64: 1e-10}
HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "identity"]
OUTPUTS = [("mse", "identity"), ("mse", "sigmoid"), ("mse", "tanh"), ("mse", "relu"), ("mse", "leaky_relu"),
           ("bce", "sigmoid"), ("cross_entropy", "softmax")]


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss,out", OUTPUTS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_onnxruntime_reproduces_predict(hidden, loss, out, dtype, tmp_path):
    n_out = 3 if out == "softmax" else 2
    net = MLP([5, 7, 6, n_out], activation=hidden, output_activation=out, loss=loss, seed=1, dtype=dtype)
    for b in net.biases:
        b[...] = np.random.default_rng(2).normal(scale=0.3, size=b.shape)
    path = tmp_path / "net.onnx"
    assert net.to_onnx(path) == str(path)
    onnx.checker.check_model(onnx.load(str(path)))
    sess = _session(path)
    rng = np.random.default_rng(0)
    for B in (1, 1000):
        X = rng.normal(size=(B, 5)).astype(dtype)
        (got,) = sess.run(None, {"X": X})
        assert got.dtype == dtype and got.shape == (B, n_out)
        np.testing.assert_allclose(got, net.predict(X), rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pre_and_post_processing(dtype, tmp_path):
    """Input scaling, target scaling and class labels (int and str) around the network."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 4)).astype(dtype)
    x_offset, x_scale = rng.normal(size=4), rng.uniform(0.5, 2, size=4)
    net = MLP([4, 6, 3], activation="tanh", loss="cross_entropy", seed=0, dtype=dtype)
    Xs = ((X - x_offset) / x_scale).astype(dtype)
    for classes in (np.array([3, 7, 9]), np.array(["cat", "dog", "emu"])):
        path = tmp_path / "clf.onnx"
        onnx_export.export(net, path, x_offset=x_offset, x_scale=x_scale, classes=classes)
        label, proba = _session(path).run(None, {"X": X})
        np.testing.assert_allclose(proba, net.predict(Xs), rtol=TOL[dtype], atol=TOL[dtype])
        np.testing.assert_array_equal(label, classes[np.argmax(net.predict(Xs), axis=1)])
    binary = MLP([4, 5, 1], loss="bce", seed=0, dtype=dtype)
    path = tmp_path / "bin.onnx"
    onnx_export.export(binary, path, classes=np.array([0, 1]))
    label, proba = _session(path).run(None, {"X": X})
    p = binary.predict(X)[:, 0]
    np.testing.assert_allclose(proba, np.stack([1 - p, p], axis=1), rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_array_equal(label, (p > 0.5).astype(np.int64))
    reg = MLP([4, 5, 2], seed=0, dtype=dtype)
    y_offset, y_scale = np.array([10.0, -3.0]), np.array([2.0, 0.5])
    path = tmp_path / "reg.onnx"
    onnx_export.export(reg, path, y_offset=y_offset, y_scale=y_scale)
    (got,) = _session(path).run(None, {"X": X})
    np.testing.assert_allclose(got, reg.predict(X) * y_scale + y_offset, rtol=TOL[dtype], atol=TOL[dtype] * 10)


def test_export_errors(tmp_path):
    net = MLP([2, 1])
    with pytest.raises(FileNotFoundError, match="folder does not exist"):
        net.to_onnx(tmp_path / "missing" / "net.onnx")
    with pytest.raises(ValueError, match="got a directory"):
        net.to_onnx(tmp_path)
    with pytest.raises(TypeError, match="path must be a file path"):
        net.to_onnx(3.5)


def test_cli_export_serves_what_predict_gives(tmp_path):
    """backprop-numba export: the model's input scaling and class labels are in the graph, so onnxruntime
    on the raw features gives predict's labels and probabilities."""
    pytest.importorskip("sklearn")
    from backprop_numba.cli import Model, main
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--hidden", "16", "--epochs", "3", "--out", str(out),
                 "--quiet"]) == 0
    assert main(["export", str(out / "model.npz"), "--onnx", str(tmp_path / "digits.onnx")]) == 0
    model = Model(str(out / "model.npz"))
    from backprop_numba import datasets
    X = datasets.load("digits").X[:50]
    label, proba = _session(tmp_path / "digits.onnx").run(None, {"X": X})
    expected = model.net.predict((X - model.x_offset) / model.x_scale)
    np.testing.assert_allclose(proba, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(label, np.array(model.classes)[np.argmax(expected, axis=1)])
    assert main(["export", str(out / "model.npz"), "--onnx", str(tmp_path / "missing" / "x.onnx")]) == 1
