"""Camera geometry shared by training, export, runtime and evaluation.

``camera`` and ``pose`` are numpy-only (safe for the runtime without torch); ``ops`` holds the
batched, differentiable torch versions and is imported explicitly where torch is available.
``camera_model`` (numpy + OpenCV: real camera models, undistortion, the CameraInfo policy of the node, the bag
tools and training) is imported explicitly too.
"""
from .camera import Intrinsics, backproject_np
from .pose import (Pose, axis_angle_to_matrix, euler_to_matrix, matrix_to_axis_angle, matrix_to_euler,
                   matrix_to_quaternion, quaternion_to_matrix, twist_in_current_frame)

__all__ = ["Intrinsics", "backproject_np", "Pose", "axis_angle_to_matrix", "matrix_to_axis_angle",
           "euler_to_matrix", "matrix_to_euler", "matrix_to_quaternion", "quaternion_to_matrix",
           "twist_in_current_frame"]
