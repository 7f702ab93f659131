"""The node's parameters: one table (name, default, description, range or choices) and a validator.

ROS-free: :mod:`depth_sfm_ros.ros.node` turns :data:`PARAMETERS` into ``ParameterDescriptor``s
(with ``FloatingPointRange`` / ``IntegerRange``), and :func:`validate` turns the values into a
typed :class:`NodeParams`, raising :class:`ParameterError` that names the parameter.
config/depth_sfm.yaml lists the same names (a test keeps the two in step).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from depth_sfm_ros.geometry import Intrinsics, Pose, euler_to_matrix
from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR as _RUNTIME_DEFAULT_MODEL_DIR
from depth_sfm_ros.runtime.scale import SCALE_MODES

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
DEVICES = ("auto", "cpu", "cuda")
IMAGE_TRANSPORTS = ("raw", "compressed")
QOS_PROFILES = ("sensor_data", "reliable", "best_effort")
CAMERA_INPUTS = ("auto", "rectified", "raw")
DEFAULT_MODEL_DIR = str(_RUNTIME_DEFAULT_MODEL_DIR)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter. The type is the default's type (bool, int, float, str or list of float)."""

    name: str
    default: Any
    description: str
    min_value: float | None = None
    max_value: float | None = None
    choices: tuple[str, ...] = ()
    length: int | None = None  # for float arrays

    @property
    def type_name(self) -> str:
        if isinstance(self.default, bool):
            return "bool"
        if isinstance(self.default, int):
            return "int"
        if isinstance(self.default, float):
            return "float"
        if isinstance(self.default, str):
            return "str"
        return "float_array"


