"""``depth_sfm_node``: the ROS 2 node around the ROS-free :class:`~depth_sfm_ros.runtime.pipeline.Pipeline`.

Threads: the executor runs the subscription callbacks, which only check a message's header
fields and put it into a one-frame mailbox (a frame overwritten there is counted as dropped);
one worker thread takes the newest frame, runs the Pipeline and publishes. Nothing queues
without bound and inference never blocks the executor.

Topics (see :mod:`depth_sfm_ros.ros.topics`): subscribes ``image`` (or ``<remapped image>/compressed``),
``camera_info`` and, with ``scale_mode: external``, ``external_odometry``; publishes ``~/depth`` (32FC1
metres, NaN unknown, REP 118), ``~/depth/camera_info``, ``~/depth/colored`` (bgr8, unknown black),
``~/dynamic_mask`` (mono8, 255 moving; none for the first frame after a (re)start, which has no previous
frame), ``~/odometry``, optional ``~/points`` and TF, and ``/diagnostics``. Every output header carries the
input stamp; an image output nobody subscribes to is not built or sent.
"""
from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header

from depth_sfm_ros.ros import conversions, outputs, params as node_params, topics
from depth_sfm_ros.ros.diagnostics import LogThrottle, NodeStats
from depth_sfm_ros.ros.pipeline_factory import create_pipeline, supported_encodings
from depth_sfm_ros.runtime.visualize import colorize_depth
from depth_sfm_ros.ros.sync import (CameraInfoCache, InputFrame, LatestSlot, SpeedCache, StreamMonitor,
                                    intrinsics_for_image)

_PARAM_TYPES = {"bool": ParameterType.PARAMETER_BOOL, "int": ParameterType.PARAMETER_INTEGER,
                "float": ParameterType.PARAMETER_DOUBLE, "str": ParameterType.PARAMETER_STRING,
                "float_array": ParameterType.PARAMETER_DOUBLE_ARRAY}


def qos_profile(name: str, depth: int) -> QoSProfile:
    """``sensor_data`` / ``best_effort`` (best effort) or ``reliable``, keep-last ``depth``."""
    if name == "sensor_data":
        return QoSProfile(depth=depth, reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability, history=HistoryPolicy.KEEP_LAST)
    reliability = ReliabilityPolicy.RELIABLE if name == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=depth, reliability=reliability, history=HistoryPolicy.KEEP_LAST)


def _descriptor(spec: node_params.ParamSpec) -> ParameterDescriptor:
    # read_only: the node applies parameters at start-up only, so `ros2 param set` is refused
    # instead of silently doing nothing
    desc = ParameterDescriptor(name=spec.name, type=_PARAM_TYPES[spec.type_name], description=spec.description,
                               read_only=True)
    if spec.choices:
        desc.additional_constraints = f"one of: {', '.join(spec.choices)}"
    if spec.type_name == "float" and spec.min_value is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.min_value),
                                                        to_value=float(spec.max_value), step=0.0)]
    elif spec.type_name == "int" and spec.min_value is not None:
        desc.integer_range = [IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value), step=1)]
    elif spec.type_name == "float_array" and spec.min_value is not None:
        desc.additional_constraints = f"{spec.length} numbers in [{spec.min_value}, {spec.max_value}]"
    return desc


