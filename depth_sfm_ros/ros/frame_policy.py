"""What the node does with each frame, without ROS: :class:`FramePolicy` (no rclpy, no message packages).

An image message's way through the node, every step once and in this order::

    node._on_image ──> FramePolicy.offer        (executor thread: header checks, msgs.image_layout)
                       └─> LatestSlot           (sync.py: one-frame mailbox; an overwritten frame is dropped)
    node worker    ──> FramePolicy.process      (worker thread)
                       ├─> msgs decode          (raw: the checked layout; compressed: OpenCV)
                       ├─> CameraInfoCache /    (sync.py: camera model by stamp, the CameraInfo wait and fallback;
                       │   SpeedCache            the external speed for scale_mode external)
                       ├─> camera input         (geometry.camera_model: rectified -> P, raw -> K or undistorted
                       │                         with cached remap tables; the published depth is in that geometry)
                       ├─> Pipeline.process     (runtime: image checks, continuity, intrinsics scaling, networks)
                       └─> odometry             (outputs.odometry_pose, geometry.twist_in_current_frame, covariances)
    node._publish  ──> msgs.rclpy_msgs builders, then FramePolicy.finish (timings, diagnostics counters)

The node (:mod:`depth_sfm_ros.ros.node`) only moves messages in and out. Bad input is counted in
:class:`~depth_sfm_ros.ros.diagnostics.NodeStats` and logged through the node's logger (anything with
``info`` / ``warning``: an rclpy logger or a :class:`logging.Logger`), at most once per
``log_throttle_s`` per kind. Stamps are integer nanoseconds; times of the node's stages are
``time.monotonic`` seconds, reported in milliseconds.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from depth_sfm_ros.geometry import Intrinsics, Pose, twist_in_current_frame
from depth_sfm_ros.geometry.camera_model import (CameraInputResolver, CameraModel, InputGeometry,
                                                 UnsupportedCameraModel, topic_is_rectified)
from depth_sfm_ros.msgs import (INPUT_ENCODINGS, ImageDecodeError, camera_info_to_model, compressed_msg_to_numpy,
                                decode_image, image_layout, odometry_speed_mps, stamp_to_nanoseconds)

from . import outputs
from .diagnostics import LogThrottle, NodeStats
from .params import NodeParams
from .sync import CameraInfoCache, InputFrame, LatestSlot, SpeedCache

# FrameResult.reset_code values the node counts as bad input (the Pipeline logs the reset itself)
COUNTED_RESETS = ("size_change", "stamp_backwards")


@dataclass
class OdometryOutput:
    """The published odometry of one frame (REP 105: pose of ``child_frame_id`` in the odom frame).

    T_odom_child: pose; linear_mps / angular_radps: (3,) twist of the child frame, expressed in the child
    frame at this frame (zeros without a previous pose); pose_covariance / twist_covariance: 36 numbers,
    row-major 6x6 (twist: pose variance / dt^2, or -1 in the first element when unknown).
    """

    T_odom_child: Pose
    child_frame_id: str
    linear_mps: np.ndarray
    angular_radps: np.ndarray
    pose_covariance: tuple[float, ...]
    twist_covariance: tuple[float, ...]


@dataclass
class FrameOutput:
    """One processed frame: what the node publishes (``result``, ``odometry``; headers with the input
    stamp ``frame.msg.header.stamp`` and ``frame_id``) and the stage times so far (monotonic seconds).
    ``image`` is what the Pipeline was given (undistorted for a raw distorted camera), in the geometry of
    ``result.depth_m`` / ``result.intrinsics``, so point colours match the depth pixels."""

    frame: InputFrame
    frame_id: str
    image: np.ndarray
    encoding: str
    result: Any  # runtime.pipeline.FrameResult
    odometry: OdometryOutput
    times_s: dict[str, float] = field(default_factory=dict)


def odometry_twist(T_odom_prev: Pose, T_odom_cur: Pose, dt_s: float,
                   pose_covariance: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """(linear m/s (3,), angular rad/s (3,), twist covariance (36,)) of a frame that moved from ``T_odom_prev``
    to ``T_odom_cur`` in ``dt_s`` seconds. The twist is in the *current* frame
    (:func:`~depth_sfm_ros.geometry.twist_in_current_frame`, as the bag writers record it); its covariance
    is the pose variance / dt^2. Without a usable previous pose (``dt_s <= 0``): zeros and covariance -1
    in the first element (unknown, the sensor_msgs convention)."""
    if not dt_s > 0:
        return np.zeros(3), np.zeros(3), (-1.0,) + (0.0,) * 35
    linear, angular = twist_in_current_frame(T_odom_prev.inverse() @ T_odom_cur, dt_s)
    return linear, angular, tuple(v / dt_s ** 2 for v in pose_covariance)


class FramePolicy:
    """The node's per-frame policy (see the module docstring). Thread use: :meth:`offer`,
    :meth:`add_camera_info` and :meth:`add_external_odometry` on the executor thread; :meth:`take`,
    :meth:`process`, :meth:`finish` and :meth:`frame_failed` on the one worker thread.

    Args:
        params: the node's validated parameters.
        pipeline: the :class:`~depth_sfm_ros.runtime.pipeline.Pipeline` (anything with its ``process``).
        logger: the node's logger.
        camera_info_topic / external_odometry_topic: resolved names for log lines.
        image_topic: the resolved image topic: with ``camera_input: auto`` its name says whether the images
            are rectified (``image_rect*``) or raw (:func:`~depth_sfm_ros.geometry.camera_model.topic_is_rectified`).
        stats: the counters (a new :class:`NodeStats` when None).
        clock: monotonic seconds (stage times, latency).
    """

    def __init__(self, params: NodeParams, pipeline: Any, logger: Any, camera_info_topic: str = "camera_info",
                 external_odometry_topic: str = "external_odometry", stats: NodeStats | None = None,
                 clock: Callable[[], float] = time.monotonic, image_topic: str = "image") -> None:
        self.params = params
        self.pipeline = pipeline
        self.stats = stats if stats is not None else NodeStats()
        self._logger = logger
        self._throttle = LogThrottle(params.log_throttle_s)
        self._once: set[str] = set()
        self._clock = clock
        self._camera_info_topic = camera_info_topic
        self._external_odometry_topic = external_odometry_topic
        self._slot: LatestSlot[InputFrame] = LatestSlot()
        self._infos = CameraInfoCache()
        self._camera_input = CameraInputResolver(topic_is_rectified(image_topic, params.camera_input),
                                                 params.undistort_alpha)
        self._speeds = SpeedCache() if params.scale_mode == "external" else None
        self._last_odom: tuple[Pose, int] | None = None  # (T_odom_child, stamp_ns) of the previous frame

    # --- logging ------------------------------------------------------------------------------
    def bad_input(self, kind: str, message: str) -> None:
        """Count a bad input and log it, at most once per ``log_throttle_s`` per kind."""
        count = self.stats.count_bad(kind)
        if self._throttle.allow(kind):
            self._logger.warning(f"{message} [{kind}, {count} so far]")

    def _log_once(self, key: str, message: str) -> None:
        if key not in self._once:
            self._once.add(key)
            self._logger.info(message)

    # --- executor thread: cheap checks only ---------------------------------------------------
    def offer(self, msg: Any, compressed: bool) -> bool:
        """An image message from the subscription: check its header fields (not its pixels) and put it into
        the one-frame mailbox. False when it was refused (counted and logged)."""
        received = self._clock()
        self.stats.frame_received()
        layout = None
        try:
            if not compressed:
                layout = image_layout(msg, allowed=INPUT_ENCODINGS)
            elif len(msg.data) == 0:
                raise ImageDecodeError("empty", "empty compressed image")
        except ImageDecodeError as exc:
            self.bad_input(exc.kind, f"dropping image: {exc}")
            return False
        if self._slot.put(InputFrame(msg, compressed, stamp_to_nanoseconds(msg.header.stamp), received, layout)):
            self.stats.frame_dropped()
        return True

    def add_camera_info(self, msg: Any) -> None:
        """A CameraInfo message: its calibration (a :class:`CameraModel`: K, D, R, P, distortion model) joins
        the cache; a bad one is counted and ignored. What it means for the images is decided per frame."""
        try:
            camera = camera_info_to_model(msg)
        except (ValueError, TypeError) as exc:
            self.bad_input("bad_camera_info", f"ignoring CameraInfo: {exc}")
            return
        self._infos.add(stamp_to_nanoseconds(msg.header.stamp), camera)

    def add_external_odometry(self, msg: Any) -> None:
        """scale_mode external: the speed of an Odometry's child frame (the camera's differs by angular
        velocity x lever arm, ignored) joins the cache; a NaN / infinite one is counted and ignored."""
        if self._speeds is None:
            return
        try:
            self._speeds.add(stamp_to_nanoseconds(msg.header.stamp), odometry_speed_mps(msg))
        except ValueError as exc:
            self.bad_input("bad_external_odometry", f"ignoring external odometry: {exc}")

    # --- worker thread ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._slot.closed

    def take(self, timeout_s: float | None = None) -> InputFrame | None:
        """The newest frame (None after ``timeout_s`` or once closed)."""
        return self._slot.take(timeout_s)

    def close(self) -> None:
        """Wake the worker for shutdown; later frames are ignored."""
        self._slot.close()

    def process(self, frame: InputFrame) -> FrameOutput | None:
        """Decode, pair with CameraInfo (and speed), run the Pipeline and compute the odometry of one frame;
        None for a frame that is dropped (counted). Exceptions of the Pipeline propagate (see :meth:`frame_failed`)."""
        p = self.params
        times = {"start": self._clock()}
        decoded = self._decode(frame)
        if decoded is None:
            return None
        image, encoding = decoded
        frame_id = p.camera_frame or frame.msg.header.frame_id
        if not frame_id:
            self.bad_input("missing_frame_id", "image has an empty header.frame_id and the camera_frame parameter "
                                               "is empty: set camera_frame")
            return None
        height, width = image.shape[:2]
        times["decoded"] = self._clock()
        camera = self._camera_at(frame.stamp_ns, width, height)
        speed_mps = self._external_speed(frame.stamp_ns)
        times["synced"] = self._clock()  # node_camera_info_wait: the CameraInfo and external-odometry look-ups
        intrinsics = camera
        if isinstance(camera, CameraModel):
            geometry = self._input_geometry(camera, width, height, frame_id)
            if geometry is None:
                return None
            image, intrinsics = geometry.prepare(image), geometry.intrinsics
        times["undistorted"] = self._clock()  # node_undistort: the remap of a raw distorted camera's image
        # stamp_ns / 1e9 exactly as the bag tools' Frame.stamp_s, so both give the Pipeline the same numbers
        result = self.pipeline.process(image, encoding, frame.stamp_ns / 1_000_000_000, intrinsics,
                                       external_speed_mps=speed_mps, rescale_intrinsics=True)
        times["processed"] = self._clock()
        if result.reset_code in COUNTED_RESETS:
            self.stats.count_bad(result.reset_code)  # the Pipeline logged the one line about the reset
        odometry = self._odometry(result, frame.stamp_ns, frame_id)
        return FrameOutput(frame, frame_id, image, encoding, result, odometry, times)

    def finish(self, output: FrameOutput, published: tuple[str, ...]) -> None:
        """After publishing ``output`` to the topics ``published``: the latency and the node's stage times
        (``timing_ms.node_*`` next to the Pipeline's own) go into the diagnostics."""
        t, result = output.times_s, output.result
        t_published = self._clock()
        received = output.frame.received_monotonic_s
        timings_ms = dict(result.timings_ms, node_queued=(t["start"] - received) * 1e3,
                          node_decode=(t["decoded"] - t["start"]) * 1e3,
                          node_camera_info_wait=(t["synced"] - t["decoded"]) * 1e3,
                          node_undistort=(t["undistorted"] - t["synced"]) * 1e3,
                          node_pipeline=(t["processed"] - t["undistorted"]) * 1e3,
                          node_publish=(t_published - t["processed"]) * 1e3)
        motion_px = result.motion.image.motion_px if result.motion is not None else float("nan")
        self.stats.frame_processed((t_published - received) * 1e3, timings_ms, result.scale, result.scale_valid,
                                   result.reset, published, motion_state=result.motion_state, motion_px=motion_px,
                                   scale_state=result.scale_state)

    def frame_failed(self, exc: Exception) -> None:
        """A frame whose processing raised: counted as ``pipeline_error`` and logged (the traceback once)."""
        detail = traceback.format_exc() if "pipeline_error" not in self._once else str(exc)
        self._once.add("pipeline_error")
        self.bad_input("pipeline_error", f"frame failed: {detail}")

    # --- the steps ----------------------------------------------------------------------------
    def _decode(self, frame: InputFrame) -> tuple[np.ndarray, str] | None:
        try:
            if frame.compressed:
                return compressed_msg_to_numpy(frame.msg)
            return decode_image(frame.msg, frame.layout), frame.layout.encoding
        except ImageDecodeError as exc:
            self.bad_input(exc.kind, f"dropping image: {exc}")
            return None

    def _camera_at(self, stamp_ns: int, width: int, height: int) -> CameraModel | Intrinsics | None:
        """The CameraInfo's camera model for this stamp (waiting up to ``camera_info_wait_s`` for one that
        arrives after its image; it may be of another size than the image), else the fx/fy/cx/cy parameters
        (intrinsics of the image as it is, no undistortion), else None (the Pipeline uses the model card's)."""
        p = self.params
        # wait for a CameraInfo that may arrive just after its image, unless none is coming
        wait_s = p.camera_info_wait_s if self._infos.received or "no_camera_info" not in self._once else 0.0
        match = self._infos.lookup(stamp_ns, p.camera_info_sync_tolerance_s, wait_s)
        if match.status == "none":
            self.stats.count_bad("missing_camera_info")
            fallback = p.fallback_intrinsics(width, height)
            source = "the fx/fy/cx/cy parameters" if fallback else "the model card's intrinsics"
            self._log_once("no_camera_info", f"no CameraInfo on '{self._camera_info_topic}' yet: using {source}")
            return fallback
        if match.status == "constant":
            self.stats.camera_info_late()  # not an error: its own CameraInfo had not arrived, the camera's is fixed
        if match.status == "unsynced":
            self.bad_input("camera_info_unsynced", f"no CameraInfo within {p.camera_info_sync_tolerance_s} s of "
                                                   f"the image stamp (nearest {match.offset_s:.3f} s): using the newest")
        return match.camera

    def _input_geometry(self, camera: CameraModel, width: int, height: int, frame_id: str) -> InputGeometry | None:
        """The camera policy for a ``width`` x ``height`` image of ``camera`` (scaled to the image first: a
        binned / resized stream with the full-size CameraInfo): rectified -> P, raw -> K or undistorted
        (:func:`~depth_sfm_ros.geometry.camera_model.resolve_input`; the decision is logged when it changes).
        None when the camera cannot be used: a raw image of a distortion model that cannot be undistorted
        (``unsupported_camera_model``: no depth rather than depth in the wrong geometry) or an unusable
        calibration (``bad_camera_info``); both counted and logged, throttled."""
        try:
            model = camera if camera.size == (width, height) else camera.scaled(width, height)
            geometry, changed = self._camera_input.resolve(model)
        except UnsupportedCameraModel as exc:
            self.bad_input("unsupported_camera_model", f"not publishing depth for camera '{frame_id}' "
                                                       f"({self._camera_info_topic}): {exc}")
            return None
        except ValueError as exc:
            self.bad_input("bad_camera_info", f"dropping image: its CameraInfo cannot be used: {exc}")
            return None
        if changed:
            self._logger.info(f"camera '{frame_id}' ({self._camera_info_topic}): {geometry.message}")
        return geometry

    def _external_speed(self, stamp_ns: int) -> float | None:
        """scale_mode external: the external odometry's speed at the image stamp (None: not external, or
        none within the tolerance; then the Pipeline keeps the previous scale)."""
        if self._speeds is None:
            return None
        p = self.params
        speed = self._speeds.speed_at(stamp_ns, p.external_odometry_tolerance_s, p.external_odometry_wait_s)
        if speed is None:
            self.bad_input("no_external_speed", f"no odometry on '{self._external_odometry_topic}' within "
                                                f"{p.external_odometry_tolerance_s} s of the image: keeping the scale")
        return speed

    def _odometry(self, result: Any, stamp_ns: int, frame_id: str) -> OdometryOutput:
        """The published pose (base or camera in odom) and its twist since the previous frame."""
        p = self.params
        if result.reset:
            self._last_odom = None
        T_odom_child = outputs.odometry_pose(result.T_odom_cam, p.T_base_cam, child_is_base=bool(p.base_frame))
        dt_s = 0.0 if self._last_odom is None else (stamp_ns - self._last_odom[1]) * 1e-9
        T_odom_prev = self._last_odom[0] if self._last_odom is not None else T_odom_child
        linear, angular, twist_covariance = odometry_twist(T_odom_prev, T_odom_child, dt_s, p.pose_covariance)
        self._last_odom = (T_odom_child, stamp_ns)
        return OdometryOutput(T_odom_child, p.base_frame or frame_id, linear, angular, tuple(p.pose_covariance),
                              twist_covariance)
