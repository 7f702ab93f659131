"""Loaders for real camera sequences in their public on-disk formats.

Five layouts, as the public datasets ship them (``../shared/real/`` holds the first three; see
docs/real_data.md for where to download each dataset and its licence). KITTI raw and the full KITTI
odometry layout (``sequences/NN/image_2``) are in :mod:`.kitti`.

Microsoft 7-Scenes (one sequence folder, e.g. ``redkitchen/seq-01``)::

    frame-NNNNNN.color.png|jpg  RGB 640x480
    frame-NNNNNN.depth.png      uint16 millimetres, 0 and 65535 = no measurement (not registered to colour)
    frame-NNNNNN.pose.txt       4x4 T_world_cam (camera-to-world), metres
    camera-intrinsics.txt       3x3 K of the colour images (optional; the dataset's K: fx = fy = 585, cx = 320,
                                cy = 240 at 640x480, scaled to the images' size when the file is absent)

KITTI odometry, one sequence flattened into a folder (``image_l`` = camera 0, grey)::

    image_l/NNNNNN.png   calib.txt (P0 [P1 ...]: 12 numbers per line, optionally ``P0:``-prefixed)
    poses.txt            (optional) KITTI poses, 3x4 T_world_cam0 per line
    times.txt            (optional) seconds since the start of the sequence, one line per image

DAVIS 2016/2017 (one clip; the official release has a ``480p/`` level, also accepted)::

    JPEGImages/<clip>/NNNNN.jpg   Annotations/<clip>/NNNNN.png (non-zero = the annotated moving object)

DAVIS has no calibration: the intrinsics are an assumption (``DAVIS_ASSUMED_HFOV_DEG`` horizontal field
of view, principal point at the centre); :class:`DavisSequence` says so in ``intrinsics_note``.

TUM RGB-D (one sequence folder, e.g. ``rgbd_dataset_freiburg1_desk``)::

    rgb.txt / depth.txt   "timestamp filename" per line (seconds since the epoch; '#' = comment)
    rgb/*.png             RGB 640x480
    depth/*.png           uint16, metres * 5000, 0 = no measurement; registered to the colour image
    groundtruth.txt       "timestamp tx ty tz qx qy qz qw": T_world_cam of the colour camera's optical frame

Depth and pose are associated to each colour frame by the nearest time stamp within a tolerance (TUM's
``associate.py`` with its default 0.02 s, but nearest-per-frame rather than one-to-one). Intrinsics are the
calibrated ones of the Freiburg camera named in the folder (``freiburg1|2|3`` or ``fr1|2|3``), see
:data:`TUM_CAMERAS`.

EuRoC MAV (ASL format; the sequence folder holding ``mav0/``, or ``mav0`` itself)::

    mav0/cam0/data.csv         "#timestamp [ns],filename"
    mav0/cam0/data/*.png       grey 752x480, distorted (radial-tangential)
    mav0/cam0/sensor.yaml      intrinsics [fu, fv, cu, cv], distortion_coefficients [k1, k2, p1, p2], T_BS
                               (distortion_model radial-tangential; equidistant [k1..k4] as TUM-VI is accepted)
    mav0/state_groundtruth_estimate0/data.csv   timestamp, p_RS_R xyz [m], q_RS wxyz, ... (T_world_body)
    (or vicon0/data.csv: the same first 8 columns; or leica0/data.csv: the prism's position only)

EuRoC images are **undistorted** here (``depth_sfm_ros.geometry.camera_model``, the node's camera-model module;
maps built once per sequence) and the intrinsics given are those
of the undistorted images; the camera pose is ``T_world_cam = T_world_body @ T_body_cam``.

:data:`REAL_DEV_SPLITS` names, for each development sequence, the frames a training run may use and the
frames held out from every training run (for ``bench/real_eval.py``'s held-out rows).
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from depth_sfm_ros.geometry import Intrinsics, Pose, camera_model
from depth_sfm_ros.geometry.camera_model import CameraModel

from .base import FrameSequence, ImageFileSequence
from .io import list_images, read_kitti_poses, read_kitti_times_ns, read_png_uint16, read_rgb

LOG = logging.getLogger(__name__)

SEVEN_SCENES_K = (585.0, 585.0, 320.0, 240.0)  # fx, fy, cx, cy of 7-Scenes' 640x480 colour images
SEVEN_SCENES_INVALID_MM = (0, 65535)
SEVEN_SCENES_FPS = 30.0
KITTI_FPS = 10.0
DAVIS_ASSUMED_HFOV_DEG = 60.0
DAVIS_FPS = 24.0

# TUM RGB-D colour cameras (https://cvg.cit.tum.de/data/datasets/rgbd-dataset/file_formats, "Intrinsic Camera
# Calibration of the Kinect"): fx, fy, cx, cy in pixels of the 640x480 images, and OpenCV (plumb_bob)
# distortion k1, k2, p1, p2, k3. fr3 images are already undistorted. "ros_default" is what TUM recommends
# when the camera is unknown (the OpenNI driver's factory calibration; no distortion) and the default here.
TUM_CAMERAS: dict[str, tuple[float, float, float, float, tuple[float, ...]]] = {
    "fr1": (517.3, 516.5, 318.6, 255.3, (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),
    "fr2": (520.9, 521.0, 325.1, 249.7, (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)),
    "fr3": (535.4, 539.2, 320.1, 247.6, (0.0, 0.0, 0.0, 0.0, 0.0)),
    "ros_default": (525.0, 525.0, 319.5, 239.5, (0.0, 0.0, 0.0, 0.0, 0.0)),
}
TUM_SIZE = (640, 480)
TUM_DEPTH_SCALE = 5000.0  # depth PNG value per metre
TUM_MAX_DIFFERENCE_S = 0.02  # associate.py's default
TUM_FPS = 30.0
EUROC_MAX_DIFFERENCE_S = 0.01  # the ground truth runs at 200 Hz, the cameras at 20 Hz
EUROC_FPS = 20.0
EUROC_GROUND_TRUTH = ("state_groundtruth_estimate0", "vicon0", "leica0")  # tried in this order

# Development split of ../shared/real: half-open frame ranges [start, stop) per sequence.
# 7-Scenes: the first frames barely move (kept for the still-camera check), the last 100 never train.
# KITTI odometry 51: the last 11 frames never train. DAVIS: two clips never train.
REAL_DEV_SPLITS: dict[str, dict[str, object]] = {
    "7scenes_redkitchen": {"train": (0, 300), "heldout": (300, 400), "still": (0, 10)},
    "kitti_odometry_51": {"train": (0, 40), "heldout": (40, 51)},
    "davis_moving_camera": {"train_clips": ("camel", "dog", "drift-straight", "parkour"),
                            "heldout_clips": ("car-roundabout", "car-shadow")},
}


# ---------------------------------------------------------------------------------------- helpers
def _read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A whitespace-separated matrix of ``shape`` from a text file (float64), with errors naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        matrix = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path}: not a {shape[0]}x{shape[1]} matrix of numbers ({exc})") from None
    if matrix.shape != shape or not np.all(np.isfinite(matrix)):
        raise ValueError(f"{path}: expected a finite {shape[0]}x{shape[1]} matrix, got shape {matrix.shape}")
    return matrix


def _intrinsics_from(K: np.ndarray, width: int, height: int, source: Path | str) -> Intrinsics:
    """Intrinsics from a camera matrix, refusing ones that cannot belong to a ``width`` x ``height`` image."""
    try:
        intrinsics = Intrinsics.from_matrix(K, width=width, height=height)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    if not (0 <= intrinsics.cx <= width and 0 <= intrinsics.cy <= height):
        raise ValueError(f"{source}: principal point ({intrinsics.cx:g}, {intrinsics.cy:g}) lies outside the "
                         f"{width}x{height} images (intrinsics of another image size?)")
    return intrinsics


def _check_pose(T: np.ndarray, source: Path | str) -> np.ndarray:
    """``T`` if it is a rigid 4x4 transform (bottom row 0 0 0 1, rotation part orthonormal to 1e-3)."""
    T = np.asarray(T, dtype=np.float64)
    R = T[:3, :3]
    if (not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6)
            or not np.allclose(R @ R.T, np.eye(3), atol=1e-3) or np.linalg.det(R) < 0):
        raise ValueError(f"{source}: not a rigid transform (rotation not orthonormal or bottom row not 0 0 0 1)")
    return T


def parse_stamp_ns(text: str, source: str = "") -> int:
    """A time stamp in decimal seconds (``1305031102.175304``) -> integer nanoseconds, exactly (no float)."""
    match = re.fullmatch(r"\s*(\d+)(?:\.(\d{0,9})\d*)?\s*", text)
    if match is None:
        raise ValueError(f"{source}: not a time stamp in seconds: {text!r}")
    return int(match.group(1)) * 1_000_000_000 + int((match.group(2) or "").ljust(9, "0"))


def associate_nearest(query_ns: np.ndarray, stamps_ns: np.ndarray, max_difference_ns: int) -> np.ndarray:
    """For each query stamp, the index of the nearest of ``stamps_ns`` (sorted ascending) within
    ``max_difference_ns``, or -1. Integer nanoseconds in, (N,) int64 indices out."""
    query_ns = np.asarray(query_ns, dtype=np.int64)
    stamps_ns = np.asarray(stamps_ns, dtype=np.int64)
    out = np.full(len(query_ns), -1, dtype=np.int64)
    if len(stamps_ns) == 0:
        return out
    right = np.clip(np.searchsorted(stamps_ns, query_ns), 0, len(stamps_ns) - 1)
    left = np.clip(right - 1, 0, len(stamps_ns) - 1)
    pick = np.where(np.abs(stamps_ns[left] - query_ns) <= np.abs(stamps_ns[right] - query_ns), left, right)
    ok = np.abs(stamps_ns[pick] - query_ns) <= int(max_difference_ns)
    out[ok] = pick[ok]
    return out


class Undistorter(camera_model.Undistorter):
    """The datasets' undistorter: :class:`depth_sfm_ros.geometry.camera_model.Undistorter` (the node's and the
    bag tools' one) built from a calibration file's pinhole ``intrinsics`` and ``distortion`` coefficients.

    ``distortion_model``: ``plumb_bob`` (radial-tangential k1, k2, p1, p2[, k3]; default), ``rational_polynomial``
    or ``equidistant`` (fisheye k1..k4). The output images keep the input size; their intrinsics
    (:attr:`intrinsics`) come from ``cv2.getOptimalNewCameraMatrix`` with ``alpha`` (0 = only valid pixels, no
    black border; 1 = every input pixel kept; fisheye: the balance). The remap tables are built on first use
    and cached per process (not pickled to DataLoader workers: each builds its own once). :meth:`image` is
    bilinear, :meth:`labels` nearest neighbour (depth, masks, ids; 0 outside the input).
    """

    def __init__(self, intrinsics: Intrinsics, distortion: Sequence[float], alpha: float = 0.0,
                 distortion_model: str = "plumb_bob") -> None:
        super().__init__(CameraModel.from_intrinsics(intrinsics, list(distortion), distortion_model), alpha=alpha)
        self.distorted = intrinsics
        self.distortion = np.array(self.model.D)


# -------------------------------------------------------------------------------------- 7-Scenes
class SevenScenesSequence(FrameSequence):
    """One 7-Scenes sequence folder: colour, Kinect depth (metres) and camera poses per frame.

    Depth comes from the depth camera beside the colour camera (not registered): a few pixels of offset
    at depth edges. It is used for evaluation only; training never reads it (self-supervised).
    """

    has_depth = True
    nominal_fps = SEVEN_SCENES_FPS

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"7-Scenes folder {self.root} does not exist")
        self.images = sorted(self.root.glob("frame-*.color.png")) or sorted(self.root.glob("frame-*.color.jpg"))
        if not self.images:
            raise FileNotFoundError(f"no frame-NNNNNN.color.(jpg|png) in {self.root}")
        self._stems = [p.name.split(".")[0] for p in self.images]
        first = read_rgb(self.images[0])
        height, width = first.shape[:2]
        K_file = self.root / "camera-intrinsics.txt"
        if K_file.is_file():
            self._K = _intrinsics_from(_read_matrix(K_file, (3, 3)), width, height, K_file)
        else:
            fx, fy, cx, cy = SEVEN_SCENES_K
            self._K = Intrinsics(fx, fy, cx, cy, 640, 480).scaled(width, height)
        self.has_poses = all((self.root / f"{s}.pose.txt").is_file() for s in self._stems)
        self.name = self.root.name

    def __len__(self) -> int:
        return len(self.images)

    def frame_id(self, i: int) -> str:
        return self._stems[i]

    def image_rgb(self, i: int) -> np.ndarray:
        return read_rgb(self.images[i])

    def intrinsics(self, i: int) -> Intrinsics:
        return self._K

    def depth_m(self, i: int) -> np.ndarray | None:
        """(H, W) float32 metres, 0 where the Kinect had no measurement (0 or 65535 in the file)."""
        path = self.root / f"{self._stems[i]}.depth.png"
        if not path.is_file():
            return None
        raw = read_png_uint16(path)
        if raw.dtype != np.uint16:
            raise ValueError(f"{path}: 7-Scenes depth must be uint16 millimetres, got {raw.dtype}")
        depth = raw.astype(np.float32) / 1000.0
        depth[np.isin(raw, SEVEN_SCENES_INVALID_MM)] = 0.0
        if depth.shape != (self._K.height, self._K.width):
            raise ValueError(f"{path}: depth {depth.shape[1]}x{depth.shape[0]} does not match the colour image "
                             f"{self._K.width}x{self._K.height}")
        return depth

    def T_world_cam(self, i: int) -> np.ndarray | None:
        """(4, 4) camera-to-world pose, metres, or None without a pose file."""
        path = self.root / f"{self._stems[i]}.pose.txt"
        return _check_pose(_read_matrix(path, (4, 4)), path) if path.is_file() else None


# -------------------------------------------------------------------------------- KITTI odometry
def read_kitti_calib_matrices(path: str | Path) -> list[np.ndarray]:
    """Projection matrices (3, 4) of a KITTI odometry ``calib.txt``, in file order.

    Accepts both the released form (``P0: 12 numbers``) and the bare form (12 numbers per line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file {path} does not exist")
    matrices = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split(":", 1)[-1].split() if ":" in line else line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise ValueError(f"{path}:{n}: not a line of numbers: {line[:60]!r}") from None
        if len(values) != 12:
            raise ValueError(f"{path}:{n}: a projection matrix needs 12 numbers, got {len(values)}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{path}:{n}: projection matrix has NaN/Inf entries")
        matrices.append(np.asarray(values, dtype=np.float64).reshape(3, 4))
    if not matrices:
        raise ValueError(f"{path}: no projection matrix")
    return matrices


class KittiOdometryFolderSequence(ImageFileSequence):
    """A KITTI odometry sequence flattened into one folder: ``image_l/`` (camera 0), ``calib.txt``,
    optional ``poses.txt`` (T_world_cam0 per image) and ``times.txt`` (seconds per image).
    Grey images are read as 3 equal channels."""

    nominal_fps = KITTI_FPS

    def __init__(self, root: str | Path, image_dir: str = "image_l") -> None:
        self.root = Path(root)
        self.images = list_images(self.root / image_dir)
        if not self.images:
            raise FileNotFoundError(f"no images in {self.root / image_dir}")
        P0 = read_kitti_calib_matrices(self.root / "calib.txt")[0]
        first = read_rgb(self.images[0])
        self._K = _intrinsics_from(P0[:, :3], first.shape[1], first.shape[0], self.root / "calib.txt")
        self.poses = None
        if (self.root / "poses.txt").is_file():
            self.poses = read_kitti_poses(self.root / "poses.txt")
            if len(self.poses) != len(self.images):
                raise ValueError(f"{self.root / 'poses.txt'} has {len(self.poses)} poses for {len(self.images)} "
                                 f"images")
            if not np.all(np.isfinite(self.poses)):
                raise ValueError(f"{self.root / 'poses.txt'}: poses have NaN/Inf entries")
        times = self.root / "times.txt"
        self.stamps_ns = read_kitti_times_ns(times, len(self.images)) if times.is_file() else None
        self.has_poses = self.poses is not None
        self.name = self.root.name

    def T_world_cam(self, i: int) -> np.ndarray | None:
        return None if self.poses is None else self.poses[i]


# ----------------------------------------------------------------------------------------- DAVIS
def assumed_intrinsics(width: int, height: int, hfov_deg: float = DAVIS_ASSUMED_HFOV_DEG) -> Intrinsics:
    """Square-pixel intrinsics with the principal point at the centre and horizontal field of view
    ``hfov_deg`` (for video without calibration)."""
    if not 1.0 <= hfov_deg <= 179.0:
        raise ValueError(f"horizontal field of view must be in [1, 179] degrees, got {hfov_deg}")
    f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return Intrinsics(f, f, width / 2.0 - 0.5, height / 2.0 - 0.5, width, height)


def read_label_png(path: Path) -> np.ndarray:
    """A label PNG as (H, W) integers: grey 8/16-bit as stored; colour / palette PNGs (DAVIS 2017) as the
    maximum over the channels (non-zero wherever the colour is not black)."""
    import cv2

    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise FileNotFoundError(f"cannot read PNG {path}")
    return label if label.ndim == 2 else label.max(axis=2)


def davis_folders(root: str | Path) -> tuple[Path, Path]:
    """The folders holding the clip folders: ``JPEGImages`` / ``Annotations``, or their ``480p`` subfolders
    (the official release's layout)."""
    root = Path(root)
    if (root / "JPEGImages" / "480p").is_dir():
        return root / "JPEGImages" / "480p", root / "Annotations" / "480p"
    return root / "JPEGImages", root / "Annotations"


class DavisSequence(ImageFileSequence):
    """One DAVIS clip: ``JPEGImages/[480p/]<clip>/*.jpg`` with the annotated moving object from
    ``Annotations/[480p/]<clip>/*.png`` as ``dynamic_mask`` (evaluation only). Intrinsics are assumed."""

    nominal_fps = DAVIS_FPS

    def __init__(self, root: str | Path, clip: str, hfov_deg: float = DAVIS_ASSUMED_HFOV_DEG) -> None:
        self.root = Path(root)
        images_dir, annotations_dir = davis_folders(self.root)
        if not (images_dir / clip).is_dir():
            found = sorted(p.name for p in images_dir.glob("*") if p.is_dir())
            raise FileNotFoundError(f"DAVIS clip {clip!r} not found in {images_dir} (clips there: "
                                    f"{', '.join(found) or 'none'})")
        self.images = list_images(images_dir / clip)
        if not self.images:
            raise FileNotFoundError(f"no images in {images_dir / clip}")
        first = read_rgb(self.images[0])
        self._K = assumed_intrinsics(first.shape[1], first.shape[0], hfov_deg)
        self.intrinsics_note = f"assumed: {hfov_deg:g} deg horizontal field of view, centred principal point"
        self.annotations = annotations_dir / clip
        self.name = clip

    def dynamic_mask(self, i: int) -> np.ndarray | None:
        """(H, W) bool, True on the annotated object; None for a frame without annotation."""
        path = self.annotations / f"{self.images[i].stem}.png"
        if not path.is_file():
            return None
        mask = read_label_png(path) > 0
        if mask.shape != (self._K.height, self._K.width):
            raise ValueError(f"{path}: annotation {mask.shape[1]}x{mask.shape[0]} does not match the image "
                             f"{self._K.width}x{self._K.height}")
        return mask


def davis_sequences(root: str | Path, clips: list[str] | None = None,
                    hfov_deg: float = DAVIS_ASSUMED_HFOV_DEG) -> list[DavisSequence]:
    """The clips of a DAVIS folder (all clips under ``JPEGImages`` when ``clips`` is None)."""
    root = Path(root)
    if isinstance(clips, str):
        clips = [c.strip() for c in clips.split(",") if c.strip()]
    if clips is None:
        clips = sorted(p.name for p in davis_folders(root)[0].glob("*") if p.is_dir())
    if not clips:
        raise FileNotFoundError(f"no clips under {davis_folders(root)[0]}")
    return [DavisSequence(root, clip, hfov_deg) for clip in clips]


# -------------------------------------------------------------------------------------- TUM RGB-D
def read_tum_table(path: Path, columns: int) -> tuple[np.ndarray, list[list[str]]]:
    """A TUM text file: '#' comments, then ``timestamp v1 ... v{columns-1}`` per line.

    Returns the stamps (N,) int64 nanoseconds sorted ascending and the other fields of each line (strings).
    """
    if not path.is_file():
        raise FileNotFoundError(f"TUM file {path} does not exist")
    stamps, rows = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.replace(",", " ").split()
        if len(fields) != columns:
            raise ValueError(f"{path}:{n}: expected {columns} fields, got {len(fields)}: {line[:80]!r}")
        stamps.append(parse_stamp_ns(fields[0], f"{path}:{n}"))
        rows.append(fields[1:])
    if not stamps:
        raise ValueError(f"{path}: no entries")
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    return np.asarray(stamps, dtype=np.int64)[order], [rows[k] for k in order]


def tum_camera_of(name: str) -> str:
    """``fr1`` / ``fr2`` / ``fr3`` from a TUM sequence name (``rgbd_dataset_freiburg2_xyz``, ``fr3_office``),
    else ``ros_default``."""
    match = re.search(r"(?:freiburg|fr)([123])(?![0-9])", name.lower())
    return f"fr{match.group(1)}" if match else "ros_default"


class TumRgbdSequence(ImageFileSequence):
    """One TUM RGB-D sequence: colour frames with registered depth (metres) and mocap poses.

    Args:
        root: the sequence folder (rgb.txt, depth.txt, groundtruth.txt, rgb/, depth/).
        camera: ``fr1`` | ``fr2`` | ``fr3`` | ``ros_default`` (:data:`TUM_CAMERAS`); None = from the folder
            name (``freiburgN`` / ``frN``), ``ros_default`` when the name has neither.
        undistort: remove the colour camera's radial distortion (fr1 / fr2 only; fr3 and ros_default have
            none) from colour (bilinear) and depth (nearest); the intrinsics are then those of the
            undistorted images. Default False, as TUM recommends (the depth is pre-registered to the images
            as recorded).
        max_difference_s: largest |rgb - depth| and |rgb - ground truth| stamp difference for an association.

    A frame without depth within the tolerance has ``depth_m`` None; one without a pose has ``T_world_cam``
    None (``pose_known`` says which); ``has_poses`` is True only when every frame has one.
    """

    has_depth = True
    nominal_fps = TUM_FPS

    def __init__(self, root: str | Path, camera: str | None = None, undistort: bool = False,
                 max_difference_s: float = TUM_MAX_DIFFERENCE_S) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"TUM RGB-D folder {self.root} does not exist")
        if not max_difference_s >= 0:
            raise ValueError(f"max_difference_s must be >= 0, got {max_difference_s}")
        self.camera = camera or tum_camera_of(self.root.name)
        if self.camera not in TUM_CAMERAS:
            raise ValueError(f"TUM camera must be one of {sorted(TUM_CAMERAS)}, got {self.camera!r}")
        self.name = self.root.name
        tolerance_ns = int(round(max_difference_s * 1e9))
        self.stamps_ns, rgb_rows = read_tum_table(self.root / "rgb.txt", 2)
        self.images = [self.root / row[0] for row in rgb_rows]
        depth_file = self.root / "depth.txt"
        self.depth_files: list[Path | None] = [None] * len(self.images)
        if depth_file.is_file():
            depth_stamps, depth_rows = read_tum_table(depth_file, 2)
            for k, j in enumerate(associate_nearest(self.stamps_ns, depth_stamps, tolerance_ns)):
                self.depth_files[k] = None if j < 0 else self.root / depth_rows[j][0]
        self.has_depth = any(p is not None for p in self.depth_files)
        self.poses: list[np.ndarray | None] = [None] * len(self.images)
        gt_file = self.root / "groundtruth.txt"
        if gt_file.is_file():
            gt_stamps, gt_rows = read_tum_table(gt_file, 8)
            for k, j in enumerate(associate_nearest(self.stamps_ns, gt_stamps, tolerance_ns)):
                if j >= 0:
                    self.poses[k] = self._pose(gt_rows[j], gt_file)
        self.pose_known = [T is not None for T in self.poses]
        self.has_poses = all(self.pose_known)
        if gt_file.is_file() and not self.has_poses:
            LOG.warning("%s: %d of %d frames have no ground-truth pose within %.3f s", self.root,
                        self.pose_known.count(False), len(self.images), max_difference_s)
        first = read_rgb(self.images[0])
        fx, fy, cx, cy, distortion = TUM_CAMERAS[self.camera]
        K = Intrinsics(fx, fy, cx, cy, *TUM_SIZE)
        if (first.shape[1], first.shape[0]) != TUM_SIZE:
            K = K.scaled(first.shape[1], first.shape[0])
        self.undistorter = Undistorter(K, distortion) if undistort and any(distortion) else None
        self._K = self.undistorter.intrinsics if self.undistorter is not None else K

    @staticmethod
    def _pose(fields: list[str], source: Path) -> np.ndarray:
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise ValueError(f"{source}: pose fields must be numbers, got {fields}") from None
        q = np.asarray(values[3:], dtype=np.float64)
        norm = float(np.linalg.norm(q))
        if not (np.all(np.isfinite(values)) and abs(norm - 1.0) < 1e-2):
            raise ValueError(f"{source}: pose 'tx ty tz qx qy qz qw' needs finite numbers and a unit quaternion, "
                             f"got {fields}")
        return Pose.from_quaternion(values[:3], q / norm).matrix.copy()

    def depth_m(self, i: int) -> np.ndarray | None:
        """(H, W) float32 metres (PNG value / 5000), 0 = no measurement; None without depth near this frame."""
        path = self.depth_files[i]
        if path is None:
            return None
        raw = read_png_uint16(path)
        if raw.dtype != np.uint16:
            raise ValueError(f"{path}: TUM depth must be uint16 (metres * {TUM_DEPTH_SCALE:g}), got {raw.dtype}")
        if self.undistorter is not None:
            raw = self.undistorter.labels(raw)
        if raw.shape != (self._K.height, self._K.width):
            raise ValueError(f"{path}: depth {raw.shape[1]}x{raw.shape[0]} does not match the colour image "
                             f"{self._K.width}x{self._K.height}")
        return raw.astype(np.float32) / np.float32(TUM_DEPTH_SCALE)

    def T_world_cam(self, i: int) -> np.ndarray | None:
        """(4, 4) pose of the colour camera's optical frame in the mocap world, or None."""
        return self.poses[i]


