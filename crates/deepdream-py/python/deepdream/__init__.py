"""DeepDream on a fast Rust engine: the original 2015 algorithm on pretrained CNNs, with no
PyTorch needed.

    import deepdream
    picture = deepdream.dream("photo.jpg", model="vgg16", seed=1)
    picture.save("dream.png")

Images go in as a path, a PIL image or a numpy array (``H x W x 3`` or ``x 4``, ``uint8`` or
float in 0..1) and come back as the same kind (a path gives a PIL image). A :class:`Model`
keeps a loaded network across calls. Work runs with the GIL released; Ctrl-C stops it after
the current step (as ``KeyboardInterrupt``).
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from importlib.metadata import version as _version

from . import _deepdream
from .errors import DeviceError, Error, ImageError, ModelError, ParameterError, VideoError

__all__ = [
    "Model",
    "load",
    "dream",
    "classify",
    "style",
    "visualize",
    "zoom",
    "video",
    "live",
    "LiveFeed",
    "layers",
    "models",
    "save_animation",
    "read_video",
    "Error",
    "ParameterError",
    "ImageError",
    "ModelError",
    "DeviceError",
    "VideoError",
]

__version__ = _version("deepdream")

ImageLike = Union[str, os.PathLike, np.ndarray, Any]
"""A path, a PIL image, or a numpy array."""

class _Image:
    """An input image as the native module takes it, and how to give the result back."""

    def __init__(self, image: ImageLike, what: str = "image"):
        self.kind = "array"
        self.float_dtype = None
        if isinstance(image, (str, os.PathLike)):
            path = os.fspath(image)
            if not os.path.exists(path):
                raise FileNotFoundError(f"{what} {path} does not exist")
            self.kind = "path"
            self.array = _deepdream.load_image(path)
            return
        if _is_pil(image):
            self.kind = "pil"
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info else "RGB")
            self.array = np.asarray(image, dtype=np.uint8)
            return
        if not isinstance(image, np.ndarray):
            raise ImageError(
                f"{what} must be a path, a PIL image or a numpy array, not {type(image).__name__}"
            )
        array = image
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ImageError(
                f"{what} array must be height x width x 3 or 4, not {' x '.join(map(str, image.shape))}"
            )
        if array.size == 0:
            raise ImageError(f"{what} array is empty")
        if array.dtype == np.uint8:
            self.array = np.ascontiguousarray(array)
        elif np.issubdtype(array.dtype, np.floating):
            if not np.all(np.isfinite(array)):
                raise ImageError(f"{what} array has NaN or infinite values")
            self.float_dtype = array.dtype
            self.array = np.ascontiguousarray(
                np.clip(np.rint(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
            )
        else:
            raise ImageError(f"{what} array must be uint8 or float (0..1), not {array.dtype}")

    @staticmethod
    def to_pil(array: np.ndarray) -> Any:
        """An array as a PIL image."""
        from PIL import Image

        return Image.fromarray(array, "RGBA" if array.shape[2] == 4 else "RGB")

    def back(self, array: np.ndarray) -> Any:
        """The result as the caller gave the input."""
        if self.kind in ("pil", "path"):
            return self.to_pil(array)
        if self.float_dtype is not None:
            return (array.astype(np.float64) / 255.0).astype(self.float_dtype)
        return array


def _is_pil(image: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return False
    return isinstance(image, Image.Image)


def _layers(layers: Union[None, str, Iterable[Any]]) -> Optional[list]:
    """Layers as ``(name, weight)`` pairs, from ``"a:0.5,b"``, ``["a", ("b", 2)]`` or a dict."""
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = [part for part in layers.split(",") if part.strip()]
        if not layers:
            raise ParameterError("layers is empty")
    if isinstance(layers, dict):
        layers = list(layers.items())
    pairs = []
    for layer in layers:
        if isinstance(layer, str):
            name, _, weight = layer.strip().rpartition(":") if ":" in layer else (layer.strip(), "", "1")
            try:
                pairs.append((name.strip(), float(weight)))
            except ValueError:
                raise ParameterError(f"layer weight '{weight}' is not a number") from None
        else:
            name, weight = layer
            pairs.append((str(name), float(weight)))
    if not pairs:
        raise ParameterError("layers is empty")
    return pairs


def _class(class_: Union[None, int, str]) -> Optional[int]:
    if class_ is None:
        return None
    if isinstance(class_, (int, np.integer)) and not isinstance(class_, bool):
        return _deepdream.find_class(str(int(class_)))
    return _deepdream.find_class(str(class_))


def _in_notebook() -> bool:
    """Whether the code runs in a Jupyter kernel."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


