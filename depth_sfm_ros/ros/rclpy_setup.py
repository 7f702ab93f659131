"""The rclpy side of setting up the node: QoS profiles, parameter declaration from the one parameter table
(:mod:`depth_sfm_ros.ros.params`), forwarding Python logging to the node's logger, and the optional TF
broadcaster. Imports rclpy (with :mod:`depth_sfm_ros.ros.node`, the only modules that do).
"""
from __future__ import annotations

import logging
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterException
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from depth_sfm_ros.ros import params as node_params

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


def declare_and_validate(node: Any) -> node_params.NodeParams:
    """Declare every parameter of :data:`~depth_sfm_ros.ros.params.PARAMETERS` on ``node`` (read-only, with
    description and range) and validate the values; :class:`~depth_sfm_ros.ros.params.ParameterError`
    names a bad one. Unknown overrides get one warning line."""
    values = {}
    for spec in node_params.PARAMETERS:
        try:
            values[spec.name] = node.declare_parameter(spec.name, spec.default, _descriptor(spec)).value
        except ParameterException as exc:
            raise node_params.ParameterError(spec.name, str(exc)) from None
    overrides = getattr(node, "_parameter_overrides", {})
    unknown = sorted(set(overrides) - set(values) - {"use_sim_time"})
    if unknown:
        node.get_logger().warning(f"ignoring unknown parameters {unknown}; known: {sorted(values)}")
    return node_params.validate(values)


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


def forward_package_logging(ros_logger: Any) -> None:
    """Send the ``depth_sfm_ros`` Python loggers (INFO and up) to ``ros_logger`` only."""
    package_logger = logging.getLogger("depth_sfm_ros")
    package_logger.setLevel(logging.INFO)
    package_logger.addHandler(RosLogHandler(ros_logger))
    package_logger.propagate = False


def make_tf_broadcaster(node: Any) -> Any:
    """A ``tf2_ros.TransformBroadcaster``, or None (with one log line) where tf2_ros is not installed."""
    try:
        from tf2_ros import TransformBroadcaster
    except ImportError:
        node.get_logger().info("tf2_ros is not installed: the odom -> base transform is not broadcast "
                               "(~/odometry carries the same pose)")
        return None
    return TransformBroadcaster(node)
