"""Run time: backends, TensorRT engine cache, the ROS-free Pipeline, scale recovery, odometry.

Modules (nothing here imports torch, tensorrt or rclpy at import time):

- ``image_io``: decoded camera images (the encodings of :mod:`depth_sfm_ros.msgs.encodings`) -> network
  input (1, 3, H, W) float32 in a preallocated buffer.
- ``model_dir``: exported model dir validation on top of ``model_card`` (ONNX files, I/O, intrinsics).
- ``backend_base``: the interface ``Backend`` / ``BackendOutput``; its sibling implementations
  ``onnxruntime_backend``, ``torch_backend``, ``tensorrt_backend``; ``backends``: the factory
  ``create_backend`` (``auto`` selection), which imports the torch / TensorRT backends when selected.
- ``tensorrt_engine``: engine cache keys, atomic cache writes, rebuild / refuse, engine building.
- ``scale``: metric scale (none / fixed / camera_height / external) with the ground-plane judgement;
  ``odometry``: pose integration; ``motion_gate``: still-camera detection.
- ``pipeline``: ``PipelineConfig``, ``Pipeline.process`` -> ``FrameResult``.
- ``tiny_model``: a tiny untrained model in the exported format (tests, benchmarks).
- ``export`` / ``model_card``: export side (ONNX, model card, engines).

Below ``ros/`` and ``bag/``: nothing here imports them (messages go through :mod:`depth_sfm_ros.msgs`).
"""