@contextlib.contextmanager
def _progress(progress: Union[None, bool, Callable[[dict], Any]], preview_every: int = 0):
    """The callback for ``progress`` and the preview interval, for the length of a run: a
    function as given; ``True`` for a tqdm bar (when tqdm is installed, closed when the run
    ends) and, in Jupyter, a preview of the picture that updates in place (every
    ``preview_every`` steps, 5 if not given); ``None``/``False`` for none."""
    if callable(progress) or not progress:
        yield (progress or None), preview_every
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    bar = tqdm(unit="step") if tqdm is not None else None
    shown = None
    if _in_notebook():
        from IPython.display import display

        preview_every = preview_every or 5
        shown = display(display_id=True)

    def update(info: dict) -> None:
        if bar is not None and "step" in info:
            bar.total = info["steps"]
            bar.n = info["step"]
            where = f"octave {info['octave'] + 1}/{info['octaves']}" if "octave" in info else ""
            if "frame" in info:
                where = f"frame {info['frame'] + 1}/{info['frames'] or '?'}"
            bar.set_postfix_str(where)
            bar.refresh()
        if shown is not None and "preview" in info:
            shown.update(_Image.to_pil(info["preview"]))

    try:
        yield update, preview_every
    finally:
        if bar is not None:
            bar.close()


def _seed(seed: Optional[int]) -> int:
    """The seed given, or a random one (as the CLI chooses when none is given)."""
    return _number("seed", random.getrandbits(63) if seed is None else seed, int, False)


def _number(name: str, value: Any, kind: type, positive: Optional[bool] = True) -> Any:
    """``value`` as a ``kind`` number: positive, zero or more (``positive=False``), or any
    sign (``None``); anything else is a :class:`ParameterError`."""
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number, not {value!r}") from None
    if isinstance(value, bool) or (kind is float and not np.isfinite(number)):
        raise ParameterError(f"{name} must be a finite number, not {value!r}")
    if kind is int and number != value:
        raise ParameterError(f"{name} must be a whole number, not {value!r}")
    if positive is not None and ((positive and number <= 0) or number < 0):
        raise ParameterError(f"{name} must be {'positive' if positive else 'zero or more'}, not {value!r}")
    return number


_DREAM_DEFAULTS = dict(
    layers=None, channels=None, class_=None, guide=None, octaves=4, octave_scale=1.4,
    iterations=10, step=1.5, jitter=32, seed=None, max_memory=None, mask=None,
    mask_strength=1.0, regions=None,
)


def _channels(channels: Any) -> tuple:
    """``(channels, auto_channels)``: a list of numbers, or ``"auto:strongest:8"``."""
    if channels is None:
        return None, None
    if isinstance(channels, str):
        return None, channels
    return [_number("channel", c, int, False) for c in channels], None


def _regions(regions: Any) -> list:
    """Regions as ``(mask, layers, channels)``, from ``(mask, {"layers": …, "channels": …})``
    pairs."""
    if regions is None:
        return []
    checked = []
    for region in regions:
        if not (isinstance(region, (tuple, list)) and len(region) == 2 and isinstance(region[1], dict)):
            raise ParameterError(
                'a region is a (mask, {"layers": ..., "channels": ...}) pair'
            )
        mask, options = region
        unknown = set(options) - {"layers", "channels"}
        if unknown:
            raise ParameterError(f"unknown region option(s): {', '.join(sorted(unknown))} (use layers and channels)")
        channels = options.get("channels")
        checked.append((
            _Image(mask, "region mask").array,
            _layers(options.get("layers")),
            None if channels is None else [_number("channel", c, int, False) for c in channels],
        ))
    return checked


