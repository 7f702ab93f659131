"""A raw camera with strong lens distortion looking at a plane with red markers (ROS-free, numpy + OpenCV).

The player publishes :func:`raw_image` with :data:`CAMERA`'s CameraInfo (what a camera driver sends on
``image_raw``: K, D, P of image_proc's rectified camera); the end-to-end test checks that the node's depth
pixels and ``~/depth/camera_info`` describe the rectified geometry: each marker's points, back-projected with
the published K, point in the marker's true direction.

Frames: the camera's optical frame (x right, y down, z forward; R = I, so raw and rectified cameras share
it). The plane is z = :data:`PLANE_Z_M`; a marker is the square |x/z - x_m| <= h, |y/z - y_m| <= h in
normalised image coordinates (a square of the rectified image).
"""
from __future__ import annotations

import cv2
import numpy as np

from depth_sfm_ros.geometry.camera_model import CameraModel

WIDTH, HEIGHT = 384, 128
K_RAW = [[200.0, 0.0, 191.5], [0.0, 200.0, 63.5], [0.0, 0.0, 1.0]]
D_PLUMB_BOB = [-0.3, 0.1, 0.0, 0.0, 0.0]  # strong barrel distortion: a marker at x = 0.8 lands ~0.13 inside
P_RECT = [[170.0, 0.0, 190.0, 0.0], [0.0, 170.0, 64.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
CAMERA = CameraModel.from_fields(WIDTH, HEIGHT, K_RAW, D_PLUMB_BOB, "plumb_bob", P=P_RECT)
PLANE_Z_M = 4.0
MARKERS_XY = ((-0.8, -0.2), (0.0, 0.0), (0.8, 0.2), (0.55, -0.2))  # centres, normalised (x/z, y/z)
MARKER_HALF = 0.07  # half side, normalised (~12 px of the rectified image, ~6 px of a 192 x 64 depth image)
MARKER_RGB = (255, 0, 0)


def is_marker_colour(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 -> (N,) bool: the markers' red (the background has no strong red)."""
    rgb = np.asarray(rgb, dtype=np.int32)
    return (rgb[:, 0] > 160) & (rgb[:, 1] < 60) & (rgb[:, 2] < 60)


def colour_at(xy: np.ndarray) -> np.ndarray:
    """Normalised coordinates (N, 2) -> RGB uint8 (N, 3): a grey-green checkerboard (0.1 m squares on the
    plane) with the red markers on it."""
    x, y = xy[:, 0], xy[:, 1]
    checker = (np.floor(x * PLANE_Z_M / 0.1) + np.floor(y * PLANE_Z_M / 0.1)) % 2
    value = 70 + 110 * checker
    rgb = np.stack([value * 0.5, value, value * 0.8], axis=1)
    for xm, ym in MARKERS_XY:
        inside = (np.abs(x - xm) <= MARKER_HALF) & (np.abs(y - ym) <= MARKER_HALF)
        rgb[inside] = MARKER_RGB
    return rgb.astype(np.uint8)


def raw_image() -> np.ndarray:
    """RGB (HEIGHT, WIDTH, 3) uint8 as the distorted camera sees the plane: every raw pixel's ray
    (``cv2.undistortPoints`` with K and D) picks the plane's colour."""
    u, v = np.meshgrid(np.arange(WIDTH, dtype=np.float64), np.arange(HEIGHT, dtype=np.float64))
    uv = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
    xy = cv2.undistortPoints(uv, np.array(K_RAW), np.array(D_PLUMB_BOB)).reshape(-1, 2)
    return colour_at(xy).reshape(HEIGHT, WIDTH, 3)
