"""The ROS-free Pipeline: camera image -> metric depth, dynamic mask, relative pose, odometry.

One object serves the ROS node, the bag evaluator and the demo. Per frame:
preprocess (resize + convert into a preallocated buffer) -> backend.infer(cur, prev) ->
postprocess (scale recovery, depth range / NaN, optional upsampling, mask threshold, odometry).

No torch or rclpy at module level: backends import their libraries when created.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..geometry import Intrinsics, Pose
from .image_io import ImagePreprocessor, check_image
from .model_dir import card_intrinsics
from .odometry import OdometryIntegrator
from .scale import SCALE_MODES, ScaleEstimator

log = logging.getLogger(__name__)


@dataclass
class PipelineConfig:
    """Pipeline settings (validated on construction; ValueError names the bad field).

    model: exported model dir (or checkpoint for the torch backend); unused when a backend is passed.
    backend / device / fp16 / threads / cuda_graphs / engine_cache_dir / engine_policy: see create_backend.
    scale_mode: none | fixed | camera_height | external; fixed_scale for 'fixed', camera_height_m
        (camera optical centre above the ground, metres) for 'camera_height'; scale_window frames of
        median smoothing; ground_region_top: the ground plane is fitted below this fraction of the height.
    upsample_to_camera: depth / mask at the camera's size (else at the network size).
    min_depth_m / max_depth_m: published depth range, NaN outside.
    mask_threshold: dynamic_prob >= threshold -> dynamic_mask 255.
    max_stamp_gap_s: a forward stamp jump larger than this resets odometry.
    mono16_range: raw (low, high) mapped to [0, 1] for mono16 input (None: 0..65535).
    """

    model: str | None = None
    backend: str = "auto"
    device: str = "auto"
    fp16: bool = False
    threads: int | None = None
    cuda_graphs: bool = True
    engine_cache_dir: str | None = None
    engine_policy: str = "rebuild"
    scale_mode: str = "none"
    fixed_scale: float = 1.0
    camera_height_m: float = 1.65
    scale_window: int = 15
    ground_region_top: float = 0.6
    upsample_to_camera: bool = False
    min_depth_m: float = 0.1
    max_depth_m: float = 80.0
    mask_threshold: float = 0.5
    max_stamp_gap_s: float = 1.0
    mono16_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {self.scale_mode!r}")
        if self.engine_policy not in ("rebuild", "refuse"):
            raise ValueError(f"engine_policy must be 'rebuild' or 'refuse', got {self.engine_policy!r}")
        positive = {"fixed_scale": self.fixed_scale, "camera_height_m": self.camera_height_m,
                    "max_depth_m": self.max_depth_m, "max_stamp_gap_s": self.max_stamp_gap_s}
        for name, value in positive.items():
            if not _finite(value) or value <= 0:
                raise ValueError(f"PipelineConfig.{name} must be a finite number > 0, got {value!r}")
        if not _finite(self.min_depth_m) or not 0 <= self.min_depth_m < self.max_depth_m:
            raise ValueError(f"PipelineConfig needs 0 <= min_depth_m < max_depth_m, got "
                             f"{self.min_depth_m!r}, {self.max_depth_m!r}")
        if not _finite(self.mask_threshold) or not 0 <= self.mask_threshold <= 1:
            raise ValueError(f"PipelineConfig.mask_threshold must be in [0, 1], got {self.mask_threshold!r}")
        if not _finite(self.ground_region_top) or not 0 <= self.ground_region_top < 1:
            raise ValueError(f"PipelineConfig.ground_region_top must be in [0, 1), got {self.ground_region_top!r}")
        if int(self.scale_window) != self.scale_window or self.scale_window < 1:
            raise ValueError(f"PipelineConfig.scale_window must be a positive integer, got {self.scale_window!r}")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


@dataclass
class FrameResult:
    """Everything the pipeline produces for one frame (see docs/architecture.md).

    depth_m: (h, w) float32 metres, NaN where unknown / outside [min_depth_m, max_depth_m].
    intrinsics: of depth_m (network size, or camera size when upsampled).
    dynamic_prob: (h, w) float32 in [0, 1] or None (first frame after a (re)start, or no mask model).
    dynamic_mask: (h, w) uint8 0/255 or None (same cases).
    T_prev_cur: metric relative pose or None (first frame after a (re)start).
    T_odom_cam: integrated camera pose in odom.
    scale: the factor applied to network depth and translation; scale_valid False until estimated.
    reset / reset_reason: odometry was (re)started at this frame, and why.
    """

    depth_m: np.ndarray
    intrinsics: Intrinsics
    dynamic_prob: np.ndarray | None
    dynamic_mask: np.ndarray | None
    T_prev_cur: Pose | None
    T_odom_cam: Pose
    scale: float
    scale_valid: bool
    reset: bool
    reset_reason: str
    frame_index: int
    stamp_s: float
    timings_ms: dict = field(default_factory=dict)


class Pipeline:
    """Stateful per-camera processing; call :meth:`process` once per frame in stamp order."""

    def __init__(self, config: PipelineConfig, backend=None) -> None:
        if not isinstance(config, PipelineConfig):
            raise TypeError(f"config must be a PipelineConfig, got {type(config).__name__}")
        self.config = config
        if backend is None:
            if not config.model:
                raise ValueError("PipelineConfig.model is required when no backend is given")
            from .backends import create_backend

            backend = create_backend(config.model, name=config.backend, device=config.device, fp16=config.fp16,
                                     threads=config.threads, cuda_graphs=config.cuda_graphs,
                                     engine_cache_dir=config.engine_cache_dir, engine_policy=config.engine_policy)
        self.backend = backend
        self.card = backend.card
        h, w = backend.input_hw
        self._pre = ImagePreprocessor(h, w, value_range=config.mono16_range)
        self._buffers = [np.zeros((1, 3, h, w), np.float32) for _ in range(2)]
        self._cur = 0  # index of the buffer holding the current frame
        self.scale = ScaleEstimator(config.scale_mode, fixed_scale=config.fixed_scale,
                                    camera_height_m=config.camera_height_m, window=config.scale_window,
                                    region_top=config.ground_region_top)
        self.odometry = OdometryIntegrator()
        self._warned_intrinsics = False
        self._has_prev = False
        self._prev_stamp_s: float | None = None
        self._prev_size: tuple[int, int] | None = None
        self.frame_index = 0

    # ------------------------------------------------------------------------------------------
    def reset(self, reason: str = "requested") -> None:
        """Forget the previous frame and restart odometry at the identity (scale history is kept)."""
        log.info("pipeline reset: %s", reason)
        self._reset_state()

    def _reset_state(self) -> None:
        self._has_prev = False
        self.odometry.reset()

    def _intrinsics(self, intrinsics: Intrinsics | np.ndarray | None, width: int, height: int) -> Intrinsics:
        if intrinsics is None:
            if not self._warned_intrinsics:
                log.warning("no camera intrinsics given: using the model card's normalised intrinsics %s scaled to "
                            "%dx%d (depth scale and odometry will be wrong if the camera differs)",
                            self.card.intrinsics_normalized, width, height)
                self._warned_intrinsics = True
            return card_intrinsics(self.card, width, height)
        if isinstance(intrinsics, np.ndarray):
            if not np.all(np.isfinite(intrinsics)):
                raise ValueError(f"camera matrix has NaN/Inf entries: {intrinsics.tolist()}")
            intrinsics = Intrinsics.from_matrix(intrinsics, width, height)
        if not isinstance(intrinsics, Intrinsics):
            raise TypeError(f"intrinsics must be an Intrinsics, a 3x3 matrix or None, got {type(intrinsics).__name__}")
        values = (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)
        if not all(math.isfinite(v) for v in values) or intrinsics.fx <= 0 or intrinsics.fy <= 0:
            raise ValueError(f"invalid intrinsics (need finite values and fx, fy > 0): {intrinsics}")
        if (intrinsics.width, intrinsics.height) != (width, height):
            raise ValueError(f"intrinsics are for {intrinsics.width}x{intrinsics.height} but the image is "
                             f"{width}x{height}; scale them with Intrinsics.scaled()")
        return intrinsics

    def _check_continuity(self, stamp_s: float, size: tuple[int, int]) -> str:
        """Reason to reset before this frame ('' when none)."""
        if self._prev_size is not None and size != self._prev_size:
            return (f"resolution changed from {self._prev_size[0]}x{self._prev_size[1]} "
                    f"to {size[0]}x{size[1]}")
        if self._prev_stamp_s is not None:
            dt = stamp_s - self._prev_stamp_s
            if dt <= 0:
                return f"stamp went backwards or repeated by {-dt:.3f} s ({self._prev_stamp_s:.3f} -> {stamp_s:.3f})"
            if dt > self.config.max_stamp_gap_s:
                return f"stamp jumped forward by {dt:.3f} s (> max_stamp_gap_s {self.config.max_stamp_gap_s} s)"
        return ""

    # ------------------------------------------------------------------------------------------
    def process(self, image: np.ndarray, encoding: str, stamp_s: float,
                intrinsics: Intrinsics | np.ndarray | None = None,
                external_speed_mps: float | None = None) -> FrameResult:
        """Process one camera frame (see :class:`FrameResult`).

        Args:
            image: (H, W[, C]) raw image matching ``encoding`` (rgb8, bgr8, mono8, rgba8, bgra8, mono16/16UC1).
            stamp_s: capture time in seconds (monotonic within a stream).
            intrinsics: of ``image`` (Intrinsics or 3x3 K); None -> the model card's, with a warning once.
            external_speed_mps: speed from another odometry source ('external' scale mode).
        """
        t0 = time.perf_counter()
        if not _finite(stamp_s):
            raise ValueError(f"stamp_s must be a finite number, got {stamp_s!r}")
        if external_speed_mps is not None and (not _finite(external_speed_mps) or external_speed_mps < 0):
            raise ValueError(f"external_speed_mps must be finite and >= 0, got {external_speed_mps!r}")
        image3, _ = check_image(image, encoding)
        height, width = image3.shape[:2]
        cam_K = self._intrinsics(intrinsics, width, height)
        reason = self._check_continuity(float(stamp_s), (width, height))
        if reason:
            log.warning("resetting odometry: %s", reason)  # the one log line of a reset
            self._reset_state()
            if reason.startswith("resolution"):
                self.scale.reset()
        first = not self._has_prev
        if first and not reason:
            reason = "first frame" if self.frame_index == 0 else "restart"
        dt_s = None if first or self._prev_stamp_s is None else float(stamp_s) - self._prev_stamp_s

        prev_buffer = self._buffers[self._cur]
        cur_buffer = self._buffers[1 - self._cur]
        self._pre(image3, encoding, out=cur_buffer)
        t1 = time.perf_counter()
        output = self.backend.infer(cur_buffer, None if first else prev_buffer)
        t2 = time.perf_counter()

        h_net, w_net = self.backend.input_hw
        net_K = cam_K.scaled(w_net, h_net)
        depth_net = np.asarray(output.depth, dtype=np.float32)
        T_rel = Pose.from_vec(output.pose_vec) if output.pose_vec is not None else None
        scale = self.scale.update(depth=depth_net, intrinsics=net_K,
                                  translation=None if T_rel is None else T_rel.t, dt_s=dt_s,
                                  speed_mps=external_speed_mps)
        if self.config.upsample_to_camera and (width, height) != (w_net, h_net):
            depth_m = cv2.resize(depth_net, (width, height), interpolation=cv2.INTER_LINEAR)
            out_K = cam_K
        else:
            depth_m = depth_net.copy()
            out_K = net_K
        depth_m *= np.float32(scale)
        with np.errstate(invalid="ignore"):
            depth_m[~((depth_m >= self.config.min_depth_m) & (depth_m <= self.config.max_depth_m))] = np.nan

        dynamic_prob = dynamic_mask = None
        if output.dynamic_prob is not None:
            prob = np.asarray(output.dynamic_prob, dtype=np.float32)
            if (out_K.width, out_K.height) != (w_net, h_net):
                prob = cv2.resize(prob, (out_K.width, out_K.height), interpolation=cv2.INTER_LINEAR)
            dynamic_prob = np.array(prob, dtype=np.float32, copy=True)
            dynamic_mask = np.where(dynamic_prob >= self.config.mask_threshold, 255, 0).astype(np.uint8)

        T_prev_cur = None if T_rel is None else T_rel.with_translation_scaled(scale)
        T_odom_cam = self.odometry.T_odom_cam if T_prev_cur is None else self.odometry.update(T_prev_cur)
        t3 = time.perf_counter()

        self._cur = 1 - self._cur
        self._has_prev = True
        self._prev_stamp_s = float(stamp_s)
        self._prev_size = (width, height)
        result = FrameResult(
            depth_m=depth_m, intrinsics=out_K, dynamic_prob=dynamic_prob, dynamic_mask=dynamic_mask,
            T_prev_cur=T_prev_cur, T_odom_cam=T_odom_cam, scale=float(scale), scale_valid=self.scale.valid,
            reset=first, reset_reason=reason if first else "", frame_index=self.frame_index, stamp_s=float(stamp_s),
            timings_ms={"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3,
                        "total": (t3 - t0) * 1e3})
        self.frame_index += 1
        return result

    def close(self) -> None:
        self.backend.close()
