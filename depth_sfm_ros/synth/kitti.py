"""KITTI-like folder writer and reader for synthetic sequences (numpy + OpenCV PNG).

Layout (all frames numbered %06d)::

    image_2/000000.png        RGB image (PNG stores it as 8-bit colour)
    depth/000000.png          uint16, depth in metres * 256, 0 = invalid (sky, or beyond 255.99 m)
    dynamic_mask/000000.png   uint8, 255 = pixel of an object moving in the world, 0 otherwise
    instance/000000.png       uint16 instance id, 0 = ground / sky
    poses.txt                 per frame the first 3 rows of T_world_cam (camera optical frame in the
                              synthetic world frame, x along the road, z up), 12 numbers row-major
                              (KITTI odometry format; note the world is NOT the first camera frame)
    calib.txt                 P0..P3 = [K | 0] (3x4, row-major, KITTI odometry style), Tr = identity
    times.txt                 seconds since the first frame, one per line
    meta.json                 start_stamp_ns, seed, image size, fps, dynamic / lead instance ids
                              (+ randomize, scene for randomised profiles)
    randomization.yaml        randomised profiles only (written by ``depth-sfm synth``): what the
                              profile drew (camera, lighting, photometric chain, layout)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from depth_sfm_ros.geometry import Intrinsics, Pose

from .render import SyntheticFrame

DEPTH_SCALE = 256.0
_SUBDIRS = ("image_2", "depth", "dynamic_mask", "instance")


def _cv2():
    import cv2
    return cv2


def depth_to_png16(depth_m: np.ndarray) -> np.ndarray:
    """Depth (H, W) metres (NaN/inf/<= 0 invalid) -> uint16 metres*256 with 0 = invalid.
    Depths that do not fit (>= 256 m) are written as invalid."""
    depth = np.asarray(depth_m, dtype=np.float64)
    scaled = np.round(np.where(np.isfinite(depth) & (depth > 0), depth, 0.0) * DEPTH_SCALE)
    scaled[(scaled > 65535) | (scaled < 1)] = 0
    return scaled.astype(np.uint16)


def png16_to_depth(png: np.ndarray) -> np.ndarray:
    """uint16 metres*256 (0 invalid) -> float32 metres with NaN where invalid."""
    png = np.asarray(png)
    if png.dtype != np.uint16 or png.ndim != 2:
        raise ValueError(f"depth PNG must be a single-channel uint16 image, got {png.dtype} {png.shape}")
    depth = png.astype(np.float32) / np.float32(DEPTH_SCALE)
    depth[png == 0] = np.nan
    return depth


def _projection_line(name: str, intrinsics: Intrinsics) -> str:
    P = np.zeros((3, 4))
    P[:, :3] = intrinsics.K
    return f"{name}: " + " ".join(f"{v:.16e}" for v in P.reshape(-1))


def _write_png(path: Path, array: np.ndarray) -> None:
    if not _cv2().imwrite(str(path), array):
        raise OSError(f"could not write PNG {path}")


@dataclass
class KittiWriteResult:
    path: Path
    num_frames: int
    files: list[str] = field(default_factory=list)


def write_kitti_folder(frames: Iterable[SyntheticFrame], intrinsics: Intrinsics, out_dir: str | Path,
                       meta: dict | None = None) -> KittiWriteResult:
    """Write frames (any iterable, e.g. the lazy :func:`iter_frames`) into a KITTI-like folder.

    ``out_dir`` is created; existing frame files there are overwritten. ``meta`` is merged into meta.json.
    """
    out = Path(out_dir)
    for sub in _SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    poses, times_ns = [], []
    start_ns = None
    for i, frame in enumerate(frames):
        if frame.image_rgb.shape[:2] != (intrinsics.height, intrinsics.width):
            raise ValueError(f"frame {i} has size {frame.image_rgb.shape[:2]}, intrinsics say "
                             f"{intrinsics.height}x{intrinsics.width}")
        if frame.instance_ids.max(initial=0) > 65535 or frame.instance_ids.min(initial=0) < 0:
            raise ValueError("instance ids must fit into uint16 for the KITTI folder")
        name = f"{i:06d}.png"
        _write_png(out / "image_2" / name, np.ascontiguousarray(frame.image_rgb[:, :, ::-1]))
        _write_png(out / "depth" / name, depth_to_png16(frame.depth_m))
        _write_png(out / "dynamic_mask" / name, frame.dynamic_mask.astype(np.uint8) * 255)
        _write_png(out / "instance" / name, frame.instance_ids.astype(np.uint16))
        poses.append(frame.T_world_cam.matrix[:3, :4].reshape(-1))
        start_ns = frame.stamp_ns if start_ns is None else start_ns
        times_ns.append(frame.stamp_ns - start_ns)
    if not poses:
        raise ValueError("no frames to write")
    np.savetxt(out / "poses.txt", np.array(poses), fmt="%.16e")
    with open(out / "times.txt", "w") as fh:
        fh.writelines(f"{t // 1_000_000_000}.{t % 1_000_000_000:09d}\n" for t in times_ns)
    with open(out / "calib.txt", "w") as fh:
        for k in range(4):
            fh.write(_projection_line(f"P{k}", intrinsics) + "\n")
        fh.write("Tr: " + " ".join(f"{v:.16e}" for v in np.eye(4)[:3].reshape(-1)) + "\n")
    info = {"start_stamp_ns": int(start_ns), "width": intrinsics.width, "height": intrinsics.height,
            "num_frames": len(poses)}
    info.update(meta or {})
    with open(out / "meta.json", "w") as fh:
        json.dump(info, fh, indent=2, sort_keys=True)
    files = ["image_2/", "depth/", "dynamic_mask/", "instance/", "poses.txt", "times.txt", "calib.txt", "meta.json"]
    return KittiWriteResult(path=out, num_frames=len(poses), files=files)


def read_calib(path: str | Path, width: int, height: int, camera: str = "P2") -> Intrinsics:
    """Intrinsics from a KITTI odometry calib.txt (line ``camera``, falling back to P0)."""
    values: dict[str, np.ndarray] = {}
    with open(path) as fh:
        for line_no, line in enumerate(fh, 1):
            if ":" not in line:
                continue
            key, rest = line.split(":", 1)
            try:
                values[key.strip()] = np.array([float(v) for v in rest.split()])
            except ValueError as exc:
                raise ValueError(f"{path}:{line_no}: not a list of numbers ({exc})") from None
    for key in (camera, "P0"):
        if key in values:
            if values[key].size != 12:
                raise ValueError(f"{path}: {key} must have 12 numbers, got {values[key].size}")
            return Intrinsics.from_matrix(values[key].reshape(3, 4), width, height)
    raise ValueError(f"{path}: no {camera} or P0 projection line")


def read_poses(path: str | Path) -> list[Pose]:
    """KITTI odometry poses.txt -> list of Pose (12 numbers per line, row-major 3x4)."""
    data = np.loadtxt(path, ndmin=2)
    if data.shape[1] != 12:
        raise ValueError(f"{path}: expected 12 numbers per line, got {data.shape[1]}")
    return [Pose(row.reshape(3, 4)) for row in data]


class KittiFolder:
    """Reader of a folder written by :func:`write_kitti_folder` (frames are loaded on access).

    ``intrinsics``, ``poses`` (T_world_cam), ``stamps_ns``; ``frame(i)`` / ``[i]`` -> SyntheticFrame
    (dynamic_mask / instance_ids are all-False / zero when those folders are absent).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        for required in ("image_2", "calib.txt", "poses.txt", "times.txt"):
            if not (self.path / required).exists():
                raise FileNotFoundError(f"{self.path} is not a KITTI-like folder: {required} missing")
        self.image_paths = sorted((self.path / "image_2").glob("*.png"))
        if not self.image_paths:
            raise FileNotFoundError(f"no PNG images in {self.path / 'image_2'}")
        meta_path = self.path / "meta.json"
        self.meta: dict = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        first = self._read(self.image_paths[0], _cv2().IMREAD_UNCHANGED)
        height, width = first.shape[:2]
        self.intrinsics = read_calib(self.path / "calib.txt", width, height)
        self.poses = read_poses(self.path / "poses.txt")
        times_s = np.loadtxt(self.path / "times.txt", ndmin=1)
        start_ns = int(self.meta.get("start_stamp_ns", 0))
        self.stamps_ns = [start_ns + int(round(t * 1e9)) for t in times_s]
        n = len(self.image_paths)
        if len(self.poses) != n or len(self.stamps_ns) != n:
            raise ValueError(f"{self.path}: {n} images but {len(self.poses)} poses and {len(self.stamps_ns)} times")

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> SyntheticFrame:
        return self.frame(index)

    def __iter__(self) -> Iterator[SyntheticFrame]:
        return (self.frame(i) for i in range(len(self)))

    @staticmethod
    def _read(path: Path, flags: int) -> np.ndarray:
        image = _cv2().imread(str(path), flags)
        if image is None:
            raise OSError(f"cannot read image {path}")
        return image

    def frame(self, index: int) -> SyntheticFrame:
        if not (0 <= index < len(self)):
            raise IndexError(f"frame {index} outside [0, {len(self)})")
        cv2 = _cv2()
        name = self.image_paths[index].name
        image = self._read(self.image_paths[index], cv2.IMREAD_COLOR)[:, :, ::-1]
        shape = image.shape[:2]
        depth_path = self.path / "depth" / name
        depth = png16_to_depth(self._read(depth_path, cv2.IMREAD_UNCHANGED)) if depth_path.exists() \
            else np.full(shape, np.nan, dtype=np.float32)
        mask_path = self.path / "dynamic_mask" / name
        mask = self._read(mask_path, cv2.IMREAD_UNCHANGED) > 127 if mask_path.exists() else np.zeros(shape, bool)
        inst_path = self.path / "instance" / name
        inst = self._read(inst_path, cv2.IMREAD_UNCHANGED).astype(np.int32) if inst_path.exists() \
            else np.zeros(shape, np.int32)
        for label, array in (("depth", depth), ("dynamic_mask", mask), ("instance", inst)):
            if array.shape != shape:
                raise ValueError(f"{self.path}/{label}/{name}: shape {array.shape} differs from the image {shape}")
        return SyntheticFrame(index=index, stamp_ns=self.stamps_ns[index], image_rgb=np.ascontiguousarray(image),
                              depth_m=depth, dynamic_mask=mask, instance_ids=inst, T_world_cam=self.poses[index])


def read_kitti_folder(path: str | Path) -> KittiFolder:
    """Open a KITTI-like synthetic folder (see :class:`KittiFolder`)."""
    return KittiFolder(path)
