"""Writes a tiny ONNX network whose second convolution has a NaN weight, so that any dream
on it gets a NaN gradient: the test that deepdream stops with a clear error instead of
writing a black picture.

    python3 -m pip install onnx numpy
    python3 scripts/make_nan_network.py

Output: crates/deepdream/tests/fixtures/nan_network.onnx (conv1 3x3 + ReLU, conv2 1x1).
"""
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/deepdream/tests/fixtures"
rng = np.random.default_rng(7)
w1 = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
w2 = rng.normal(0, 0.3, (4, 4, 1, 1)).astype(np.float32)
w2[1, 2, 0, 0] = np.nan
inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")]
nodes = [
    helper.make_node("Conv", ["image", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
    helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
    helper.make_node("Conv", ["r1", "w2"], ["out"], name="conv2"),
]
graph = helper.make_graph(
    nodes,
    "nan_network",
    [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
    [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, "h", "w"])],
    inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, OUT / "nan_network.onnx")
print("wrote", OUT / "nan_network.onnx")
