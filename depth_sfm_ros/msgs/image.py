"""``sensor_msgs/Image`` and ``CompressedImage``: the one decoder and encoder (duck-typed).

Decoding works on any object with the message's fields: rclpy messages (``data`` an ``array.array``
or ``bytes``), ``rosbags`` messages (``data`` a numpy array) and plain namespaces alike, so the node,
the bag tools, export and the demo read the same pixels from the same bytes. Encoding returns the
fields (:class:`EncodedImage`); :mod:`~depth_sfm_ros.msgs.rclpy_msgs` and
:mod:`~depth_sfm_ros.msgs.rosbags_msgs` put them into their message classes.

Image layout: ``(H, W)`` for one channel, ``(H, W, C)`` otherwise; rows may be padded
(``step >= W * C * bytes``); multi-byte data follows ``is_bigendian``; ``len(data) == step * height``.
Compressed images (jpeg / png) decode with OpenCV to its native orders: ``bgr8`` (``bgra8`` with
alpha), ``mono8``, ``mono16`` (16-bit grey PNG).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .encodings import ENCODING_SPECS, IMAGE_ENCODINGS, EncodingSpec, input_encoding


class ImageDecodeError(ValueError):
    """A message that cannot be turned into an image. ``kind`` names the problem for the node's counters:
    ``unsupported_encoding``, ``empty``, ``truncated`` (data length != step * height), ``bad_step``,
    ``decode_failed`` (compressed bytes OpenCV cannot decode)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ImageLayout:
    """The checked header fields of an Image: what :func:`decode_image` needs to read its data."""

    height: int
    width: int
    step: int
    spec: EncodingSpec
    big_endian: bool

    @property
    def encoding(self) -> str:
        return self.spec.name


