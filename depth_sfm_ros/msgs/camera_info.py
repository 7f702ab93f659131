"""``sensor_msgs/CameraInfo``: one duck-typed decoder into plain fields, and the intrinsics the node and
the bag tools take from them.

:func:`decode_camera_info` reads ROS 2 (``k``, ``d``, ``r``, ``p``) and ROS 1 (``K``, ``D``, ``R``, ``P``)
messages of rclpy or ``rosbags`` into :class:`CameraInfoFields` (numpy arrays, no message objects), the
input of a camera model (:meth:`depth_sfm_ros.geometry.camera_model.CameraModel.from_camera_info_fields`). Which matrix gives the pinhole intrinsics is a policy, kept as today:
:func:`intrinsics_from_k` (the node: K, distortion ignored) and :func:`intrinsics_from_p` (the bag tools:
the rectified projection P, or K when P is unset; distortion without P refused).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from depth_sfm_ros.geometry import Intrinsics
from depth_sfm_ros.geometry.camera_model import rectified_camera_info_fields

from .stamps import stamp_to_nanoseconds


@dataclass(frozen=True)
class CameraInfoFields:
    """A CameraInfo's calibration as plain values.

    width / height: image size in pixels the calibration is for.
    K: (3, 3) float64 camera matrix of the raw (distorted) image.
    D: (n,) float64 distortion coefficients of ``distortion_model`` (may be empty).
    R: (3, 3) float64 rectification rotation.
    P: (3, 4) float64 projection matrix of the rectified image (all zeros when unset).
    distortion_model: e.g. ``plumb_bob``, ``rational_polynomial``, ``equidistant`` ("" when unset).
    frame_id: the header's frame (the camera's optical frame).
    stamp_ns: the header stamp, integer nanoseconds.
    """

    width: int
    height: int
    K: np.ndarray
    D: np.ndarray
    R: np.ndarray
    P: np.ndarray
    distortion_model: str = ""
    frame_id: str = ""
    stamp_ns: int = 0


def _field(msg: Any, name: str) -> Any:
    """``msg.name`` of a ROS 2 message, or ``msg.NAME`` of a ROS 1 message (None when neither)."""
    value = getattr(msg, name, None)
    return getattr(msg, name.upper(), None) if value is None else value


def _matrix(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"CameraInfo {name} must have {int(np.prod(shape))} numbers, got {array.size}")
    return array.reshape(shape)


def decode_camera_info(msg: Any) -> CameraInfoFields:
    """CameraInfo message (ROS 2 or ROS 1 field names; rclpy, ``rosbags`` or a namespace) -> fields.

    Raises ValueError when K or P is missing or has the wrong number of values. Values are not judged
    here (NaN, zero focal lengths): the intrinsics functions below do that.
    """
    k, p = _field(msg, "k"), _field(msg, "p")
    if k is None or p is None:
        raise ValueError("CameraInfo without K / P fields")
    r = _field(msg, "r")
    d = _field(msg, "d")
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    return CameraInfoFields(
        width=int(msg.width), height=int(msg.height), K=_matrix(k, (3, 3), "K"),
        D=np.asarray(d if d is not None else (), dtype=np.float64).reshape(-1),
        R=np.eye(3) if r is None else _matrix(r, (3, 3), "R"),
        P=_matrix(p, (3, 4), "P"), distortion_model=str(getattr(msg, "distortion_model", "") or ""),
        frame_id=str(getattr(header, "frame_id", "") or ""),
        stamp_ns=stamp_to_nanoseconds(stamp) if stamp is not None else 0)


def intrinsics_from_k(info: CameraInfoFields) -> Intrinsics:
    """The node's rule: :class:`Intrinsics` from K (distortion is ignored).

    Raises ValueError for an unset (all-zero) K, NaN / Inf entries or a zero image size.
    """
    k = info.K
    if info.width <= 0 or info.height <= 0:
        raise ValueError(f"CameraInfo has image size {info.width}x{info.height}")
    if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ValueError(f"CameraInfo K is not a valid camera matrix: {k.ravel().tolist()}")
    return Intrinsics.from_matrix(k, width=info.width, height=info.height)


def intrinsics_from_p(info: CameraInfoFields) -> Intrinsics:
    """The bag tools' rule: :class:`Intrinsics` from the projection matrix P (the rectified camera), or from
    K when P is all zeros. Non-zero distortion without P is refused (images must be rectified)."""
    K = info.P[:, :3] if np.any(info.P) else info.K
    if info.D.size and np.any(np.abs(info.D) > 1e-12) and not np.any(info.P):
        raise ValueError("CameraInfo has distortion but no projection matrix P; rectify the images first")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"CameraInfo camera matrix has NaN/Inf entries: {K.ravel().tolist()}")
    return Intrinsics.from_matrix(K, info.width, info.height)


def camera_info_to_intrinsics(msg: Any) -> Intrinsics:
    """The node's CameraInfo -> Intrinsics: :func:`intrinsics_from_k` of :func:`decode_camera_info`."""
    return intrinsics_from_k(decode_camera_info(msg))


def camera_info_to_rectified_intrinsics(msg: Any) -> Intrinsics:
    """The bag tools' CameraInfo -> Intrinsics: :func:`intrinsics_from_p` of :func:`decode_camera_info`."""
    return intrinsics_from_p(decode_camera_info(msg))


def camera_info_fields(intrinsics: Intrinsics) -> dict[str, Any]:
    """The calibration fields of a CameraInfo for a rectified pinhole image (plumb_bob, zero distortion):
    ``width``, ``height``, ``distortion_model``, ``d`` (5,), ``k`` (9,), ``r`` (9,), ``p`` (12,) float64
    (:func:`depth_sfm_ros.geometry.camera_model.rectified_camera_info_fields`, the camera model's one definition)."""
    return rectified_camera_info_fields(intrinsics)
