"""Computes reference dense optical flow with OpenCV's Farnebäck and DIS implementations
(independent of deepdream) on real video frames, for the optical flow tests.

    python3 -m pip install opencv-python-headless numpy
    python3 scripts/make_flow_reference.py

Input: frames of ../shared/videos/carphone.mp4 (a man talking in a moving car), turned to
grey with OpenCV. Output, in crates/deepdream/tests/fixtures/flow/: for each frame pair the
two grey frames as PNG (`pair{i}_a.png`, `pair{i}_b.png`) and OpenCV's flow from a to b as
raw little-endian float32, height x width x (dx, dy) (`pair{i}_flow.f32`), computed with
`calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)`; and DIS's flow
(`DISOpticalFlow_create(DISOPTICAL_FLOW_PRESET_ULTRAFAST)`) from a to b, on the frames as
they are (`pair{i}_dis.f32`) and on the frames doubled in size by repeating each pixel
twice in each direction (`pair{i}_dis2x.f32`, which takes DIS through three pyramid levels;
stored at every second pixel in each direction to keep the file small).
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
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        dis.calc(first, second, None).astype("<f4").tofile(OUT / f"pair{i}_dis.f32")
        double = lambda image: np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
        dis2x = dis.calc(double(first), double(second), None)
        np.ascontiguousarray(dis2x[::2, ::2]).astype("<f4").tofile(OUT / f"pair{i}_dis2x.f32")
        magnitude = np.sqrt((flow**2).sum(axis=2))
        print(f"pair {i}: frames {a}->{b}, {first.shape}, mean |flow| {magnitude.mean():.3f} px")
    print(f"{len(frames)} frames read, OpenCV {cv2.__version__}")


if __name__ == "__main__":
    main()
