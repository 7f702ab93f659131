"""``depth_sfm_node``: the ROS 2 node around the ROS-free :class:`~depth_sfm_ros.runtime.pipeline.Pipeline`.

Threads: the executor runs the subscription callbacks, which only check a message's header
fields and put it into a one-frame mailbox (a frame overwritten there is counted as dropped);
one worker thread takes the newest frame, runs it through the Pipeline and publishes. Nothing queues
without bound and inference never blocks the executor. What happens to a frame in between (decoding,
CameraInfo pairing, external speed, odometry twist, counters) is :class:`~depth_sfm_ros.ros.frame_policy.FramePolicy`,
which needs no ROS; this module only moves messages in and out.

Topics (see :mod:`depth_sfm_ros.ros.topics`): subscribes ``image`` (or ``<remapped image>/compressed``),
``camera_info`` and, with ``scale_mode: external``, ``external_odometry``; publishes ``~/depth`` (32FC1
metres, NaN unknown, REP 118), ``~/depth/camera_info`` (the depth's own geometry: a raw distorted camera's
images are undistorted first, so D = 0, R = I, P = [K | 0]), ``~/depth/colored`` (bgr8, unknown black),
``~/dynamic_mask`` (mono8, 255 moving; none for the first frame after a (re)start, which has no previous
frame), ``~/odometry``, optional ``~/points`` and TF, and ``/diagnostics``. Every output header carries the
input stamp; an image output nobody subscribes to is not built or sent.
"""
from __future__ import annotations

import sys
import threading
from typing import Any

import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Empty, Header

from depth_sfm_ros.msgs import rclpy_msgs
from depth_sfm_ros.ros import outputs, params as node_params, topics
from depth_sfm_ros.ros.diagnostics import adaptation_diagnostics
from depth_sfm_ros.ros.frame_policy import FrameOutput, FramePolicy
from depth_sfm_ros.ros.pipeline_factory import attach_online_adapter, create_pipeline
from depth_sfm_ros.ros.rclpy_setup import declare_and_validate, forward_package_logging, make_tf_broadcaster, qos_profile
from depth_sfm_ros.runtime.visualize import colorize_depth


def _has_subscribers(publisher: Any) -> bool:
    """Whether any subscription (in this or another process) matches ``publisher``."""
    return publisher.get_subscription_count() > 0