def _control(keyframes: Any = None, audio: Any = None, react: Any = None, react_band: str = "all",
             react_smooth: float = 0.1, guide_video: Any = None, guide_video_end: str = "loop") -> dict:
    """What changes over an animation's frames, as the native module takes it, checked."""
    def path(value: Any, what: str) -> Optional[str]:
        if value is None:
            return None
        if not isinstance(value, (str, os.PathLike)):
            raise ParameterError(f"{what} must be a path")
        value = os.fspath(value)
        if not os.path.exists(value):
            raise FileNotFoundError(f"{what} {value} does not exist")
        return value
    if react is not None and not isinstance(react, str):
        react = ",".join(f"{name}={low}..{high}" for name, (low, high) in dict(react).items())
    return dict(
        keyframes=_keyframes(keyframes),
        audio=path(audio, "audio"),
        react=react,
        react_band=str(react_band),
        react_smooth=_number("react_smooth", react_smooth, float, False),
        guide_video=path(guide_video, "guide_video"),
        guide_video_end=str(guide_video_end),
    )


def _holds_sound(output: Any) -> bool:
    """Whether an animation written to ``output`` can carry sound (a video, not a GIF)."""
    return not os.fspath(output).lower().endswith(".gif")


def _keyframes(keyframes: Any) -> Optional[tuple]:
    """A schedule as ``(text, is_json)``: from a dict (``{"keyframes": [...]}``) or a
    ``.toml`` / ``.json`` file."""
    if keyframes is None:
        return None
    if isinstance(keyframes, dict):
        import json

        return json.dumps(keyframes), True
    if isinstance(keyframes, (str, os.PathLike)):
        path = os.fspath(keyframes)
        if not os.path.exists(path):
            raise FileNotFoundError(f"keyframes {path} does not exist")
        with open(path, encoding="utf-8") as file:
            return file.read(), path.lower().endswith(".json")
    raise ParameterError("keyframes must be a dict or the path of a TOML or JSON file")


def _dream_options(options: dict) -> dict:
    """The dream options as the native module takes them, checked."""
    unknown = set(options) - set(_DREAM_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown dream option(s): {', '.join(sorted(unknown))}")
    o = {**_DREAM_DEFAULTS, **options}
    channels, auto_channels = _channels(o["channels"])
    return dict(
        layers=_layers(o["layers"]),
        channels=channels,
        auto_channels=auto_channels,
        mask=None if o["mask"] is None else _Image(o["mask"], "mask").array,
        mask_strength=_number("mask_strength", o["mask_strength"], float, False),
        regions=_regions(o["regions"]),
        class_=_class(o["class_"]),
        guide=None if o["guide"] is None else _Image(o["guide"], "guide").array,
        octaves=_number("octaves", o["octaves"], int),
        octave_scale=_number("octave_scale", o["octave_scale"], float),
        iterations=_number("iterations", o["iterations"], int),
        step=_number("step", o["step"], float),
        jitter=_number("jitter", o["jitter"], int, False),
        seed=_seed(o["seed"]),
        max_memory=o["max_memory"],
    )


def _is_pair(value: Any) -> bool:
    """Whether ``value`` is an ``(image, weight)`` pair."""
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[1], (int, float, np.floating, np.integer))
        and not isinstance(value[1], bool)
    )


