"""Turn a Pipeline FrameResult into what the node publishes (ROS-free numpy).

The colour map of ``~/depth/colored`` is :func:`depth_sfm_ros.runtime.visualize.colorize_depth`
(one implementation for the node, the bag report and the output bag).

Frames: the Pipeline's odometry ``T_odom_cam`` is anchored at the first camera optical frame
(z forward). ROS odometry (REP 105) is anchored at the base's start pose (x forward, z up); see
:func:`odometry_pose`.
"""
from __future__ import annotations

import cv2
import numpy as np

from depth_sfm_ros.geometry import Intrinsics, Pose, backproject_np
from depth_sfm_ros.msgs import image_to_rgb8


def odometry_pose(T_camodom_cam: Pose, T_base_cam: Pose, child_is_base: bool) -> Pose:
    """Pipeline camera odometry (anchored at the first camera optical frame) -> the published pose.

    The odom frame is the base frame at the first image (x forward, z up for a standard
    ``T_base_cam``). The child is the base (``T_odom_base = T_base_cam @ T_camodom_cam @ T_base_cam^-1``)
    or, with ``child_is_base`` False, the camera optical frame (``T_odom_cam = T_base_cam @ T_camodom_cam``).
    """
    T_odom_cam = T_base_cam @ T_camodom_cam
    return T_odom_cam @ T_base_cam.inverse() if child_is_base else T_odom_cam


def colored_points(depth_m: np.ndarray, intrinsics: Intrinsics, image_rgb: np.ndarray | None,
                   decimation: int) -> tuple[np.ndarray, np.ndarray]:
    """Back-project every ``decimation``-th pixel (rows and columns) of ``depth_m`` (H, W) metres.

    Returns points (N, 3) float32 in the optical frame (NaN depth dropped) and colours (N, 3)
    uint8 RGB taken from ``image_rgb`` resized to the depth size (grey 128 without an image).
    """
    if decimation < 1:
        raise ValueError(f"decimation must be >= 1, got {decimation}")
    points = backproject_np(depth_m, intrinsics)[::decimation, ::decimation].reshape(-1, 3)
    h, w = depth_m.shape
    if image_rgb is None:
        colors = np.full(points.shape, 128, np.uint8)
    else:
        if image_rgb.shape[:2] != (h, w):
            image_rgb = cv2.resize(image_rgb, (w, h), interpolation=cv2.INTER_AREA)
        colors = np.ascontiguousarray(image_rgb[::decimation, ::decimation]).reshape(-1, 3)
    keep = np.isfinite(points[:, 2])
    return points[keep].astype(np.float32, copy=False), colors[keep]


def to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    """A camera image in one of the input encodings -> RGB uint8 (H, W, 3) for point colours
    (:func:`depth_sfm_ros.msgs.image_to_rgb8`, the one conversion)."""
    return image_to_rgb8(image, encoding)
