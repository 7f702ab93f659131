"""Topic names of the node (ROS-free, so the launch / rviz tests can import them).

Inputs are relative names, remapped by the launch file (``image:=/camera/image_raw``); outputs
are private (``~/...``) so several nodes can run side by side, except ``/diagnostics``.
"""
from __future__ import annotations

NODE_NAME = "depth_sfm_node"

IMAGE_TOPIC = "image"
COMPRESSED_SUFFIX = "/compressed"  # image_transport "compressed": <image topic>/compressed
CAMERA_INFO_TOPIC = "camera_info"

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