_HALF_PI = math.pi / 2
PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "", "exported model directory (model_card.yaml + *.onnx); empty = the bundled default model"),
    ParamSpec("backend", "auto", "inference backend", choices=BACKENDS),
    ParamSpec("device", "auto", "inference device", choices=DEVICES),
    ParamSpec("fp16", False, "half precision (TensorRT engine, torch on CUDA; ignored by onnxruntime)"),
    ParamSpec("threads", 0, "CPU threads for the backend (0 = backend default)", 0, 256),
    ParamSpec("engine_cache_dir", "", "TensorRT engine cache directory; empty = $XDG_CACHE_HOME/depth_sfm/engines"),
    ParamSpec("scale_mode", "camera_height", "metric scale recovery: camera_height (ground plane), fixed "
              "(fixed_scale), external (speed from nav_msgs/Odometry on 'external_odometry', e.g. wheel odometry), "
              "none (network units)", choices=SCALE_MODES),
    ParamSpec("camera_height_m", 1.65, "camera height above the ground plane, metres (scale_mode camera_height)",
              0.05, 20.0),
    ParamSpec("fixed_scale", 1.0, "metres per network depth unit (scale_mode fixed)", 1e-6, 1e6),
    ParamSpec("ground_max_tilt_deg", 20.0, "scale_mode camera_height: a fitted ground plane whose normal is further "
              "than this from 'up' (from camera_to_base_rpy) is refused and the last accepted scale kept, degrees",
              1.0, 45.0),
    ParamSpec("ground_min_inlier_fraction", 0.3, "scale_mode camera_height: a ground plane supported by fewer than "
              "this fraction of the points of the lower image part is refused", 0.05, 0.95),
    ParamSpec("scale_max_jump", 1.5, "scale_mode camera_height: once 3 estimates are accepted, one that differs from "
              "the smoothed scale by more than this factor is refused (15 in a row that agree restart the scale)",
              1.01, 100.0),
    ParamSpec("external_odometry_tolerance_s", 0.05, "largest |image stamp - external odometry stamp| whose speed "
              "is used (scale_mode external); a frame without one keeps the previous scale, s", 0.0, 10.0),
    ParamSpec("external_odometry_wait_s", 0.05, "how long the worker waits for the external odometry of an image "
              "that arrived first (scale_mode external), s", 0.0, 1.0),
    ParamSpec("image_transport", "raw", "raw: subscribe 'image'; compressed: subscribe 'image/compressed' "
              "(decoded with OpenCV)", choices=IMAGE_TRANSPORTS),
    ParamSpec("camera_info_sync_tolerance_s", 0.005, "largest |image stamp - CameraInfo stamp| accepted as a pair, s",
              0.0, 10.0),
    ParamSpec("camera_info_wait_s", 0.05, "how long the worker waits for the CameraInfo of an image that "
              "arrived first, s (not once CameraInfo is known to be missing, nor while the camera's intrinsics are "
              "constant: then the newest CameraInfo is used at once)", 0.0, 1.0),
    ParamSpec("camera_input", "auto", "what the 'image' topic carries: rectified (image_proc's image_rect*: "
              "intrinsics from the CameraInfo's P, no remap), raw (image_raw: K, and lens distortion (plumb_bob, "
              "rational_polynomial, equidistant) is undistorted into P's geometry, or OpenCV's optimal one when P "
              "is unset; depth is published in that rectified geometry), auto (rectified when the remapped image "
              "topic's name is image_rect*)", choices=CAMERA_INPUTS),
    ParamSpec("undistort_alpha", 0.0, "raw distorted input with an unset P: 0 = the undistorted image has only "
              "valid pixels (no black border), 1 = it keeps every raw pixel (OpenCV alpha; fisheye: balance)",
              0.0, 1.0),
    ParamSpec("fx", 0.0, "fallback focal length x (pixels of the input image) when no CameraInfo arrives; "
              "0 = use the model card's intrinsics", 0.0, 1e6),
    ParamSpec("fy", 0.0, "fallback focal length y, pixels (0 = same as fx)", 0.0, 1e6),
    ParamSpec("cx", -1.0, "fallback principal point x, pixels (-1 = image centre)", -1.0, 1e6),
    ParamSpec("cy", -1.0, "fallback principal point y, pixels (-1 = image centre)", -1.0, 1e6),
    ParamSpec("odom_frame", "odom", "odometry frame (header.frame_id of ~/odometry, parent of the TF)"),
    ParamSpec("base_frame", "base_link", "robot base frame (child_frame_id of ~/odometry); empty = the camera frame"),
    ParamSpec("camera_frame", "", "optical frame of the camera; empty = the input image's header.frame_id"),
    ParamSpec("camera_to_base_xyz", [0.0, 0.0, 0.0], "position of the camera optical frame in the base frame "
              "(T_base_cam translation), metres", -100.0, 100.0, length=3),
    ParamSpec("camera_to_base_rpy", [-_HALF_PI, 0.0, -_HALF_PI], "orientation of the camera optical frame in the "
              "base frame (T_base_cam roll, pitch, yaw), radians; the default is a forward-looking camera",
              -2 * math.pi, 2 * math.pi, length=3),
    ParamSpec("publish_tf", True, "broadcast odom_frame -> base_frame with tf2_ros (skipped when tf2_ros is missing)"),
    ParamSpec("publish_points", False, "publish ~/points (PointCloud2 xyz + rgb in the camera frame)"),
    ParamSpec("points_decimation", 4, "keep every n-th pixel in rows and columns for ~/points", 1, 64),
    ParamSpec("input_qos", "sensor_data", "QoS of the image / CameraInfo subscriptions", choices=QOS_PROFILES),
    ParamSpec("output_qos", "reliable", "QoS of the published outputs (rviz subscribes reliable)", choices=QOS_PROFILES),
    ParamSpec("qos_depth", 5, "history depth of every subscription and publisher", 1, 100),
    ParamSpec("max_depth_m", 80.0, "depth beyond this is published as NaN (unknown); far end of the colour map, m",
              0.1, 1000.0),
    ParamSpec("min_depth_m", 0.5, "depth below this is published as NaN; near end of the colour map, m", 0.0, 100.0),
    ParamSpec("upsample_to_camera", False, "publish depth / mask at the camera's size (else the network's)"),
    ParamSpec("max_stamp_gap_s", 1.0, "a forward stamp jump larger than this restarts odometry, s", 0.001, 3600.0),
    ParamSpec("still_detection", True, "still camera: when the images show no camera motion (robust photometric "
              "test against the image noise; a moving object is not camera motion) and the pose net's motion is "
              "within still_max_translation_m / still_max_rotation_deg, publish zero motion and keep the odometry "
              "pose"),
    ParamSpec("still_threshold_px", 0.6, "still camera: image motion above which the camera moves: 75th percentile "
              "of the textured pixels' normal flow, in pixels of a 160-pixel-wide copy of the image (1 px = 1/160 of "
              "the width); measured: handheld 'still' Kinect 0.15-0.56, KITTI driving 1.6-3.3", 0.05, 20.0),
    ParamSpec("still_max_translation_m", 0.25, "still camera: largest pose-net translation per frame pair (after "
              "the scale) that a still image may zero; a larger one is kept as motion, m", 0.0, 100.0),
    ParamSpec("still_max_rotation_deg", 5.0, "still camera: largest pose-net rotation per frame pair that a still "
              "image may zero; a larger one is kept as motion, degrees", 0.0, 180.0),
    ParamSpec("mask_threshold", 0.5, "dynamic probability above which a pixel is a moving object (255); "
              "0.5 for the bundled model's mask: as good as 0.4 on its DAVIS training clips, fewer static marks",
              0.0, 1.0),
    ParamSpec("adapt_online", False, "online self-supervised adaptation: a background thread fine-tunes the "
              "model on the live stream and swaps improved weights in between frames (a model with "
              "weights.safetensors; torch swaps the networks, onnxruntime / tensorrt re-export them to ONNX "
              "(and rebuild the engines) first; docs/adapt.md)"),
    ParamSpec("adapt_buffer_frames", 96, "online adaptation: moving frames kept for training (oldest dropped)",
              9, 10000),
    ParamSpec("adapt_duty_cycle", 0.2, "online adaptation: largest fraction of the wall time the worker spends in "
              "steps (it sleeps between them); lower = less effect on inference latency, slower adaptation",
              0.01, 1.0),
    ParamSpec("adapt_save_dir", "", "online adaptation: directory the adapted weights.safetensors (+ model card) "
              "are saved to at shutdown; '' = not saved"),
    ParamSpec("adapt_replay_dir", "", "online adaptation: replay set mixed into every training batch against "
              "forgetting (one replay triplet per batch of two stream triplets): synthetic KITTI-like folders "
              "(image_2/, e.g. the set 'depth-sfm adapt' renders) or images with calib.yaml; '' = no replay"),
    ParamSpec("adapt_export_every_s", 30.0, "online adaptation with backend onnxruntime / tensorrt: at most one "
              "ONNX export (and engine rebuild) of changed weights per this many seconds", 1.0, 86400.0),
    ParamSpec("diagnostics_period_s", 1.0, "period of /diagnostics messages, s", 0.1, 60.0),
    ParamSpec("log_throttle_s", 5.0, "minimum time between two log lines about the same kind of bad input, s",
              0.0, 3600.0),
    ParamSpec("position_variance", 0.01, "odometry pose covariance diagonal for x, y, z, m^2", 0.0, 1e6),
    ParamSpec("orientation_variance", 0.001, "odometry pose covariance diagonal for roll, pitch, yaw, rad^2", 0.0, 1e6),
)
PARAMETERS_BY_NAME = {spec.name: spec for spec in PARAMETERS}


