"""rosbag2 helpers on top of the pure-Python ``rosbags`` library (no ROS install needed).

* ``typestore()``: the ROS 2 Jazzy message types (cached).
* Builders numpy/Intrinsics/Pose -> rosbags message objects: :func:`image_to_msg`,
  :func:`compressed_image_to_msg`, :func:`camera_info_to_msg`, :func:`odometry_to_msg`,
  :func:`transform_stamped_to_msg`, :func:`tf_message`.
* The inverse: :func:`msg_to_image`, :func:`compressed_msg_to_image`, :func:`msg_to_intrinsics`,
  :func:`odometry_msg_to_pose`, :func:`transform_msg_to_pose`.
* :class:`BagWriter` (mcap or sqlite3 storage) and :func:`read_messages` (any rosbag2).

Time stamps are integer nanoseconds (``stamp_ns``) everywhere here: float seconds cannot hold
nanoseconds at epoch-sized values, and the bag's receive time must equal the header stamp.
No rclpy, no torch.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from depth_sfm_ros.geometry import Intrinsics, Pose

# encoding -> (numpy dtype, channels)
IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}

STORAGES = ("mcap", "sqlite3")

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


def _types() -> dict:
    return typestore().types


# --- header / time ----------------------------------------------------------------------------
def time_msg(stamp_ns: int) -> Any:
    """builtin_interfaces/Time from integer nanoseconds (>= 0)."""
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"ROS time stamps must be >= 0 ns, got {stamp_ns}")
    return _types()["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)


def time_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def header(stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/Header."""
    if not isinstance(frame_id, str):
        raise TypeError(f"frame_id must be a str, got {type(frame_id).__name__}")
    return _types()["std_msgs/msg/Header"](stamp=time_msg(stamp_ns), frame_id=frame_id)


# --- images -----------------------------------------------------------------------------------
def _check_image(array: np.ndarray, encoding: str) -> np.ndarray:
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    array = np.asarray(array)
    expected_ndim = 2 if channels == 1 else 3
    if channels == 1 and array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        want = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ValueError(f"encoding {encoding} needs an array of shape {want}, got {array.shape}")
    if array.dtype != dtype:
        raise ValueError(f"encoding {encoding} needs dtype {dtype}, got {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image must not be empty, got shape {array.shape}")
    return array


