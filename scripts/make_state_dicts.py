"""Writes two tiny PyTorch state dicts, in the legacy pickle format and in the zip format,
as seeds for fuzzing the checkpoint reader (crates/deepdream/tests/fuzz.rs).

    python3 -m pip install torch
    python3 scripts/make_state_dicts.py

Output: crates/deepdream/tests/fixtures/tiny_legacy.pth and tiny_zip.pth, each holding
`conv.weight` (2x3x1x1) and `conv.bias` (2) as float32.
"""
import pathlib

import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/deepdream/tests/fixtures"
state = {
    "conv.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3, 1, 1),
    "conv.bias": torch.tensor([0.5, -0.5]),
}
torch.save(state, OUT / "tiny_legacy.pth", _use_new_zipfile_serialization=False)
torch.save(state, OUT / "tiny_zip.pth")
print("wrote", OUT / "tiny_legacy.pth", OUT / "tiny_zip.pth")
