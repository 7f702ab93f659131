"""``sensor_msgs/PointCloud2`` with x, y, z and packed rgb: the encoder's point layout and a duck-typed decoder."""
from __future__ import annotations

from typing import Any

import numpy as np

# x, y, z float32 and rgb packed into a float32 (0x00RRGGBB bits), the layout rviz's RGB8 expects.
POINT_XYZRGB_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
POINTFIELD_FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32

_POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


def pack_xyzrgb(points_xyz: np.ndarray, colors_rgb: np.ndarray) -> np.ndarray:
    """Points (N, 3) float metres + colours (N, 3) uint8 RGB -> structured array (M,) of
    :data:`POINT_XYZRGB_DTYPE`, non-finite points dropped (so the cloud ``is_dense``)."""
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
    return cloud


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