class Model:
    """A network loaded once, to dream and classify with across calls.

    ``Model("vgg16")``, ``Model(weights="net.onnx", preprocess="torch")``,
    ``Model("vgg16", device="cuda")``. Weights are fetched into the CLI's cache on first use.
    """

    def __init__(
        self,
        name: Optional[str] = None,
        *,
        weights: Union[None, str, os.PathLike] = None,
        preprocess: Optional[str] = None,
        device: str = "cpu",
        precision: str = "tf32",
    ):
        self._native = _deepdream.Model(
            name,
            weights=None if weights is None else os.fspath(weights),
            preprocess=preprocess,
            device=device,
            precision=precision,
        )

    @property
    def name(self) -> str:
        """The model's name."""
        return self._native.name

    @property
    def default_layers(self) -> list:
        """The layers dreamed when none are named."""
        return self._native.default_layers

    @property
    def layers(self) -> list:
        """The dreamable layers, shallowest first, as dicts (name, kind, channels, stride)."""
        return [
            {"name": name, "kind": kind, "channels": channels, "stride": stride}
            for name, kind, channels, stride in self._native.layers
        ]

    @property
    def classifier(self) -> bool:
        """Whether the model has an ImageNet classifier."""
        return self._native.classifier

    def __repr__(self) -> str:
        return f"deepdream.Model({self.name!r})"

    def dream(
        self,
        image: ImageLike,
        *,
        layers: Union[None, str, Iterable[Any]] = None,
        channels: Union[None, str, Sequence[int]] = None,
        class_: Union[None, int, str] = None,
        guide: Optional[ImageLike] = None,
        octaves: int = 4,
        octave_scale: float = 1.4,
        iterations: int = 10,
        step: float = 1.5,
        jitter: int = 32,
        seed: Optional[int] = None,
        max_memory: Union[None, int, str] = None,
        mask: Optional[ImageLike] = None,
        mask_strength: float = 1.0,
        regions: Optional[Sequence[Any]] = None,
        progress: Union[None, bool, Callable[[dict], Any]] = None,
        preview_every: int = 0,
    ) -> Any:
        """Dreams ``image``: the 2015 algorithm, ``octaves`` scales of ``iterations`` steps.

        Options are the CLI's: ``layers`` (``"block4_conv3"``, ``"a:0.5,b"``, a list of names
        or ``(name, weight)`` pairs), ``channels``, ``class_`` (an ImageNet class name or
        number), ``guide`` (an image), ``octaves``, ``octave_scale``, ``iterations``,
        ``step``, ``jitter``, ``seed`` (random when ``None``; the same seed and options give
        the CLI's picture), ``max_memory`` (``"1G"``; larger images are dreamed in exact
        tiles). ``channels`` may also be ``"auto:strongest:N"`` (or ``weakest``, ``random``;
        ``:octave`` after it picks again each octave). ``mask`` (an image: white dreams,
        black stays) with ``mask_strength`` (0-1) limits where the picture changes;
        ``regions`` is a list of ``(mask, {"layers": ..., "channels": ...})`` pairs, each
        part dreamed with its own objective. ``progress`` is a function called with a dict after every step (with
        ``preview``, the picture so far, every ``preview_every`` steps), or ``True`` for a
        tqdm bar. Returns the dream as the same kind of image as ``image``.
        """
        source = _Image(image)
        options = _dream_options(dict(
            layers=layers, channels=channels, class_=class_, guide=guide, octaves=octaves,
            octave_scale=octave_scale, iterations=iterations, step=step, jitter=jitter,
            seed=seed, max_memory=max_memory, mask=mask, mask_strength=mask_strength,
            regions=regions,
        ))
        with _progress(progress, preview_every) as (callback, preview_every):
            dreamed = self._native.dream(
                source.array,
                progress=callback,
                preview_every=_number("preview_every", preview_every, int, False),
                options=options,
            )
        return source.back(dreamed)

    def style(
        self,
        content: ImageLike,
        styles: Union[ImageLike, Sequence[Any]],
        *,
        style_layers: Optional[Sequence[str]] = None,
        content_layers: Optional[Sequence[str]] = None,
        content_weight: float = 5.0,
        style_weight: float = 500.0,
        tv_weight: float = 1.0,
        init: str = "content",
        optimizer: str = "lbfgs",
        learning_rate: float = 10.0,
        iterations: int = 200,
        size: int = 512,
        scales: int = 2,
        scale_ratio: float = 2.0,
        preserve_colors: bool = False,
        seed: Optional[int] = None,
        progress: Union[None, bool, Callable[[dict], Any]] = None,
        preview_every: int = 0,
    ) -> Any:
        """Paints ``content`` in the style of ``styles`` (one image, or a list of images or
        ``(image, weight)`` pairs to blend): neural style transfer, the CLI's ``style``.
        Returns the picture as the same kind of image as ``content``."""
        source = _Image(content, "content")
        if isinstance(styles, (list, tuple)) and not _is_pair(styles):
            pairs = [s if _is_pair(s) else (s, 1.0) for s in styles]
        else:
            pairs = [styles if _is_pair(styles) else (styles, 1.0)]
        if not pairs:
            raise ParameterError("styles names no image")
        style_images = [(_Image(image, "style").array, _number("style weight", weight, float)) for image, weight in pairs]
        with _progress(progress, preview_every) as (callback, preview_every):
            styled = self._native.style(
                source.array,
                style_images,
                style_layers=None if style_layers is None else list(style_layers),
                content_layers=None if content_layers is None else list(content_layers),
                content_weight=_number("content_weight", content_weight, float, False),
                style_weight=_number("style_weight", style_weight, float, False),
                tv_weight=_number("tv_weight", tv_weight, float, False),
                init=init,
                optimizer=optimizer,
                learning_rate=_number("learning_rate", learning_rate, float),
                iterations=_number("iterations", iterations, int),
                size=_number("size", size, int),
                scales=_number("scales", scales, int),
                scale_ratio=_number("scale_ratio", scale_ratio, float),
                preserve_colors=bool(preserve_colors),
                seed=_seed(seed),
                progress=callback,
                preview_every=_number("preview_every", preview_every, int, False),
            )
        return source.back(styled)

    def visualize(
        self,
        layer: Optional[str] = None,
        channel: Optional[int] = None,
        *,
        class_: Union[None, int, str] = None,
        size: int = 224,
        steps: int = 256,
        learning_rate: float = 0.05,
        priors: bool = True,
        seed: Optional[int] = None,
        progress: Union[None, bool, Callable[[dict], Any]] = None,
        preview_every: int = 0,
    ) -> Any:
        """Grows a picture from noise that excites ``channel`` of ``layer``, the whole
        ``layer``, or the ImageNet class ``class_``: feature visualisation, the CLI's
        ``visualize``. ``priors=False`` is plain gradient ascent on pixels. Returns a PIL
        image."""
        with _progress(progress, preview_every) as (callback, preview_every):
            grown = self._native.visualize(
                layer=layer,
                channel=None if channel is None else _number("channel", channel, int, False),
                class_=_class(class_),
                size=_number("size", size, int),
                steps=_number("steps", steps, int),
                learning_rate=_number("learning_rate", learning_rate, float),
                priors=bool(priors),
                seed=_seed(seed),
                progress=callback,
                preview_every=_number("preview_every", preview_every, int, False),
            )
        return _Image.to_pil(grown)

    def zoom(
        self,
        image: ImageLike,
        *,
        frames: int = 100,
        zoom: float = 1.05,
        rotate: float = 0.0,
        pan: Sequence[float] = (0.0, 0.0),
        colour_match: bool = True,
        octaves_per_frame: int = 2,
        iterations_per_frame: int = 5,
        output: Union[None, str, os.PathLike] = None,
        fps: float = 25.0,
        keyframes: Union[None, dict, str, os.PathLike] = None,
        audio: Union[None, str, os.PathLike] = None,
        react: Union[None, str, dict] = None,
        react_band: str = "all",
        react_smooth: float = 0.1,
        progress: Union[None, bool, Callable[[dict], Any]] = None,
        **dream_options: Any,
    ) -> list:
        """An endless zoom: ``frames`` frames, each the previous one zoomed by ``zoom``
        (turned by ``rotate`` degrees, moved by ``pan`` pixels) and dreamed again with
        ``octaves_per_frame`` octaves of ``iterations_per_frame`` steps; the first frame is
        the full dream with ``dream_options`` (:meth:`dream`'s). Returns the frames, each
        the same kind of image as ``image``, and with ``output`` also writes them as a GIF
        or a video (by its extension) at ``fps`` frames a second. ``keyframes`` (a dict
        like ``{"keyframes": [{"frame": 0, "step": 0.5}, {"time": 4, "step": 3}]}``, or a
        TOML or JSON file, the CLI's ``--keyframes``) moves numbers, layers and channels
        over the frames. ``audio`` (a sound file) makes the zoom last as long as the sound,
        which ``output`` (a video) carries; ``react`` (``"step=0.5..3,zoom=1.01..1.06"`` or
        ``{"step": (0.5, 3)}``) lets its loudness in ``react_band`` (bass, mid, treble,
        all), falling back over ``react_smooth`` seconds, move those numbers."""
        source = _Image(image)
        options = _dream_options(dream_options)
        control = _control(keyframes, audio, react, react_band, react_smooth)
        pan = tuple(pan)
        if len(pan) != 2:
            raise ParameterError(f"pan must be two numbers (right, down), not {pan!r}")
        with _progress(progress) as (callback, _):
            made = self._native.zoom(
                source.array[:, :, :3],
                frames=_number("frames", frames, int),
                zoom=_number("zoom", zoom, float),
                rotate=_number("rotate", rotate, float, None),
                pan=tuple(_number("pan", p, float, None) for p in pan),
                colour_match=bool(colour_match),
                octaves_per_frame=_number("octaves_per_frame", octaves_per_frame, int),
                iterations_per_frame=_number("iterations_per_frame", iterations_per_frame, int),
                progress=callback,
                options=options,
                control=control,
                fps=_number("fps", fps, float),
            )
        if output is not None:
            _deepdream.save_animation(made, os.fspath(output), _number("fps", fps, float), control["audio"])
        return [source.back(frame) for frame in made]

    def video(
        self,
        frames: Union[np.ndarray, Sequence[ImageLike]],
        *,
        blend: float = 0.8,
        cut_threshold: float = 30.0,
        octaves_per_frame: int = 2,
        iterations_per_frame: int = 4,
        flow: str = "farneback",
        output: Union[None, str, os.PathLike] = None,
        fps: Optional[float] = None,
        keyframes: Union[None, dict, str, os.PathLike] = None,
        react: Union[None, str, dict] = None,
        react_band: str = "all",
        react_smooth: float = 0.1,
        audio: Union[None, str, os.PathLike] = None,
        guide_video: Union[None, str, os.PathLike] = None,
        guide_video_end: str = "loop",
        progress: Union[None, bool, Callable[[dict], Any]] = None,
        **dream_options: Any,
    ) -> Any:
        """A dream film: each frame starts from the previous frame's dream carried along the
        optical flow (``blend`` of it), so the dream holds together; scene cuts (a mean
        difference over ``cut_threshold`` grey levels after the flow) are dreamed afresh.
        The first frame is the full dream with ``dream_options`` (:meth:`dream`'s), the
        others get ``octaves_per_frame`` octaves of ``iterations_per_frame`` steps. ``flow`` is
        the optical flow: ``"farneback"`` (smoother) or ``"dis"`` (dense inverse search, far
        faster).
        ``frames`` is a list of images, an ``N x H x W x C`` array (a batch, as ComfyUI
        passes them), or a video file's path (decoded with the system's FFmpeg); the result
        is the same kind (a list of PIL images for a file). With ``output`` the film is also
        written as a GIF or a video at ``fps`` frames a second (the input video's rate by
        default, else 25). ``keyframes`` and ``react`` are :meth:`zoom`'s (times count at
        ``fps``); the sound is ``audio``, or the video file's own (then also carried by
        ``output``). ``guide_video`` guides each frame by its frame at the same time (looped
        when shorter, or held with ``guide_video_end="hold"``). For a long film, resumable,
        use the ``deepdream video`` command."""
        if isinstance(frames, (str, os.PathLike)):
            if audio is None and _deepdream.has_sound(os.fspath(frames)):
                audio = os.fspath(frames)
            frames, rate = read_video(frames)
            fps = rate if fps is None else fps
        batch = isinstance(frames, np.ndarray)
        if batch and frames.ndim != 4:
            raise ImageError(f"a batch of frames must be N x H x W x C, not {' x '.join(map(str, frames.shape))}")
        sources = [_Image(frame, "frame") for frame in (list(frames) if batch else frames)]
        if not sources:
            raise ParameterError("the video has no frames")
        options = _dream_options(dream_options)
        control = _control(keyframes, audio, react, react_band, react_smooth, guide_video, guide_video_end)
        with _progress(progress) as (callback, _):
            made = self._native.video(
                [source.array[:, :, :3] for source in sources],
                blend=_number("blend", blend, float, False),
                cut_threshold=_number("cut_threshold", cut_threshold, float),
                octaves_per_frame=_number("octaves_per_frame", octaves_per_frame, int),
                iterations_per_frame=_number("iterations_per_frame", iterations_per_frame, int),
                flow=str(flow),
                progress=callback,
                options=options,
                control=control,
                fps=_number("fps", 25.0 if fps is None else fps, float),
            )
        if output is not None:
            rate = _number("fps", 25.0 if fps is None else fps, float)
            sound = control["audio"] if _holds_sound(output) else None
            _deepdream.save_animation(made, os.fspath(output), rate, sound)
        dreamed = [source.back(frame) for source, frame in zip(sources, made)]
        return np.stack(dreamed) if batch else dreamed

    def live(
        self,
        source: Union[str, os.PathLike],
        *,
        size: Optional[tuple] = None,
        realtime: bool = False,
        camera_format: Optional[str] = None,
        blend: float = 0.8,
        octaves_per_frame: int = 1,
        iterations_per_frame: int = 2,
        flow: str = "dis",
        fps: Optional[float] = None,
        retries: int = 5,
        **dream_options: Any,
    ) -> "LiveFeed":
        """A live feed: ``source`` (a camera such as ``"/dev/video0"``, a video file, played at
        its own rate with ``realtime=True``, or a stream URL such as ``"udp://@:5000"``,
        tried ``retries`` times when it does not answer) dreamed as it comes on a thread of
        its own. Iterate over it for the dreams (arrays ``H x W x 3``) as they come: frames
        that arrive while one is dreamed are skipped, so a slow loop never falls behind.
        Each frame starts from the previous dream carried along the optical flow (``flow``:
        ``"dis"`` or ``"farneback"``, ``blend`` of it) and gets ``octaves_per_frame``
        octaves of ``iterations_per_frame`` steps; ``size=(width, height)`` scales the
        frames; ``fps`` holds a frame rate by lowering the steps, then the size. The other
        options are :meth:`dream`'s. ``feed.set("step", 2.0)`` changes a setting from the
        next frame; ``feed.report`` tells how it goes; ``feed.close()`` (or leaving a
        ``with`` block) stops it."""
        options = _dream_options(dream_options)
        native = self._native.live(
            os.fspath(source),
            options,
            size=None if size is None else (_number("width", size[0], int), _number("height", size[1], int)),
            realtime=bool(realtime),
            camera_format=camera_format,
            blend=_number("blend", blend, float, False),
            octaves_per_frame=_number("octaves_per_frame", octaves_per_frame, int),
            iterations_per_frame=_number("iterations_per_frame", iterations_per_frame, int),
            flow=str(flow),
            fps=None if fps is None else _number("fps", fps, float),
            retries=_number("retries", retries, int),
        )
        return LiveFeed(native)

    def classify(self, image: ImageLike, top: int = 5) -> list:
        """The ``top`` most probable ImageNet classes: ``(class, name, probability)`` each."""
        return self._native.classify(_Image(image).array, _number("top", top, int))