def image_to_msg(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/Image from an (H, W[, C]) array whose dtype/channels match ``encoding``
    (rgb8/bgr8 (H,W,3) uint8, mono8 (H,W) uint8, 16UC1/mono16 (H,W) uint16, 32FC1 (H,W) float32 ...).
    Data are stored little-endian, rows unpadded."""
    array = _check_image(array, encoding)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    data = np.frombuffer(np.ascontiguousarray(little).tobytes(), dtype=np.uint8)
    height, width = array.shape[:2]
    return _types()[MSG_IMAGE](header=header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
                               is_bigendian=0, step=int(data.size // height), data=data)


def msg_to_image(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> array (H, W) or (H, W, C) in the message's encoding (a copy).
    Handles row padding (step) and big-endian data."""
    encoding = str(msg.encoding)
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {sorted(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ValueError(f"empty Image ({width}x{height} {encoding}): nothing to decode")
    row_bytes = width * channels * dtype.itemsize
    data = np.asarray(msg.data, dtype=np.uint8)
    if step < row_bytes or data.size < step * height:
        raise ValueError(f"Image {width}x{height} {encoding}: step {step} / data size {data.size} too small "
                         f"(need step >= {row_bytes} and {step * height} bytes)")
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    array = np.frombuffer(np.ascontiguousarray(rows).tobytes(), dtype=dtype).astype(dtype.newbyteorder("="))
    shape = (height, width) if channels == 1 else (height, width, channels)
    return array.reshape(shape)


def compressed_image_to_msg(image_rgb: np.ndarray, stamp_ns: int, frame_id: str, fmt: str = "png",
                            jpeg_quality: int = 95) -> Any:
    """sensor_msgs/CompressedImage (png or jpeg) from an RGB (H, W, 3) uint8 image.
    The format string follows compressed_image_transport: ``"rgb8; png compressed bgr8"``."""
    import cv2
    image_rgb = _check_image(image_rgb, "rgb8")
    if fmt not in ("png", "jpeg"):
        raise ValueError(f"compressed format must be 'png' or 'jpeg', got {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(".png" if fmt == "png" else ".jpg", image_rgb[:, :, ::-1], params)
    if not ok:
        raise RuntimeError(f"OpenCV failed to encode a {fmt} image")
    return _types()[MSG_COMPRESSED_IMAGE](header=header(stamp_ns, frame_id), format=f"rgb8; {fmt} compressed bgr8",
                                          data=np.asarray(buf, dtype=np.uint8).reshape(-1))


def compressed_msg_to_image(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (png/jpeg) -> RGB (H, W, 3) uint8 for pictures and tests (mono images are
    expanded; 16-bit scaled to 8). Evaluation decodes with :func:`~depth_sfm_ros.runtime.image_io.decode_compressed`
    (the node's decoder) instead."""
    from depth_sfm_ros.runtime.image_io import decode_compressed, to_rgb_float

    image, encoding = decode_compressed(np.asarray(msg.data, dtype=np.uint8), str(msg.format))
    if encoding == "bgr8":
        return np.ascontiguousarray(image[:, :, ::-1])
    return (to_rgb_float(image, encoding) * 255.0 + 0.5).astype(np.uint8)


# --- camera info ------------------------------------------------------------------------------
def camera_info_to_msg(intrinsics: Intrinsics, stamp_ns: int, frame_id: str) -> Any:
    """sensor_msgs/CameraInfo of an undistorted pinhole camera (plumb_bob, zero distortion)."""
    if not isinstance(intrinsics, Intrinsics):
        raise TypeError(f"intrinsics must be an Intrinsics, got {type(intrinsics).__name__}")
    K = intrinsics.K
    P = np.zeros((3, 4))
    P[:, :3] = K
    types = _types()
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types[MSG_CAMERA_INFO](header=header(stamp_ns, frame_id), height=intrinsics.height, width=intrinsics.width,
                                  distortion_model="plumb_bob", d=np.zeros(5), k=K.reshape(-1).copy(),
                                  r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0, roi=roi)


def msg_to_intrinsics(msg: Any) -> Intrinsics:
    """sensor_msgs/CameraInfo -> Intrinsics from the projection matrix P (the rectified camera),
    or from K when P is all zeros. Non-zero distortion is refused (images must be rectified)."""
    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    K = P[:, :3] if np.any(P) else np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    d = np.asarray(msg.d, dtype=np.float64)
    if d.size and np.any(np.abs(d) > 1e-12) and not np.any(P):
        raise ValueError("CameraInfo has distortion but no projection matrix P; rectify the images first")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"CameraInfo camera matrix has NaN/Inf entries: {K.ravel().tolist()}")
    return Intrinsics.from_matrix(K, int(msg.width), int(msg.height))


# --- poses ------------------------------------------------------------------------------------
def _pose_msg(T: Pose) -> Any:
    types = _types()
    q = T.quaternion()
    return types["geometry_msgs/msg/Pose"](
        position=types["geometry_msgs/msg/Point"](x=float(T.t[0]), y=float(T.t[1]), z=float(T.t[2])),
        orientation=types["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))


def _vector3(v: Sequence[float] | None) -> Any:
    v = np.zeros(3) if v is None else np.asarray(v, dtype=np.float64).reshape(3)
    return _types()["geometry_msgs/msg/Vector3"](x=float(v[0]), y=float(v[1]), z=float(v[2]))


def odometry_to_msg(T_parent_child: Pose, stamp_ns: int, frame_id: str, child_frame_id: str,
                    linear_mps: Sequence[float] | None = None, angular_radps: Sequence[float] | None = None) -> Any:
    """nav_msgs/Odometry: pose = ``T_parent_child`` (frame_id = parent), twist (m/s, rad/s) in the
    child frame (zeros when not given). Covariances are zero (= unknown per REP 105 usage here)."""
    if not isinstance(T_parent_child, Pose):
        raise TypeError(f"T_parent_child must be a Pose, got {type(T_parent_child).__name__}")
    types = _types()
    pose = types["geometry_msgs/msg/PoseWithCovariance"](pose=_pose_msg(T_parent_child), covariance=np.zeros(36))
    twist = types["geometry_msgs/msg/TwistWithCovariance"](
        twist=types["geometry_msgs/msg/Twist"](linear=_vector3(linear_mps), angular=_vector3(angular_radps)),
        covariance=np.zeros(36))
    return types[MSG_ODOMETRY](header=header(stamp_ns, frame_id), child_frame_id=child_frame_id, pose=pose, twist=twist)


def odometry_msg_to_pose(msg: Any) -> Pose:
    """nav_msgs/Odometry -> Pose T_{header.frame_id, child_frame_id}."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    return Pose.from_quaternion([p.x, p.y, p.z], [q.x, q.y, q.z, q.w])


def transform_stamped_to_msg(T_parent_child: Pose, stamp_ns: int, frame_id: str, child_frame_id: str) -> Any:
    """geometry_msgs/TransformStamped carrying ``T_parent_child`` (header.frame_id = parent)."""
    types = _types()
    q = T_parent_child.quaternion()
    transform = types["geometry_msgs/msg/Transform"](
        translation=_vector3(T_parent_child.t),
        rotation=types["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))
    return types[MSG_TRANSFORM_STAMPED](header=header(stamp_ns, frame_id), child_frame_id=child_frame_id,
                                        transform=transform)


def transform_msg_to_pose(msg: Any) -> Pose:
    """geometry_msgs/TransformStamped -> Pose T_{header.frame_id, child_frame_id}."""
    t, q = msg.transform.translation, msg.transform.rotation
    return Pose.from_quaternion([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])


def tf_message(transforms: Sequence[Any]) -> Any:
    """tf2_msgs/TFMessage from TransformStamped messages."""
    return _types()[MSG_TF](transforms=list(transforms))


# --- bag files --------------------------------------------------------------------------------
class BagWriter:
    """Write a rosbag2 (mcap or sqlite3) with CDR-serialised messages. Use as a context manager::

        with BagWriter(path, storage="mcap") as bag:
            bag.write("/camera/image_raw", image_to_msg(img, "rgb8", stamp_ns, "camera"), stamp_ns)

    Topics are registered on first write from the message's type. ``path`` must not exist.
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag {self.path} exists already; rosbag2 writers never overwrite")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self.storage = storage
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._connections: dict[str, tuple[Any, str]] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> "BagWriter":
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialise ``msg`` and write it on ``topic`` with bag time ``stamp_ns``."""
        msgtype = msg.__msgtype__
        if topic not in self._connections:
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore())
            self._connections[topic] = (conn, msgtype)
            self.counts[topic] = 0
        conn, registered = self._connections[topic]
        if registered != msgtype:
            raise TypeError(f"topic {topic} carries {registered}, cannot write a {msgtype}")
        self._writer.write(conn, int(stamp_ns), typestore().serialize_cdr(msg, msgtype))
        self.counts[topic] += 1


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
