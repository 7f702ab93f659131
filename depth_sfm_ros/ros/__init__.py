"""ROS 2 layer: the ``depth_sfm_node`` node and its ROS-free helpers.

Only :mod:`depth_sfm_ros.ros.node` and :mod:`depth_sfm_ros.ros.rclpy_setup` import rclpy; the node only moves
messages in and out. ``frame_policy`` (what happens to each frame), ``params``, ``topics``, ``diagnostics``,
``sync``, ``outputs`` and ``pipeline_factory`` are plain Python + numpy (unit-tested without DDS). Messages
are decoded and built by :mod:`depth_sfm_ros.msgs`. Nothing here imports :mod:`depth_sfm_ros.bag`.
"""
