"""Defaults of the bag tools (``eval-bag``, offline and ``--realtime``): topic names of the synthetic bags
(``depth-sfm synth``), backend names and trajectory alignments."""
from __future__ import annotations

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_GT_DEPTH_TOPIC = "/gt/depth"
DEFAULT_GT_ODOM_TOPIC = "/gt/odom"
DEFAULT_GT_MASK_TOPIC = "/gt/dynamic_mask"
BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
ALIGNMENTS = ("auto", "sim3", "se3", "scale", "none")
