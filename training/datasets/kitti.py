"""KITTI raw (with velodyne / annotated ground-truth depth) and KITTI odometry, in their on-disk layouts.

KITTI raw::

    <root>/2011_09_26/calib_cam_to_cam.txt, calib_velo_to_cam.txt
    <root>/2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000069.png
                                               /velodyne_points/data/0000000069.bin  (float32 x y z r)
                                               /proj_depth/groundtruth/image_02/0000000069.png  (annotated,
                                                optional; or under <annotated_root>/{train,val}/<drive>/...)

Split files use monodepth2's format, one target per line: ``2011_09_26/2011_09_26_drive_0002_sync 69 l``
(``l`` = image_02, ``r`` = image_03).

KITTI odometry::

    <root>/sequences/09/image_2/000000.png, <root>/sequences/09/calib.txt (P2: ...), <root>/poses/09.txt
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from depth_sfm_ros.geometry import Intrinsics

from .base import ImageFileSequence
from .io import (list_images, projection_matrix, read_calib_text, read_depth_png, read_kitti_poses,
                 read_kitti_raw_timestamps_ns, read_kitti_times_ns, read_rgb)

SIDE_TO_CAMERA = {"l": 2, "r": 3}


def parse_kitti_split(path: str | Path) -> list[tuple[str, int, str]]:
    """Read a monodepth2 split file -> [(drive, frame_number, side)]; bad lines raise with their number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist")
    out = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[2] not in SIDE_TO_CAMERA or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{number}: expected '<date>/<drive> <frame> <l|r>', got {line!r}")
        frame = int(parts[1])
        if frame < 0:
            raise ValueError(f"{path}:{number}: negative frame number {frame}")
        out.append((parts[0], frame, parts[2]))
    if not out:
        raise ValueError(f"split file {path} has no entries")
    return out


