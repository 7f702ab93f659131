"""File readers shared by the loaders: images, 16-bit PNG depth / ids, calibration text and YAML.

numpy + OpenCV only. Every reader raises a clear error naming the file it could not use.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from depth_sfm_ros.geometry import Intrinsics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); grey images are replicated to 3 channels."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path} (missing or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def is_grey(rgb: np.ndarray) -> bool:
    """True when an RGB (H, W, 3) image has three equal channels (a grey source read as RGB)."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def read_png_uint16(path: str | Path) -> np.ndarray:
    """Read a single-channel 8/16-bit PNG unchanged as (H, W) integer array."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise FileNotFoundError(f"cannot read PNG {path}")
    if data.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel PNG, got shape {data.shape}")
    return data


def read_depth_png(path: str | Path, scale: float = 256.0) -> np.ndarray:
    """KITTI-style depth PNG (uint16 = metres * ``scale``, 0 = invalid) -> (H, W) float32 metres."""
    data = read_png_uint16(path)
    if data.dtype != np.uint16:
        raise ValueError(f"{path}: depth PNG must be uint16 (metres * {scale}), got {data.dtype}")
    return data.astype(np.float32) / np.float32(scale)


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8/uint16 (H, W) or RGB uint8 (H, W, 3) array as PNG (creates the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"cannot write {path}")


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_calib_text(path: str | Path) -> dict[str, np.ndarray]:
    """KITTI calibration text (``key: v1 v2 ...`` or ``key v1 v2 ...``) -> {key: float64 array}.

    Lines whose values are not numbers (e.g. ``calib_time: 09-Jan-2012 13:57:47``) are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file {path} does not exist")
    out: dict[str, np.ndarray] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            key, _, rest = line.partition(" ")
        try:
            out[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            continue
    return out


def projection_matrix(calib: dict[str, np.ndarray], key: str, source: str | Path) -> np.ndarray:
    """A (3, 4) projection matrix from a parsed calibration file, with a clear error."""
    if key not in calib:
        raise KeyError(f"{source}: no '{key}' entry (found {sorted(calib)})")
    if calib[key].size != 12:
        raise ValueError(f"{source}: '{key}' must have 12 numbers, got {calib[key].size}")
    return calib[key].reshape(3, 4)


def read_kitti_poses(path: str | Path) -> np.ndarray:
    """KITTI odometry poses file (12 numbers per line, row-major 3x4 T_world_cam) -> (N, 4, 4)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"poses file {path} does not exist")
    rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if rows.shape[1] != 12:
        raise ValueError(f"{path}: expected 12 numbers per line, got {rows.shape[1]}")
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :4] = rows.reshape(-1, 3, 4)
    return poses


def read_intrinsics_yaml(path: str | Path, width: int | None = None, height: int | None = None) -> Intrinsics:
    """Camera intrinsics from YAML: either ``fx, fy, cx, cy[, width, height]`` or a ROS
    camera_info YAML (``image_width``, ``image_height``, ``camera_matrix: {data: [9]}``, or a
    ``k``/``K`` list of 9). When the file gives no size, ``width``/``height`` must.
    If the file's size differs from the given size, the intrinsics are scaled to it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file {path} does not exist")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: calibration YAML must be a mapping")
    if all(k in data for k in ("fx", "fy", "cx", "cy")):
        fx, fy, cx, cy = (float(data[k]) for k in ("fx", "fy", "cx", "cy"))
    else:
        matrix = None
        if isinstance(data.get("camera_matrix"), dict):
            matrix = data["camera_matrix"].get("data")
        for key in ("k", "K"):
            if matrix is None and key in data:
                matrix = data[key]
        if matrix is None or len(matrix) != 9:
            raise ValueError(f"{path}: need fx/fy/cx/cy or a camera_info camera_matrix.data / k with 9 numbers")
        fx, cx, fy, cy = float(matrix[0]), float(matrix[2]), float(matrix[4]), float(matrix[5])
    file_w = data.get("width", data.get("image_width"))
    file_h = data.get("height", data.get("image_height"))
    if file_w is None or file_h is None:
        if width is None or height is None:
            raise ValueError(f"{path}: no image size in the file; pass width and height")
        file_w, file_h = width, height
    K = Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy, width=int(file_w), height=int(file_h))
    if width is not None and height is not None and (K.width, K.height) != (width, height):
        K = K.scaled(width, height)
    return K


def read_kitti_times_ns(path: str | Path, count: int | None = None) -> list[int]:
    """KITTI odometry ``times.txt`` (seconds since the sequence start, one per image) -> integer nanoseconds.
    ``count``: the number of images it must match (ValueError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"times file {path} does not exist")
    try:
        seconds = [float(v) for v in path.read_text().split()]
    except ValueError:
        raise ValueError(f"{path}: expected one time in seconds per line") from None
    if count is not None and len(seconds) != count:
        raise ValueError(f"{path} has {len(seconds)} times for {count} images")
    return [int(round(t * 1e9)) for t in seconds]


def read_kitti_raw_timestamps_ns(path: str | Path) -> list[int]:
    """KITTI raw ``timestamps.txt`` (``2011-09-26 13:02:25.964389445`` per line, UTC) -> integer nanoseconds
    since the epoch, exactly."""
    import calendar
    import re
    import time

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"timestamps file {path} does not exist")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = re.fullmatch(r"\s*(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?\s*", line)
        if match is None:
            raise ValueError(f"{path}:{n}: expected 'YYYY-MM-DD hh:mm:ss.nnnnnnnnn', got {line[:40]!r}")
        seconds = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
        out.append(seconds * 1_000_000_000 + int((match.group(2) or "").ljust(9, "0")))
    return out
