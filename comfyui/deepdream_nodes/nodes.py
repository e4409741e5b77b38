"""The nodes: load a model, dream, zoom, dream a video, style transfer, visualise, classify.

IMAGE values are ``[B, H, W, C]`` float tensors in 0..1, as ComfyUI passes them; they go to
deepdream as float arrays and come back as tensors. No autograd is used (deepdream computes
its own gradients), so the nodes work under ComfyUI's inference mode. Progress goes to
ComfyUI's progress bar, and its Stop button ends a node after the current step.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

import deepdream

CATEGORY = "deepdream"
MODEL = "DEEPDREAM_MODEL"
SEED_MAX = 2**63 - 1


def _frames(image: Any) -> np.ndarray:
    """An IMAGE as an ``N x H x W x C`` float32 array."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    frames = np.asarray(image, dtype=np.float32)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise deepdream.ImageError(f"an IMAGE must be B x H x W x C, not {' x '.join(map(str, frames.shape))}")
    return frames


def _image(frames: Any) -> Any:
    """Frames (arrays or a batch array) as an IMAGE tensor (a numpy array without torch)."""
    batch = np.ascontiguousarray(np.stack([np.asarray(f, dtype=np.float32) for f in frames]))
    try:
        import torch
    except ImportError:
        return batch
    return torch.from_numpy(batch)


class _Progress:
    """deepdream's progress callback, reporting to ComfyUI's progress bar and honouring its
    Stop button (outside ComfyUI it does nothing)."""

    def __init__(self) -> None:
        try:
            import comfy.model_management
            import comfy.utils
        except ImportError:
            self.bar = None
            self.interrupted = lambda: None
        else:
            self.bar = comfy.utils.ProgressBar(1)
            self.interrupted = comfy.model_management.throw_exception_if_processing_interrupted

    def __call__(self, info: dict) -> None:
        self.interrupted()
        if self.bar is not None and "step" in info:
            done, total = info["step"], info["steps"]
            if "frame" in info and info.get("frames"):
                done, total = info["frame"] * total + done, info["frames"] * total
            self.bar.update_absolute(done, total)


def _optional_text(text: str) -> Optional[str]:
    return text.strip() or None


def _channels(text: str) -> Any:
    """Channel numbers, ``12,57``, or the picked ones, ``auto:strongest:8``."""
    text = text.strip()
    if not text:
        return None
    if text.startswith("auto"):
        return text
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise deepdream.ParameterError(f"channels must be numbers separated by commas, not '{text}'") from None


DREAM_INPUTS = {
    "layers": ("STRING", {"default": "", "tooltip": "block4_conv3, or a:0.5,b; empty: the model's default"}),
    "octaves": ("INT", {"default": 4, "min": 1, "max": 12}),
    "octave_scale": ("FLOAT", {"default": 1.4, "min": 1.01, "max": 4.0, "step": 0.05}),
    "iterations": ("INT", {"default": 10, "min": 1, "max": 1000}),
    "step": ("FLOAT", {"default": 1.5, "min": 0.01, "max": 100.0, "step": 0.05}),
    "jitter": ("INT", {"default": 32, "min": 0, "max": 512}),
    "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX}),
}
DREAM_OPTIONAL = {
    "channels": ("STRING", {"default": "", "tooltip": "only these channels: 12,57"}),
    "class_name": ("STRING", {"default": "", "tooltip": "an ImageNet class to grow (efficientnet-lite0)"}),
    "guide": ("IMAGE",),
    "mask": ("MASK", {"tooltip": "dream only where the mask is 1 (white); picture k takes mask k"}),
    "mask_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05}),
}


def _mask(mask: Any, index: int) -> Optional[np.ndarray]:
    """Picture ``index``'s mask from a MASK (``[B, H, W]`` or ``[H, W]``, 0..1), as an
    ``H x W`` float array; the last one serves the pictures after it."""
    if mask is None:
        return None
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    masks = np.asarray(mask, dtype=np.float32)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[0] == 0:
        raise deepdream.ImageError(f"a MASK must be B x H x W, not {' x '.join(map(str, masks.shape))}")
    return np.clip(masks[min(index, masks.shape[0] - 1)], 0.0, 1.0)


