"""rosbag2 (mcap / sqlite3) writer and reader for synthetic sequences, via ``rosbags``.

Topics (all messages of one frame carry the same header stamp = bag time = the frame's stamp_ns):

    /camera/image_raw             sensor_msgs/Image rgb8              frame_id = camera frame
    /camera/image_raw/compressed  sensor_msgs/CompressedImage         only with compressed=True
    /camera/camera_info           sensor_msgs/CameraInfo              frame_id = camera frame
    /gt/depth                     sensor_msgs/Image 32FC1, metres, NaN = invalid (sky)
    /gt/dynamic_mask              sensor_msgs/Image mono8, 255 = dynamic
    /gt/odom                      nav_msgs/Odometry, header.frame_id = odom frame,
                                  child_frame_id = camera frame

Odometry choice: ``odom`` is the camera optical frame of the FIRST frame, so the pose of frame i
is ``T_odom_cam = inv(T_world_cam[0]) @ T_world_cam[i]`` (identity at frame 0, z forward / y down
like the camera), the frame a monocular odometry estimate starts from. The twist is the camera's
velocity over the previous frame interval, expressed in the camera frame (zero at frame 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from depth_sfm_ros.bag import rosbags_io as rio
from depth_sfm_ros.geometry import Intrinsics, Pose, twist_in_current_frame
from depth_sfm_ros.geometry.camera_model import CameraModel, resolve_input, topic_is_rectified

from .render import SyntheticFrame


@dataclass(frozen=True)
class SynthBagTopics:
    image: str = "/camera/image_raw"
    compressed: str = "/camera/image_raw/compressed"
    camera_info: str = "/camera/camera_info"
    depth: str = "/gt/depth"
    dynamic_mask: str = "/gt/dynamic_mask"
    odom: str = "/gt/odom"


@dataclass
class BagWriteResult:
    path: Path
    storage: str
    num_frames: int
    topic_counts: dict[str, int] = field(default_factory=dict)


def write_rosbag(frames: Iterable[SyntheticFrame], intrinsics: Intrinsics, out_path: str | Path,
                 storage: str = "mcap", compressed: bool = False, compressed_format: str = "png",
                 camera_frame_id: str = "camera_optical_frame", odom_frame_id: str = "odom",
                 topics: SynthBagTopics = SynthBagTopics()) -> BagWriteResult:
    """Write frames (any iterable, e.g. the lazy :func:`iter_frames`) to a new rosbag2 directory."""
    if not camera_frame_id or not odom_frame_id:
        raise ValueError("frame ids must be non-empty strings")
    count = 0
    T_cam0_world: Pose | None = None
    prev: tuple[Pose, int] | None = None
    with rio.BagWriter(out_path, storage=storage) as bag:
        for frame in frames:
            stamp = int(frame.stamp_ns)
            if prev is not None and stamp <= prev[1]:
                raise ValueError(f"frame stamps must increase: {stamp} after {prev[1]}")
            if T_cam0_world is None:
                T_cam0_world = frame.T_world_cam.inverse()
            T_odom_cam = T_cam0_world @ frame.T_world_cam
            linear = angular = None
            if prev is not None:
                dt_s = (stamp - prev[1]) * 1e-9
                T_prev_cur = prev[0].inverse() @ T_odom_cam
                linear, angular = twist_in_current_frame(T_prev_cur, dt_s)
            bag.write(topics.image, rio.image_to_msg(frame.image_rgb, "rgb8", stamp, camera_frame_id), stamp)
            if compressed:
                bag.write(topics.compressed, rio.compressed_image_to_msg(frame.image_rgb, stamp, camera_frame_id,
                                                                         fmt=compressed_format), stamp)
            bag.write(topics.camera_info, rio.camera_info_to_msg(intrinsics, stamp, camera_frame_id), stamp)
            bag.write(topics.depth, rio.image_to_msg(frame.depth_m.astype(np.float32), "32FC1", stamp,
                                                     camera_frame_id), stamp)
            bag.write(topics.dynamic_mask, rio.image_to_msg(frame.dynamic_mask.astype(np.uint8) * 255, "mono8",
                                                            stamp, camera_frame_id), stamp)
            bag.write(topics.odom, rio.odometry_to_msg(T_odom_cam, stamp, odom_frame_id, camera_frame_id,
                                                       linear, angular), stamp)
            prev = (T_odom_cam, stamp)
            count += 1
        counts = dict(bag.counts)
    if count == 0:
        raise ValueError("no frames to write")
    return BagWriteResult(path=Path(out_path), storage=storage, num_frames=count, topic_counts=counts)


@dataclass
class BagFrame:
    """One frame read back from a synthetic bag (fields are None when the topic is missing)."""

    stamp_ns: int
    image_rgb: np.ndarray | None = None
    depth_m: np.ndarray | None = None
    dynamic_mask: np.ndarray | None = None
    T_odom_cam: Pose | None = None
    intrinsics: Intrinsics | None = None  # of image_rgb, by the camera policy (geometry.camera_model)
    camera_model: CameraModel | None = None  # the CameraInfo's calibration
    frame_ids: dict[str, str] = field(default_factory=dict)  # topic -> header.frame_id


def read_rosbag(path: str | Path, topics: SynthBagTopics = SynthBagTopics()) -> list[BagFrame]:
    """Read a synthetic bag back, grouping messages by header stamp (sorted by stamp).

    Intrinsics follow the node's camera policy (:func:`~depth_sfm_ros.geometry.camera_model.resolve_input`,
    rectified when the image topic is ``image_rect*``); images are returned as stored, so a camera whose raw
    images would need undistortion (not a synthetic bag) raises ValueError: read such bags with
    :mod:`depth_sfm_ros.bag.reader`."""
    by_stamp: dict[int, BagFrame] = {}
    wanted = {topics.image, topics.camera_info, topics.depth, topics.dynamic_mask, topics.odom}
    for topic, _, msg in rio.read_messages(path, sorted(wanted)):
        stamp = rio.time_to_ns(msg.header.stamp)
        frame = by_stamp.setdefault(stamp, BagFrame(stamp_ns=stamp))
        frame.frame_ids[topic] = msg.header.frame_id
        if topic == topics.image:
            frame.image_rgb = rio.msg_to_image(msg)
        elif topic == topics.camera_info:
            frame.camera_model = rio.msg_to_camera_model(msg)
            geometry = resolve_input(frame.camera_model, rectified=topic_is_rectified(topics.image))
            if geometry.remaps:
                raise ValueError(f"{path}: {topics.camera_info} describes a distorted raw camera ({geometry.message}); "
                                 f"read_rosbag returns images as stored: use depth_sfm_ros.bag.reader")
            frame.intrinsics = geometry.intrinsics
        elif topic == topics.depth:
            frame.depth_m = rio.msg_to_image(msg)
        elif topic == topics.dynamic_mask:
            frame.dynamic_mask = rio.msg_to_image(msg) > 127
        elif topic == topics.odom:
            frame.T_odom_cam = rio.odometry_msg_to_pose(msg)
            frame.frame_ids["odom_child"] = msg.child_frame_id
    return [by_stamp[k] for k in sorted(by_stamp)]
