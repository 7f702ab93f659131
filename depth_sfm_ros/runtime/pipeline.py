"""The ROS-free Pipeline: camera image -> metric depth, dynamic mask, relative pose, odometry.

One object serves the ROS node, the bag evaluator and the demo. Per frame:
preprocess (resize + convert into a preallocated buffer) -> backend.infer(cur, ref) ->
postprocess (still-camera test, scale recovery, depth range / NaN, optional upsampling, mask
threshold, odometry).

``ref`` is the reference frame: the previous frame, except after still frames (see
:mod:`~depth_sfm_ros.runtime.motion_gate`): a frame the motion gate finds still publishes no motion
and does not replace the reference, so a slow motion accumulates against it until it shows.

No torch or rclpy at module level: backends import their libraries when created.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from ..geometry import Intrinsics, Pose
from .image_io import ImagePreprocessor, check_image
from .model_dir import card_intrinsics
from .motion_gate import MotionDecision, MotionGate, MotionGateConfig
from .odometry import OdometryIntegrator
from .scale import SCALE_MODES, UP_OPTICAL, ScaleEstimator, ScaleState

log = logging.getLogger(__name__)

# FrameResult.reset_code: why odometry (re)started at a frame
RESET_CODES = ("first_frame",      # the first frame the Pipeline sees
               "restart",          # the first frame after reset()
               "size_change",      # the image size differs from the previous frame's (the scale restarts too)
               "stamp_backwards",  # the stamp is older than the previous frame's
               "stamp_repeated",   # the stamp equals the previous frame's
               "stamp_gap")        # the stamp is more than max_stamp_gap_s after the previous frame's


@dataclass
class PipelineConfig:
    """Pipeline settings (validated on construction; ValueError names the bad field).

    model: exported model dir (or checkpoint for the torch backend); unused when a backend is passed.
    backend / device / fp16 / threads / cuda_graphs / engine_cache_dir / engine_policy: see create_backend.
    scale_mode: none | fixed | camera_height | external; fixed_scale for 'fixed', camera_height_m
        (camera optical centre above the ground, metres) for 'camera_height'; scale_window frames of
        median smoothing; ground_region_top: the ground plane is fitted below this fraction of the height.
    up_cam: the 'up' direction (against gravity) in the camera's optical frame, from the camera mounting
        ((0, -1, 0) for a level, forward-looking camera); ground_max_tilt_deg: a ground plane whose normal
        is further from up is refused; ground_min_inlier_ratio: one with fewer inliers is refused;
        scale_max_jump: an estimate off the smoothed scale by more than this factor is refused
        (see :class:`~depth_sfm_ros.runtime.scale.ScaleEstimator`).
    motion_gate: still-camera detection (:class:`~depth_sfm_ros.runtime.motion_gate.MotionGateConfig`).
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
    up_cam: Sequence[float] = UP_OPTICAL
    ground_max_tilt_deg: float = 20.0
    ground_min_inlier_ratio: float = 0.3
    scale_max_jump: float = 1.5
    motion_gate: MotionGateConfig = field(default_factory=MotionGateConfig)
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
        up = np.asarray(self.up_cam, dtype=np.float64).ravel() if not isinstance(self.up_cam, str) else np.zeros(0)
        if up.shape != (3,) or not np.all(np.isfinite(up)) or np.linalg.norm(up) < 1e-9:
            raise ValueError(f"PipelineConfig.up_cam must be a finite non-zero 3-vector, got {self.up_cam!r}")
        if not _finite(self.ground_max_tilt_deg) or not 0 < self.ground_max_tilt_deg <= 45:
            raise ValueError(f"PipelineConfig.ground_max_tilt_deg must be in (0, 45], got {self.ground_max_tilt_deg!r}")
        if not _finite(self.ground_min_inlier_ratio) or not 0 < self.ground_min_inlier_ratio < 1:
            raise ValueError(f"PipelineConfig.ground_min_inlier_ratio must be in (0, 1), "
                             f"got {self.ground_min_inlier_ratio!r}")
        if not _finite(self.scale_max_jump) or not self.scale_max_jump > 1:
            raise ValueError(f"PipelineConfig.scale_max_jump must be a number > 1, got {self.scale_max_jump!r}")
        if not isinstance(self.motion_gate, MotionGateConfig):
            raise ValueError(f"PipelineConfig.motion_gate must be a MotionGateConfig, got "
                             f"{type(self.motion_gate).__name__}")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) \
        and math.isfinite(float(value))


