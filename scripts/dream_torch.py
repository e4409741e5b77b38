"""The whole-process baseline for `deepdream dream --model vgg16` on a GPU: a plain PyTorch
script that does the same default dream (the 2015 algorithm: 4 octaves of scale 1.4 rounded
as scipy.ndimage.zoom rounds, 10 steps each, jitter 32, step 1.5 pixel levels per mean
absolute gradient, the objective ½Σa²/n at block4_conv3 after its ReLU, Caffe preprocessing,
the detail carried up bilinearly), with VGG16's weights read from the same ONNX file.
scripts/gpu_bench.sh times it from a cold start, like deepdream's own process.

    python3 scripts/dream_torch.py WEIGHTS.onnx PHOTO OUT [--device cuda] [--fp32]

PyTorch's defaults otherwise: TF32 convolutions on the GPU (`--fp32` turns them off).
"""
import argparse
import math

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from PIL import Image

LAYERS = ["block1_conv1", "block1_conv2", None, "block2_conv1", "block2_conv2", None,
          "block3_conv1", "block3_conv2", "block3_conv3", None,
          "block4_conv1", "block4_conv2", "block4_conv3"]
MEAN_RGB = [123.68, 116.779, 103.939]


def network(path, device):
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()).to(device)
               for t in onnx.load(path).graph.initializer}

    def forward(x):
        for layer in LAYERS:
            if layer is None:
                x = F.max_pool2d(x, 2)
            else:
                w = weights["functional_1/%s_1/convolution/ReadVariableOp:0" % layer]
                b = weights["functional_1/%s_1/Squeeze:0" % layer]
                x = torch.relu(F.conv2d(x, w, b, padding=1))
        return x

    return forward


def octave_sizes(height, width, octaves=4, scale=1.4):
    sizes = [(height, width)]
    for _ in range(1, octaves):
        height, width = round(height / scale), round(width / scale)
        sizes.append((height, width))
    return sizes[::-1]


def dream(forward, image, generator, iterations=10, jitter=32, step=1.5):
    sizes = octave_sizes(*image.shape[2:])
    bases = [image]
    for size in sizes[-2::-1]:
        bases.append(F.interpolate(bases[-1], size=size, mode="bilinear", align_corners=True))
    bases.reverse()
    low = torch.tensor([-m for m in MEAN_RGB[::-1]], device=image.device).view(1, 3, 1, 1)
    high = low + 255.0
    detail = torch.zeros_like(bases[0])
    for base in bases:
        if detail.shape != base.shape:
            detail = F.interpolate(detail, size=base.shape[2:], mode="bilinear", align_corners=True)
        x = base + detail
        for _ in range(iterations):
            oy, ox = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
            x = torch.roll(x, (oy, ox), (2, 3)).detach().requires_grad_(True)
            a = forward(x)
            loss = 0.5 * a.pow(2).sum() / a.numel()
            (gradient,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x = x + gradient * (step / gradient.abs().mean())
                x = torch.roll(x, (-oy, -ox), (2, 3))
                x = torch.maximum(torch.minimum(x, high), low)
        detail = x.detach() - base
    return x.detach()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("weights")
    parser.add_argument("photo")
    parser.add_argument("out")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--fp32", action="store_true")
    args = parser.parse_args()
    if args.fp32:
        torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    forward = network(args.weights, device)
    rgb = np.asarray(Image.open(args.photo).convert("RGB"), dtype=np.float32)
    bgr = (rgb - np.array(MEAN_RGB, dtype=np.float32))[:, :, ::-1].copy()
    image = torch.from_numpy(bgr).permute(2, 0, 1).unsqueeze(0).to(device)
    generator = torch.Generator().manual_seed(0)
    result = dream(forward, image, generator)
    out = result[0].permute(1, 2, 0).cpu().numpy()[:, :, ::-1] + np.array(MEAN_RGB, dtype=np.float32)
    Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8)).save(args.out)
    assert math.isfinite(float(result.abs().mean()))


if __name__ == "__main__":
    main()
