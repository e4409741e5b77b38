"""deepdream's exceptions: every one is a :class:`deepdream.Error`, and also the built-in
exception it is a kind of, so ``except ValueError`` catches a bad parameter too."""


class Error(Exception):
    """Base class of deepdream's errors."""


class ParameterError(Error, ValueError):
    """A parameter that cannot work: an unknown model, layer, channel or class, a
    non-positive or non-finite number, an image too small for the layer."""


class ImageError(Error, ValueError):
    """An image that cannot be read or used: not an image, the wrong shape or type."""


class ModelError(Error, RuntimeError):
    """Weights that cannot be fetched or read, or an ONNX file deepdream cannot run."""


class DeviceError(Error, RuntimeError):
    """A device that cannot be used: no GPU, or NVIDIA's libraries missing."""


class VideoError(Error, RuntimeError):
    """A video that cannot be read or written."""