_loaded: dict = {}


def load(name: Optional[str] = None, *, device: str = "cpu", precision: str = "tf32", **options: Any) -> Model:
    """The model ``name`` on ``device``, loaded once per process and kept (``options``:
    ``weights``, ``preprocess``, which load a new one)."""
    if options:
        return Model(name, device=device, precision=precision, **options)
    key = (name or _deepdream.default_model(), device, precision)
    if key not in _loaded:
        _loaded[key] = Model(name, device=device, precision=precision)
    return _loaded[key]


def _model(model: Union[None, str, Model], device: str, precision: str) -> Model:
    if isinstance(model, Model):
        return model
    return load(model, device=device, precision=precision)


def dream(
    image: ImageLike,
    model: Union[None, str, Model] = None,
    *,
    device: str = "cpu",
    precision: str = "tf32",
    **options: Any,
) -> Any:
    """Dreams ``image`` with ``model`` (a name, loaded once and kept, or a :class:`Model`);
    ``options`` are :meth:`Model.dream`'s."""
    return _model(model, device, precision).dream(image, **options)


def style(
    content: ImageLike,
    styles: Union[ImageLike, Sequence[Any]],
    model: Union[None, str, Model] = None,
    *,
    device: str = "cpu",
    precision: str = "tf32",
    **options: Any,
) -> Any:
    """Neural style transfer with ``model`` (VGG16 by default); ``options`` are
    :meth:`Model.style`'s."""
    return _model(model, device, precision).style(content, styles, **options)