class RosLogHandler(logging.Handler):
    """Forwards Python ``logging`` records (the Pipeline's, the backends') to an rclpy logger, so
    they reach the console and /rosout like the node's own lines."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__(level=logging.INFO)
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.name}: {self.format(record)}"
            if record.levelno >= logging.ERROR:
                self._ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self._ros_logger.warning(text)
            else:
                self._ros_logger.info(text)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _has_subscribers(publisher: Any) -> bool:
    """Whether any subscription (in this or another process) matches ``publisher``."""
    return publisher.get_subscription_count() > 0


class DepthSfmNode(Node):
    """See the module docstring. Raises :class:`~depth_sfm_ros.ros.params.ParameterError` from the
    constructor when a parameter is bad (``main`` turns that into exit status 2)."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(topics.NODE_NAME, **node_kwargs)
        package_logger = logging.getLogger("depth_sfm_ros")
        package_logger.setLevel(logging.INFO)
        package_logger.addHandler(RosLogHandler(self.get_logger()))
        package_logger.propagate = False
        self.params = self._declare_and_validate()
        p = self.params
        self.stats = NodeStats()
        self._throttle = LogThrottle(p.log_throttle_s)
        self._once: set[str] = set()
        self._pipeline = create_pipeline(p)
        self.backend_description = self._pipeline.backend.describe()
        self.get_logger().info(f"model {p.model_dir}, backend {self.backend_description}, scale_mode {p.scale_mode} "
                               f"({self._pipeline.scale.assumption}), still-camera detection "
                               f"{'on' if p.still_detection else 'off'}")

        self._slot: LatestSlot[InputFrame] = LatestSlot()
        self._infos = CameraInfoCache()
        self._monitor = StreamMonitor()
        self._last_odom: tuple[Any, float] | None = None  # (Pose T_odom_child, stamp_s)
        self._encodings = supported_encodings()

        out_qos = qos_profile(p.output_qos, p.qos_depth)
        self._pub_depth = self.create_publisher(Image, "~/depth", out_qos)
        self._pub_depth_info = self.create_publisher(CameraInfo, "~/depth/camera_info", out_qos)
        self._pub_colored = self.create_publisher(Image, "~/depth/colored", out_qos)
        self._pub_mask = self.create_publisher(Image, "~/dynamic_mask", out_qos)
        self._pub_odom = self.create_publisher(Odometry, "~/odometry", out_qos)
        self._pub_points = self.create_publisher(PointCloud2, "~/points", out_qos) if p.publish_points else None
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._tf_broadcaster = self._make_tf_broadcaster() if p.publish_tf else None

        in_qos = qos_profile(p.input_qos, p.qos_depth)
        if p.image_transport == "compressed":
            # <remapped image topic>/compressed, as image_transport names it (a remap of 'image'
            # does not apply to 'image/compressed', so resolve first)
            compressed_topic = self.resolve_topic_name(topics.IMAGE_TOPIC) + topics.COMPRESSED_SUFFIX
            self.create_subscription(CompressedImage, compressed_topic,
                                     lambda msg: self._on_image(msg, compressed=True), in_qos)
        else:
            self.create_subscription(Image, topics.IMAGE_TOPIC, lambda msg: self._on_image(msg, compressed=False),
                                     in_qos)
        self.create_subscription(CameraInfo, topics.CAMERA_INFO_TOPIC, self._on_camera_info, in_qos)
        self._speeds: SpeedCache | None = None
        if p.scale_mode == "external":  # best effort matches both reliable and best-effort publishers
            self._speeds = SpeedCache()
            self.create_subscription(Odometry, topics.EXTERNAL_ODOMETRY_TOPIC, self._on_external_odometry, in_qos)
            self.get_logger().info(f"metric scale from the speed on "
                                   f"'{self.resolve_topic_name(topics.EXTERNAL_ODOMETRY_TOPIC)}'")
        self.create_timer(p.diagnostics_period_s, self._publish_diagnostics)

        self._worker = threading.Thread(target=self._worker_loop, name="depth_sfm_worker", daemon=True)
        self._worker.start()

    # --- parameters ---------------------------------------------------------------------------
    def _declare_and_validate(self) -> node_params.NodeParams:
        values = {}
        for spec in node_params.PARAMETERS:
            try:
                values[spec.name] = self.declare_parameter(spec.name, spec.default, _descriptor(spec)).value
            except ParameterException as exc:
                raise node_params.ParameterError(spec.name, str(exc)) from None
        overrides = getattr(self, "_parameter_overrides", {})
        unknown = sorted(set(overrides) - set(values) - {"use_sim_time"})
        if unknown:
            self.get_logger().warning(f"ignoring unknown parameters {unknown}; known: {sorted(values)}")
        return node_params.validate(values)

    def _make_tf_broadcaster(self) -> Any:
        try:
            from tf2_ros import TransformBroadcaster
        except ImportError:
            self.get_logger().info("tf2_ros is not installed: the odom -> base transform is not broadcast "
                                   "(~/odometry carries the same pose)")
            return None
        return TransformBroadcaster(self)

    # --- logging ------------------------------------------------------------------------------
    def _bad_input(self, kind: str, message: str) -> None:
        """Count a bad input and log it, at most once per ``log_throttle_s`` per kind."""
        count = self.stats.count_bad(kind)
        if self._throttle.allow(kind):
            self.get_logger().warning(f"{message} [{kind}, {count} so far]")

    def _log_once(self, key: str, message: str) -> None:
        if key not in self._once:
            self._once.add(key)
            self.get_logger().info(message)

    # --- callbacks (executor thread: cheap checks only) ---------------------------------------
    def _on_image(self, msg: Any, compressed: bool) -> None:
        received = time.monotonic()
        self.stats.frame_received()
        try:
            if compressed:
                if len(msg.data) == 0:
                    raise conversions.ImageDecodeError("empty", "empty compressed image")
            else:
                if msg.encoding not in self._encodings:
                    raise conversions.ImageDecodeError(
                        "unsupported_encoding", f"unsupported image encoding {msg.encoding!r}; "
                        f"supported: {', '.join(self._encodings)}")
                conversions.check_image_layout(msg.height, msg.width, msg.encoding, msg.step, len(msg.data))
        except conversions.ImageDecodeError as exc:
            self._bad_input(exc.kind, f"dropping image: {exc}")
            return
        frame = InputFrame(msg, compressed, conversions.stamp_to_nanoseconds(msg.header.stamp), received)
        if self._slot.put(frame):
            self.stats.frame_dropped()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intrinsics = conversions.camera_info_to_intrinsics(msg)
        except ValueError as exc:
            self._bad_input("bad_camera_info", f"ignoring CameraInfo: {exc}")
            return
        self._infos.add(conversions.stamp_to_nanoseconds(msg.header.stamp), intrinsics)

    def _on_external_odometry(self, msg: Odometry) -> None:
        # speed of the odometry's child frame; the camera's differs by angular velocity x lever arm (ignored)
        try:
            self._speeds.add(conversions.stamp_to_nanoseconds(msg.header.stamp), conversions.odometry_speed_mps(msg))
        except ValueError as exc:
            self._bad_input("bad_external_odometry", f"ignoring external odometry: {exc}")

    # --- worker thread ------------------------------------------------------------------------
    def _worker_loop(self) -> None:
        while not self._slot.closed:
            frame = self._slot.take(timeout_s=0.5)
            if frame is None:
                continue
            try:
                self._process(frame)
            except Exception as exc:  # noqa: BLE001 - bad frames must never kill the node
                detail = traceback.format_exc() if "pipeline_error" not in self._once else str(exc)
                self._once.add("pipeline_error")
                self._bad_input("pipeline_error", f"frame failed: {detail}")

    def stop(self) -> None:
        """Stop the worker thread (call before destroying the node)."""
        self._slot.close()
        self._worker.join(timeout=10.0)

    def close(self) -> None:
        """Release the backend (after :meth:`stop`)."""
        self._pipeline.close()

    def _decode(self, frame: InputFrame) -> tuple[np.ndarray, str] | None:
        try:
            if frame.compressed:
                return conversions.compressed_msg_to_numpy(frame.msg)
            return conversions.image_msg_to_numpy(frame.msg), frame.msg.encoding
        except conversions.ImageDecodeError as exc:
            self._bad_input(exc.kind, f"dropping image: {exc}")
            return None

    def _intrinsics(self, stamp_ns: int, width: int, height: int) -> Any:
        p = self.params
        # wait for a CameraInfo that may arrive just after its image, unless none is coming
        wait_s = p.camera_info_wait_s if self._infos.received or "no_camera_info" not in self._once else 0.0
        match = self._infos.lookup(stamp_ns, p.camera_info_sync_tolerance_s, wait_s)
        if match.status == "none":
            self.stats.count_bad("missing_camera_info")
            fallback = p.fallback_intrinsics(width, height)
            source = "the fx/fy/cx/cy parameters" if fallback else "the model card's intrinsics"
            self._log_once("no_camera_info", f"no CameraInfo on '{self.resolve_topic_name(topics.CAMERA_INFO_TOPIC)}'"
                                             f" yet: using {source}")
            return fallback
        if match.status == "constant":
            self.stats.camera_info_late()  # not an error: its own CameraInfo had not arrived, the camera's is fixed
        if match.status == "unsynced":
            self._bad_input("camera_info_unsynced", f"no CameraInfo within {p.camera_info_sync_tolerance_s} s of "
                                                    f"the image stamp (nearest {match.offset_s:.3f} s): using the newest")
        return intrinsics_for_image(match.intrinsics, width, height)

    def _external_speed(self, stamp_ns: int) -> float | None:
        """scale_mode external: the external odometry's speed at the image stamp (None: not external, or
        none within the tolerance; then the Pipeline keeps the previous scale)."""
        if self._speeds is None:
            return None
        p = self.params
        speed = self._speeds.speed_at(stamp_ns, p.external_odometry_tolerance_s, p.external_odometry_wait_s)
        if speed is None:
            self._bad_input("no_external_speed", f"no odometry on "
                            f"'{self.resolve_topic_name(topics.EXTERNAL_ODOMETRY_TOPIC)}' within "
                            f"{p.external_odometry_tolerance_s} s of the image: keeping the scale")
        return speed

    def _process(self, frame: InputFrame) -> None:
        p = self.params
        t_start = time.monotonic()
        decoded = self._decode(frame)
        if decoded is None:
            return
        image, encoding = decoded
        header_in = frame.msg.header
        frame_id = p.camera_frame or header_in.frame_id
        if not frame_id:
            self._bad_input("missing_frame_id", "image has an empty header.frame_id and the camera_frame parameter "
                                                "is empty: set camera_frame")
            return
        height, width = image.shape[:2]
        for event in self._monitor.check(width, height, frame.stamp_ns):
            self.stats.count_bad(event)  # the Pipeline resets odometry and logs the one line about it
        t_decoded = time.monotonic()
        intrinsics = self._intrinsics(frame.stamp_ns, width, height)
        speed_mps = self._external_speed(frame.stamp_ns)
        t_synced = time.monotonic()  # node_camera_info_wait: the CameraInfo and external-odometry look-ups
        result = self._pipeline.process(image, encoding, frame.stamp_ns * 1e-9, intrinsics,
                                        external_speed_mps=speed_mps)
        t_processed = time.monotonic()
        if result.reset:
            self._last_odom = None
        header = Header(stamp=TimeMsg(sec=header_in.stamp.sec, nanosec=header_in.stamp.nanosec), frame_id=frame_id)
        published = self._publish(result, header, image, encoding)
        t_published = time.monotonic()
        latency_ms = (t_published - frame.received_monotonic_s) * 1e3
        # where a frame's time goes inside the node, next to the Pipeline's own stages
        timings_ms = dict(result.timings_ms, node_queued=(t_start - frame.received_monotonic_s) * 1e3,
                          node_decode=(t_decoded - t_start) * 1e3, node_camera_info_wait=(t_synced - t_decoded) * 1e3,
                          node_pipeline=(t_processed - t_synced) * 1e3, node_publish=(t_published - t_processed) * 1e3)
        motion_px = result.motion.image.motion_px if result.motion is not None else float("nan")
        self.stats.frame_processed(latency_ms, timings_ms, result.scale, result.scale_valid, result.reset, published,
                                   motion_state=result.motion_state, motion_px=motion_px,
                                   scale_state=result.scale_state)

    # --- publishing ---------------------------------------------------------------------------
    def _publish(self, result: Any, header: Header, image: np.ndarray, encoding: str) -> tuple[str, ...]:
        """Publish the frame's outputs; returns the topics published. An output nobody subscribes to is
        skipped together with the work of building its message; odometry (and TF) always go out."""
        p = self.params
        depth_m = result.depth_m  # float32 metres, NaN outside [min_depth_m, max_depth_m]
        published = []
        if _has_subscribers(self._pub_depth):
            self._pub_depth.publish(conversions.numpy_to_image_msg(depth_m, "32FC1", header))
            published.append("~/depth")
        if _has_subscribers(self._pub_depth_info):
            self._pub_depth_info.publish(conversions.intrinsics_to_camera_info(result.intrinsics, header))
            published.append("~/depth/camera_info")
        if _has_subscribers(self._pub_colored):
            colored = colorize_depth(depth_m, p.min_depth_m, p.max_depth_m)
            self._pub_colored.publish(conversions.numpy_to_image_msg(colored, "bgr8", header))
            published.append("~/depth/colored")
        # None on the first frame after a (re)start
        if result.dynamic_mask is not None and _has_subscribers(self._pub_mask):
            self._pub_mask.publish(conversions.numpy_to_image_msg(result.dynamic_mask, "mono8", header))
            published.append("~/dynamic_mask")
        self._publish_odometry(result, header)
        published.append("~/odometry")
        if self._pub_points is not None and _has_subscribers(self._pub_points):
            xyz, rgb = outputs.colored_points(depth_m, result.intrinsics, outputs.to_rgb8(image, encoding),
                                              p.points_decimation)
            self._pub_points.publish(conversions.xyzrgb_to_pointcloud2(xyz, rgb, header))
            published.append("~/points")
        return tuple(published)

    def _publish_odometry(self, result: Any, header: Header) -> None:
        p = self.params
        T_odom_child = outputs.odometry_pose(result.T_odom_cam, p.T_base_cam, child_is_base=bool(p.base_frame))
        child_frame = p.base_frame or header.frame_id
        stamp_s = conversions.stamp_to_seconds(header.stamp)
        dt_s = 0.0 if self._last_odom is None else stamp_s - self._last_odom[1]
        linear, angular = np.zeros(3), np.zeros(3)
        if dt_s > 0:
            linear, angular = outputs.body_twist(self._last_odom[0], T_odom_child, dt_s)
        self._last_odom = (T_odom_child, stamp_s)

        msg = Odometry()
        msg.header = Header(stamp=header.stamp, frame_id=p.odom_frame)
        msg.child_frame_id = child_frame
        t, q = T_odom_child.t, T_odom_child.quaternion()
        pose = msg.pose.pose
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in t)
        pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in q)
        msg.pose.covariance = list(p.pose_covariance)
        twist = msg.twist.twist
        twist.linear.x, twist.linear.y, twist.linear.z = (float(v) for v in linear)
        twist.angular.x, twist.angular.y, twist.angular.z = (float(v) for v in angular)
        # the twist differentiates two poses: variance / dt^2; without a previous pose it is unknown
        # (-1 in the first element, the sensor_msgs convention)
        msg.twist.covariance = ([v / dt_s ** 2 for v in p.pose_covariance] if dt_s > 0 else [-1.0] + [0.0] * 35)
        self._pub_odom.publish(msg)

        if self._tf_broadcaster is not None:
            from geometry_msgs.msg import TransformStamped

            tf = TransformStamped()
            tf.header = msg.header
            tf.child_frame_id = child_frame
            tf.transform.translation.x, tf.transform.translation.y, tf.transform.translation.z = (float(v) for v in t)
            tf.transform.rotation = pose.orientation
            self._tf_broadcaster.sendTransform(tf)

    def _publish_diagnostics(self) -> None:
        level, message = self.stats.level(self.params.diagnostics_period_s)
        status = DiagnosticStatus(level=(DiagnosticStatus.OK, DiagnosticStatus.WARN)[level], name=f"{self.get_name()}: depth_sfm",
                                  message=message, hardware_id=self.backend_description)
        status.values = [KeyValue(key=k, value=v) for k, v in
                         [("backend", self.backend_description)] + self.stats.key_values()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._pub_diag.publish(array)


def main(args: list[str] | None = None) -> int:
    """Console script ``depth_sfm_node``; exit status 2 on a bad parameter."""
    rclpy.init(args=args)
    node = None
    try:
        node = DepthSfmNode()
    except node_params.ParameterError as exc:
        rclpy.logging.get_logger(topics.NODE_NAME).fatal(f"bad parameter, stopping: {exc}")
        print(f"depth_sfm_node: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop()
        node.destroy_node()
        node.close()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
