"""Raw camera images (ROS encodings) -> network input (1, 3, H, W) float32 RGB in [0, 1].

The encoding table and the message decoders are :mod:`depth_sfm_ros.msgs`'s; this module only turns a
decoded camera image into network input. Two entry points:

- :func:`to_rgb_float` converts one image at its own size (allocates; for tools and tests).
- :class:`ImagePreprocessor` resizes (``cv2.INTER_AREA``) and converts into a preallocated
  (1, 3, H, W) float32 buffer: no per-frame allocations once it has seen an image size.

Resizing happens on the raw integer image (before the channel shuffle), so rgb8 / bgr8 / rgba8 /
bgra8 versions of one picture give bit-identical network inputs, and a grey picture gives the
same input as mono8 / mono16 up to the integer quantisation of the format.

numpy + OpenCV only (no torch).
"""
from __future__ import annotations

import cv2
import numpy as np

from depth_sfm_ros.msgs.encodings import INPUT_ENCODINGS, EncodingSpec, input_encoding

# the encodings a camera image may have, from the one table (depth_sfm_ros.msgs.encodings)
SUPPORTED_ENCODINGS: tuple[str, ...] = INPUT_ENCODINGS


def encoding_spec(encoding: str) -> EncodingSpec:
    """Look up a camera-image encoding (case-insensitive, stripped: ``16uc1``); ValueError if unsupported."""
    return input_encoding(encoding)


def _validate_value_range(value_range: tuple[float, float] | None) -> None:
    if value_range is None:
        return
    if len(value_range) != 2:
        raise ValueError(f"value_range must be (low, high), got {value_range!r}")
    low, high = float(value_range[0]), float(value_range[1])
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise ValueError(f"value_range must be finite with high > low, got {value_range!r}")


