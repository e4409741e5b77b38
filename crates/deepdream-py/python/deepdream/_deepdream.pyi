"""Type stubs of the native module (see deepdream/__init__.py for the public API)."""

from typing import Any, Callable, Optional, Sequence, TypedDict, Union

import numpy as np
import numpy.typing as npt

Pixels = npt.NDArray[np.uint8]
Progress = Optional[Callable[[dict], Any]]
Size = Union[None, int, str]

class DreamOptions(TypedDict):
    """Every dream option, as ``deepdream._dream_options`` makes them."""

    layers: Optional[list[tuple[str, float]]]
    channels: Optional[list[int]]
    class_: Optional[int]
    guide: Optional[Pixels]
    octaves: int
    octave_scale: float
    iterations: int
    step: float
    jitter: int
    seed: int
    max_memory: Size
    auto_channels: Optional[str]
    mask: Optional[Pixels]
    mask_strength: float
    regions: list[tuple[Pixels, Optional[list[tuple[str, float]]], Optional[list[int]]]]

class Control(TypedDict):
    """What changes over an animation's frames, as ``deepdream._control`` makes it."""

    keyframes: Optional[tuple[str, bool]]
    audio: Optional[str]
    react: Optional[str]
    react_band: str
    react_smooth: float
    guide_video: Optional[str]
    guide_video_end: str

def models() -> list[tuple[str, str, str, bool]]: ...
def default_model() -> str: ...
def load_image(path: str) -> Pixels: ...
def find_class(query: str) -> int: ...
def run_cli(args: list[str]) -> int: ...
def save_animation(frames: Sequence[Pixels], path: str, fps: float, audio: Optional[str] = None) -> None: ...
def has_sound(path: str) -> bool: ...
def read_video(path: str, start: float = 0.0, duration: Optional[float] = None) -> tuple[list[Pixels], float]: ...

class Model:
    def __init__(
        self,
        name: Optional[str] = None,
        *,
        weights: Optional[str] = None,
        preprocess: Optional[str] = None,
        device: str = "cpu",
        precision: str = "tf32",
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def default_layers(self) -> list[str]: ...
    @property
    def layers(self) -> list[tuple[str, str, int, int]]: ...
    @property
    def classifier(self) -> bool: ...
    def dream(
        self,
        image: Pixels,
        options: DreamOptions,
        *,
        progress: Progress = None,
        preview_every: int = 0,
    ) -> Pixels: ...
    def style(
        self,
        content: Pixels,
        styles: Sequence[tuple[Pixels, float]],
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
        seed: int = 0,
        progress: Progress = None,
        preview_every: int = 0,
    ) -> Pixels: ...
    def visualize(
        self,
        *,
        layer: Optional[str] = None,
        channel: Optional[int] = None,
        class_: Optional[int] = None,
        size: int = 224,
        steps: int = 256,
        learning_rate: float = 0.05,
        priors: bool = True,
        seed: int = 0,
        progress: Progress = None,
        preview_every: int = 0,
    ) -> Pixels: ...
    def zoom(
        self,
        image: Pixels,
        *,
        frames: int = 100,
        zoom: float = 1.05,
        rotate: float = 0.0,
        pan: tuple[float, float] = (0.0, 0.0),
        colour_match: bool = True,
        octaves_per_frame: int = 2,
        iterations_per_frame: int = 5,
        options: DreamOptions,
        control: Control,
        fps: float = 25.0,
        progress: Progress = None,
    ) -> list[Pixels]: ...
    def video(
        self,
        frames: Sequence[Pixels],
        *,
        blend: float = 0.8,
        cut_threshold: float = 30.0,
        octaves_per_frame: int = 2,
        iterations_per_frame: int = 4,
        flow: str = "farneback",
        options: DreamOptions,
        control: Control,
        fps: float = 25.0,
        progress: Progress = None,
    ) -> list[Pixels]: ...
    def classify(self, image: Pixels, top: int = 5) -> list[tuple[int, str, float]]: ...
    def live(
        self,
        source: str,
        options: DreamOptions,
        *,
        size: Optional[tuple[int, int]] = None,
        realtime: bool = False,
        camera_format: Optional[str] = None,
        blend: float = 0.8,
        octaves_per_frame: int = 1,
        iterations_per_frame: int = 2,
        flow: str = "dis",
        fps: Optional[float] = None,
        retries: int = 5,
    ) -> LiveFeed: ...

class LiveFeed:
    def next(self) -> Optional[Pixels]: ...
    def set(self, name: str, value: Any) -> None: ...
    def report(self) -> Optional[dict]: ...
    def close(self) -> None: ...
