"""Writes the small ONNX network the executor tests run (random weights, fixed seed), and
the reference outputs onnxruntime computes for it on a fixed input.

    python3 -m pip install onnx onnxruntime numpy
    python3 scripts/make_test_network.py

Output: crates/deepdream/tests/fixtures/test_network.onnx and test_network_reference.txt.
The network is GoogLeNet-shaped in miniature: conv + batch norm + ReLU, LRN, ceil-mode max
pool, an inception block (1x1, 3x3, pooled 1x1 branches) concatenated, a residual Add/Mul,
a SAME-padded strided conv, transpose, global average pool, flatten, dropout, Gemm, softmax.
"""
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/deepdream/tests/fixtures"
rng = np.random.default_rng(2015)
inits = []


def const(name, array):
    inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
    return name


def conv_weight(name, out_c, in_c, k):
    return const(name, rng.normal(0, (2.0 / (in_c * k * k)) ** 0.5, (out_c, in_c, k, k)))


nodes = [
    helper.make_node("Conv", ["input", conv_weight("w1", 8, 3, 3), const("b1", rng.normal(0, 0.1, 8))],
                     ["conv1_pre"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    helper.make_node("BatchNormalization",
                     ["conv1_pre", const("g1", rng.uniform(0.5, 1.5, 8)), const("be1", rng.normal(0, 0.1, 8)),
                      const("m1", rng.normal(0, 0.1, 8)), const("v1", rng.uniform(0.5, 1.5, 8))],
                     ["conv1_bn"], name="conv1_bn", epsilon=1e-3),
    helper.make_node("Relu", ["conv1_bn"], ["conv1_out"], name="conv1_relu"),
    helper.make_node("LRN", ["conv1_out"], ["norm1"], name="norm1", size=5, alpha=0.1, beta=0.75, bias=1.0),
    helper.make_node("MaxPool", ["norm1"], ["pool1"], name="pool1", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    helper.make_node("Conv", ["pool1", conv_weight("wa", 4, 8, 1)], ["a_pre"], name="branch_a", kernel_shape=[1, 1]),
    helper.make_node("Relu", ["a_pre"], ["a"], name="branch_a_relu"),
    helper.make_node("Conv", ["pool1", conv_weight("wb", 4, 8, 3), const("bb", rng.normal(0, 0.1, 4))], ["b_pre"],
                     name="branch_b", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    helper.make_node("Relu", ["b_pre"], ["b"], name="branch_b_relu"),
    helper.make_node("AveragePool", ["pool1"], ["c_pool"], name="branch_c_pool", kernel_shape=[3, 3],
                     pads=[1, 1, 1, 1], count_include_pad=0),
    helper.make_node("Conv", ["c_pool", conv_weight("wc", 4, 8, 1)], ["c_pre"], name="branch_c", kernel_shape=[1, 1]),
    helper.make_node("Relu", ["c_pre"], ["c"], name="branch_c_relu"),
    helper.make_node("Concat", ["a", "b", "c"], ["mixed"], name="mixed", axis=1),
    helper.make_node("Mul", ["mixed", const("half", [0.5])], ["mixed_half"], name="scale"),
    helper.make_node("Add", ["mixed", "mixed_half"], ["residual"], name="residual"),
    helper.make_node("Conv", ["residual", conv_weight("ws", 6, 12, 3)], ["s_pre"], name="conv_same",
                     kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
    helper.make_node("Relu", ["s_pre"], ["s"], name="conv_same_relu"),
    helper.make_node("Transpose", ["s"], ["s_t"], name="transpose", perm=[0, 1, 3, 2]),
    helper.make_node("GlobalAveragePool", ["s_t"], ["gap"], name="gap"),
    helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
    helper.make_node("Dropout", ["flat"], ["drop"], name="dropout"),
    helper.make_node("Gemm", ["drop", const("wf", rng.normal(0, 0.5, (5, 6))), const("bf", rng.normal(0, 0.1, 5))],
                     ["logits"], name="fc", transB=1),
    helper.make_node("Softmax", ["logits"], ["prob"], name="prob", axis=1),
]
inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])
out = helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 5])
graph = helper.make_graph(nodes, "deepdream_test_network", [inp], [out], initializer=inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, OUT / "test_network.onnx")

# Reference outputs for a fixed 1x3x23x17 input (odd sizes exercise padding and ceil mode).
x = np.linspace(-1.5, 1.5, 3 * 23 * 17, dtype=np.float32).reshape(1, 3, 23, 17)
x = np.sin(7.0 * x) + 0.25 * np.cos(3.0 * x.transpose(0, 1, 3, 2).reshape(x.shape))
names = ["conv1_out", "norm1", "pool1", "mixed", "residual", "s", "prob"]
for name in names[:-1]:
    model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
values = session.run(names, {"input": x.astype(np.float32)})
with open(OUT / "test_network_reference.txt", "w") as f:
    f.write("# onnxruntime %s outputs of test_network.onnx; input: see make_test_network.py\n" % ort.__version__)
    f.write("# tensor shape... : values (row-major)\n")
    f.write("input %s : %s\n" % (" ".join(map(str, x.shape)), " ".join("%.9g" % v for v in x.ravel())))
    for name, value in zip(names, values):
        f.write("%s %s : %s\n" % (name, " ".join(map(str, value.shape)), " ".join("%.7g" % v for v in value.ravel())))
print("wrote", OUT / "test_network.onnx")

# A network whose second conv depends on an operator the executor does not run (Erf).
nodes = [
    helper.make_node("Conv", ["input", conv_weight("u1", 4, 3, 3)], ["ua_pre"], name="conv_a", kernel_shape=[3, 3]),
    helper.make_node("Relu", ["ua_pre"], ["ua"], name="conv_a_relu"),
    helper.make_node("Erf", ["ua"], ["u_erf"], name="erf"),
    helper.make_node("Conv", ["u_erf", conv_weight("u2", 4, 4, 3)], ["ub_pre"], name="conv_b", kernel_shape=[3, 3]),
    helper.make_node("Relu", ["ub_pre"], ["ub"], name="conv_b_relu"),
]
inits = [i for i in inits if i.name in ("u1", "u2")]
out = helper.make_tensor_value_info("ub", TensorProto.FLOAT, ["N", 4, "H", "W"])
graph = helper.make_graph(nodes, "unsupported_operator", [inp], [out], initializer=inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, OUT / "unsupported_op.onnx")
