"""``rosbags`` messages (the bag tools' flavour): the ROS 2 Jazzy typestore, builders from the
flavour-free encoders of this package, and reading the messages of a rosbag2 directory.

Time stamps are integer nanoseconds (``stamp_ns``): float seconds cannot hold nanoseconds at
epoch-sized values, and a bag's receive time must equal the header stamp. ``rosbags`` is imported
inside the functions; no rclpy, no torch. Writing bags is :class:`depth_sfm_ros.bag.rosbags_io.BagWriter`.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from depth_sfm_ros.geometry import Intrinsics, Pose
from depth_sfm_ros.geometry.camera_model import CameraModel

from .camera_info import camera_info_fields, camera_model_fields
from .image import encode_compressed, encode_image
from .odometry import odometry_fields
from .stamps import nanoseconds_to_sec_nanosec

MSG_IMAGE = "sensor_msgs/msg/Image"
MSG_COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
MSG_CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
MSG_ODOMETRY = "nav_msgs/msg/Odometry"
MSG_TRANSFORM_STAMPED = "geometry_msgs/msg/TransformStamped"
MSG_TF = "tf2_msgs/msg/TFMessage"


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """The rosbags typestore with the ROS 2 Jazzy message definitions."""
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_JAZZY)


def types() -> dict:
    """Message type name (``sensor_msgs/msg/Image``) -> rosbags message class."""
    return typestore().types


# --- header / time ----------------------------------------------------------------------------
def time_msg(stamp_ns: int) -> Any:
    """builtin_interfaces/Time from integer nanoseconds (>= 0)."""
    sec, nanosec = nanoseconds_to_sec_nanosec(stamp_ns)
    return types()["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def header(stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header."""
    if not isinstance(frame_id, str):
        raise TypeError(f"frame_id must be a str, got {type(frame_id).__name__}")
    return types()["std_msgs/msg/Header"](stamp=time_msg(stamp_ns), frame_id=frame_id)


# --- images -----------------------------------------------------------------------------------
def image_to_msg(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/Image from an (H, W[, C]) array whose dtype/channels match ``encoding`` (rows unpadded;
    see :func:`~depth_sfm_ros.msgs.image.encode_image`)."""
    fields = encode_image(array, encoding)
    return types()[MSG_IMAGE](header=header(stamp_ns, frame_id), height=fields.height, width=fields.width,
                              encoding=fields.encoding, is_bigendian=fields.is_bigendian, step=fields.step,
                              data=fields.data.copy())


def compressed_image_to_msg(image_rgb: np.ndarray, stamp_ns: int, frame_id: str, fmt: str = "png",
                            jpeg_quality: int = 95) -> Any:
    """sensor_msgs/CompressedImage (png or jpeg) from an RGB (H, W, 3) uint8 image
    (see :func:`~depth_sfm_ros.msgs.image.encode_compressed`)."""
    format_string, data = encode_compressed(image_rgb, fmt, jpeg_quality)
    return types()[MSG_COMPRESSED_IMAGE](header=header(stamp_ns, frame_id), format=format_string, data=data)


# --- camera info ------------------------------------------------------------------------------
def camera_info_to_msg(intrinsics: Intrinsics, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/CameraInfo of a rectified pinhole image: D = 0 (plumb_bob), R = I, P = [K | 0]
    (:func:`~depth_sfm_ros.msgs.camera_info.camera_info_fields`, as the node publishes its depth's)."""
    return _camera_info_msg(camera_info_fields(intrinsics), stamp_ns, frame_id)


def camera_model_to_msg(model: CameraModel, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/CameraInfo carrying ``model``'s whole calibration (raw K, D, R, P, model name)."""
    return _camera_info_msg(camera_model_fields(model), stamp_ns, frame_id)


def _camera_info_msg(fields: dict[str, Any], stamp_ns: int, frame_id: str) -> Any:
    roi = types()["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types()[MSG_CAMERA_INFO](header=header(stamp_ns, frame_id), height=fields["height"], width=fields["width"],
                                    distortion_model=fields["distortion_model"], d=fields["d"], k=fields["k"].copy(),
                                    r=fields["r"], p=fields["p"], binning_x=0, binning_y=0, roi=roi)


# --- poses ------------------------------------------------------------------------------------
def _vector3(v: Sequence[float]) -> Any:
    return types()["geometry_msgs/msg/Vector3"](x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _quaternion(q_xyzw: Sequence[float]) -> Any:
    return types()["geometry_msgs/msg/Quaternion"](x=float(q_xyzw[0]), y=float(q_xyzw[1]), z=float(q_xyzw[2]),
                                                   w=float(q_xyzw[3]))


def odometry_to_msg(T_parent_child: Pose, stamp_ns: int, frame_id: str, child_frame_id: str,
                    linear_mps: Sequence[float] | None = None, angular_radps: Sequence[float] | None = None) -> Any:
    """nav_msgs/Odometry: pose = ``T_parent_child`` (frame_id = parent), twist (m/s, rad/s) in the
    child frame (zeros when not given). Covariances are zero (= unknown per REP 105 usage here)."""
    values = odometry_fields(T_parent_child, linear_mps, angular_radps)
    t = types()
    position = values["position"]
    pose = t["geometry_msgs/msg/Pose"](
        position=t["geometry_msgs/msg/Point"](x=float(position[0]), y=float(position[1]), z=float(position[2])),
        orientation=_quaternion(values["orientation_xyzw"]))
    twist = t["geometry_msgs/msg/Twist"](linear=_vector3(values["linear"]), angular=_vector3(values["angular"]))
    return t[MSG_ODOMETRY](header=header(stamp_ns, frame_id), child_frame_id=child_frame_id,
                           pose=t["geometry_msgs/msg/PoseWithCovariance"](pose=pose,
                                                                          covariance=values["pose_covariance"]),
                           twist=t["geometry_msgs/msg/TwistWithCovariance"](twist=twist,
                                                                            covariance=values["twist_covariance"]))


def transform_stamped_to_msg(T_parent_child: Pose, stamp_ns: int, frame_id: str, child_frame_id: str) -> Any:
    """geometry_msgs/TransformStamped carrying ``T_parent_child`` (header.frame_id = parent)."""
    transform = types()["geometry_msgs/msg/Transform"](translation=_vector3(T_parent_child.t),
                                                       rotation=_quaternion(T_parent_child.quaternion()))
    return types()[MSG_TRANSFORM_STAMPED](header=header(stamp_ns, frame_id), child_frame_id=child_frame_id,
                                          transform=transform)


def tf_message(transforms: Sequence[Any]) -> Any:
    """tf2_msgs/TFMessage from TransformStamped messages."""
    return types()[MSG_TF](transforms=list(transforms))


# --- reading ----------------------------------------------------------------------------------
def read_messages(path: str | Path, topics: Sequence[str] | None = None) -> Iterator[tuple[str, int, Any]]:
    """Yield ``(topic, bag_time_ns, message)`` from a rosbag2 directory (any storage), in time order."""
    from rosbags.highlevel import AnyReader
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no rosbag2 directory at {path}")
    with AnyReader([path], default_typestore=typestore()) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, stamp_ns, raw in reader.messages(connections=conns):
            yield conn.topic, int(stamp_ns), reader.deserialize(raw, conn.msgtype)


def bag_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """topic -> (message type, message count) of a rosbag2 directory."""
    from rosbags.highlevel import AnyReader
    with AnyReader([Path(path)], default_typestore=typestore()) as reader:
        return {name: (info.msgtype or "", int(info.msgcount)) for name, info in reader.topics.items()}
