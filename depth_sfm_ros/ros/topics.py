"""Topic names of the node (ROS-free, so the launch / rviz tests can import them).

Inputs are relative names, remapped by the launch file (``image:=/camera/image_raw``); outputs
are private (``~/...``) so several nodes can run side by side, except ``/diagnostics``.
"""
from __future__ import annotations

NODE_NAME = "depth_sfm_node"

IMAGE_TOPIC = "image"
COMPRESSED_SUFFIX = "/compressed"  # image_transport "compressed": <image topic>/compressed
CAMERA_INFO_TOPIC = "camera_info"
# scale_mode external: another odometry source (wheel odometry) whose twist gives the speed
EXTERNAL_ODOMETRY_TOPIC = "external_odometry"
# with adapt_online: a std_msgs/Empty here saves the adapted weights to adapt_save_dir (std_srvs has no wheel here)
ADAPT_SAVE_TOPIC = "~/adapt/save"

# output topic -> message type
OUTPUT_TOPICS: dict[str, str] = {
    "~/depth": "sensor_msgs/msg/Image",
    "~/depth/camera_info": "sensor_msgs/msg/CameraInfo",
    "~/depth/colored": "sensor_msgs/msg/Image",
    "~/dynamic_mask": "sensor_msgs/msg/Image",
    "~/odometry": "nav_msgs/msg/Odometry",
    "~/points": "sensor_msgs/msg/PointCloud2",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
# outputs shown in config/depth_sfm.rviz (TF is a display without a topic)
RVIZ_TOPICS = ("~/depth/colored", "~/dynamic_mask", "~/odometry", "~/points")


def resolve(topic: str, node_name: str = NODE_NAME, namespace: str = "/") -> str:
    """Fully qualified name of ``topic`` for a node ``node_name`` in ``namespace``.

    >>> resolve("~/depth")
    '/depth_sfm_node/depth'
    >>> resolve("image", namespace="/car")
    '/car/image'
    """
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if topic.startswith("/"):
        return topic
    if topic.startswith("~/"):
        return f"{namespace}/{node_name}/{topic[2:]}"
    return f"{namespace}/{topic}"


def rviz_config_for_namespace(rviz_text: str, namespace: str) -> str:
    """``config/depth_sfm.rviz`` with its topics moved into ``namespace`` (the launch file's argument).

    The shipped file shows the node's outputs in the root namespace; a node started with
    ``namespace:=car`` publishes ``/car/depth_sfm_node/...`` instead. Only the ``Value:`` lines that
    name one of :data:`RVIZ_TOPICS` change.

    >>> rviz_config_for_namespace("        Value: /depth_sfm_node/odometry\\n", "car")
    '        Value: /car/depth_sfm_node/odometry\\n'

    Raises:
        ValueError: the text names none of the topics (not this package's rviz config).
    """
    renamed = {f"Value: {resolve(t)}": f"Value: {resolve(t, namespace=namespace)}" for t in RVIZ_TOPICS}
    lines = rviz_text.splitlines(keepends=True)
    found = 0
    for i, line in enumerate(lines):
        key = line.strip()
        if key in renamed:
            lines[i] = line.replace(key, renamed[key])
            found += 1
    if not found:
        raise ValueError(f"the rviz config names none of the node's topics {sorted(renamed)}")
    return "".join(lines)
