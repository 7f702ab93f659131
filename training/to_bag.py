"""``depth-sfm to-bag``: one sequence of a dataset on disk (7-Scenes, KITTI, TUM RGB-D, EuRoC, DAVIS, ...)
written as a rosbag2 (mcap or sqlite3), so that ``depth-sfm eval-bag`` and the ``rosbag`` training dataset
use it like a user's own recording::

    depth-sfm to-bag --dataset seven_scenes --path ../shared/real/7scenes_redkitchen --out redkitchen.mcap \\
        --frames 300 400
    depth-sfm eval-bag redkitchen --out eval/redkitchen

The dataset is read with the training loaders (:func:`depth_sfm_training.datasets.build_sequences`, the
same ``type`` names and keys as a training config; ``--option KEY=VALUE`` passes type keys such as
``clips=[dog]`` or ``camera=fr1``). Topics are those of the synthetic bags (``SynthBagTopics``), which are
``eval-bag``'s defaults; every message of one frame carries the same header stamp = bag time:

    /camera/image_raw             sensor_msgs/Image rgb8 (mono8 for grey sources)    [raw images]
    /camera/image_raw/compressed  sensor_msgs/CompressedImage png|jpeg               [--compressed instead]
    /camera/camera_info           sensor_msgs/CameraInfo: the loader's K, D = 0 (rectified / undistorted
                                  images: KITTI rectified, EuRoC undistorted by the loader; DAVIS assumed)
    /gt/depth                     sensor_msgs/Image 32FC1 metres, NaN = no measurement   (datasets with depth)
    /gt/dynamic_mask              sensor_msgs/Image mono8, 255 = annotated moving object (datasets with masks)
    /gt/odom                      nav_msgs/Odometry T_odom_cam (datasets with poses)

Ground-truth poses follow the synthetic writer's convention: ``odom`` is the optical frame of the first frame
that has a pose (``T_odom_cam = inv(T_world_cam[first]) @ T_world_cam[i]``), the twist is the velocity over
the previous posed frame in the current camera frame. Stamps are the dataset's own time stamps where it has
them (TUM RGB-D, EuRoC, KITTI ``times.txt``), else ``start + i / fps`` with ``--fps`` (default: the
dataset's nominal rate, 30 Hz when unknown). All message building is :mod:`depth_sfm_ros.bag.rosbags_io`'s.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from depth_sfm_ros.bag import rosbags_io as rio
from depth_sfm_ros.geometry import Pose, twist_in_current_frame
from depth_sfm_training.datasets.io import is_grey
from depth_sfm_ros.synth.rosbag import BagWriteResult, SynthBagTopics

from .datasets import FrameRange, build_sequences, check_frames
from .datasets.base import FrameSequence

LOG = logging.getLogger(__name__)

DEFAULT_FPS = 30.0
DEFAULT_START_STAMP_NS = 1_700_000_000_000_000_000  # the synthetic bags' start: 2023-11-14, like a recording
ENCODINGS = ("auto", "rgb8", "mono8")


def image_for_encoding(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """The (H, W, 3) RGB uint8 frame as the array of ``encoding`` (rgb8: itself; mono8: (H, W) grey,
    the first channel of a grey source, the luminance of a colour one)."""
    if encoding == "rgb8":
        return rgb
    if encoding != "mono8":
        raise ValueError(f"encoding must be rgb8 or mono8, got {encoding!r}")
    if is_grey(rgb):
        return np.ascontiguousarray(rgb[..., 0])
    import cv2
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def frame_stamps_ns(sequence: FrameSequence, fps: float | None = None,
                    start_stamp_ns: int = DEFAULT_START_STAMP_NS) -> tuple[list[int], str]:
    """Header stamps (integer ns, strictly increasing) of every frame and where they come from.

    The dataset's own stamps when every frame has one (``fps`` is then ignored, with a log line), else
    ``start_stamp_ns + round(i * 1e9 / fps)`` with ``fps`` or the sequence's ``nominal_fps`` or 30 Hz.
    """
    own = [sequence.stamp_ns(i) for i in range(len(sequence))]
    if own and all(s is not None for s in own):
        if fps is not None:
            LOG.warning("--fps %g ignored: %s has its own time stamps", fps, sequence.name)
        stamps = [int(s) for s in own]
        source = "dataset"
    else:
        rate = float(fps if fps is not None else (sequence.nominal_fps or DEFAULT_FPS))
        if not 0.01 <= rate <= 10_000:
            raise ValueError(f"fps must be in [0.01, 10000] Hz, got {rate}")
        if start_stamp_ns < 0:
            raise ValueError(f"start stamp must be >= 0 ns, got {start_stamp_ns}")
        stamps = [int(start_stamp_ns + round(i * 1e9 / rate)) for i in range(len(sequence))]
        source = f"{rate:g} Hz"
    bad = next((i for i in range(1, len(stamps)) if stamps[i] <= stamps[i - 1]), None)
    if bad is not None:
        raise ValueError(f"{sequence.name}: time stamps must increase, frame {bad} has {stamps[bad]} ns after "
                         f"{stamps[bad - 1]} ns")
    if stamps and stamps[0] < 0:
        raise ValueError(f"{sequence.name}: ROS time stamps must be >= 0, got {stamps[0]} ns")
    return stamps, source


def write_sequence_bag(sequence: FrameSequence, out_path: str | Path, storage: str = "mcap",
                       fps: float | None = None, compressed: bool = False, compressed_format: str = "png",
                       encoding: str = "auto", camera_frame_id: str = "camera_optical_frame",
                       odom_frame_id: str = "odom", topics: SynthBagTopics = SynthBagTopics(),
                       start_stamp_ns: int = DEFAULT_START_STAMP_NS) -> BagWriteResult:
    """Write every frame of ``sequence`` (with whatever ground truth it has) to a new rosbag2 directory.

    Args:
        sequence: any :class:`FrameSequence` (a :class:`FrameRange` for part of one).
        out_path: the rosbag2 directory to create (must not exist).
        storage: ``mcap`` or ``sqlite3``.
        fps: frame rate for the stamps of datasets without time stamps (see :func:`frame_stamps_ns`).
        compressed: write ``sensor_msgs/CompressedImage`` on ``topics.compressed`` instead of raw images.
        compressed_format: ``png`` (lossless) or ``jpeg``.
        encoding: ``auto`` (mono8 when the first frame is grey, else rgb8), ``rgb8`` or ``mono8``.
        camera_frame_id / odom_frame_id: header frame ids (camera optical frame, odometry frame).
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if not camera_frame_id or not odom_frame_id:
        raise ValueError("frame ids must be non-empty strings")
    if len(sequence) == 0:
        raise ValueError(f"{sequence.name}: no frames to write")
    stamps, stamp_source = frame_stamps_ns(sequence, fps, start_stamp_ns)
    LOG.info("to-bag: %s, %d frames, stamps from %s", sequence.name, len(sequence), stamp_source)
    T_odom_world: Pose | None = None
    prev: tuple[Pose, int] | None = None
    chosen = None if encoding == "auto" else encoding
    with rio.BagWriter(out_path, storage=storage) as bag:
        for i, stamp in enumerate(stamps):
            rgb = sequence.image_rgb(i)
            if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
                raise ValueError(f"{sequence.name} frame {i}: expected an RGB uint8 (H, W, 3) image, got "
                                 f"{rgb.dtype} {rgb.shape}")
            K = sequence.intrinsics(i)
            if (K.width, K.height) != (rgb.shape[1], rgb.shape[0]):
                raise ValueError(f"{sequence.name} frame {i}: image {rgb.shape[1]}x{rgb.shape[0]} does not match "
                                 f"its intrinsics {K.width}x{K.height}")
            if chosen is None:
                chosen = "mono8" if is_grey(rgb) else "rgb8"
            elif encoding == "auto" and chosen == "mono8" and not is_grey(rgb):
                raise ValueError(f"{sequence.name} frame {i} is in colour but frame 0 was grey: pass "
                                 f"--encoding rgb8 (or mono8 to convert every frame to grey)")
            if compressed:
                bag.write(topics.compressed, rio.compressed_image_to_msg(rgb, stamp, camera_frame_id,
                                                                         fmt=compressed_format), stamp)
            else:
                bag.write(topics.image, rio.image_to_msg(image_for_encoding(rgb, chosen), chosen, stamp,
                                                         camera_frame_id), stamp)
            bag.write(topics.camera_info, rio.camera_info_to_msg(K, stamp, camera_frame_id), stamp)
            depth_m = sequence.depth_m(i) if sequence.has_depth else None
            if depth_m is not None:
                depth_m = np.asarray(depth_m, dtype=np.float32).copy()
                with np.errstate(invalid="ignore"):
                    depth_m[~(np.isfinite(depth_m) & (depth_m > 0))] = np.nan
                bag.write(topics.depth, rio.image_to_msg(depth_m, "32FC1", stamp, camera_frame_id), stamp)
            mask = sequence.dynamic_mask(i)
            if mask is not None:
                bag.write(topics.dynamic_mask, rio.image_to_msg(np.asarray(mask, dtype=bool).astype(np.uint8) * 255,
                                                                "mono8", stamp, camera_frame_id), stamp)
            T_world_cam = sequence.T_world_cam(i)
            if T_world_cam is not None:
                T_world_cam = Pose(T_world_cam).orthonormalized()
                if T_odom_world is None:
                    T_odom_world = T_world_cam.inverse()
                T_odom_cam = T_odom_world @ T_world_cam
                linear = angular = None
                if prev is not None:
                    dt_s = (stamp - prev[1]) * 1e-9
                    T_prev_cur = prev[0].inverse() @ T_odom_cam
                    linear, angular = twist_in_current_frame(T_prev_cur, dt_s)
                bag.write(topics.odom, rio.odometry_to_msg(T_odom_cam, stamp, odom_frame_id, camera_frame_id,
                                                           linear, angular), stamp)
                prev = (T_odom_cam, stamp)
            if (i + 1) % 100 == 0:
                LOG.info("to-bag: %d / %d frames", i + 1, len(stamps))
        counts = dict(bag.counts)
    return BagWriteResult(path=Path(out_path), storage=storage, num_frames=len(stamps), topic_counts=counts)


