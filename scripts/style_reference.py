"""PyTorch reference for deepdream's style transfer, run by `cargo bench --bench style`.

torchvision's VGG16 architecture (`vgg16().features`) loaded with the same weights as
deepdream's (the convolutions of the same ONNX file), the same Caffe preprocessing (BGR,
ImageNet mean subtracted, 0-255), the same objective (content: mean squared feature
difference at block4_conv2, weight 5; style: mean squared difference of Gram matrices
F Fᵀ / (C·H·W) at block1_conv1 … block5_conv1, weight 100 each; total variation: mean
squared difference of vertical plus horizontal neighbours, weight 1), the same start (the
content photo) and torch.optim.LBFGS with the same settings (history 10, strong-Wolfe line
search, at most ITERATIONS evaluations). Prints `seconds S evaluations E final_loss L`,
the loss evaluated on the result rounded to 8-bit pixels as deepdream's is.

    python3 -m pip install torch torchvision onnx pillow numpy
    python3 scripts/style_reference.py WEIGHTS.onnx CONTENT.png STYLE.png ITERATIONS

BENCH_TORCH_DEVICE=cuda runs it on the GPU (timed with torch.cuda.synchronize(), PyTorch's
default TF32 convolutions).
"""
import os
import sys
import time

import numpy as np
import onnx
import torch
import torchvision
from onnx import numpy_helper
from PIL import Image

torch.set_num_threads(torch.get_num_threads())
weights_path, content_path, style_path, iterations = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

CONVS = ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1", "block3_conv2",
         "block3_conv3", "block4_conv1", "block4_conv2", "block4_conv3", "block5_conv1", "block5_conv2",
         "block5_conv3"]
# Index in torchvision's vgg16().features of the ReLU after each convolution.
RELU_INDEX = {"block1_conv1": 1, "block2_conv1": 6, "block3_conv1": 11, "block4_conv1": 18,
              "block4_conv2": 20, "block5_conv1": 25}
STYLE_LAYERS = ["block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"]
CONTENT_LAYER = "block4_conv2"
CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT = 5.0, 500.0, 1.0
DEVICE = torch.device(os.environ.get("BENCH_TORCH_DEVICE", "cpu"))
MEAN_BGR = torch.tensor([103.939, 116.779, 123.68], device=DEVICE).reshape(1, 3, 1, 1)

initializers = {t.name: numpy_helper.to_array(t) for t in onnx.load(weights_path).graph.initializer}
features = torchvision.models.vgg16(weights=None).features[:26].eval()
convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
for name, conv in zip(CONVS, convs):
    conv.weight.data = torch.from_numpy(initializers["functional_1/%s_1/convolution/ReadVariableOp:0" % name].copy())
    conv.bias.data = torch.from_numpy(initializers["functional_1/%s_1/Squeeze:0" % name].copy())
for p in features.parameters():
    p.requires_grad_(False)
features = features.to(DEVICE)


def load(path):
    rgb = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).copy())
    rgb = rgb.to(DEVICE)
    return (rgb.permute(2, 0, 1).unsqueeze(0).flip(1) - MEAN_BGR).contiguous()  # BGR, mean subtracted


def activations(x, names):
    wanted = {RELU_INDEX[n]: n for n in names}
    out = {}
    for i, module in enumerate(features):
        x = module(x)
        if i in wanted:
            out[wanted[i]] = x
        if len(out) == len(wanted):
            break
    return out


def gram(a):
    _, c, h, w = a.shape
    f = a.reshape(c, h * w)
    return f @ f.t() / (c * h * w)


content, style = load(content_path), load(style_path)
with torch.no_grad():
    content_target = activations(content, [CONTENT_LAYER])[CONTENT_LAYER]
    style_targets = {n: gram(a) for n, a in activations(style, STYLE_LAYERS).items()}


def objective(x):
    acts = activations(x, STYLE_LAYERS + [CONTENT_LAYER])
    loss = CONTENT_WEIGHT * ((acts[CONTENT_LAYER] - content_target) ** 2).mean()
    for n in STYLE_LAYERS:
        loss = loss + STYLE_WEIGHT / len(STYLE_LAYERS) * ((gram(acts[n]) - style_targets[n]) ** 2).mean()
    tv = ((x[:, :, 1:] - x[:, :, :-1]) ** 2).mean() + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).mean()
    return loss + TV_WEIGHT * tv


x = content.clone().requires_grad_(True)
optimizer = torch.optim.LBFGS([x], lr=1, max_iter=iterations, max_eval=iterations, history_size=10,
                              line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-9)
evaluations = 0


def closure():
    global evaluations
    evaluations += 1
    optimizer.zero_grad()
    loss = objective(x)
    loss.backward()
    return loss


def synchronize():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


synchronize()
start = time.perf_counter()
optimizer.step(closure)
synchronize()
seconds = time.perf_counter() - start
with torch.no_grad():
    rounded = (x + MEAN_BGR).flip(1).round().clamp(0, 255).flip(1) - MEAN_BGR
    final = objective(rounded).item()
print("seconds %.3f evaluations %d final_loss %.6e" % (seconds, evaluations, final))