# ------------------------------------------------------------------------------------------ EuRoC
def read_euroc_sensor_yaml(path: Path) -> dict:
    """An ASL ``sensor.yaml`` as a dict (the ``%YAML:1.0`` line of OpenCV-style files is skipped)."""
    if not path.is_file():
        raise FileNotFoundError(f"EuRoC sensor file {path} does not exist")
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("%YAML"))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    return data


def euroc_T_BS(data: dict, source: Path) -> np.ndarray:
    """The sensor's pose in the body (IMU) frame, ``T_BS`` (4, 4); identity when the file has none."""
    if "T_BS" not in data:
        return np.eye(4)
    entry = data["T_BS"]
    values = entry.get("data") if isinstance(entry, dict) else entry
    try:
        T = np.asarray(values, dtype=np.float64).reshape(4, 4)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: T_BS must hold 16 numbers (data: [...]), got {values!r}") from None
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{source}: T_BS has NaN/Inf entries")
    return _check_pose(T, f"{source} T_BS")


def read_euroc_csv(path: Path, min_columns: int) -> tuple[np.ndarray, list[list[str]]]:
    """An ASL ``data.csv``: '#' header, then ``timestamp_ns,...`` per line -> (stamps (N,) int64, other fields)."""
    if not path.is_file():
        raise FileNotFoundError(f"EuRoC file {path} does not exist")
    stamps, rows = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < min_columns:
            raise ValueError(f"{path}:{n}: expected at least {min_columns} comma-separated fields, got "
                             f"{len(fields)}: {line[:80]!r}")
        if not fields[0].isdigit():
            raise ValueError(f"{path}:{n}: the first field must be a time stamp in integer nanoseconds, got "
                             f"{fields[0]!r}")
        stamps.append(int(fields[0]))
        rows.append(fields[1:])
    if not stamps:
        raise ValueError(f"{path}: no entries")
    order = np.argsort(np.asarray(stamps, dtype=np.int64), kind="stable")
    return np.asarray(stamps, dtype=np.int64)[order], [rows[k] for k in order]