class ParameterError(ValueError):
    """A parameter value that the node cannot run with; ``name`` is the parameter."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"parameter '{name}': {message}")
        self.name = name


@dataclass(frozen=True)
class NodeParams:
    """Validated parameters (see :data:`PARAMETERS` for their meaning)."""

    model_dir: str
    backend: str
    device: str
    fp16: bool
    threads: int
    engine_cache_dir: str
    scale_mode: str
    camera_height_m: float
    fixed_scale: float
    ground_max_tilt_deg: float
    ground_min_inlier_fraction: float
    scale_max_jump: float
    external_odometry_tolerance_s: float
    external_odometry_wait_s: float
    image_transport: str
    camera_info_sync_tolerance_s: float
    camera_info_wait_s: float
    camera_input: str
    undistort_alpha: float
    fallback_fx: float
    fallback_fy: float
    fallback_cx: float
    fallback_cy: float
    odom_frame: str
    base_frame: str
    camera_frame: str
    T_base_cam: Pose
    publish_tf: bool
    publish_points: bool
    points_decimation: int
    input_qos: str
    output_qos: str
    qos_depth: int
    max_depth_m: float
    min_depth_m: float
    upsample_to_camera: bool
    max_stamp_gap_s: float
    still_detection: bool
    still_threshold_px: float
    still_max_translation_m: float
    still_max_rotation_deg: float
    mask_threshold: float
    diagnostics_period_s: float
    log_throttle_s: float
    adapt_online: bool = False
    adapt_buffer_frames: int = 96
    adapt_duty_cycle: float = 0.2
    adapt_save_dir: str = ""
    adapt_replay_dir: str = ""
    adapt_export_every_s: float = 30.0
    pose_covariance: tuple[float, ...] = field(default=(0.0,) * 36)

    def up_cam(self) -> tuple[float, float, float]:
        """'up' (the base frame's +z, REP 103) in the camera's optical frame: R_base_cam^T [0, 0, 1]."""
        return tuple(float(v) for v in self.T_base_cam.R.T @ np.array([0.0, 0.0, 1.0]))

    def fallback_intrinsics(self, width: int, height: int) -> Intrinsics | None:
        """Intrinsics from the fx/fy/cx/cy parameters for a ``width`` x ``height`` image, or None
        when fx is 0 (then the Pipeline uses the model card's intrinsics)."""
        if self.fallback_fx <= 0:
            return None
        fy = self.fallback_fy if self.fallback_fy > 0 else self.fallback_fx
        cx = self.fallback_cx if self.fallback_cx >= 0 else (width - 1) / 2.0
        cy = self.fallback_cy if self.fallback_cy >= 0 else (height - 1) / 2.0
        return Intrinsics(fx=self.fallback_fx, fy=fy, cx=cx, cy=cy, width=width, height=height)


def _check_type(spec: ParamSpec, value: Any) -> Any:
    kind = spec.type_name
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise ParameterError(spec.name, f"must be true or false, got {value!r}")
        return bool(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ParameterError(spec.name, f"must be an integer, got {value!r}")
        value = int(value)
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ParameterError(spec.name, f"must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ParameterError(spec.name, f"must be finite, got {value}")
    elif kind == "str":
        if not isinstance(value, str):
            raise ParameterError(spec.name, f"must be a string, got {value!r}")
        if spec.choices and value not in spec.choices:
            raise ParameterError(spec.name, f"must be one of {', '.join(spec.choices)}; got {value!r}")
        return value
    else:
        try:
            value = [float(v) for v in value]
        except (TypeError, ValueError):
            raise ParameterError(spec.name, f"must be a list of {spec.length} numbers, got {value!r}") from None
        if spec.length is not None and len(value) != spec.length:
            raise ParameterError(spec.name, f"must have {spec.length} numbers, got {len(value)}")
        if not all(math.isfinite(v) for v in value):
            raise ParameterError(spec.name, f"must be finite, got {value}")
    values = value if isinstance(value, list) else [value]
    for v in values:
        if spec.min_value is not None and v < spec.min_value or spec.max_value is not None and v > spec.max_value:
            raise ParameterError(spec.name, f"{v} is outside [{spec.min_value}, {spec.max_value}]")
    return value


_FRAME_FORBIDDEN = set(" \t\n/")


def _check_frame(name: str, frame: str, allow_empty: bool) -> str:
    if not frame:
        if allow_empty:
            return frame
        raise ParameterError(name, "must not be empty")
    if frame[0] == "/" or any(c in _FRAME_FORBIDDEN for c in frame.lstrip("/")):
        raise ParameterError(name, f"{frame!r} is not a valid frame id (no leading '/', spaces or slashes)")
    return frame


def resolve_model_dir(model: str) -> str:
    """The model directory to load: ``model`` or, when empty, the bundled default."""
    return os.path.abspath(os.path.expanduser(model)) if model else DEFAULT_MODEL_DIR


def validate(values: dict[str, Any], check_model_files: bool = True) -> NodeParams:
    """Check every parameter (missing ones take their default) and return :class:`NodeParams`.

    Raises :class:`ParameterError` naming the first bad parameter.
    """
    unknown = sorted(set(values) - set(PARAMETERS_BY_NAME))
    if unknown:
        raise ParameterError(unknown[0], f"unknown parameter (known: {', '.join(PARAMETERS_BY_NAME)})")
    v = {spec.name: _check_type(spec, values.get(spec.name, spec.default)) for spec in PARAMETERS}

    model_dir = resolve_model_dir(v["model"])
    if check_model_files:
        if not os.path.isdir(model_dir):
            hint = " (the bundled default model is not installed; pass model:=<exported model dir>)" if not v["model"] else ""
            raise ParameterError("model", f"{model_dir} is not a directory{hint}")
        if not os.path.isfile(os.path.join(model_dir, "model_card.yaml")):
            raise ParameterError("model", f"{model_dir} has no model_card.yaml (export one with 'depth-sfm export')")
    if v["min_depth_m"] >= v["max_depth_m"]:
        raise ParameterError("min_depth_m", f"must be < max_depth_m ({v['min_depth_m']} >= {v['max_depth_m']})")
    odom_frame = _check_frame("odom_frame", v["odom_frame"], allow_empty=False)
    base_frame = _check_frame("base_frame", v["base_frame"], allow_empty=True)
    camera_frame = _check_frame("camera_frame", v["camera_frame"], allow_empty=True)
    if base_frame and base_frame == odom_frame:
        raise ParameterError("base_frame", f"must differ from odom_frame ({odom_frame!r})")
    T_base_cam = Pose.from_Rt(euler_to_matrix(*v["camera_to_base_rpy"]), v["camera_to_base_xyz"])
    covariance = np.zeros((6, 6))
    covariance[[0, 1, 2], [0, 1, 2]] = v["position_variance"]
    covariance[[3, 4, 5], [3, 4, 5]] = v["orientation_variance"]
    return NodeParams(
        model_dir=model_dir, backend=v["backend"], device=v["device"], fp16=v["fp16"], threads=v["threads"],
        engine_cache_dir=v["engine_cache_dir"], scale_mode=v["scale_mode"],
        camera_height_m=v["camera_height_m"], fixed_scale=v["fixed_scale"],
        ground_max_tilt_deg=v["ground_max_tilt_deg"], ground_min_inlier_fraction=v["ground_min_inlier_fraction"],
        scale_max_jump=v["scale_max_jump"],
        external_odometry_tolerance_s=v["external_odometry_tolerance_s"],
        external_odometry_wait_s=v["external_odometry_wait_s"], image_transport=v["image_transport"],
        camera_info_sync_tolerance_s=v["camera_info_sync_tolerance_s"],
        camera_info_wait_s=v["camera_info_wait_s"], camera_input=v["camera_input"],
        undistort_alpha=v["undistort_alpha"], fallback_fx=v["fx"], fallback_fy=v["fy"],
        fallback_cx=v["cx"], fallback_cy=v["cy"], odom_frame=odom_frame, base_frame=base_frame,
        camera_frame=camera_frame, T_base_cam=T_base_cam, publish_tf=v["publish_tf"],
        publish_points=v["publish_points"], points_decimation=v["points_decimation"], input_qos=v["input_qos"],
        output_qos=v["output_qos"], qos_depth=v["qos_depth"], max_depth_m=v["max_depth_m"],
        min_depth_m=v["min_depth_m"], upsample_to_camera=v["upsample_to_camera"],
        max_stamp_gap_s=v["max_stamp_gap_s"], still_detection=v["still_detection"],
        still_threshold_px=v["still_threshold_px"], still_max_translation_m=v["still_max_translation_m"],
        still_max_rotation_deg=v["still_max_rotation_deg"], mask_threshold=v["mask_threshold"],
        diagnostics_period_s=v["diagnostics_period_s"], log_throttle_s=v["log_throttle_s"],
        pose_covariance=tuple(covariance.ravel().tolist()), adapt_online=v["adapt_online"],
        adapt_buffer_frames=v["adapt_buffer_frames"], adapt_duty_cycle=v["adapt_duty_cycle"],
        adapt_save_dir=os.path.expanduser(v["adapt_save_dir"]), adapt_replay_dir=_replay_dir(v["adapt_replay_dir"]),
        adapt_export_every_s=v["adapt_export_every_s"],
    )


def _replay_dir(path: str) -> str:
    """``adapt_replay_dir``: '' (off) or an existing directory (absolute); its content is checked when the
    adapter is created (the training code reads it)."""
    if not path:
        return ""
    resolved = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(resolved):
        raise ParameterError("adapt_replay_dir", f"{resolved} is not a directory (a replay set: synthetic KITTI-like "
                                                 f"folders with image_2/, or images with calib.yaml; '' = off)")
    return resolved


def defaults() -> dict[str, Any]:
    """name -> default value (lists copied)."""
    return {spec.name: list(spec.default) if isinstance(spec.default, list) else spec.default for spec in PARAMETERS}


def describe(names: Sequence[str] | None = None) -> str:
    """Human-readable table of the parameters (for --help style output and docs)."""
    lines = []
    for spec in PARAMETERS:
        if names is not None and spec.name not in names:
            continue
        extra = f" one of {{{', '.join(spec.choices)}}}" if spec.choices else (
            f" in [{spec.min_value}, {spec.max_value}]" if spec.min_value is not None else "")
        lines.append(f"{spec.name} ({spec.type_name}, default {spec.default!r}{extra}): {spec.description}")
    return "\n".join(lines)
