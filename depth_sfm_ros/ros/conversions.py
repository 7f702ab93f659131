"""ROS message <-> numpy conversions (no cv_bridge, no sensor_msgs_py: neither ships as a wheel).

Decoding works on any object with the ``sensor_msgs/Image`` fields (rclpy messages and the
``rosbags`` message classes alike), so the bag tools can reuse it. Building messages imports
``sensor_msgs`` / ``std_msgs`` lazily, inside the functions.

Image layout: ``(H, W)`` for one channel, ``(H, W, C)`` otherwise; rows may be padded
(``step >= W * C * bytes``); multi-byte data follows ``is_bigendian``.
"""
from __future__ import annotations

import array
import math
from typing import Any

import numpy as np

from depth_sfm_ros.bag.rosbags_io import IMAGE_ENCODINGS  # encoding -> (dtype, channels): one table for both
from depth_sfm_ros.geometry import Intrinsics


class ImageDecodeError(ValueError):
    """A message that cannot be turned into an image. ``kind`` names the problem for counters:
    ``unsupported_encoding``, ``empty``, ``truncated`` (data length != step * height), ``bad_step``,
    ``decode_failed`` (compressed)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def check_image_layout(height: int, width: int, encoding: str, step: int, data_len: int) -> tuple[np.dtype, int]:
    """Validate the header fields of an Image against its data length (cheap: no data access).

    Returns ``(dtype, channels)``; raises :class:`ImageDecodeError` otherwise.
    """
    if encoding not in IMAGE_ENCODINGS:
        raise ImageDecodeError("unsupported_encoding",
                               f"unsupported image encoding {encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    if height <= 0 or width <= 0 or data_len == 0:
        raise ImageDecodeError("empty", f"empty image ({width}x{height}, {data_len} data bytes)")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError("bad_step", f"step {step} is smaller than one row of {width} x {encoding} "
                                           f"({row_bytes} bytes)")
    if data_len != step * height:
        raise ImageDecodeError("truncated", f"image data has {data_len} bytes, expected step*height = "
                                            f"{step}*{height} = {step * height}")
    return dtype, channels


def image_msg_to_numpy(msg: Any, copy: bool = False) -> np.ndarray:
    """``sensor_msgs/Image`` -> array (H, W) or (H, W, C) of the encoding's dtype, native byte order.

    Without ``copy`` the result is a read-only view of the message buffer where the layout allows
    (no row padding, native byte order); otherwise a compact copy.
    """
    data = msg.data
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).reshape(-1)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    dtype, channels = check_image_layout(height, width, msg.encoding, step, buf.size)
    row_bytes = width * channels * dtype.itemsize
    rows = buf.reshape(height, step)[:, :row_bytes]
    byte_order = ">" if msg.is_bigendian else "<"
    wire_dtype = dtype.newbyteorder(byte_order) if dtype.itemsize > 1 else dtype
    image = np.ascontiguousarray(rows).view(wire_dtype)  # copies only when rows are padded
    if wire_dtype != dtype:
        image = image.astype(dtype)  # byte swap to native order
    shape = (height, width) if channels == 1 else (height, width, channels)
    image = image.reshape(shape)
    if copy and np.shares_memory(image, buf):
        image = image.copy()
    return image


def numpy_to_image_msg(image: np.ndarray, encoding: str, header: Any = None) -> Any:
    """Array (H, W) or (H, W, C) -> ``sensor_msgs/Image`` (compact rows, native byte order).

    ``header`` (a ``std_msgs/Header``) is copied by reference; pass the input image's header so
    the stamp and frame stay exactly those of the input.
    """
    from sensor_msgs.msg import Image

    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    image = np.asarray(image)
    expected_ndim = 2 if channels == 1 else 3
    if image.ndim != expected_ndim or (channels > 1 and image.shape[2] != channels):
        raise ValueError(f"{encoding} needs an array of shape {'(H, W)' if channels == 1 else f'(H, W, {channels})'}, "
                         f"got {image.shape}")
    if image.dtype != dtype:
        raise ValueError(f"{encoding} needs dtype {dtype}, got {image.dtype}")
    if image.size == 0:
        raise ValueError(f"cannot publish an empty image (shape {image.shape})")
    image = np.ascontiguousarray(image)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(np.little_endian is False and dtype.itemsize > 1)
    msg.step = int(image.shape[1] * channels * dtype.itemsize)
    msg.data = _to_byte_array(image)
    return msg


def _to_byte_array(array_like: np.ndarray) -> array.array:
    """Fast path into a ``uint8[]`` field: rclpy stores ``array.array('B')`` without converting it."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(array_like).data.cast("B"))
    return out


def compressed_msg_to_numpy(msg: Any) -> tuple[np.ndarray, str]:
    """``sensor_msgs/CompressedImage`` (jpeg / png) -> (image, encoding) with the runtime's one decoder
    (:func:`depth_sfm_ros.runtime.image_io.decode_compressed`: bgr8 / bgra8 / mono8 / mono16)."""
    from depth_sfm_ros.runtime.image_io import CompressedImageError, decode_compressed

    try:
        return decode_compressed(msg.data, getattr(msg, "format", ""))
    except CompressedImageError as exc:
        raise ImageDecodeError(exc.kind, str(exc)) from None


# --- CameraInfo ------------------------------------------------------------------------------