class EurocSequence(ImageFileSequence):
    """One EuRoC MAV sequence (ASL folder layout), camera ``cam0`` (or ``cam1``), undistorted.

    The images are undistorted (:mod:`depth_sfm_ros.geometry.camera_model`, the node's module; Kalibr's
    radial-tangential or equidistant (fisheye, e.g. TUM-VI) model of ``sensor.yaml``; remap tables built once
    per sequence) and :meth:`intrinsics` are those of the undistorted images (``alpha`` as in
    :class:`Undistorter`: 0 keeps only valid pixels). Poses: ``T_world_cam = T_world_body @ T_body_cam``
    with ``T_world_body`` from ``state_groundtruth_estimate0`` (else ``vicon0``, corrected by its own
    ``T_BS``) nearest within ``max_difference_s``, and ``T_body_cam`` = the camera's ``T_BS``. With only
    ``leica0`` (position of a prism, no orientation) there are no poses: :meth:`position_world_m` gives
    the prism's position instead (a lever arm of some centimetres from the camera).
    """

    has_depth = False
    nominal_fps = EUROC_FPS

    def __init__(self, root: str | Path, camera: str = "cam0", alpha: float = 0.0,
                 max_difference_s: float = EUROC_MAX_DIFFERENCE_S) -> None:
        root = Path(root)
        self.root = root if root.name == "mav0" or not (root / "mav0").is_dir() else root / "mav0"
        cam_dir = self.root / camera
        if not cam_dir.is_dir():
            raise FileNotFoundError(f"EuRoC camera folder {cam_dir} does not exist (expected <sequence>/mav0/"
                                    f"{camera}/ with data.csv, data/ and sensor.yaml)")
        self.name = f"{self.root.parent.name if self.root.name == 'mav0' else self.root.name}/{camera}"
        self.stamps_ns, rows = read_euroc_csv(cam_dir / "data.csv", 2)
        self.images = [cam_dir / "data" / row[0] for row in rows]
        sensor = read_euroc_sensor_yaml(cam_dir / "sensor.yaml")
        self.distorted_intrinsics, distortion, distortion_model = self._camera(sensor, cam_dir / "sensor.yaml")
        self.T_body_cam = euroc_T_BS(sensor, cam_dir / "sensor.yaml")
        first = read_rgb(self.images[0])
        if first.shape[:2] != (self.distorted_intrinsics.height, self.distorted_intrinsics.width):
            raise ValueError(f"{self.images[0]}: image {first.shape[1]}x{first.shape[0]} does not match the resolution "
                             f"{self.distorted_intrinsics.width}x{self.distorted_intrinsics.height} of "
                             f"{cam_dir / 'sensor.yaml'}")
        try:
            self.undistorter = Undistorter(self.distorted_intrinsics, distortion, alpha, distortion_model)
        except ValueError as exc:
            raise ValueError(f"{cam_dir / 'sensor.yaml'}: {exc}") from None
        self._K = self.undistorter.intrinsics
        tolerance_ns = int(round(max_difference_s * 1e9))
        self.poses: list[np.ndarray | None] = [None] * len(self.images)
        self.positions: list[np.ndarray | None] = [None] * len(self.images)
        self.ground_truth = None
        for name in EUROC_GROUND_TRUTH:
            csv = self.root / name / "data.csv"
            if not csv.is_file():
                continue
            self.ground_truth = name
            columns = 4 if name == "leica0" else 8
            stamps, gt_rows = read_euroc_csv(csv, columns)
            yaml_file = self.root / name / "sensor.yaml"
            T_body_sensor = euroc_T_BS(read_euroc_sensor_yaml(yaml_file), yaml_file) if yaml_file.is_file() \
                else np.eye(4)
            T_sensor_cam = np.linalg.inv(T_body_sensor) @ self.T_body_cam
            for k, j in enumerate(associate_nearest(self.stamps_ns, stamps, tolerance_ns)):
                if j < 0:
                    continue
                values = self._numbers(gt_rows[j][:columns - 1], csv)
                self.positions[k] = np.asarray(values[:3])
                if name != "leica0":
                    q_wxyz = np.asarray(values[3:7])
                    norm = float(np.linalg.norm(q_wxyz))
                    if abs(norm - 1.0) > 1e-2:
                        raise ValueError(f"{csv}: quaternion q_RS (w, x, y, z) is not a unit quaternion: "
                                         f"{q_wxyz.tolist()}")
                    q_xyzw = np.r_[q_wxyz[1:], q_wxyz[0]] / norm
                    T_world_sensor = Pose.from_quaternion(values[:3], q_xyzw).matrix
                    self.poses[k] = T_world_sensor @ T_sensor_cam
            break
        self.pose_known = [T is not None for T in self.poses]
        self.has_poses = all(self.pose_known)
        if self.ground_truth not in (None, "leica0") and not self.has_poses:
            LOG.warning("%s: %d of %d frames have no ground-truth pose within %.3f s (use frames: [start, stop] "
                        "inside the ground truth)", self.root, self.pose_known.count(False), len(self.images),
                        max_difference_s)

    @staticmethod
    def _numbers(fields: list[str], source: Path) -> list[float]:
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise ValueError(f"{source}: expected numbers, got {fields}") from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"{source}: NaN/Inf in {fields}")
        return values

    @staticmethod
    def _camera(sensor: dict, source: Path) -> tuple[Intrinsics, list[float], str]:
        """(raw intrinsics, distortion coefficients, ROS distortion model name) of an ASL ``sensor.yaml``."""
        model = sensor.get("camera_model", "pinhole")
        if model != "pinhole":
            raise ValueError(f"{source}: camera_model {model!r} is not supported (pinhole only)")
        dist_model = sensor.get("distortion_model", "radial-tangential")
        if dist_model not in camera_model.KALIBR_DISTORTION_MODELS:
            raise ValueError(f"{source}: distortion_model {dist_model!r} is not supported (Kalibr's radial-tangential "
                             f"/ radtan / plumb_bob, or equidistant: OpenCV's fisheye model)")
        try:
            fu, fv, cu, cv = (float(v) for v in sensor["intrinsics"])
            width, height = (int(v) for v in sensor["resolution"])
            distortion = [float(v) for v in sensor.get("distortion_coefficients", [0.0] * 4)]
        except KeyError as exc:
            raise ValueError(f"{source}: missing {exc.args[0]!r} (need intrinsics [fu, fv, cu, cv] and "
                             f"resolution [width, height])") from None
        except (TypeError, ValueError):
            raise ValueError(f"{source}: intrinsics must be 4 numbers [fu, fv, cu, cv] and resolution "
                             f"[width, height], got {sensor.get('intrinsics')!r}, {sensor.get('resolution')!r}") \
                from None
        K = np.array([[fu, 0.0, cu], [0.0, fv, cv], [0.0, 0.0, 1.0]])
        model = camera_model.KALIBR_DISTORTION_MODELS[dist_model]
        if not model:  # Kalibr "none": coefficients, if any, do not apply
            model, distortion = "plumb_bob", [0.0] * 4
        return _intrinsics_from(K, width, height, source), distortion, model

    def T_world_cam(self, i: int) -> np.ndarray | None:
        """(4, 4) pose of the camera in the ground-truth world frame, or None (no ground truth near this frame)."""
        return self.poses[i]

    def position_world_m(self, i: int) -> np.ndarray | None:
        """(3,) position of the ground-truth sensor (body, marker or Leica prism) in the world, metres, or None."""
        return self.positions[i]