def velodyne_to_depth_map(points_velo: np.ndarray, P_rect: np.ndarray, R_rect_00: np.ndarray,
                          T_cam0_velo: np.ndarray, width: int, height: int, lidar_x_depth: bool = False
                          ) -> np.ndarray:
    """Project LiDAR points into a rectified KITTI camera: the Eigen-split ground truth.

    Follows the protocol of monodepth2's ``generate_depth_map``: points behind the LiDAR
    (x < 0) are dropped, pixel = round(projection) - 1 (the devkit's 1-based MATLAB origin,
    kept for comparable numbers), depth = third row of ``P_rect @ R_rect @ T_cam0_velo @ p``,
    the nearest point wins where several fall on one pixel. ``lidar_x_depth`` stores the LiDAR's
    forward coordinate instead, as monodepth2's ``export_gt_depth.py`` does for the Eigen test
    ground truth (centimetres apart from the camera depth).

    Args:
        points_velo: (N, 3+) LiDAR points (x, y, z[, reflectance]) in metres.
        P_rect: (3, 4) P_rect_0X; R_rect_00: (3, 3); T_cam0_velo: (4, 4).
    Returns:
        (height, width) float32 metres, 0 = no point.
    """
    points_velo = np.asarray(points_velo, dtype=np.float64)
    if points_velo.ndim != 2 or points_velo.shape[1] < 3:
        raise ValueError(f"velodyne points must be (N, >=3), got {points_velo.shape}")
    pts = points_velo[points_velo[:, 0] >= 0, :3]
    R_rect = np.eye(4)
    R_rect[:3, :3] = R_rect_00
    P_velo_to_img = P_rect @ R_rect @ T_cam0_velo
    proj = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ P_velo_to_img.T
    z = proj[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.round(proj[:, 0] / z) - 1
        v = np.round(proj[:, 1] / z) - 1
    keep = np.isfinite(u) & np.isfinite(v) & (u >= 0) & (v >= 0) & (u < width) & (v < height) & (z > 0)
    if lidar_x_depth:
        z = pts[:, 0]
    u, v, z = u[keep].astype(np.int64), v[keep].astype(np.int64), z[keep]
    depth = np.full(height * width, np.inf)
    np.minimum.at(depth, v * width + u, z)
    depth[np.isinf(depth)] = 0.0
    return depth.reshape(height, width).astype(np.float32)


def read_velodyne_bin(path: str | Path) -> np.ndarray:
    """KITTI velodyne scan (float32 x, y, z, reflectance per point) -> (N, 4)."""
    data = np.fromfile(str(path), dtype=np.float32)
    if data.size % 4:
        raise ValueError(f"{path}: size is not a multiple of 4 float32 values")
    return data.reshape(-1, 4)


class KittiRawSequence(ImageFileSequence):
    """One KITTI raw drive seen by camera 2 (left colour) or 3 (right colour).

    ``depth_source``: ``"velodyne"`` (projected scans, camera depth), ``"velodyne_eigen"``
    (projected scans with the LiDAR forward distance as depth: the Eigen test protocol),
    ``"annotated"`` (the KITTI depth benchmark's ``proj_depth/groundtruth``), or None.
    """

    nominal_fps = 10.0

    def __init__(self, root: str | Path, drive: str, camera: int = 2, depth_source: str | None = "velodyne",
                 annotated_root: str | Path | None = None) -> None:
        self.root = Path(root)
        if camera not in (2, 3):
            raise ValueError(f"KITTI camera must be 2 (left) or 3 (right), got {camera}")
        if depth_source not in (None, "velodyne", "velodyne_eigen", "annotated"):
            raise ValueError(f"depth_source must be 'velodyne', 'velodyne_eigen', 'annotated' or None, "
                             f"got {depth_source!r}")
        self.drive, self.camera, self.depth_source = drive, camera, depth_source
        self.annotated_root = Path(annotated_root) if annotated_root is not None else None
        self.drive_dir = self.root / drive
        self.calib_dir = self.drive_dir.parent
        self.images = list_images(self.drive_dir / f"image_{camera:02d}" / "data")
        if not self.images:
            raise FileNotFoundError(f"no images in {self.drive_dir / f'image_{camera:02d}' / 'data'}")
        self.position = {int(p.stem): k for k, p in enumerate(self.images)}
        cam = read_calib_text(self.calib_dir / "calib_cam_to_cam.txt")
        self.P_rect = projection_matrix(cam, f"P_rect_{camera:02d}", self.calib_dir / "calib_cam_to_cam.txt")
        if "R_rect_00" not in cam or f"S_rect_{camera:02d}" not in cam:
            raise KeyError(f"{self.calib_dir / 'calib_cam_to_cam.txt'}: needs R_rect_00 and S_rect_{camera:02d}")
        self.R_rect_00 = cam["R_rect_00"].reshape(3, 3)
        width, height = (int(round(x)) for x in cam[f"S_rect_{camera:02d}"])
        self._K = Intrinsics.from_matrix(self.P_rect[:, :3], width=width, height=height)
        self._T_cam0_velo: np.ndarray | None = None
        self.name = f"{drive}/image_{camera:02d}"
        self.has_depth = depth_source is not None

    def frame_number(self, i: int) -> int:
        return int(self.images[i].stem)

    def stamp_ns(self, i: int) -> int | None:
        """Capture time from ``image_0X/timestamps.txt`` (line = frame number), or None without that file."""
        if not hasattr(self, "_stamps_ns"):
            path = self.drive_dir / f"image_{self.camera:02d}" / "timestamps.txt"
            self._stamps_ns = read_kitti_raw_timestamps_ns(path) if path.is_file() else None
        if self._stamps_ns is None or self.frame_number(i) >= len(self._stamps_ns):
            return None
        return self._stamps_ns[self.frame_number(i)]

    def _velo_calib(self) -> np.ndarray:
        if self._T_cam0_velo is None:
            path = self.calib_dir / "calib_velo_to_cam.txt"
            velo = read_calib_text(path)
            if "R" not in velo or "T" not in velo:
                raise KeyError(f"{path}: needs R and T")
            T = np.eye(4)
            T[:3, :3] = velo["R"].reshape(3, 3)
            T[:3, 3] = velo["T"].reshape(3)
            self._T_cam0_velo = T
        return self._T_cam0_velo

    def annotated_depth_path(self, i: int) -> Path | None:
        """Where the KITTI depth benchmark's annotated depth of frame ``i`` is, or None."""
        rel = Path("proj_depth") / "groundtruth" / f"image_{self.camera:02d}" / f"{self.frame_id(i)}.png"
        candidates = [self.drive_dir / rel]
        if self.annotated_root is not None:
            drive_name = Path(self.drive).name
            candidates += [self.annotated_root / part / drive_name / rel for part in ("train", "val")]
            candidates.append(self.annotated_root / self.drive / rel)
        return next((p for p in candidates if p.is_file()), None)

    def depth_m(self, i: int) -> np.ndarray | None:
        if self.depth_source == "annotated":
            path = self.annotated_depth_path(i)
            return None if path is None else read_depth_png(path)
        if self.depth_source in ("velodyne", "velodyne_eigen"):
            path = self.drive_dir / "velodyne_points" / "data" / f"{self.frame_id(i)}.bin"
            if not path.is_file():
                return None
            return velodyne_to_depth_map(read_velodyne_bin(path), self.P_rect, self.R_rect_00, self._velo_calib(),
                                         self._K.width, self._K.height, self.depth_source == "velodyne_eigen")
        return None


def kitti_raw_sequences(root: str | Path, split_file: str | Path | None = None, depth_source: str | None = None,
                        annotated_root: str | Path | None = None
                        ) -> tuple[list[KittiRawSequence], list[tuple[int, int]] | None]:
    """KITTI raw sequences and, with a split file, the split's targets as (sequence, position).

    Without a split file every ``<date>/<drive>_sync`` under ``root`` is used (left camera).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"KITTI raw root {root} does not exist")
    if split_file is None:
        drives = sorted(str(p.relative_to(root)) for p in root.glob("*/*_sync") if p.is_dir())
        if not drives:
            raise FileNotFoundError(f"no <date>/<drive>_sync folders under {root}")
        return [KittiRawSequence(root, d, 2, depth_source, annotated_root) for d in drives], None
    sequences: list[KittiRawSequence] = []
    index: dict[tuple[str, int], int] = {}
    targets = []
    for drive, frame, side in parse_kitti_split(split_file):
        key = (drive, SIDE_TO_CAMERA[side])
        if key not in index:
            index[key] = len(sequences)
            sequences.append(KittiRawSequence(root, drive, key[1], depth_source, annotated_root))
        seq = sequences[index[key]]
        if frame not in seq.position:
            raise FileNotFoundError(f"split {split_file}: frame {frame} of {drive} ({side}) not found in "
                                    f"{seq.drive_dir / f'image_{key[1]:02d}' / 'data'}")
        targets.append((index[key], seq.position[frame]))
    return sequences, targets


class KittiOdometrySequence(ImageFileSequence):
    """One KITTI odometry sequence (``image_2`` or ``image_3``) with ground-truth poses when present.

    ``poses/NN.txt`` gives T_world_cam0; the colour camera's pose is
    ``T_world_cam0 @ inv(T_camX_cam0)`` with ``T_camX_cam0`` the translation in P_X
    (``P_X[:, 3] = K @ t``).
    """

    has_depth = False
    nominal_fps = 10.0

    def __init__(self, root: str | Path, sequence: str, camera: int = 2) -> None:
        self.root = Path(root)
        if camera not in (2, 3):
            raise ValueError(f"KITTI camera must be 2 or 3, got {camera}")
        seq_dir = self.root / "sequences" / sequence
        self.images = list_images(seq_dir / f"image_{camera}")
        if not self.images:
            raise FileNotFoundError(f"no images in {seq_dir / f'image_{camera}'}")
        P = projection_matrix(read_calib_text(seq_dir / "calib.txt"), f"P{camera}", seq_dir / "calib.txt")
        first = read_rgb(self.images[0])
        self._K = Intrinsics.from_matrix(P[:, :3], width=first.shape[1], height=first.shape[0])
        T_camX_cam0 = np.eye(4)
        T_camX_cam0[:3, 3] = np.linalg.solve(P[:, :3], P[:, 3])
        pose_file = self.root / "poses" / f"{sequence}.txt"
        self.poses = None
        if pose_file.is_file():
            T_w_cam0 = read_kitti_poses(pose_file)
            if len(T_w_cam0) != len(self.images):
                raise ValueError(f"{pose_file} has {len(T_w_cam0)} poses for {len(self.images)} images")
            self.poses = T_w_cam0 @ np.linalg.inv(T_camX_cam0)
        self.has_poses = self.poses is not None
        self.name = f"{sequence}/image_{camera}"
        times = seq_dir / "times.txt"
        self.stamps_ns = read_kitti_times_ns(times, len(self.images)) if times.is_file() else None

    def T_world_cam(self, i: int) -> np.ndarray | None:
        return None if self.poses is None else self.poses[i]

    def stamp_ns(self, i: int) -> int | None:
        """Seconds of ``times.txt`` since the sequence start, as nanoseconds; None without that file."""
        return None if self.stamps_ns is None else self.stamps_ns[i]