def _dream_options(layers, octaves, octave_scale, iterations, step, jitter, seed,
                   channels="", class_name="", guide=None, mask=None, mask_strength=1.0,
                   index=0) -> dict:
    return dict(
        mask=_mask(mask, index),
        mask_strength=mask_strength,
        layers=_optional_text(layers),
        channels=_channels(channels),
        class_=_optional_text(class_name),
        guide=None if guide is None else _frames(guide)[0],
        octaves=octaves,
        octave_scale=octave_scale,
        iterations=iterations,
        step=step,
        jitter=jitter,
        seed=seed,
    )


class LoadModel:
    """A network, loaded once and kept while the workflow runs."""

    CATEGORY = CATEGORY
    RETURN_TYPES = (MODEL,)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        names = [m["name"] for m in deepdream.models()]
        return {
            "required": {
                "model": (names, {"default": "vgg16"}),
                "device": (["cpu", "cuda"], {"default": "cpu"}),
                "precision": (["tf32", "fp32"], {"default": "tf32"}),
            }
        }

    def load(self, model, device, precision):
        return (deepdream.load(model, device=device, precision=precision),)


class Dream:
    """The 2015 algorithm on every picture of a batch (picture k with seed + k)."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "dream"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "model": (MODEL,), **DREAM_INPUTS}, "optional": DREAM_OPTIONAL}

    def dream(self, image, model, seed, **options):
        progress = _Progress()
        dreamed = [
            model.dream(frame, progress=progress, **_dream_options(seed=seed + k, index=k, **options))
            for k, frame in enumerate(_frames(image))
        ]
        return (_image(dreamed),)


class Zoom:
    """An endless zoom from the first picture: the frames as an IMAGE batch."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "zoom"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE",),
                "model": (MODEL,),
                "frames": ("INT", {"default": 30, "min": 1, "max": 100000}),
                "zoom": ("FLOAT", {"default": 1.05, "min": 0.5, "max": 2.0, "step": 0.01}),
                "rotate": ("FLOAT", {"default": 0.0, "min": -45.0, "max": 45.0, "step": 0.1}),
                "pan_x": ("FLOAT", {"default": 0.0, "min": -256.0, "max": 256.0, "step": 0.5}),
                "pan_y": ("FLOAT", {"default": 0.0, "min": -256.0, "max": 256.0, "step": 0.5}),
                "colour_match": ("BOOLEAN", {"default": True}),
                "octaves_per_frame": ("INT", {"default": 2, "min": 1, "max": 12}),
                "iterations_per_frame": ("INT", {"default": 5, "min": 1, "max": 1000}),
                **DREAM_INPUTS,
            },
            "optional": DREAM_OPTIONAL,
        }

    def zoom(self, image, model, frames, zoom, rotate, pan_x, pan_y, colour_match,
             octaves_per_frame, iterations_per_frame, **options):
        made = model.zoom(
            _frames(image)[0], frames=frames, zoom=zoom, rotate=rotate, pan=(pan_x, pan_y),
            colour_match=colour_match, octaves_per_frame=octaves_per_frame,
            iterations_per_frame=iterations_per_frame, progress=_Progress(), **_dream_options(**options),
        )
        return (_image(made),)


