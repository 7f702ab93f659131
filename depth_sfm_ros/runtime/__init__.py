"""Run time: backends, TensorRT engine cache, the ROS-free Pipeline, scale recovery, odometry.

Modules (nothing here imports torch, tensorrt or rclpy at import time):

- ``image_io``: ROS image encodings -> network input (1, 3, H, W) float32 in a preallocated buffer.
- ``model_dir``: exported model dir validation on top of ``model_card`` (ONNX files, I/O, intrinsics).
- ``backends``: ``Backend`` / ``BackendOutput`` / ``create_backend`` and the ONNX Runtime backend;
  ``torch_backend`` and ``tensorrt_backend`` are imported when selected.
- ``tensorrt_engine``: engine cache keys, atomic cache writes, rebuild / refuse, engine building.
- ``scale``: metric scale (none / fixed / camera_height / external) with the ground-plane judgement;
  ``odometry``: pose integration; ``motion_gate``: still-camera detection.
- ``pipeline``: ``PipelineConfig``, ``Pipeline.process`` -> ``FrameResult``.
- ``tiny_model``: a tiny untrained model in the exported format (tests, benchmarks).
- ``export`` / ``model_card``: export side (ONNX, model card, engines).
"""
