"""``sensor_msgs/CameraInfo``: one duck-typed decoder into plain fields, the camera model built from them,
and the fields of the CameraInfos this package writes.

:func:`decode_camera_info` reads ROS 2 (``k``, ``d``, ``r``, ``p``) and ROS 1 (``K``, ``D``, ``R``, ``P``)
messages of rclpy or ``rosbags`` into :class:`CameraInfoFields` (numpy arrays, no message objects);
:func:`camera_info_to_model` turns them into a
:class:`~depth_sfm_ros.geometry.camera_model.CameraModel`. Which intrinsics an image has (K, P, or those of
the undistorted image) is the camera policy of :mod:`depth_sfm_ros.geometry.camera_model`, not decided here.
Writers: :func:`camera_info_fields` (a rectified pinhole image: D = 0, R = I, P = [K | 0], what the node
publishes with its depth) and :func:`camera_model_fields` (a camera's whole calibration, e.g. a raw camera).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from depth_sfm_ros.geometry import Intrinsics
from depth_sfm_ros.geometry.camera_model import CameraModel, rectified_camera_info_fields

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
    here (NaN, zero focal lengths): :func:`camera_info_to_model` does that.
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


def camera_info_to_model(msg: Any) -> CameraModel:
    """CameraInfo message -> :class:`~depth_sfm_ros.geometry.camera_model.CameraModel` (the whole calibration:
    K, D, R, P, distortion model, size, frame), the one input of the camera policy
    (:func:`~depth_sfm_ros.geometry.camera_model.resolve_input`) for the node, the bag tools and the datasets.

    Raises ValueError for a message or calibration that cannot be used (missing / wrong-length fields, an
    unset K, NaN / Inf, a zero image size, a coefficient count the model does not have). An unknown
    distortion model is *not* refused here: rectified images of such a camera are usable (P); raw ones are
    refused by the policy (:class:`~depth_sfm_ros.geometry.camera_model.UnsupportedCameraModel`).
    """
    return CameraModel.from_camera_info_fields(decode_camera_info(msg))


def camera_info_fields(intrinsics: Intrinsics) -> dict[str, Any]:
    """The calibration fields of a CameraInfo for a rectified pinhole image (plumb_bob, zero distortion):
    ``width``, ``height``, ``distortion_model``, ``d`` (5,), ``k`` (9,), ``r`` (9,), ``p`` (12,) float64
    (:func:`depth_sfm_ros.geometry.camera_model.rectified_camera_info_fields`, the camera model's one definition)."""
    return rectified_camera_info_fields(intrinsics)


def camera_model_fields(model: CameraModel) -> dict[str, Any]:
    """The calibration fields of a CameraInfo carrying ``model`` as it is (raw K, D, R, P, model name), named as
    ROS 2's ``sensor_msgs/CameraInfo``: ``width``, ``height``, ``distortion_model``, ``d`` (n,), ``k`` (9,),
    ``r`` (9,), ``p`` (12,; zeros when P is unset) float64."""
    if not isinstance(model, CameraModel):
        raise TypeError(f"model must be a CameraModel, got {type(model).__name__}")
    P = np.zeros((3, 4)) if model.P is None else np.array(model.P)
    return {"width": model.width, "height": model.height, "distortion_model": model.distortion_model,
            "d": np.array(model.D, dtype=np.float64), "k": np.array(model.K).reshape(-1),
            "r": np.array(model.R).reshape(-1), "p": P.reshape(-1)}