# --------------------------------------------------------------------------------- command line
def parse_options(options: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> dict, values parsed as YAML (``clips=[dog,camel]``, ``undistort=true``)."""
    out: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option must be KEY=VALUE, got {option!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"--option {option!r}: value is not valid YAML ({exc})") from None
    return out


def select_sequence(config: dict, name: str | None = None) -> FrameSequence:
    """The one sequence a dataset config describes (``name`` picks one when it has several)."""
    sequences, targets = build_sequences(config)
    if targets is not None:
        raise ValueError("a split file selects frames across sequences; convert a sequence without a split "
                         "(use --frames for part of it)")
    names = [s.name for s in sequences]
    if name is not None:
        chosen = [s for s in sequences if s.name == name]
        if not chosen:
            raise ValueError(f"no sequence named {name!r}; this dataset has: {', '.join(names)}")
        return chosen[0]
    if len(sequences) != 1:
        raise ValueError(f"the dataset has {len(sequences)} sequences ({', '.join(names)}); pick one with "
                         f"--sequence NAME")
    return sequences[0]


def bag_directory(out: str | Path, storage: str | None) -> tuple[Path, str]:
    """The rosbag2 directory and storage for ``--out``: ``X.mcap`` / ``X.db3`` name the bag ``X`` (a rosbag2
    directory holding ``X.mcap`` or ``X.db3`` and ``metadata.yaml``) and imply the storage."""
    out = Path(out)
    implied = {".mcap": "mcap", ".db3": "sqlite3"}.get(out.suffix)
    if storage is not None and implied is not None and storage != implied:
        raise ValueError(f"--out {out} ends in {out.suffix} but --storage is {storage}")
    if implied is not None:
        out = out.with_suffix("")
    return out, storage or implied or "mcap"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True,
                        help="dataset type, as in training configs: seven_scenes, kitti_odom_folder, kitti_odom, "
                             "kitti_raw, tum_rgbd, euroc, davis, folder, synthetic")
    parser.add_argument("--path", required=True, help="the dataset folder (as data.path of a training config)")
    parser.add_argument("--out", required=True,
                        help="rosbag2 directory to create; NAME.mcap / NAME.db3 create the bag NAME with that storage")
    parser.add_argument("--sequence", help="which sequence, when the folder holds several (e.g. a DAVIS clip, a "
                                           "KITTI drive: the name the error message lists)")
    parser.add_argument("--frames", type=int, nargs=2, metavar=("START", "STOP"),
                        help="only frames START..STOP-1 of the sequence")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a dataset key (YAML value), e.g. camera=fr1, undistort=true, clips=[dog]; repeatable")
    parser.add_argument("--storage", choices=rio.STORAGES, default=None,
                        help="rosbag2 storage (default: from --out's suffix, else mcap)")
    parser.add_argument("--fps", type=float, default=None,
                        help="frame rate for the stamps of datasets without time stamps (default: the dataset's "
                             "nominal rate, e.g. 7-Scenes 30, KITTI 10, DAVIS 24; else 30)")
    parser.add_argument("--compressed", action="store_true",
                        help="write sensor_msgs/CompressedImage on <image topic>/compressed instead of raw Image")
    parser.add_argument("--compressed-format", choices=("png", "jpeg"), default="png")
    parser.add_argument("--encoding", choices=ENCODINGS, default="auto",
                        help="raw image encoding (auto: mono8 for grey sources, else rgb8)")
    parser.add_argument("--camera-frame", default="camera_optical_frame", help="header frame id of the camera")
    parser.add_argument("--odom-frame", default="odom", help="header frame id of the ground-truth odometry")


def run(args: argparse.Namespace) -> int:
    try:
        config = {**parse_options(args.option), "type": args.dataset, "data_path": args.path}
        if args.dataset == "mixture":
            raise ValueError("a mixture is several datasets; convert each sequence on its own")
        sequence = select_sequence(config, args.sequence)
        if args.frames is not None:
            start, stop = check_frames(list(args.frames))
            sequence = FrameRange(sequence, start, stop)
        out, storage = bag_directory(args.out, args.storage)
        result = write_sequence_bag(sequence, out, storage=storage, fps=args.fps, compressed=args.compressed,
                                    compressed_format=args.compressed_format, encoding=args.encoding,
                                    camera_frame_id=args.camera_frame, odom_frame_id=args.odom_frame)
    except (ValueError, OSError, KeyError, TypeError) as exc:
        print(f"depth-sfm to-bag: {exc}", file=sys.stderr)
        return 2
    topics = ", ".join(f"{t} {n}" for t, n in sorted(result.topic_counts.items()))
    print(f"to-bag: wrote {result.num_frames} frames of {sequence.name} to the rosbag2 {result.path} "
          f"({result.storage}): {topics}")
    image_topic = SynthBagTopics().compressed if args.compressed else SynthBagTopics().image
    extra = f" --image-topic {image_topic}" if args.compressed else ""
    print(f"evaluate it: depth-sfm eval-bag {result.path}{extra} --out eval/{result.path.name}")
    return 0
