"""The benchmark's PyTorch baseline: the same DeepDream gradient step as deepdream's
(forward to the model's default layers, objective the sum over layers of ½Σa²/n, gradient
with respect to the input). Run by `cargo bench --bench dream` when torch is installed;
prints `torch SIZE SECONDS` lines (median of REPEATS after one warm-up run).

    python3 -m pip install torch torchvision timm onnx
    python3 scripts/bench_torch.py MODEL WEIGHTS REPEATS SIZE [SIZE...]

- vgg16: VGG16 up to block4_conv3 + ReLU with the same weights, read from the same ONNX file.
- inception3: torchvision's Inception v3 (random weights; speed does not depend on them), up
  to Mixed_6a and Mixed_6c (deepdream's mixed_3 and mixed_5). WEIGHTS is ignored.
- efficientnet-lite0: timm's efficientnet_lite0 (random weights) up to its 11th block
  (deepdream's block10). WEIGHTS is ignored.
- googlenet: torchvision's GoogLeNet (batch-norm version, random weights) up to inception4c,
  the classic DeepDream layer. WEIGHTS is ignored. deepdream's side runs the same
  architecture as ONNX through its executor, written (random weights, batch norm folded into
  the convolutions by the export, the whole network to its logits, any input size) by

      python3 scripts/bench_torch.py export-googlenet OUT.onnx
Batch norm runs in eval mode, as deepdream's (which folds it into the convolutions).
BENCH_TORCH_DEVICE=cuda runs it on the GPU (timed with torch.cuda.synchronize()), with
PyTorch's default TF32 convolutions; BENCH_TORCH_TF32=0 turns them off (plain fp32, as
deepdream computes).
"""
import os
import statistics
import sys
import time

import torch

DEVICE = torch.device(os.environ.get("BENCH_TORCH_DEVICE", "cpu"))
if os.environ.get("BENCH_TORCH_TF32") == "0":
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

model, path = sys.argv[1], sys.argv[2]
if model == "export-googlenet":
    torch.manual_seed(0)
    net = __import__("torchvision").models.googlenet(
        weights=None, aux_logits=False, transform_input=False, init_weights=True).eval()
    torch.onnx.export(net, torch.zeros(1, 3, 224, 224), path, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {2: "height", 3: "width"}}, dynamo=False)
    sys.exit()
repeats, sizes = int(sys.argv[3]), [int(s) for s in sys.argv[4:]]


def vgg16():
    import onnx
    from onnx import numpy_helper

    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()).to(DEVICE)
               for t in onnx.load(path).graph.initializer}
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
        return [x]

    return forward


def inception3():
    import torchvision

    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval().to(DEVICE)
    stages = [net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3, net.maxpool1, net.Conv2d_3b_1x1,
              net.Conv2d_4a_3x3, net.maxpool2, net.Mixed_5b, net.Mixed_5c, net.Mixed_5d, net.Mixed_6a,
              net.Mixed_6b, net.Mixed_6c]

    def forward(x):
        outputs = []
        for stage in stages:
            x = stage(x)
            if stage is net.Mixed_6a or stage is net.Mixed_6c:
                outputs.append(x)
        return outputs

    return forward


def efficientnet_lite0():
    import timm

    net = timm.create_model("efficientnet_lite0", pretrained=False).eval().to(DEVICE)
    blocks = [block for stage in net.blocks for block in stage][:11]

    def forward(x):
        x = net.bn1(net.conv_stem(x))
        for block in blocks:
            x = block(x)
        return [x]

    return forward


def googlenet():
    import torchvision

    net = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False,
                                       init_weights=False).eval().to(DEVICE)
    stages = [net.conv1, net.maxpool1, net.conv2, net.conv3, net.maxpool2, net.inception3a,
              net.inception3b, net.maxpool3, net.inception4a, net.inception4b, net.inception4c]

    def forward(x):
        for stage in stages:
            x = stage(x)
        return [x]

    return forward


forward = {"googlenet": googlenet, "vgg16": vgg16, "inception3": inception3, "efficientnet-lite0": efficientnet_lite0}[model]()
torch.set_grad_enabled(True)
for size in sizes:
    # Inputs in each network's preprocessed range: Caffe's (pixels minus the mean) for VGG16.
    scale, shift = (255.0, -120.0) if model == "vgg16" else (2.0, -1.0)
    x = (torch.rand(1, 3, size, size, device=DEVICE) * scale + shift).requires_grad_(True)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        outputs = forward(x)
        loss = sum(0.5 * (a * a).sum() / a.numel() for a in outputs)
        (g,) = torch.autograd.grad(loss, x)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        if i > 0:  # the first run warms up
            times.append(time.perf_counter() - start)
    print("torch %d %.4f" % (size, statistics.median(times)), flush=True)
