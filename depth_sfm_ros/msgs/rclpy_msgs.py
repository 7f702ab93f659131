"""Builders of rclpy messages (what the node publishes) from the flavour-free encoders of this package.

``sensor_msgs`` / ``nav_msgs`` / ``geometry_msgs`` are imported inside the functions, so importing this
module needs no ROS. Byte fields are filled with ``array.array('B')``, which rclpy stores without
converting element by element.
"""
from __future__ import annotations

import array
from typing import Any, Sequence

import numpy as np

from depth_sfm_ros.geometry import Intrinsics, Pose
from depth_sfm_ros.geometry.camera_model import CameraModel

from .camera_info import camera_info_fields, camera_model_fields
from .image import encode_image
from .odometry import odometry_fields
from .pointcloud import POINT_XYZRGB_DTYPE, POINTFIELD_FLOAT32, pack_xyzrgb


def _to_byte_array(values: np.ndarray) -> array.array:
    """Fast path into a ``uint8[]`` field: rclpy stores ``array.array('B')`` without converting it."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values).data.cast("B"))
    return out


def numpy_to_image_msg(image: np.ndarray, encoding: str, header: Any = None) -> Any:
    """Array (H, W) or (H, W, C) -> ``sensor_msgs/Image`` (compact rows, native byte order; see
    :func:`~depth_sfm_ros.msgs.image.encode_image`). ``header`` (a ``std_msgs/Header``) is copied by
    reference: pass the input image's header so the stamp and frame stay exactly those of the input."""
    from sensor_msgs.msg import Image

    fields = encode_image(image, encoding)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = fields.height, fields.width, fields.encoding
    msg.is_bigendian, msg.step = fields.is_bigendian, fields.step
    msg.data = _to_byte_array(fields.data)
    return msg


def intrinsics_to_camera_info(intrinsics: Intrinsics, header: Any = None) -> Any:
    """:class:`Intrinsics` -> ``sensor_msgs/CameraInfo`` of a rectified pinhole image: D = 0 (plumb_bob),
    R = I, P = [K | 0] (:func:`~depth_sfm_ros.msgs.camera_info.camera_info_fields`; what the node publishes
    as ``~/depth/camera_info``)."""
    return _camera_info(camera_info_fields(intrinsics), header)


def camera_model_to_camera_info(model: CameraModel, header: Any = None) -> Any:
    """:class:`~depth_sfm_ros.geometry.camera_model.CameraModel` -> ``sensor_msgs/CameraInfo`` carrying its
    whole calibration (raw K, D, R, P, model name), as a camera driver publishes it."""
    return _camera_info(camera_model_fields(model), header)


def _camera_info(fields: dict[str, Any], header: Any) -> Any:
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height, msg.distortion_model = fields["width"], fields["height"], fields["distortion_model"]
    msg.d = fields["d"].tolist()
    msg.k, msg.r, msg.p = fields["k"].tolist(), fields["r"].tolist(), fields["p"].tolist()
    return msg


def xyzrgb_to_pointcloud2(points_xyz: np.ndarray, colors_rgb: np.ndarray, header: Any = None) -> Any:
    """Points (N, 3) float metres + colours (N, 3) uint8 RGB -> ``sensor_msgs/PointCloud2``
    (height 1, little endian, point_step 16). Non-finite points are dropped, so ``is_dense`` holds."""
    from sensor_msgs.msg import PointCloud2, PointField

    cloud = pack_xyzrgb(points_xyz, colors_rgb)
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = 1, int(cloud.shape[0])
    msg.fields = [PointField(name=name, offset=int(POINT_XYZRGB_DTYPE.fields[name][1]), datatype=POINTFIELD_FLOAT32,
                             count=1) for name in POINT_XYZRGB_DTYPE.names]
    msg.is_bigendian = False
    msg.point_step = POINT_XYZRGB_DTYPE.itemsize
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = True
    msg.data = _to_byte_array(cloud.view(np.uint8))
    return msg


def odometry_msg(header: Any, child_frame_id: str, T_parent_child: Pose, linear_mps: Sequence[float] | None = None,
                 angular_radps: Sequence[float] | None = None, pose_covariance: Sequence[float] | None = None,
                 twist_covariance: Sequence[float] | None = None) -> Any:
    """``nav_msgs/Odometry``: pose ``T_parent_child`` (``header.frame_id`` = parent), twist in the child frame
    (m/s, rad/s) and both covariances (row-major 6x6, see :func:`~depth_sfm_ros.msgs.odometry.odometry_fields`)."""
    from nav_msgs.msg import Odometry

    values = odometry_fields(T_parent_child, linear_mps, angular_radps, pose_covariance, twist_covariance)
    msg = Odometry()
    msg.header = header
    msg.child_frame_id = child_frame_id
    pose = msg.pose.pose
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in values["position"])
    q = pose.orientation
    q.x, q.y, q.z, q.w = (float(v) for v in values["orientation_xyzw"])
    msg.pose.covariance = values["pose_covariance"].tolist()
    twist = msg.twist.twist
    twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in values["linear"])
    twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in values["angular"])
    msg.twist.covariance = values["twist_covariance"].tolist()
    return msg


def transform_stamped_msg(header: Any, child_frame_id: str, T_parent_child: Pose) -> Any:
    """``geometry_msgs/TransformStamped`` carrying ``T_parent_child`` (``header.frame_id`` = parent)."""
    from geometry_msgs.msg import TransformStamped

    tf = TransformStamped()
    tf.header = header
    tf.child_frame_id = child_frame_id
    t, q = T_parent_child.t, T_parent_child.quaternion()
    tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (float(v) for v in t)
    rotation = tf.transform.rotation
    rotation.x, rotation.y, rotation.z, rotation.w = (float(v) for v in q)
    return tf
