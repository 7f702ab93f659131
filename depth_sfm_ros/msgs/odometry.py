"""Poses and speeds in ``nav_msgs/Odometry``, ``geometry_msgs/Pose*`` and ``TransformStamped`` (duck-typed).

Decoders read rclpy and ``rosbags`` messages alike; :func:`odometry_fields` gives the values of an
Odometry for the builders in :mod:`~depth_sfm_ros.msgs.rclpy_msgs` / :mod:`~depth_sfm_ros.msgs.rosbags_msgs`.
Twists are in the child frame (REP 105), metres per second and radians per second.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from depth_sfm_ros.geometry import Pose


def pose_from_point_quaternion(position: Any, orientation: Any) -> Pose:
    """geometry_msgs Point / Vector3 + Quaternion (x, y, z, w) -> Pose."""
    return Pose.from_quaternion([position.x, position.y, position.z],
                                [orientation.x, orientation.y, orientation.z, orientation.w])


def odometry_msg_to_pose(msg: Any) -> Pose:
    """nav_msgs/Odometry (or PoseWithCovarianceStamped) -> Pose T_{header.frame_id, child_frame_id}."""
    return pose_from_point_quaternion(msg.pose.pose.position, msg.pose.pose.orientation)


def transform_msg_to_pose(msg: Any) -> Pose:
    """geometry_msgs/TransformStamped -> Pose T_{header.frame_id, child_frame_id}."""
    return pose_from_point_quaternion(msg.transform.translation, msg.transform.rotation)


def odometry_speed_mps(msg: Any) -> float:
    """Speed (m/s) of a nav_msgs/Odometry's child frame: the norm of ``twist.twist.linear``.
    Raises ValueError when it is not finite."""
    v = msg.twist.twist.linear
    speed = math.sqrt(float(v.x) ** 2 + float(v.y) ** 2 + float(v.z) ** 2)
    if not math.isfinite(speed):
        raise ValueError(f"odometry twist speed must be finite, got linear ({v.x}, {v.y}, {v.z})")
    return speed


def odometry_fields(T_parent_child: Pose, linear_mps: Sequence[float] | None = None,
                    angular_radps: Sequence[float] | None = None, pose_covariance: Sequence[float] | None = None,
                    twist_covariance: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """The numbers of an Odometry: ``position`` (3,), ``orientation_xyzw`` (4,), ``linear`` (3,), ``angular`` (3,),
    ``pose_covariance`` (36,), ``twist_covariance`` (36,), all float64 (zeros where not given)."""
    if not isinstance(T_parent_child, Pose):
        raise TypeError(f"T_parent_child must be a Pose, got {type(T_parent_child).__name__}")

    def vector(values: Sequence[float] | None, size: int) -> np.ndarray:
        return np.zeros(size) if values is None else np.asarray(values, dtype=np.float64).reshape(size)

    return {"position": T_parent_child.t.astype(np.float64), "orientation_xyzw": T_parent_child.quaternion(),
            "linear": vector(linear_mps, 3), "angular": vector(angular_radps, 3),
            "pose_covariance": vector(pose_covariance, 36), "twist_covariance": vector(twist_covariance, 36)}
