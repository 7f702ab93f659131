"""The one ROS-message layer: encodings, decoders and encoders of Image, CompressedImage, CameraInfo,
Odometry and PointCloud2, shared by the node (rclpy messages), the bag tools (``rosbags`` messages),
export and the demo.

Decoders are duck-typed (they read the fields that rclpy and ``rosbags`` messages share); encoders
return plain fields, which :mod:`.rclpy_msgs` and :mod:`.rosbags_msgs` put into their message classes.
This package sits below ``runtime`` and imports only :mod:`depth_sfm_ros.geometry`, numpy and (inside
functions) OpenCV, ``sensor_msgs`` / ``rosbags``: it never imports ``ros/`` or ``bag/``.

Modules: ``encodings`` (the one encoding table), ``image`` (Image / CompressedImage), ``camera_info``,
``odometry``, ``pointcloud``, ``stamps``, ``rclpy_msgs`` and ``rosbags_msgs`` (builders per flavour).
"""
from .camera_info import (CameraInfoFields, camera_info_fields, camera_info_to_model, camera_model_fields,
                          decode_camera_info)
from .encodings import ENCODING_SPECS, IMAGE_ENCODINGS, INPUT_ENCODINGS, EncodingSpec, input_encoding
from .image import (EncodedImage, ImageDecodeError, ImageLayout, check_image_layout, compressed_msg_to_numpy,
                    compressed_msg_to_rgb8, decode_compressed, decode_image, encode_compressed, encode_image,
                    image_layout, image_msg_to_numpy, image_to_rgb8)
from .odometry import (odometry_fields, odometry_msg_to_pose, odometry_speed_mps, pose_from_point_quaternion,
                       transform_msg_to_pose)
from .pointcloud import POINT_XYZRGB_DTYPE, pack_xyzrgb, pointcloud2_to_numpy, unpack_rgb
from .stamps import nanoseconds_to_sec_nanosec, stamp_to_nanoseconds, stamp_to_seconds

__all__ = [
    "CameraInfoFields", "camera_info_fields", "camera_info_to_model", "camera_model_fields", "decode_camera_info",
    "ENCODING_SPECS", "IMAGE_ENCODINGS", "INPUT_ENCODINGS", "EncodingSpec", "input_encoding",
    "EncodedImage", "ImageDecodeError", "ImageLayout", "check_image_layout", "compressed_msg_to_numpy",
    "compressed_msg_to_rgb8", "decode_compressed", "decode_image", "encode_compressed", "encode_image",
    "image_layout", "image_msg_to_numpy", "image_to_rgb8",
    "odometry_fields", "odometry_msg_to_pose", "odometry_speed_mps", "pose_from_point_quaternion",
    "transform_msg_to_pose",
    "POINT_XYZRGB_DTYPE", "pack_xyzrgb", "pointcloud2_to_numpy", "unpack_rgb",
    "nanoseconds_to_sec_nanosec", "stamp_to_nanoseconds", "stamp_to_seconds",
]