def check_image(image: np.ndarray, encoding: str) -> tuple[np.ndarray, EncodingSpec]:
    """Validate ``image`` against ``encoding``; return it as (H, W, C) plus the encoding spec.

    Mono images may be (H, W) or (H, W, 1). Raises ValueError naming what was expected.
    """
    spec = encoding_spec(encoding)
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != spec.dtype:
        raise ValueError(f"encoding {encoding!r} needs dtype {np.dtype(spec.dtype).name}, got {image.dtype}")
    if image.ndim == 2 and spec.channels == 1:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] != spec.channels:
        expected = "(H, W) or (H, W, 1)" if spec.channels == 1 else f"(H, W, {spec.channels})"
        raise ValueError(f"encoding {encoding!r} needs an image of shape {expected}, got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    return image, spec


def _scale_and_offset(spec: EncodingSpec, value_range: tuple[float, float] | None) -> tuple[float, float]:
    """(gain, offset) so that float = raw * gain + offset maps the range to [0, 1]."""
    if value_range is None or spec.channels != 1:
        return 1.0 / float(np.iinfo(spec.dtype).max), 0.0
    low, high = float(value_range[0]), float(value_range[1])
    return 1.0 / (high - low), -low / (high - low)


def to_rgb_float(image: np.ndarray, encoding: str, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Convert an image to RGB float32 (H, W, 3) in [0, 1] at its own size.

    Args:
        image: (H, W, C) or (H, W) array whose dtype and channels match ``encoding``.
        encoding: one of :data:`SUPPORTED_ENCODINGS`.
        value_range: for mono16/16UC1 only, the raw (low, high) mapped to [0, 1] (clipped);
            default: the full dtype range (0..65535).
    """
    _validate_value_range(value_range)
    image, spec = check_image(image, encoding)
    gain, offset = _scale_and_offset(spec, value_range)
    rgb = image[:, :, list(spec.rgb_source)].astype(np.float32) * np.float32(gain) + np.float32(offset)
    return np.clip(rgb, 0.0, 1.0, out=rgb)


class ImagePreprocessor:
    """Resize + convert camera images into one preallocated network input buffer.

    >>> pre = ImagePreprocessor(height=4, width=8)
    >>> pre(np.zeros((8, 16, 3), np.uint8), "rgb8").shape
    (1, 3, 4, 8)

    The returned array is the internal buffer (or ``out`` when given): it is overwritten by the
    next call, so copy it if you keep it.
    """

    def __init__(self, height: int, width: int, value_range: tuple[float, float] | None = None) -> None:
        if int(height) != height or int(width) != width or height < 1 or width < 1:
            raise ValueError(f"network input size must be positive integers, got {width}x{height}")
        _validate_value_range(value_range)
        self.height, self.width = int(height), int(width)
        self.value_range = value_range
        self.buffer = np.zeros((1, 3, self.height, self.width), np.float32)
        self._resized: dict[tuple[str, int], np.ndarray] = {}  # (dtype, channels) -> raw resized image

    def _resize(self, image: np.ndarray, spec: EncodingSpec) -> np.ndarray:
        """Area-resize the raw (H, W, C) image into a cached buffer; returns (h, w, C)."""
        if image.shape[:2] == (self.height, self.width):
            return image
        key = (np.dtype(spec.dtype).name, spec.channels)
        dst = self._resized.get(key)
        if dst is None:
            shape = (self.height, self.width) if spec.channels == 1 else (self.height, self.width, spec.channels)
            dst = self._resized[key] = np.empty(shape, spec.dtype)
        src = image[:, :, 0] if spec.channels == 1 else image
        if not src.flags.c_contiguous:
            src = np.ascontiguousarray(src)  # padded / strided ROS buffers
        cv2.resize(src, (self.width, self.height), dst=dst, interpolation=cv2.INTER_AREA)
        return dst if dst.ndim == 3 else dst[:, :, None]

    def __call__(self, image: np.ndarray, encoding: str, out: np.ndarray | None = None) -> np.ndarray:
        """Convert ``image`` (see :func:`to_rgb_float`) into (1, 3, H, W) float32 RGB in [0, 1]."""
        image, spec = check_image(image, encoding)
        return self.convert(image, spec, out)

    def convert(self, image: np.ndarray, spec: EncodingSpec, out: np.ndarray | None = None) -> np.ndarray:
        """:meth:`__call__` for an image :func:`check_image` has checked already: ``image`` (H, W, C) and
        ``spec`` are what it returned (the Pipeline checks each camera image once)."""
        if out is None:
            out = self.buffer
        elif out.shape != (1, 3, self.height, self.width) or out.dtype != np.float32:
            raise ValueError(f"out must be float32 (1, 3, {self.height}, {self.width}), got {out.dtype} {out.shape}")
        resized = self._resize(image, spec)
        gain, offset = _scale_and_offset(spec, self.value_range)
        for channel, source in enumerate(spec.rgb_source):
            plane = out[0, channel]
            if spec.channels == 1 and channel > 0:
                plane[...] = out[0, 0]
                continue
            np.multiply(resized[:, :, source], np.float32(gain), out=plane, casting="unsafe")
            if offset != 0.0 or self.value_range is not None:
                plane += np.float32(offset)
                np.clip(plane, 0.0, 1.0, out=plane)
        return out


# ITU-R BT.601 luma weights of R, G, B (what cv2.COLOR_RGB2GRAY uses)
_LUMA_RGB = (0.299, 0.587, 0.114)


def grey_at_width(image: np.ndarray, encoding: str, width: int,
                  value_range: tuple[float, float] | None = None, max_height: int | None = None) -> np.ndarray:
    """A small grey copy of a raw image: (h, ``width``) float32 in [0, 1], h = round(H * width / W),
    clipped to [1, ``max_height``] (an absurdly tall image would otherwise give a huge copy).

    The raw integer image is resized first (``cv2.INTER_AREA`` when shrinking, linear when enlarging),
    so a 640x480 frame costs a 160x120 conversion, not a full-size one. Grey is BT.601 luma of R, G, B;
    mono encodings are used as they are (mono16 mapped through ``value_range`` as in :func:`to_rgb_float`).
    """
    _validate_value_range(value_range)
    image, spec = check_image(image, encoding)
    return grey_of_checked(image, spec, width, value_range, max_height)


def grey_of_checked(image: np.ndarray, spec: EncodingSpec, width: int,
                    value_range: tuple[float, float] | None = None, max_height: int | None = None) -> np.ndarray:
    """:func:`grey_at_width` for an image :func:`check_image` has checked already (``image`` (H, W, C) and
    ``spec`` as it returned them) and a validated ``value_range``."""
    if int(width) != width or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    height_in, width_in = image.shape[:2]
    width = int(width)
    height = max(1, int(round(height_in * width / width_in)))
    if max_height is not None:
        height = min(height, max(1, int(max_height)))
    src = image[:, :, 0] if spec.channels == 1 else image
    if not src.flags.c_contiguous:
        src = np.ascontiguousarray(src)
    if (width, height) != (width_in, height_in):
        interpolation = cv2.INTER_AREA if width < width_in else cv2.INTER_LINEAR
        src = cv2.resize(src, (width, height), interpolation=interpolation)
    if src.ndim == 2:
        grey = src.astype(np.float32)
    else:
        grey = sum(np.float32(weight) * src[:, :, source].astype(np.float32)
                   for weight, source in zip(_LUMA_RGB, spec.rgb_source))
    gain, offset = _scale_and_offset(spec, value_range)
    grey = grey * np.float32(gain) + np.float32(offset)
    return np.clip(grey, 0.0, 1.0, out=grey)
