"""Computes reference dense optical flow with OpenCV's Farnebäck implementation (independent
of deepdream) on real video frames, for the optical flow test.

    python3 -m pip install opencv-python-headless numpy
    python3 scripts/make_flow_reference.py

Input: frames of ../shared/videos/carphone.mp4 (a man talking in a moving car), turned to
grey with OpenCV. Output, in crates/deepdream/tests/fixtures/flow/: for each frame pair the
two grey frames as PNG (`pair{i}_a.png`, `pair{i}_b.png`) and OpenCV's flow from a to b as
raw little-endian float32, height x width x (dx, dy) (`pair{i}_flow.f32`), computed with
`calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)`.
"""
import pathlib

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
VIDEO = ROOT.parent / "shared/videos/carphone.mp4"
OUT = ROOT / "crates/deepdream/tests/fixtures/flow"
# (first frame, second frame): neighbours (about 0.5 px of motion), six frames apart
# (2 px) and eight frames apart (6 px, the camera swings).
PAIRS = [(20, 21), (30, 36), (80, 88)]


def main():
    capture = cv2.VideoCapture(str(VIDEO))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    OUT.mkdir(parents=True, exist_ok=True)
    for i, (a, b) in enumerate(PAIRS):
        first, second = frames[a], frames[b]
        flow = cv2.calcOpticalFlowFarneback(first, second, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        cv2.imwrite(str(OUT / f"pair{i}_a.png"), first)
        cv2.imwrite(str(OUT / f"pair{i}_b.png"), second)
        flow.astype("<f4").tofile(OUT / f"pair{i}_flow.f32")
        magnitude = np.sqrt((flow**2).sum(axis=2))
        print(f"pair {i}: frames {a}->{b}, {first.shape}, mean |flow| {magnitude.mean():.3f} px")
    print(f"{len(frames)} frames read, OpenCV {cv2.__version__}")


if __name__ == "__main__":
    main()
