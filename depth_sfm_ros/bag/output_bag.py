"""The ``--write-bag`` output: an mcap rosbag2 with the input images and what the pipeline made of them.

Topics (the node's own output names, so rviz / Foxglove layouts made for the node work here):

- the image topic (``.../compressed`` -> its base topic): the image the Pipeline was given, decoded as the node
  decodes it (compressed -> bgr8 / mono8 / mono16) and, for a raw distorted camera, undistorted as the node does
  (:mod:`depth_sfm_ros.geometry.camera_model`), so it lies pixel for pixel under the depth
- ``/camera/camera_info`` (CameraInfo): intrinsics of that image, when known (a rectified pinhole CameraInfo)
- ``/depth_sfm_node/depth`` (Image 32FC1): depth in metres, NaN unknown (REP 118)
- ``/depth_sfm_node/depth/camera_info`` (CameraInfo): intrinsics of the depth image, written as the node
  publishes them: D = 0 (plumb_bob), R = I, K = the rectified camera at the depth size, P = [K | 0]
- ``/depth_sfm_node/depth/colored`` (Image bgr8): :func:`runtime.visualize.colorize_depth`
- ``/depth_sfm_node/dynamic_mask`` (Image mono8): 255 = dynamic (when the model has a mask)
- ``/depth_sfm_node/odometry`` (Odometry): ``T_odom_cam`` (odom -> the camera frame)
- ``/tf`` (TFMessage): the same transform

Every message carries the input image's header stamp, and the bag time equals that stamp.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from depth_sfm_ros.geometry import Intrinsics
from depth_sfm_ros.msgs import rosbags_msgs
from depth_sfm_ros.ros.topics import NODE_NAME, resolve
from depth_sfm_ros.runtime.visualize import colorize_depth

from .rosbags_io import BagWriter

DEPTH_TOPIC = resolve("~/depth", NODE_NAME)
DEPTH_INFO_TOPIC = resolve("~/depth/camera_info", NODE_NAME)
COLORED_TOPIC = resolve("~/depth/colored", NODE_NAME)
MASK_TOPIC = resolve("~/dynamic_mask", NODE_NAME)
ODOM_TOPIC = resolve("~/odometry", NODE_NAME)
TF_TOPIC = "/tf"
CAMERA_INFO_TOPIC = "/camera/camera_info"


class OutputBagError(RuntimeError):
    """The output bag could not be written (disk full, file size limit, permissions); the
    incomplete bag has been removed, so nothing half-written is left looking like a result."""


class OutputBagWriter:
    """Write one frame at a time; use as a context manager.

    An OSError while writing or closing (ENOSPC, EFBIG, EACCES ...) removes the incomplete bag
    directory and raises :class:`OutputBagError` naming the path.

    Args:
        path: the rosbag2 directory to create (must not exist).
        image_topic: where the input images go (a ``.../compressed`` name is replaced by its base topic,
            since the images are stored decoded).
        odom_frame: parent frame of the odometry / TF.
        min_depth_m, max_depth_m: colour range of ``depth/colored``.
    """

    def __init__(self, path: str | Path, image_topic: str = "/camera/image_raw", odom_frame: str = "odom",
                 min_depth_m: float = 1.0, max_depth_m: float = 80.0) -> None:
        if not (0 < min_depth_m < max_depth_m):
            raise ValueError(f"need 0 < min_depth_m < max_depth_m, got {min_depth_m}, {max_depth_m}")
        self.path = Path(path)
        self.image_topic = image_topic[: -len("/compressed")] if image_topic.endswith("/compressed") else image_topic
        self.odom_frame = odom_frame
        self.min_depth_m, self.max_depth_m = float(min_depth_m), float(max_depth_m)
        self._bag = BagWriter(self.path, storage="mcap")
        self.frames = 0
        self._failed = False

    def _fail(self, exc: OSError) -> OutputBagError:
        """Remove the incomplete bag; the error to raise."""
        self._failed = True
        shutil.rmtree(self.path, ignore_errors=True)
        return OutputBagError(f"cannot write the output bag {self.path}: {exc.strerror or exc} "
                              f"(after {self.frames} frames); the incomplete bag was removed")

    def __enter__(self) -> "OutputBagWriter":
        try:
            self._bag.__enter__()
        except OSError as exc:
            raise self._fail(exc) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._bag.__exit__(*exc)
        except OSError as err:
            if not self._failed:  # a failed write was reported already
                raise self._fail(err) from err

    @property
    def counts(self) -> dict[str, int]:
        """Messages written per topic."""
        return dict(self._bag.counts)

    def write(self, stamp_ns: int, frame_id: str, image: np.ndarray, encoding: str,
              camera_intrinsics: Intrinsics | None, result: Any) -> None:
        """Write one input frame and its :class:`~depth_sfm_ros.runtime.pipeline.FrameResult`.

        Args:
            stamp_ns: the input image's header stamp (integer ns).
            frame_id: the input image's frame (the camera optical frame); "camera" when empty.
            image: the image the Pipeline was given (decoded; undistorted for a raw distorted camera), in
                ``encoding``.
            camera_intrinsics: intrinsics of ``image`` (a distortion-free pinhole camera) or None.
            result: the pipeline's result for this frame.
        """
        if self._failed:
            raise OutputBagError(f"the output bag {self.path} failed earlier; nothing more is written")
        try:
            self._write(stamp_ns, frame_id, image, encoding, camera_intrinsics, result)
        except OSError as exc:
            raise self._fail(exc) from exc
        self.frames += 1

    def _write(self, stamp_ns: int, frame_id: str, image: np.ndarray, encoding: str,
               camera_intrinsics: Intrinsics | None, result: Any) -> None:
        io = rosbags_msgs
        frame_id = frame_id or "camera"
        bag = self._bag
        bag.write(self.image_topic, io.image_to_msg(image, encoding, stamp_ns, frame_id), stamp_ns)
        if camera_intrinsics is not None:
            bag.write(CAMERA_INFO_TOPIC, io.camera_info_to_msg(camera_intrinsics, stamp_ns, frame_id), stamp_ns)
        depth_m = np.ascontiguousarray(result.depth_m, dtype=np.float32)
        bag.write(DEPTH_TOPIC, io.image_to_msg(depth_m, "32FC1", stamp_ns, frame_id), stamp_ns)
        bag.write(DEPTH_INFO_TOPIC, io.camera_info_to_msg(result.intrinsics, stamp_ns, frame_id), stamp_ns)
        colored = colorize_depth(depth_m, self.min_depth_m, self.max_depth_m)
        bag.write(COLORED_TOPIC, io.image_to_msg(colored, "bgr8", stamp_ns, frame_id), stamp_ns)
        if result.dynamic_mask is not None:
            mask = np.ascontiguousarray(result.dynamic_mask, dtype=np.uint8)
            bag.write(MASK_TOPIC, io.image_to_msg(mask, "mono8", stamp_ns, frame_id), stamp_ns)
        T = result.T_odom_cam
        bag.write(ODOM_TOPIC, io.odometry_to_msg(T, stamp_ns, self.odom_frame, frame_id), stamp_ns)
        bag.write(TF_TOPIC, io.tf_message([io.transform_stamped_to_msg(T, stamp_ns, self.odom_frame, frame_id)]),
                  stamp_ns)
