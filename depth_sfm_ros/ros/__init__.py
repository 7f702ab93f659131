"""ROS 2 layer: the ``depth_sfm_node`` node and its ROS-free helpers.

Only :mod:`depth_sfm_ros.ros.node` imports rclpy at module level; ``conversions`` imports message
packages inside the functions that build messages; ``params``, ``topics``, ``diagnostics``,
``sync``, ``outputs`` and ``pipeline_factory`` are plain Python + numpy (unit-tested without DDS).
"""
