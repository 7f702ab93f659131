"""rosbag2 files on top of the pure-Python ``rosbags`` library (no ROS install needed).

* :class:`BagWriter` (mcap or sqlite3 storage).
* The message layer is :mod:`depth_sfm_ros.msgs`; its ``rosbags`` flavour (typestore, builders
  numpy/Intrinsics/Pose -> message, :func:`read_messages`, :func:`bag_topics`) is re-exported here, and
  the decoders under the names the bag tools have used: :func:`msg_to_image` (a copy of the pixels),
  :func:`compressed_msg_to_image` (RGB for pictures), :func:`msg_to_camera_model` (the CameraInfo's
  whole calibration, for :mod:`depth_sfm_ros.geometry.camera_model`), :func:`odometry_msg_to_pose`,
  :func:`transform_msg_to_pose`, :func:`time_to_ns`.

Time stamps are integer nanoseconds (``stamp_ns``) everywhere here. No rclpy, no torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depth_sfm_ros.msgs.camera_info import camera_info_to_model as msg_to_camera_model
from depth_sfm_ros.msgs.encodings import IMAGE_ENCODINGS
from depth_sfm_ros.msgs.image import compressed_msg_to_rgb8 as compressed_msg_to_image
from depth_sfm_ros.msgs.image import image_msg_to_numpy
from depth_sfm_ros.msgs.odometry import odometry_msg_to_pose, transform_msg_to_pose
from depth_sfm_ros.msgs.rosbags_msgs import (MSG_CAMERA_INFO, MSG_COMPRESSED_IMAGE, MSG_IMAGE, MSG_ODOMETRY, MSG_TF,
                                            MSG_TRANSFORM_STAMPED, bag_topics, camera_info_to_msg,
                                            camera_model_to_msg, compressed_image_to_msg, header, image_to_msg,
                                            odometry_to_msg, read_messages, tf_message, time_msg,
                                            transform_stamped_to_msg, typestore)
from depth_sfm_ros.msgs.rosbags_msgs import types as _types
from depth_sfm_ros.msgs.stamps import stamp_to_nanoseconds as time_to_ns

__all__ = ["BagWriter", "STORAGES", "IMAGE_ENCODINGS", "MSG_CAMERA_INFO", "MSG_COMPRESSED_IMAGE", "MSG_IMAGE",
           "MSG_ODOMETRY", "MSG_TF", "MSG_TRANSFORM_STAMPED", "bag_topics", "camera_info_to_msg",
           "camera_model_to_msg", "compressed_image_to_msg", "compressed_msg_to_image", "header", "image_to_msg",
           "msg_to_image", "msg_to_camera_model", "odometry_msg_to_pose", "odometry_to_msg", "read_messages",
           "tf_message", "time_msg", "time_to_ns", "transform_msg_to_pose", "transform_stamped_to_msg", "typestore",
           "_types"]

STORAGES = ("mcap", "sqlite3")


def msg_to_image(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> a copy of its pixels (H, W) or (H, W, C) in the message's encoding
    (:func:`depth_sfm_ros.msgs.image.image_msg_to_numpy`: the node's decoder)."""
    return image_msg_to_numpy(msg, copy=True)


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