def check_image_layout(height: int, width: int, encoding: str, step: int, data_len: int,
                       allowed: Sequence[str] | None = None) -> tuple[np.dtype, int]:
    """Validate the header fields of an Image against its data length (cheap: no data access).

    ``allowed``: the encodings accepted (default: every encoding of the table). Returns
    ``(dtype, channels)``; raises :class:`ImageDecodeError` otherwise.
    """
    if encoding not in ENCODING_SPECS or (allowed is not None and encoding not in allowed):
        supported = ", ".join(allowed if allowed is not None else IMAGE_ENCODINGS)
        raise ImageDecodeError("unsupported_encoding", f"unsupported image encoding {encoding!r}; "
                                                       f"supported: {supported}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    if height <= 0 or width <= 0 or data_len == 0:
        raise ImageDecodeError("empty", f"empty Image ({width}x{height} {encoding}, {data_len} data bytes)")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError("bad_step", f"step {step} is smaller than one row of {width} x {encoding} "
                                           f"({row_bytes} bytes)")
    if data_len != step * height:
        raise ImageDecodeError("truncated", f"image data has {data_len} bytes, expected step*height = "
                                            f"{step}*{height} = {step * height}")
    return dtype, channels


def image_layout(msg: Any, allowed: Sequence[str] | None = None) -> ImageLayout:
    """The checked layout of an Image message (:func:`check_image_layout` on its fields)."""
    height, width, step, encoding = int(msg.height), int(msg.width), int(msg.step), str(msg.encoding)
    check_image_layout(height, width, encoding, step, len(msg.data), allowed)
    return ImageLayout(height, width, step, ENCODING_SPECS[encoding], bool(msg.is_bigendian))


def decode_image(msg: Any, layout: ImageLayout, copy: bool = False) -> np.ndarray:
    """The pixels of an Image whose ``layout`` was checked already: (H, W) or (H, W, C) of the encoding's
    dtype in native byte order.

    Without ``copy`` the result is a read-only view of the message buffer where the layout allows
    (no row padding, native byte order); otherwise a compact copy.
    """
    data = msg.data
    buf = data.view(np.uint8).reshape(-1) if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    spec = layout.spec
    row_bytes = layout.width * spec.channels * spec.dtype.itemsize
    rows = buf.reshape(layout.height, layout.step)[:, :row_bytes]
    wire_dtype = spec.dtype.newbyteorder(">" if layout.big_endian else "<") if spec.dtype.itemsize > 1 else spec.dtype
    image = np.ascontiguousarray(rows).view(wire_dtype)  # copies only when rows are padded
    if wire_dtype != spec.dtype:
        image = image.astype(spec.dtype)  # byte swap to native order
    image = image.reshape((layout.height, layout.width) if spec.channels == 1
                          else (layout.height, layout.width, spec.channels))
    if copy and np.shares_memory(image, buf):
        image = image.copy()
    return image


def image_msg_to_numpy(msg: Any, copy: bool = False) -> np.ndarray:
    """``sensor_msgs/Image`` -> array (see :func:`decode_image`); :class:`ImageDecodeError` for a bad layout."""
    return decode_image(msg, image_layout(msg), copy=copy)


@dataclass(frozen=True)
class EncodedImage:
    """The fields of an Image message for an array: compact rows, native byte order, ``data`` a
    1-D uint8 array (a view of the image when it is contiguous)."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


def encode_image(image: np.ndarray, encoding: str) -> EncodedImage:
    """Array (H, W) (or (H, W, 1)) / (H, W, C) whose dtype and channels match ``encoding`` -> Image fields.

    Raises ValueError naming what the encoding needs.
    """
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    image = np.asarray(image)
    if channels == 1 and image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim != (2 if channels == 1 else 3) or (channels > 1 and image.shape[2] != channels):
        want = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ValueError(f"encoding {encoding} needs an array of shape {want}, got {image.shape}")
    if image.dtype != dtype:
        raise ValueError(f"encoding {encoding} needs dtype {dtype}, got {image.dtype}")
    if image.size == 0:
        raise ValueError(f"cannot encode an empty image (shape {image.shape})")
    image = np.ascontiguousarray(image)
    height, width = int(image.shape[0]), int(image.shape[1])
    return EncodedImage(height=height, width=width, encoding=encoding,
                        is_bigendian=int(not np.little_endian and dtype.itemsize > 1),
                        step=width * channels * dtype.itemsize, data=image.reshape(-1).view(np.uint8))


# --- CompressedImage -------------------------------------------------------------------------------

def decode_compressed(data: Any, fmt: str = "") -> tuple[np.ndarray, str]:
    """``sensor_msgs/CompressedImage`` bytes (jpeg / png) -> (image, encoding): the one decoder of the node,
    the bag tools and export, so offline numbers are the node's numbers.

    Colour decodes to ``bgr8`` (``bgra8`` with alpha), grey to ``mono8``, 16-bit grey PNG to ``mono16``
    (OpenCV's native orders, no copy). ``fmt`` (the message's format string) only goes into error messages.
    Raises :class:`ImageDecodeError` (``empty``, ``decode_failed``, ``unsupported_encoding``).
    """
    import cv2

    buf = data if isinstance(data, np.ndarray) else np.frombuffer(bytes(data), dtype=np.uint8)
    buf = buf.reshape(-1).astype(np.uint8, copy=False)
    if buf.size == 0:
        raise ImageDecodeError("empty", "empty compressed image")
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageDecodeError("decode_failed", f"cv2 could not decode the compressed image (format {fmt!r}, "
                                                f"{buf.size} bytes)")
    if image.ndim == 2:
        return image, "mono16" if image.dtype == np.uint16 else "mono8"
    if image.dtype != np.uint8:
        raise ImageDecodeError("unsupported_encoding",
                               f"compressed colour image of dtype {image.dtype} is not supported")
    return image, "bgra8" if image.shape[2] == 4 else "bgr8"


def compressed_msg_to_numpy(msg: Any) -> tuple[np.ndarray, str]:
    """``sensor_msgs/CompressedImage`` -> (image, encoding) with :func:`decode_compressed`."""
    return decode_compressed(msg.data, str(getattr(msg, "format", "")))


def image_to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    """A decoded camera image (one of the input encodings, as :func:`decode_image` / :func:`decode_compressed`
    return it) -> RGB (H, W, 3) uint8: channels picked with the encoding table, grey repeated, 16-bit values
    v mapped to round(v * 255 / 65535) (the runtime's [0, 1] scaling, ``runtime.image_io``, times 255); an
    rgb8 image is returned as it is. The one conversion for pictures, point colours and the training datasets'
    8-bit frame caches."""
    spec = input_encoding(encoding)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] != spec.channels:
        raise ValueError(f"encoding {encoding!r} needs an image with {spec.channels} channel(s), got shape "
                         f"{image.shape}")
    if spec.dtype == np.uint8 and spec.channels == 3 and spec.rgb_source == (0, 1, 2):
        return image.astype(np.uint8, copy=False)  # rgb8 already: no copy
    rgb = image[:, :, list(spec.rgb_source)]
    if spec.dtype == np.uint8:
        return rgb.astype(np.uint8, copy=False)
    rgb = rgb.astype(np.float32) * np.float32(1.0 / float(np.iinfo(spec.dtype).max))  # as runtime.image_io does
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def compressed_msg_to_rgb8(msg: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` -> RGB (H, W, 3) uint8 for pictures and tests (:func:`image_to_rgb8`
    of :func:`compressed_msg_to_numpy`). Evaluation decodes with :func:`compressed_msg_to_numpy` instead."""
    return image_to_rgb8(*compressed_msg_to_numpy(msg))


def encode_compressed(image_rgb: np.ndarray, fmt: str = "png", jpeg_quality: int = 95) -> tuple[str, np.ndarray]:
    """RGB (H, W, 3) uint8 -> (format string, bytes as a 1-D uint8 array) of a CompressedImage (png or jpeg).
    The format string follows compressed_image_transport: ``"rgb8; png compressed bgr8"``."""
    import cv2

    image_rgb = np.asarray(image_rgb)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"encoding rgb8 needs an array of shape (H, W, 3), got {image_rgb.shape}")
    if image_rgb.dtype != np.uint8:
        raise ValueError(f"encoding rgb8 needs dtype uint8, got {image_rgb.dtype}")
    if image_rgb.size == 0:
        raise ValueError(f"cannot encode an empty image (shape {image_rgb.shape})")
    if fmt not in ("png", "jpeg"):
        raise ValueError(f"compressed format must be 'png' or 'jpeg', got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", image_rgb[:, :, ::-1], params)
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode a {fmt} image")
    return f"rgb8; {fmt} compressed bgr8", np.asarray(buf, dtype=np.uint8).reshape(-1)
