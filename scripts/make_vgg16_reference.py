"""Computes reference VGG16 activations with onnxruntime (an implementation independent of
deepdream) on the committed fixture photo, for the forward-pass test.

    python3 -m pip install onnx onnxruntime numpy pillow
    deepdream models fetch vgg16          # or any path to the verified vgg16.onnx
    python3 scripts/make_vgg16_reference.py ~/.cache/deepdream/vgg16.onnx

Input: the 96x96 crop at (x=176, y=64) of crates/deepdream/tests/fixtures/chelsea.png,
preprocessed as the Keras ImageNet weights expect (BGR, minus [103.939, 116.779, 123.68]).
Output: crates/deepdream/tests/fixtures/vgg16_reference.txt with, per layer, its shape, the
mean of each channel and the values of every channel at the centre position.
"""
import pathlib
import sys

import numpy as np
import onnx
import onnxruntime as ort
import onnx.utils
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates/deepdream/tests/fixtures"
X, Y, SIZE = 176, 64, 96
LAYERS = {
    "block1_conv2": "functional_1/block1_conv2_1/Relu:0",
    "block3_conv3": "functional_1/block3_conv3_1/Relu:0",
    "block4_conv3": "functional_1/block4_conv3_1/Relu:0",
    "block5_pool": "functional_1/block5_pool_1/MaxPool2d:0",
}

model = onnx.load(sys.argv[1])
# The graph declares a fixed 240x240 input; its convolutional part works at any size.
for dim, name in zip(model.graph.input[0].type.tensor_type.shape.dim[1:3], ("H", "W")):
    dim.dim_param = name
# Keep only the convolutional part (the tumour head's reshape needs a 240x240 input).
for tensor in LAYERS.values():
    model.graph.value_info.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
model = onnx.utils.Extractor(model).extract_model(["input"], list(LAYERS.values()))
session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

rgb = np.asarray(Image.open(FIXTURES / "chelsea.png").convert("RGB"), dtype=np.float32)
crop = rgb[Y:Y + SIZE, X:X + SIZE, :]
bgr = crop[:, :, ::-1] - np.array([103.939, 116.779, 123.68], dtype=np.float32)
values = session.run(list(LAYERS.values()), {"input": bgr[None].astype(np.float32)})

with open(FIXTURES / "vgg16_reference.txt", "w") as f:
    f.write("# onnxruntime %s VGG16 activations (NCHW) of chelsea.png crop x=%d y=%d %dx%d; see %s\n"
            % (ort.__version__, X, Y, SIZE, SIZE, pathlib.Path(__file__).name))
    for name, nchw in zip(LAYERS, values):  # the graph transposes its NHWC input to NCHW first
        _, c, h, w = nchw.shape
        f.write("%s shape %d %d %d %d\n" % (name, 1, c, h, w))
        f.write("%s channel_means %s\n" % (name, " ".join("%.7g" % v for v in nchw.mean(axis=(0, 2, 3)))))
        f.write("%s centre %s\n" % (name, " ".join("%.7g" % v for v in nchw[0, :, h // 2, w // 2])))
print("wrote", FIXTURES / "vgg16_reference.txt")
