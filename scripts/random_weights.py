"""Stand-in weight files for timing on a machine that cannot download the real ones (a GPU
machine without network access): the same format, names, shapes and value distribution as the
real files, with the large tensors drawn at random. Speed does not depend on the weights.

    python3 scripts/random_weights.py skeleton WEIGHTS_DIR SKELETON_DIR   # where the weights are
    python3 scripts/random_weights.py fill SKELETON_DIR OUT_DIR           # on the other machine

`skeleton` writes, for each weight file, the file with its large tensors (64 KiB and more: the
convolution kernels) left empty, and a JSON file with each of them's size and value quantiles;
these are small enough to carry. `fill` writes the files back with those tensors drawn from the
real tensors' value distributions (so activations keep their scale), the small tensors (biases,
batch norm statistics) as they were. ONNX files (initializers), zip archives (PyTorch zip
checkpoints, TorchScript) and PyTorch's legacy (pre-1.6) checkpoints are handled; other files
are copied whole.
"""
import json
import pathlib
import pickle
import shutil
import sys
import zipfile

import numpy as np

LARGE = 64 * 1024
QUANTILES = np.linspace(0.0, 1.0, 257)


def quantiles(raw):
    values = np.frombuffer(raw, dtype="<f4")
    return np.quantile(values, QUANTILES).tolist()


def draw(nbytes, levels, rng):
    return np.interp(rng.random(nbytes // 4), QUANTILES, levels).astype("<f4").tobytes()


def skeleton_onnx(source, target):
    import onnx

    model = onnx.load(source)
    large = {}
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT and len(tensor.raw_data) >= LARGE:
            large[tensor.name] = {"bytes": len(tensor.raw_data), "quantiles": quantiles(tensor.raw_data)}
            tensor.raw_data = b""
    onnx.save(model, target)
    return large


def fill_onnx(source, target, large, rng):
    import onnx

    model = onnx.load(source)
    for tensor in model.graph.initializer:
        if tensor.name in large:
            tensor.raw_data = draw(large[tensor.name]["bytes"], large[tensor.name]["quantiles"], rng)
    onnx.save(model, target)


def skeleton_zip(source, target):
    large = {}
    with zipfile.ZipFile(source) as inside, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for info in inside.infolist():
            raw = inside.read(info)
            if "/data/" in info.filename and len(raw) >= LARGE and len(raw) % 4 == 0:
                large[info.filename] = {"bytes": len(raw), "quantiles": quantiles(raw)}
                raw = b""
            out.writestr(info.filename, raw)
    return large


def fill_zip(source, target, large, rng):
    with zipfile.ZipFile(source) as inside, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for info in inside.infolist():
            raw = inside.read(info)
            if info.filename in large:
                raw = draw(large[info.filename]["bytes"], large[info.filename]["quantiles"], rng)
            out.writestr(info.filename, raw)


class _Anything(dict):
    """Stands in for any class a legacy checkpoint's pickles name (no torch needed)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __call__(self, *args, **kwargs):
        return _Anything()

    def __setstate__(self, state):
        pass


def legacy_storages(file):
    """Reads a legacy checkpoint's pickles from `file` and returns the size of one element
    of each storage, in the order their data follows; `None` if it is not one."""
    element = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            return type(name, (_Anything,), {})

        def persistent_load(self, pid):
            # ('storage', storage type, key, location, element count[, view])
            kind = pid[1] if isinstance(pid[1], str) else pid[1].__name__
            element[str(pid[2])] = 8 if "Long" in kind or "Double" in kind else 2 if "Half" in kind else 4
            return _Anything()

    try:
        for _ in range(4):  # magic number, protocol version, system info, the state
            Unpickler(file).load()
        keys = Unpickler(file).load()
    except Exception:
        return None
    if not isinstance(keys, list) or any(str(k) not in element for k in keys):
        return None
    return [element[str(k)] for k in keys]


def rewrite_legacy(source, target, data):
    """Copies a legacy checkpoint: the pickles as they are, then each storage's 8-byte element
    count and the bytes `data(index, element_size, nbytes, read)` gives for it (`read()`
    reads the storage's bytes from `source`)."""
    with open(source, "rb") as file, open(target, "wb") as out:
        sizes = legacy_storages(file)
        header = file.tell()
        file.seek(0)
        out.write(file.read(header))
        for index, size in enumerate(sizes):
            count = file.read(8)
            out.write(count)
            nbytes = int.from_bytes(count, "little") * size
            out.write(data(index, size, nbytes, lambda: file.read(nbytes)))


def skeleton_legacy(source, target):
    """Leaves out the data of large float storages."""
    large = {}

    def data(index, size, nbytes, read):
        raw = read()
        if size == 4 and nbytes >= LARGE:
            large[str(index)] = {"bytes": nbytes, "quantiles": quantiles(raw)}
            return b""
        return raw

    rewrite_legacy(source, target, data)
    return large


def fill_legacy(source, target, large, rng):
    def data(index, size, nbytes, read):
        recipe = large.get(str(index))
        return draw(recipe["bytes"], recipe["quantiles"], rng) if recipe else read()

    rewrite_legacy(source, target, data)


def is_legacy(path):
    with open(path, "rb") as file:
        return legacy_storages(file) is not None


def skeleton(weights_dir, skeleton_dir):
    skeleton_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(weights_dir.iterdir()):
        target = skeleton_dir / path.name
        if path.suffix == ".onnx":
            large = skeleton_onnx(path, target)
        elif zipfile.is_zipfile(path):
            large = skeleton_zip(path, target)
        elif is_legacy(path):
            large = skeleton_legacy(path, target)
        else:
            shutil.copyfile(path, target)
            continue
        (skeleton_dir / (path.name + ".json")).write_text(json.dumps(large))
        print(f"{path.name}: {len(large)} tensors left to draw, skeleton {target.stat().st_size} bytes")


def fill(skeleton_dir, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for path in sorted(skeleton_dir.iterdir()):
        if path.suffix == ".json":
            continue
        target = out_dir / path.name
        recipe = skeleton_dir / (path.name + ".json")
        if not recipe.exists():
            shutil.copyfile(path, target)
        elif path.suffix == ".onnx":
            fill_onnx(path, target, json.loads(recipe.read_text()), rng)
        elif zipfile.is_zipfile(path):
            fill_zip(path, target, json.loads(recipe.read_text()), rng)
        else:
            fill_legacy(path, target, json.loads(recipe.read_text()), rng)
        print(f"{target}: {target.stat().st_size} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("skeleton", "fill"):
        sys.exit(__doc__)
    {"skeleton": skeleton, "fill": fill}[sys.argv[1]](pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]))