def camera_info_to_intrinsics(msg: Any) -> Intrinsics:
    """``sensor_msgs/CameraInfo`` -> :class:`Intrinsics` from K (distortion is ignored).

    Raises ``ValueError`` for an unset (all-zero) K or a zero image size.
    """
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if int(msg.width) <= 0 or int(msg.height) <= 0:
        raise ValueError(f"CameraInfo has image size {msg.width}x{msg.height}")
    if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ValueError(f"CameraInfo K is not a valid camera matrix: {k.ravel().tolist()}")
    return Intrinsics.from_matrix(k, width=int(msg.width), height=int(msg.height))


def intrinsics_to_camera_info(intrinsics: Intrinsics, header: Any = None) -> Any:
    """:class:`Intrinsics` -> ``sensor_msgs/CameraInfo`` of a rectified pinhole image (no distortion)."""
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = intrinsics.width, intrinsics.height
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = intrinsics.K.ravel().tolist()
    msg.r = np.eye(3).ravel().tolist()
    p = np.zeros((3, 4))
    p[:, :3] = intrinsics.K
    msg.p = p.ravel().tolist()
    return msg


# --- PointCloud2 -----------------------------------------------------------------------------

# x, y, z float32 and rgb packed into a float32 (0x00RRGGBB bits), the layout rviz's RGB8 expects.
POINT_XYZRGB_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])


def xyzrgb_to_pointcloud2(points_xyz: np.ndarray, colors_rgb: np.ndarray, header: Any = None) -> Any:
    """Points (N, 3) float metres + colours (N, 3) uint8 RGB -> ``sensor_msgs/PointCloud2``
    (height 1, little endian, point_step 16). Non-finite points are dropped, so ``is_dense`` holds."""
    from sensor_msgs.msg import PointCloud2, PointField

    points_xyz = np.asarray(points_xyz)
    colors_rgb = np.asarray(colors_rgb)
    if points_xyz.ndim != 2 or points_xyz.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points_xyz.shape}")
    if colors_rgb.shape != points_xyz.shape or colors_rgb.dtype != np.uint8:
        raise ValueError(f"colours must be uint8 of shape {points_xyz.shape}, got {colors_rgb.dtype} {colors_rgb.shape}")
    keep = np.all(np.isfinite(points_xyz), axis=1)
    points_xyz, colors_rgb = points_xyz[keep], colors_rgb[keep]
    cloud = np.empty(points_xyz.shape[0], dtype=POINT_XYZRGB_DTYPE)
    cloud["x"], cloud["y"], cloud["z"] = points_xyz[:, 0], points_xyz[:, 1], points_xyz[:, 2]
    rgb = colors_rgb.astype(np.uint32)
    cloud["rgb"] = ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).astype("<u4").view("<f4")

    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = 1, int(cloud.shape[0])
    msg.fields = [PointField(name=name, offset=int(POINT_XYZRGB_DTYPE.fields[name][1]), datatype=PointField.FLOAT32,
                             count=1) for name in POINT_XYZRGB_DTYPE.names]
    msg.is_bigendian = False
    msg.point_step = POINT_XYZRGB_DTYPE.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = True
    msg.data = _to_byte_array(cloud.view(np.uint8))
    return msg


_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


def pointcloud2_to_numpy(msg: Any) -> np.ndarray:
    """``sensor_msgs/PointCloud2`` -> structured array (height * width,) with one field per PointField."""
    endian = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for field in msg.fields:
        if field.datatype not in _POINTFIELD_DTYPES:
            raise ValueError(f"PointField {field.name!r} has unknown datatype {field.datatype}")
        names.append(field.name)
        base = endian + _POINTFIELD_DTYPES[field.datatype]
        formats.append(base if field.count == 1 else (base, (field.count,)))
        offsets.append(field.offset)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step})
    count = int(msg.height) * int(msg.width)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != msg.row_step * msg.height or msg.row_step < msg.point_step * msg.width:
        raise ValueError(f"PointCloud2 data has {data.size} bytes, expected row_step*height = {msg.row_step * msg.height}")
    rows = data.reshape(msg.height, msg.row_step)[:, :msg.point_step * msg.width]
    return np.ascontiguousarray(rows).view(dtype).reshape(count)


def unpack_rgb(rgb_float: np.ndarray) -> np.ndarray:
    """Packed float32 ``rgb`` (N,) -> uint8 (N, 3) RGB."""
    bits = np.asarray(rgb_float, dtype="<f4").view("<u4")
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=-1).astype(np.uint8)


def odometry_speed_mps(msg: Any) -> float:
    """Speed (m/s) of a nav_msgs/Odometry's child frame: the norm of ``twist.twist.linear`` (rclpy or
    rosbags message). Raises ValueError when it is not finite."""
    v = msg.twist.twist.linear
    speed = math.sqrt(float(v.x) ** 2 + float(v.y) ** 2 + float(v.z) ** 2)
    if not math.isfinite(speed):
        raise ValueError(f"odometry twist speed must be finite, got linear ({v.x}, {v.y}, {v.z})")
    return speed


# --- time ------------------------------------------------------------------------------------

def stamp_to_seconds(stamp: Any) -> float:
    """``builtin_interfaces/Time`` -> float seconds (sub-microsecond precision is lost; copy the
    stamp object itself into output headers)."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def stamp_to_nanoseconds(stamp: Any) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds (exact)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