def visualize(
    layer: Optional[str] = None,
    channel: Optional[int] = None,
    model: Union[None, str, Model] = None,
    *,
    device: str = "cpu",
    precision: str = "tf32",
    **options: Any,
) -> Any:
    """Feature visualisation with ``model``; ``options`` are :meth:`Model.visualize`'s."""
    return _model(model, device, precision).visualize(layer, channel, **options)


def zoom(
    image: ImageLike,
    model: Union[None, str, Model] = None,
    *,
    device: str = "cpu",
    precision: str = "tf32",
    **options: Any,
) -> list:
    """An endless zoom with ``model``; ``options`` are :meth:`Model.zoom`'s."""
    return _model(model, device, precision).zoom(image, **options)


def video(
    frames: Union[np.ndarray, Sequence[ImageLike]],
    model: Union[None, str, Model] = None,
    *,
    device: str = "cpu",
    precision: str = "tf32",
    **options: Any,
) -> Any:
    """A dream film with ``model``; ``options`` are :meth:`Model.video`'s."""
    return _model(model, device, precision).video(frames, **options)


class LiveFeed:
    """Dreams of a live source as they come (see :meth:`Model.live`); iterate for them."""

    def __init__(self, native: Any):
        self._native = native

    def __iter__(self) -> "LiveFeed":
        return self

    def __next__(self) -> np.ndarray:
        dream = self._native.next()
        if dream is None:
            raise StopIteration
        return dream

    def set(self, name: str, value: Any) -> None:
        """Changes a setting from the next frame: ``step``, ``iterations``, ``octaves``,
        ``octave_scale``, ``jitter``, ``blend``, ``layers``, ``channels``, ``flow``,
        ``fps`` (a number or ``"off"``), ``cut_threshold``."""
        self._native.set(name, value)

    @property
    def report(self) -> Optional[dict]:
        """The last dream's report: ``frame`` (the source's number), ``dreamed``,
        ``dropped`` (frames skipped), ``fps``, ``latency`` (seconds from the frame's
        arrival), ``changes`` (settings changes seen), ``change`` (mean change per pixel),
        ``steps`` and ``scale`` (what holding ``fps`` left)."""
        return self._native.report()

    def close(self) -> None:
        """Stops the feed."""
        self._native.close()

    def __enter__(self) -> "LiveFeed":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def live(
    source: Union[str, os.PathLike],
    model: Union[None, str, Model] = None,
    *,
    device: str = "cpu",
    precision: str = "tf32",
    **options: Any,
) -> LiveFeed:
    """A live feed of ``source`` dreamed with ``model``; ``options`` are :meth:`Model.live`'s."""
    return _model(model, device, precision).live(source, **options)