class DreamVideo:
    """A dream film from an IMAGE batch, coherent along the optical flow."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "video"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("IMAGE",),
                "model": (MODEL,),
                "blend": ("FLOAT", {"default": 0.8, "min": 0.0, "max": 1.0, "step": 0.05}),
                "cut_threshold": ("FLOAT", {"default": 30.0, "min": 0.1, "max": 255.0, "step": 0.5}),
                "octaves_per_frame": ("INT", {"default": 2, "min": 1, "max": 12}),
                "iterations_per_frame": ("INT", {"default": 4, "min": 1, "max": 1000}),
                "flow": (["farneback", "dis"], {"default": "farneback"}),
                **DREAM_INPUTS,
            },
            "optional": DREAM_OPTIONAL,
        }

    def video(self, frames, model, blend, cut_threshold, octaves_per_frame, iterations_per_frame, flow, **options):
        made = model.video(
            _frames(frames), blend=blend, cut_threshold=cut_threshold,
            octaves_per_frame=octaves_per_frame, iterations_per_frame=iterations_per_frame, flow=flow,
            progress=_Progress(), **_dream_options(**options),
        )
        return (_image(made),)


class StyleTransfer:
    """The content picture painted in the manner of the style picture(s) of a batch."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "style"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "content": ("IMAGE",),
                "style": ("IMAGE",),
                "model": (MODEL,),
                "size": ("INT", {"default": 512, "min": 32, "max": 8192}),
                "iterations": ("INT", {"default": 200, "min": 1, "max": 10000}),
                "scales": ("INT", {"default": 2, "min": 1, "max": 8}),
                "content_weight": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 1e6}),
                "style_weight": ("FLOAT", {"default": 500.0, "min": 0.0, "max": 1e9}),
                "tv_weight": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1e6}),
                "preserve_colors": ("BOOLEAN", {"default": False}),
                "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX}),
            }
        }

    def style(self, content, style, model, **options):
        styles = list(_frames(style))
        styled = model.style(_frames(content)[0], styles, progress=_Progress(), **options)
        return (_image([styled]),)


class Visualize:
    """A picture grown from noise for a channel, a layer or an ImageNet class."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "visualize"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL,),
                "layer": ("STRING", {"default": "block4_conv3"}),
                "channel": ("INT", {"default": 0, "min": -1, "max": 100000, "tooltip": "-1: the whole layer"}),
                "size": ("INT", {"default": 224, "min": 16, "max": 4096}),
                "steps": ("INT", {"default": 256, "min": 1, "max": 100000}),
                "priors": ("BOOLEAN", {"default": True}),
                "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX}),
            },
            "optional": {"class_name": ("STRING", {"default": "", "tooltip": "grow this class instead"})},
        }

    def visualize(self, model, layer, channel, size, steps, priors, seed, class_name=""):
        target = dict(class_=class_name.strip()) if class_name.strip() else dict(
            layer=layer, channel=None if channel < 0 else channel)
        grown = model.visualize(size=size, steps=steps, priors=priors, seed=seed, progress=_Progress(), **target)
        return (_image([np.asarray(grown, dtype=np.float32) / 255.0]),)


class Classify:
    """The ImageNet classes a network with a classifier sees in the first picture."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    FUNCTION = "classify"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "model": (MODEL,), "top": ("INT", {"default": 5, "min": 1, "max": 1000})}}

    def classify(self, image, model, top):
        guesses = model.classify(_frames(image)[0], top)
        return ("\n".join(f"{name} ({probability:.1%})" for _, name, probability in guesses),)


NODE_CLASS_MAPPINGS = {
    "DeepDreamLoadModel": LoadModel,
    "DeepDream": Dream,
    "DeepDreamZoom": Zoom,
    "DeepDreamVideo": DreamVideo,
    "DeepDreamStyleTransfer": StyleTransfer,
    "DeepDreamVisualize": Visualize,
    "DeepDreamClassify": Classify,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "DeepDreamLoadModel": "Load DeepDream Model",
    "DeepDream": "DeepDream",
    "DeepDreamZoom": "DeepDream Zoom",
    "DeepDreamVideo": "DeepDream Video",
    "DeepDreamStyleTransfer": "Style Transfer (deepdream)",
    "DeepDreamVisualize": "Visualize Feature (deepdream)",
    "DeepDreamClassify": "Classify (deepdream)",
}
