"""Bag fixtures for the eval-bag tests: small synthetic drives written as real rosbag2 (mcap, sqlite3)
and ROS 1 bags, with the variations the tests need (compressed images, 16UC1 depth, pose as
Odometry / PoseStamped / TF, missing ground-truth topics).

Also a smoke test of the fixtures themselves (the bag holds what was written).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from depth_sfm_ros.bag import rosbags_io
from depth_sfm_ros.synth import SynthConfig, SyntheticSequence, render_sequence

WIDTH, HEIGHT = 96, 32
ALL_STREAMS = ("camera_info", "depth", "mask", "odom")


def synthetic_sequence(num_frames: int = 8, seed: int = 3) -> SyntheticSequence:
    """A tiny rendered drive (96 x 32 px, 10 Hz)."""
    return render_sequence(SynthConfig(seed=seed, width=WIDTH, height=HEIGHT, num_frames=num_frames))


def _ros2_messages(seq: SyntheticSequence, compressed: bool, depth_encoding: str, pose_type: str,
                   streams: Sequence[str]) -> list[tuple[str, Any, int]]:
    io = rosbags_io
    out: list[tuple[str, Any, int]] = []
    for frame in seq:
        stamp = frame.stamp_ns
        if compressed:
            out.append(("/camera/image_raw/compressed", io.compressed_image_to_msg(frame.image_rgb, stamp, "camera"),
                        stamp))
        else:
            out.append(("/camera/image_raw", io.image_to_msg(frame.image_rgb, "rgb8", stamp, "camera"), stamp))
        if "camera_info" in streams:
            out.append(("/camera/camera_info", io.camera_info_to_msg(seq.intrinsics, stamp, "camera"), stamp))
        if "depth" in streams:
            if depth_encoding == "32FC1":
                depth_msg = io.image_to_msg(frame.depth_m.astype(np.float32), "32FC1", stamp, "camera")
            else:
                depth_mm = np.nan_to_num(frame.depth_m * 1000.0, nan=0.0)
                depth_mm = np.where(depth_mm > 65535, 0, np.round(depth_mm)).astype(np.uint16)
                depth_msg = io.image_to_msg(depth_mm, "16UC1", stamp, "camera")
            out.append(("/gt/depth", depth_msg, stamp))
        if "mask" in streams:
            mask = (frame.dynamic_mask.astype(np.uint8) * 255)
            out.append(("/gt/dynamic_mask", io.image_to_msg(mask, "mono8", stamp, "camera"), stamp))
        if "odom" in streams:
            T = frame.T_world_cam
            if pose_type == "odometry":
                out.append(("/gt/odom", io.odometry_to_msg(T, stamp, "odom", "camera"), stamp))
            elif pose_type == "tf":
                out.append(("/tf", io.tf_message([io.transform_stamped_to_msg(T, stamp, "odom", "camera")]), stamp))
            else:
                types = io.typestore().types
                q = T.quaternion()
                pose = types["geometry_msgs/msg/Pose"](
                    position=types["geometry_msgs/msg/Point"](x=T.t[0], y=T.t[1], z=T.t[2]),
                    orientation=types["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
                out.append(("/gt/pose", types["geometry_msgs/msg/PoseStamped"](header=io.header(stamp, "odom"),
                                                                                pose=pose), stamp))
    return out


def write_bag(path: Path, seq: SyntheticSequence, storage: str = "mcap", compressed: bool = False,
              depth_encoding: str = "32FC1", pose_type: str = "odometry",
              streams: Sequence[str] = ALL_STREAMS) -> Path:
    """Write ``seq`` as a bag. storage: mcap | sqlite3 | ros1 (then ``path`` gets a .bag suffix)."""
    messages = _ros2_messages(seq, compressed, depth_encoding, pose_type, streams)
    if storage in rosbags_io.STORAGES:
        with rosbags_io.BagWriter(path, storage=storage) as bag:
            for topic, msg, stamp in messages:
                bag.write(topic, msg, stamp)
        return path
    if storage != "ros1":
        raise ValueError(storage)
    return _write_ros1(path.with_suffix(".bag"), messages)


def _to_ros1(msg: Any, store: Any) -> Any:
    """Convert a ROS 2 rosbags message object into the ROS 1 class of the same name (recursively)."""
    from dataclasses import fields, is_dataclass
    name = msg.__msgtype__
    if name == "builtin_interfaces/msg/Time":
        return store.types["builtin_interfaces/msg/Time"](sec=msg.sec, nanosec=msg.nanosec)
    cls = store.types[name]
    values = {}
    for f in fields(cls):
        source = f.name.lower()
        if f.name == "seq":
            values[f.name] = 0
            continue
        value = getattr(msg, source)
        values[f.name] = _to_ros1(value, store) if is_dataclass(value) else (
            [_to_ros1(v, store) for v in value] if isinstance(value, list) else value)
    return cls(**values)


def _write_ros1(path: Path, messages: list[tuple[str, Any, int]]) -> Path:
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore
    from rosbags.typesys import get_types_from_msg
    store = get_typestore(Stores.ROS1_NOETIC)
    if "tf2_msgs/msg/TFMessage" not in store.fielddefs:  # Noetic's store lacks it; same definition as ROS 1
        store.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", "tf2_msgs/msg/TFMessage"))
    with Writer(path) as writer:
        conns: dict[str, Any] = {}
        for topic, msg, stamp in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=store)
            ros1 = _to_ros1(msg, store)
            writer.write(conns[topic], stamp, store.serialize_ros1(ros1, msg.__msgtype__))
    return path


def test_fixture_bags_hold_the_written_topics(tmp_path: Path) -> None:
    from depth_sfm_ros.bag.reader import bag_topics
    seq = synthetic_sequence(3)
    mcap = write_bag(tmp_path / "a", seq, "mcap", compressed=True)
    ros1 = write_bag(tmp_path / "b", seq, "ros1", pose_type="tf", streams=("camera_info", "odom"))
    topics = bag_topics(mcap)
    assert topics["/camera/image_raw/compressed"] == ("sensor_msgs/msg/CompressedImage", 3)
    assert topics["/gt/odom"] == ("nav_msgs/msg/Odometry", 3)
    assert bag_topics(ros1) == {"/camera/image_raw": ("sensor_msgs/msg/Image", 3),
                                "/camera/camera_info": ("sensor_msgs/msg/CameraInfo", 3),
                                "/tf": ("tf2_msgs/msg/TFMessage", 3)}
