"""The ComfyUI nodes (comfyui/deepdream_nodes), called the way ComfyUI calls them: each node's
INPUT_TYPES gives the widgets' defaults, the node's FUNCTION is called with them and the
inputs, and IMAGE values are [B, H, W, C] float tensors in 0..1 (torch tensors where torch is
installed, as in ComfyUI; numpy arrays otherwise)."""

import contextlib
import importlib.util
import pathlib
import sys

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "comfyui"))

import deepdream_nodes  # noqa: E402
from deepdream_nodes import NODE_CLASS_MAPPINGS  # noqa: E402

PHOTO = REPO / "crates/deepdream/tests/fixtures/chelsea.png"

try:
    import torch
except ImportError:
    torch = None


def tensor(batch: np.ndarray):
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    return torch.from_numpy(batch) if torch is not None else batch


def as_array(image) -> np.ndarray:
    return image.numpy() if hasattr(image, "numpy") else np.asarray(image)


def run(name: str, **given):
    """Runs node `name` as ComfyUI does: widget defaults from INPUT_TYPES, then `given`."""
    node_class = NODE_CLASS_MAPPINGS[name]
    spec = node_class.INPUT_TYPES()
    arguments = {}
    for section in ("required", "optional"):
        for key, entry in spec.get(section, {}).items():
            if len(entry) > 1 and "default" in entry[1]:
                arguments[key] = entry[1]["default"]
    arguments.update(given)
    with inference_mode():
        outputs = getattr(node_class(), node_class.FUNCTION)(**arguments)
    assert isinstance(outputs, tuple) and len(outputs) == len(node_class.RETURN_TYPES)
    return outputs


@pytest.fixture(scope="module")
def frames():
    pixels = np.asarray(Image.open(PHOTO).convert("RGB"), dtype=np.float32) / 255.0
    return np.stack([pixels[40:104, 100 + 2 * k:196 + 2 * k] for k in range(3)])


@pytest.fixture(scope="module")
def vgg16():
    return run("DeepDreamLoadModel", model="vgg16")[0]


SMALL = dict(octaves=2, iterations=2)


def test_the_pack_loads_as_comfyui_loads_custom_nodes():
    # ComfyUI's nodes.load_custom_node: the folder's __init__.py, by file location.
    folder = REPO / "comfyui" / "deepdream_nodes"
    spec = importlib.util.spec_from_file_location("deepdream_nodes_in_comfyui", folder / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert set(module.NODE_CLASS_MAPPINGS) == set(NODE_CLASS_MAPPINGS)


def inference_mode():
    """ComfyUI runs nodes under torch's inference mode."""
    return torch.inference_mode() if torch is not None else contextlib.nullcontext()


def test_every_node_declares_what_comfyui_reads():
    assert set(deepdream_nodes.NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_CLASS_MAPPINGS)
    for name, node_class in NODE_CLASS_MAPPINGS.items():
        spec = node_class.INPUT_TYPES()
        assert set(spec) <= {"required", "optional"} and spec["required"], name
        for key, entry in {**spec["required"], **spec.get("optional", {})}.items():
            assert isinstance(entry, tuple) and isinstance(entry[0], (str, list)), (name, key)
        assert callable(getattr(node_class, node_class.FUNCTION)), name
        assert node_class.CATEGORY == "deepdream"


def test_the_dream_node_dreams_each_picture_of_a_batch(frames, vgg16):
    (dreamed,) = run("DeepDream", image=tensor(frames[:2]), model=vgg16, **SMALL)
    dreamed = as_array(dreamed)
    assert dreamed.shape == frames[:2].shape and dreamed.dtype == np.float32
    assert 0.0 <= dreamed.min() and dreamed.max() <= 1.0
    expected = vgg16.dream(np.rint(frames[1] * 255).astype(np.uint8), seed=1, **SMALL)
    assert np.array_equal(np.rint(dreamed[1] * 255).astype(np.uint8), expected)


def test_zoom_and_video_nodes_give_batches(frames, vgg16):
    (zoomed,) = run("DeepDreamZoom", image=tensor(frames[:1]), model=vgg16, frames=3,
                    octaves_per_frame=1, iterations_per_frame=1, **SMALL)
    assert as_array(zoomed).shape == (3, *frames.shape[1:])
    (film,) = run("DeepDreamVideo", frames=tensor(frames), model=vgg16,
                  octaves_per_frame=1, iterations_per_frame=1, **SMALL)
    assert as_array(film).shape == frames.shape
    (along_dis,) = run("DeepDreamVideo", frames=tensor(frames), model=vgg16, flow="dis",
                       octaves_per_frame=1, iterations_per_frame=1, **SMALL)
    assert as_array(along_dis).shape == frames.shape


def test_style_visualize_and_classify_nodes(frames, vgg16):
    (styled,) = run("DeepDreamStyleTransfer", content=tensor(frames[:1]), style=tensor(frames[1:]),
                    model=vgg16, size=48, iterations=2, scales=1)
    assert as_array(styled).shape[0] == 1 and max(as_array(styled).shape[1:3]) == 48
    (grown,) = run("DeepDreamVisualize", model=vgg16, layer="block3_conv3", channel=-1, size=48, steps=2)
    assert as_array(grown).shape == (1, 48, 48, 3)
    classifier = run("DeepDreamLoadModel", model="efficientnet-lite0")[0]
    cat = np.asarray(Image.open(PHOTO).convert("RGB"), dtype=np.float32)[None] / 255.0
    (text,) = run("DeepDreamClassify", image=tensor(cat), model=classifier, top=3)
    assert "cat" in text


def test_bad_widgets_raise_clear_errors(frames, vgg16):
    with pytest.raises(ValueError, match="has no layer 'nope'"):
        run("DeepDream", image=tensor(frames[:1]), model=vgg16, layers="nope", **SMALL)
    with pytest.raises(ValueError, match="channels must be numbers"):
        run("DeepDream", image=tensor(frames[:1]), model=vgg16, channels="a,b", **SMALL)


def test_a_mask_keeps_the_picture_where_it_is_zero(frames, vgg16):
    height, width = frames.shape[1:3]
    mask = np.zeros((1, height, width), np.float32)
    mask[:, :, : width // 2] = 1.0
    (dreamed,) = run("DeepDream", image=tensor(frames[:2]), model=vgg16, mask=tensor(mask),
                     layers="block3_conv3", **SMALL)
    dreamed = np.rint(as_array(dreamed) * 255).astype(int)
    original = np.rint(frames[:2] * 255).astype(int)
    # Both pictures keep their right part (the second takes the last mask of the batch).
    assert np.array_equal(dreamed[:, :, width // 2 + 16:], original[:, :, width // 2 + 16:])
    assert np.abs(dreamed[:, :, : width // 2] - original[:, :, : width // 2]).mean() > 1.0
    (picked,) = run("DeepDream", image=tensor(frames[:1]), model=vgg16, channels="auto:strongest:4",
                    layers="block3_conv3", **SMALL)
    assert as_array(picked).shape == frames[:1].shape