def classify(
    image: ImageLike,
    model: Union[None, str, Model] = "efficientnet-lite0",
    top: int = 5,
    *,
    device: str = "cpu",
) -> list:
    """The ``top`` most probable ImageNet classes of ``image``."""
    return _model(model, device, "tf32").classify(image, top)


def layers(model: Union[None, str, Model] = None) -> list:
    """The layers ``model`` can dream on."""
    return _model(model, "cpu", "tf32").layers


def save_animation(frames: Union[np.ndarray, Sequence[ImageLike]], path: Union[str, os.PathLike], fps: float = 25.0,
                   audio: Union[None, str, os.PathLike] = None) -> None:
    """Writes frames as an animated GIF or a video (``.mp4``, ``.mov``, ``.mkv``, ``.webm``,
    through the system's FFmpeg) at ``fps`` frames a second; nothing appears at ``path``
    unless the whole file is written. A video gets the sound of the file ``audio``."""
    arrays = [_Image(frame, "frame").array[:, :, :3] for frame in frames]
    sound = None if audio is None else os.fspath(audio)
    _deepdream.save_animation(arrays, os.fspath(path), _number("fps", fps, float), sound)


def read_video(path: Union[str, os.PathLike], start: float = 0.0, duration: Optional[float] = None) -> tuple:
    """A video's frames as PIL images (from ``start`` seconds, for ``duration`` seconds or to
    the end), decoded with the system's FFmpeg, and its frame rate."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"video {path} does not exist")
    frames, fps = _deepdream.read_video(path, _number("start", start, float, False),
                                        None if duration is None else _number("duration", duration, float))
    return [_Image.to_pil(frame) for frame in frames], fps


def models() -> list:
    """The known models, as dicts (name, description, package, cached)."""
    return [
        {"name": name, "description": description, "package": package, "cached": cached}
        for name, description, package, cached in _deepdream.models()
    ]
