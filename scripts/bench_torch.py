"""The benchmark's PyTorch baseline: the same DeepDream gradient step as deepdream's
(VGG16 up to block4_conv3 + ReLU, objective ½Σa²/n, gradient with respect to the input),
with the same weights read from the same ONNX file. Run by `cargo bench --bench dream`
when torch is installed; prints `torch SIZE SECONDS` lines (median of REPEATS).

    python3 scripts/bench_torch.py VGG16.onnx REPEATS SIZE [SIZE...]
"""
import statistics
import sys
import time

import onnx
import torch
from onnx import numpy_helper

path, repeats, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load(path).graph.initializer}
layers = ["block1_conv1", "block1_conv2", None, "block2_conv1", "block2_conv2", None,
          "block3_conv1", "block3_conv2", "block3_conv3", None, "block4_conv1", "block4_conv2", "block4_conv3"]


def forward(x):
    for layer in layers:
        if layer is None:
            x = torch.nn.functional.max_pool2d(x, 2)
        else:
            w = weights["functional_1/%s_1/convolution/ReadVariableOp:0" % layer]
            b = weights["functional_1/%s_1/Squeeze:0" % layer]
            x = torch.relu(torch.nn.functional.conv2d(x, w, b, padding=1))
    return x


for size in sizes:
    x = (torch.rand(1, 3, size, size) * 255 - 120).requires_grad_(True)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        a = forward(x)
        loss = 0.5 * (a * a).sum() / a.numel()
        (g,) = torch.autograd.grad(loss, x)
        if i > 0:  # the first run warms up
            times.append(time.perf_counter() - start)
    print("torch %d %.4f" % (size, statistics.median(times)), flush=True)
