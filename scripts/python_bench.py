"""The Python package's step time against the CLI's, on the same dream (run in the virtual
environment that has the wheel installed):

    python scripts/python_bench.py target/release/deepdream [SIZE]

Each side dreams the test photo resized to SIZE x SIZE (512 by default) with one octave,
twice: with 2 and with 12 iterations; the difference over 10 is the time of one step,
without the start-up, the network's loading and the image's reading and writing that a CLI
process also pays. Repeated three times; prints the medians and their ratio.
"""

import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from PIL import Image

import deepdream

REPO = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
    cli = sys.argv[1]
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    folder = pathlib.Path(tempfile.mkdtemp())
    photo = Image.open(REPO / "assets/chelsea.png").convert("RGB").resize((size, size))
    source = folder / "photo.png"
    photo.save(source)
    model = deepdream.load("vgg16")

    def python(iterations: int) -> float:
        start = time.perf_counter()
        model.dream(photo, octaves=1, iterations=iterations, seed=1)
        return time.perf_counter() - start

    def command(iterations: int) -> float:
        start = time.perf_counter()
        subprocess.run(
            [cli, "dream", str(source), "-o", str(folder / "out.png"), "--force", "--octaves", "1",
             "--iterations", str(iterations), "--seed", "1"],
            check=True, capture_output=True,
        )
        return time.perf_counter() - start

    python(1)  # warm-up: the first dream allocates the kernels' buffers
    steps = {"python": [], "cli": []}
    for _ in range(3):
        for name, run in (("python", python), ("cli", command)):
            steps[name].append((run(12) - run(2)) / 10)
    ours, theirs = statistics.median(steps["python"]), statistics.median(steps["cli"])
    print(f"vgg16 step at {size}x{size}: python {ours:.3f} s, cli {theirs:.3f} s; python/cli = {ours / theirs:.3f}")


if __name__ == "__main__":
    main()
