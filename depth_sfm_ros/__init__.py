"""depth_sfm_ros: self-supervised monocular depth, ego-motion and dynamic-object masks for ROS 2.

Importing this package pulls in numpy only; torch, onnxruntime and rclpy are imported by the
modules that need them (``models``/``training``, ``runtime`` backends and ``ros``).
"""
__version__ = "0.1.0"