@dataclass
class FrameResult:
    """Everything the pipeline produces for one frame (see docs/architecture.md).

    depth_m: (h, w) float32 metres, NaN where unknown / outside [min_depth_m, max_depth_m].
    intrinsics: of depth_m (network size, or camera size when upsampled).
    dynamic_prob: (h, w) float32 in [0, 1] or None (first frame after a (re)start, or no mask model);
        moving against the reference frame (the previous frame, or the last moving one during a still stretch).
    dynamic_mask: (h, w) uint8 0/255 or None (same cases).
    T_prev_cur: metric relative pose since the previous frame, or None (first frame after a (re)start);
        the identity for a still frame. After a still stretch it is the motion since the last moving
        frame, which equals the motion since the previous frame (still frames moved nothing).
    T_odom_cam: integrated camera pose in odom (unchanged by a still frame).
    scale: the factor applied to network depth and translation; scale_valid False until estimated.
    reset / reset_reason / reset_code: odometry was (re)started at this frame, why (a log line's words) and
        the reason's code (one of :data:`RESET_CODES`, "" without a reset; the node counts ``size_change`` and
        ``stamp_backwards`` as bad input).
    still: the motion gate found the camera still (zero motion published).
    motion_state: "first" (no pair: first frame after a (re)start), "still", "moving", or "unchecked"
        (motion gate disabled).
    motion: the gate's numbers (:class:`~depth_sfm_ros.runtime.motion_gate.MotionDecision`) or None.
    scale_state: status / assumption / refusal counts of the scale
        (:class:`~depth_sfm_ros.runtime.scale.ScaleState`).
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
    reset_code: str = ""
    still: bool = False
    motion_state: str = "first"
    motion: MotionDecision | None = None
    scale_state: ScaleState | None = None


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
        self._cur = 0  # index of the buffer holding the reference frame (the next frame goes into the other)
        self.scale = ScaleEstimator(config.scale_mode, fixed_scale=config.fixed_scale,
                                    camera_height_m=config.camera_height_m, window=config.scale_window,
                                    region_top=config.ground_region_top, up=config.up_cam,
                                    max_tilt_deg=config.ground_max_tilt_deg,
                                    min_inlier_ratio=config.ground_min_inlier_ratio, max_jump=config.scale_max_jump)
        self.motion_gate = MotionGate(config.motion_gate)
        self.odometry = OdometryIntegrator()
        self._warned_intrinsics = False
        # optional observer of every processed frame: (network input (1,3,h,w) float32, reused next frame; its
        # intrinsics at network size; the FrameResult). Online adaptation's frame buffer (runtime/online_adapter.py)
        self.frame_sink: Any = None
        self._has_prev = False
        self._prev_stamp_s: float | None = None
        self._ref_stamp_s: float | None = None  # stamp of the reference frame (in the buffer at self._cur)
        self._ref_grey: np.ndarray | None = None  # its small grey copy for the motion gate
        self._prev_size: tuple[int, int] | None = None
        self.frame_index = 0

    # ------------------------------------------------------------------------------------------
    def reset(self, reason: str = "requested") -> None:
        """Forget the previous frame and restart odometry at the identity (scale history is kept)."""
        log.info("pipeline reset: %s", reason)
        self._reset_state()

    def _reset_state(self) -> None:
        self._has_prev = False
        self._ref_grey = None
        self._ref_stamp_s = None
        self.odometry.reset()

    def _intrinsics(self, intrinsics: Intrinsics | np.ndarray | None, width: int, height: int,
                    rescale: bool) -> Intrinsics:
        """The camera intrinsics of a ``width`` x ``height`` image (checked; see :meth:`process`)."""
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
        if (intrinsics.width, intrinsics.height) != (width, height) and rescale:
            return intrinsics.scaled(width, height)  # a binned / resized stream with the full-size CameraInfo
        if (intrinsics.width, intrinsics.height) != (width, height):
            raise ValueError(f"intrinsics are for {intrinsics.width}x{intrinsics.height} but the image is "
                             f"{width}x{height}; scale them with Intrinsics.scaled()")
        return intrinsics

    def _check_continuity(self, stamp_s: float, size: tuple[int, int]) -> tuple[str, str]:
        """(code, reason) to reset before this frame (("", "") when none); codes in :data:`RESET_CODES`."""
        if self._prev_size is not None and size != self._prev_size:
            return "size_change", (f"resolution changed from {self._prev_size[0]}x{self._prev_size[1]} "
                                   f"to {size[0]}x{size[1]}")
        if self._prev_stamp_s is not None:
            dt = stamp_s - self._prev_stamp_s
            if dt <= 0:
                return ("stamp_backwards" if dt < 0 else "stamp_repeated",
                        f"stamp went backwards or repeated by {-dt:.3f} s ({self._prev_stamp_s:.3f} -> {stamp_s:.3f})")
            if dt > self.config.max_stamp_gap_s:
                return "stamp_gap", (f"stamp jumped forward by {dt:.3f} s (> max_stamp_gap_s "
                                     f"{self.config.max_stamp_gap_s} s)")
        return "", ""

    # ------------------------------------------------------------------------------------------
    def process(self, image: np.ndarray, encoding: str, stamp_s: float,
                intrinsics: Intrinsics | np.ndarray | None = None,
                external_speed_mps: float | None = None, rescale_intrinsics: bool = False) -> FrameResult:
        """Process one camera frame (see :class:`FrameResult`).

        The one place where a camera image, its stamp and its intrinsics are checked: ValueError (nothing
        changes) for an image that does not match ``encoding``, non-finite numbers, unusable intrinsics.

        Args:
            image: (H, W[, C]) raw image matching ``encoding`` (rgb8, bgr8, mono8, rgba8, bgra8, mono16/16UC1).
            stamp_s: capture time in seconds (monotonic within a stream).
            intrinsics: of ``image`` (Intrinsics or 3x3 K); None -> the model card's, with a warning once.
            external_speed_mps: speed from another odometry source ('external' scale mode).
            rescale_intrinsics: Intrinsics of another image size are scaled to the image (a CameraInfo of the
                full-resolution stream with binned / resized images: the node and eval-bag); otherwise they
                are refused (ValueError).
        """
        t0 = time.perf_counter()
        if not _finite(stamp_s):
            raise ValueError(f"stamp_s must be a finite number, got {stamp_s!r}")
        if external_speed_mps is not None and (not _finite(external_speed_mps) or external_speed_mps < 0):
            raise ValueError(f"external_speed_mps must be finite and >= 0, got {external_speed_mps!r}")
        image3, spec = check_image(image, encoding)
        height, width = image3.shape[:2]
        cam_K = self._intrinsics(intrinsics, width, height, rescale_intrinsics)
        code, reason = self._check_continuity(float(stamp_s), (width, height))
        if reason:
            log.warning("resetting odometry: %s", reason)  # the one log line of a reset
            self._reset_state()
            if code == "size_change":
                self.scale.reset()
        first = not self._has_prev
        if first and not reason:
            code, reason = ("first_frame", "first frame") if self.frame_index == 0 else ("restart", "restart")
        # since the reference frame (the previous one unless still frames came between)
        dt_s = None if first or self._ref_stamp_s is None else float(stamp_s) - self._ref_stamp_s

        ref_buffer = self._buffers[self._cur]
        cur_buffer = self._buffers[1 - self._cur]
        self._pre.convert(image3, spec, out=cur_buffer)
        gate = self.config.motion_gate
        cur_grey = self.motion_gate.grey_checked(image3, spec, self.config.mono16_range) if gate.enabled else None
        t1 = time.perf_counter()
        output = self.backend.infer(cur_buffer, None if first else ref_buffer)
        t2 = time.perf_counter()

        h_net, w_net = self.backend.input_hw
        net_K = cam_K.scaled(w_net, h_net)
        depth_net = np.asarray(output.depth, dtype=np.float32)
        T_rel = Pose.from_vec(output.pose_vec) if output.pose_vec is not None else None
        motion: MotionDecision | None = None
        motion_state = "first" if first else "unchecked"
        if not first and cur_grey is not None and self._ref_grey is not None:
            image_motion = self.motion_gate.image_motion(self._ref_grey, cur_grey)
            # the pose net's motion at the scale so far (this frame's estimate may use the decision)
            motion = self.motion_gate.decide(
                image_motion, None if T_rel is None else T_rel.with_translation_scaled(self.scale.scale))
            motion_state = "still" if motion.still else "moving"
        still = motion_state == "still"
        scale = self.scale.update(depth=depth_net, intrinsics=net_K,
                                  translation=None if T_rel is None or still else T_rel.t, dt_s=dt_s,
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

        if T_rel is None:
            T_prev_cur = None
        elif still:
            T_prev_cur = Pose.identity()  # no motion published; the odometry pose stays
        else:
            T_prev_cur = T_rel.with_translation_scaled(scale)
        if T_prev_cur is None or still:
            T_odom_cam = self.odometry.T_odom_cam
        else:
            T_odom_cam = self.odometry.update(T_prev_cur)
        t3 = time.perf_counter()

        # the current frame becomes the reference unless it is still (then the reference stays, up to an age)
        if not still or float(stamp_s) - self._ref_stamp_s > gate.max_reference_age_s:
            self._cur = 1 - self._cur
            self._ref_grey = cur_grey
            self._ref_stamp_s = float(stamp_s)
        self._has_prev = True
        self._prev_stamp_s = float(stamp_s)
        self._prev_size = (width, height)
        result = FrameResult(
            depth_m=depth_m, intrinsics=out_K, dynamic_prob=dynamic_prob, dynamic_mask=dynamic_mask,
            T_prev_cur=T_prev_cur, T_odom_cam=T_odom_cam, scale=float(scale), scale_valid=self.scale.valid,
            reset=first, reset_reason=reason if first else "", reset_code=code if first else "",
            frame_index=self.frame_index, stamp_s=float(stamp_s),
            timings_ms={"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3,
                        "total": (t3 - t0) * 1e3},
            still=still, motion_state=motion_state, motion=motion, scale_state=self.scale.state())
        if self.frame_sink is not None:
            self.frame_sink(cur_buffer, net_K, result)
        self.frame_index += 1
        return result

    def close(self) -> None:
        self.backend.close()