class DepthSfmNode(Node):
    """See the module docstring. Raises :class:`~depth_sfm_ros.ros.params.ParameterError` from the
    constructor when a parameter is bad (``main`` turns that into exit status 2)."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(topics.NODE_NAME, **node_kwargs)
        forward_package_logging(self.get_logger())
        self.params = p = declare_and_validate(self)
        self._pipeline = create_pipeline(p)
        self.backend_description = self._pipeline.backend.describe()
        try:  # adapt_online: a background worker fine-tunes the model (ROS-free: runtime/online_adapter.py)
            self._adapter = attach_online_adapter(p, self._pipeline)
        except node_params.ParameterError:
            self._pipeline.close()
            raise
        self.get_logger().info(f"model {p.model_dir}, backend {self.backend_description}, scale_mode {p.scale_mode} "
                               f"({self._pipeline.scale.assumption}), still-camera detection "
                               f"{'on' if p.still_detection else 'off'}")
        self._frames = FramePolicy(p, self._pipeline, self.get_logger(),
                                   camera_info_topic=self.resolve_topic_name(topics.CAMERA_INFO_TOPIC),
                                   external_odometry_topic=self.resolve_topic_name(topics.EXTERNAL_ODOMETRY_TOPIC),
                                   image_topic=self.resolve_topic_name(topics.IMAGE_TOPIC))
        self.stats = self._frames.stats

        out_qos = qos_profile(p.output_qos, p.qos_depth)
        self._pub_depth = self.create_publisher(Image, "~/depth", out_qos)
        self._pub_depth_info = self.create_publisher(CameraInfo, "~/depth/camera_info", out_qos)
        self._pub_colored = self.create_publisher(Image, "~/depth/colored", out_qos)
        self._pub_mask = self.create_publisher(Image, "~/dynamic_mask", out_qos)
        self._pub_odom = self.create_publisher(Odometry, "~/odometry", out_qos)
        self._pub_points = self.create_publisher(PointCloud2, "~/points", out_qos) if p.publish_points else None
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._tf_broadcaster = make_tf_broadcaster(self) if p.publish_tf else None

        in_qos = qos_profile(p.input_qos, p.qos_depth)
        if p.image_transport == "compressed":
            # <remapped image topic>/compressed, as image_transport names it (a remap of 'image'
            # does not apply to 'image/compressed', so resolve first)
            compressed_topic = self.resolve_topic_name(topics.IMAGE_TOPIC) + topics.COMPRESSED_SUFFIX
            self.create_subscription(CompressedImage, compressed_topic,
                                     lambda msg: self._frames.offer(msg, compressed=True), in_qos)
        else:
            self.create_subscription(Image, topics.IMAGE_TOPIC, lambda msg: self._frames.offer(msg, compressed=False),
                                     in_qos)
        self.create_subscription(CameraInfo, topics.CAMERA_INFO_TOPIC, self._frames.add_camera_info, in_qos)
        if p.scale_mode == "external":  # best effort matches both reliable and best-effort publishers
            self.create_subscription(Odometry, topics.EXTERNAL_ODOMETRY_TOPIC, self._frames.add_external_odometry,
                                     in_qos)
            self.get_logger().info(f"metric scale from the speed on "
                                   f"'{self.resolve_topic_name(topics.EXTERNAL_ODOMETRY_TOPIC)}'")
        self.create_timer(p.diagnostics_period_s, self._publish_diagnostics)
        if self._adapter is not None:  # save on request; off the executor (a save waits for a running step)
            self.create_subscription(Empty, topics.ADAPT_SAVE_TOPIC, lambda _msg: threading.Thread(
                target=lambda: self.get_logger().info(f"online adaptation: {self._adapter.save()}"),
                daemon=True).start(), 10)

        self._worker = threading.Thread(target=self._worker_loop, name="depth_sfm_worker", daemon=True)
        self._worker.start()

    # --- worker thread ------------------------------------------------------------------------
    def _worker_loop(self) -> None:
        while not self._frames.closed:
            frame = self._frames.take(timeout_s=0.5)
            if frame is None:
                continue
            try:
                output = self._frames.process(frame)
                if output is not None:
                    self._frames.finish(output, self._publish(output))
            except Exception as exc:  # noqa: BLE001 - bad frames must never kill the node
                self._frames.frame_failed(exc)

    def stop(self) -> None:
        """Stop the worker thread (call before destroying the node)."""
        self._frames.close()
        self._worker.join(timeout=10.0)
        if self._adapter is not None:  # stops the adaptation worker; saves to adapt_save_dir
            self.get_logger().info(f"online adaptation: {self._adapter.close() or 'weights not saved'}")

    def close(self) -> None:
        """Release the backend (after :meth:`stop`)."""
        self._pipeline.close()

    # --- publishing ---------------------------------------------------------------------------
    def _publish(self, output: FrameOutput) -> tuple[str, ...]:
        """Publish the frame's outputs; returns the topics published. An output nobody subscribes to is
        skipped together with the work of building its message; odometry (and TF) always go out."""
        p, result = self.params, output.result
        stamp = output.frame.msg.header.stamp
        header = Header(stamp=TimeMsg(sec=stamp.sec, nanosec=stamp.nanosec), frame_id=output.frame_id)
        depth_m = result.depth_m  # float32 metres, NaN outside [min_depth_m, max_depth_m]
        published = []
        if _has_subscribers(self._pub_depth):
            self._pub_depth.publish(rclpy_msgs.numpy_to_image_msg(depth_m, "32FC1", header))
            published.append("~/depth")
        if _has_subscribers(self._pub_depth_info):
            # result.intrinsics: the rectified camera scaled to the depth size (D = 0, R = I, P = [K | 0])
            self._pub_depth_info.publish(rclpy_msgs.intrinsics_to_camera_info(result.intrinsics, header))
            published.append("~/depth/camera_info")
        if _has_subscribers(self._pub_colored):
            colored = colorize_depth(depth_m, p.min_depth_m, p.max_depth_m)
            self._pub_colored.publish(rclpy_msgs.numpy_to_image_msg(colored, "bgr8", header))
            published.append("~/depth/colored")
        # None on the first frame after a (re)start
        if result.dynamic_mask is not None and _has_subscribers(self._pub_mask):
            self._pub_mask.publish(rclpy_msgs.numpy_to_image_msg(result.dynamic_mask, "mono8", header))
            published.append("~/dynamic_mask")
        odom = output.odometry
        odom_header = Header(stamp=header.stamp, frame_id=p.odom_frame)
        self._pub_odom.publish(rclpy_msgs.odometry_msg(odom_header, odom.child_frame_id, odom.T_odom_child,
                                                       odom.linear_mps, odom.angular_radps, odom.pose_covariance,
                                                       odom.twist_covariance))
        published.append("~/odometry")
        if self._tf_broadcaster is not None:
            self._tf_broadcaster.sendTransform(rclpy_msgs.transform_stamped_msg(odom_header, odom.child_frame_id,
                                                                                odom.T_odom_child))
        if self._pub_points is not None and _has_subscribers(self._pub_points):
            xyz, rgb = outputs.colored_points(depth_m, result.intrinsics, outputs.to_rgb8(output.image, output.encoding),
                                              p.points_decimation)
            self._pub_points.publish(rclpy_msgs.xyzrgb_to_pointcloud2(xyz, rgb, header))
            published.append("~/points")
        return tuple(published)

    def _publish_diagnostics(self) -> None:
        level, message = self.stats.level(self.params.diagnostics_period_s)
        status = DiagnosticStatus(level=(DiagnosticStatus.OK, DiagnosticStatus.WARN)[level], name=f"{self.get_name()}: depth_sfm",
                                  message=message, hardware_id=self.backend_description)
        status.values = [KeyValue(key=k, value=v) for k, v in
                         [("backend", self.backend_description)] + self.stats.key_values()]
        array = DiagnosticArray(status=[status])
        if self._adapter is not None:
            level, message, values = adaptation_diagnostics(self._adapter.status())
            array.status.insert(0, DiagnosticStatus(  # the node's own status stays the last
                level=(DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR)[level],
                name=f"{self.get_name()}: online adaptation", message=message, hardware_id=self.backend_description,
                values=[KeyValue(key=k, value=v) for k, v in values]))
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
