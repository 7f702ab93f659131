"""Camera frames from rosbag2 (mcap, sqlite3) and ROS 1 bags, read with ``rosbags``' AnyReader.

The bag is read once: image messages (``sensor_msgs/Image`` rgb8/bgr8/rgba8/bgra8/mono8/mono16
or ``sensor_msgs/CompressedImage``) are decoded with the node's decoders (:mod:`depth_sfm_ros.msgs`), sorted by
header stamp and cached as PNG files in a folder with an ``index.json``; ``__getitem__`` then reads one PNG
(random access, cheap in DataLoader workers). The cache is rebuilt when the bag's files (size, mtime) or the topic change.
Intrinsics come from the first CameraInfo on ``camera_info_topic`` (default:
``<image namespace>/camera_info``) through :mod:`depth_sfm_ros.geometry.camera_model`, the node's policy:
a rectified topic (``image_rect*``) uses P, a raw topic K, and a raw topic with lens distortion
(plumb_bob, rational_polynomial, equidistant) is undistorted (remap tables built once; the cache keeps the
raw frames). Or from an explicit :class:`Intrinsics` (images used as they are).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from depth_sfm_ros.geometry import Intrinsics
from depth_sfm_ros.geometry.camera_model import CameraModel, InputGeometry, resolve_input, topic_is_rectified
from depth_sfm_ros.msgs import compressed_msg_to_numpy, decode_camera_info, image_msg_to_numpy, image_to_rgb8

from .base import FrameSequence
from .io import read_rgb, write_png

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
CACHE_VERSION = 3  # 2: the CameraInfo's whole calibration (K, D, R, P, model), not only K; 3: msgs decoders


def _bag_signature(path: Path) -> list:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[p.name, p.stat().st_size, int(p.stat().st_mtime_ns)] for p in files]


def decode_image_msg(msg, msgtype: str) -> np.ndarray:
    """A sensor_msgs Image / CompressedImage message -> RGB uint8 (H, W, 3), with the node's decoders
    (:mod:`depth_sfm_ros.msgs`: row padding, ``is_bigendian``, the encoding table; compressed images as the node
    decodes them) and the one conversion to 8-bit RGB (:func:`depth_sfm_ros.msgs.image_to_rgb8`: 16-bit values
    rounded as the runtime scales them). Raises ValueError for an unsupported encoding or a bad layout."""
    if msgtype.endswith("CompressedImage"):
        image, encoding = compressed_msg_to_numpy(msg)
    else:
        image, encoding = image_msg_to_numpy(msg), str(msg.encoding)
    try:
        return image_to_rgb8(image, encoding)
    except ValueError as exc:  # a valid Image that is no camera picture (32FC1 depth, 8UC3)
        raise ValueError(f"unsupported image encoding {encoding!r} for a camera frame: {exc}") from None


def _camera_info_calibration(msg) -> dict:
    """A CameraInfo (ROS 2 ``k``/``d``/``r``/``p`` or ROS 1 ``K``/``D``/``R``/``P``; decoded by
    :func:`depth_sfm_ros.msgs.decode_camera_info`, as the node reads it) -> JSON-able keyword arguments of
    :meth:`CameraModel.from_fields`."""
    info = decode_camera_info(msg)
    return {"width": info.width, "height": info.height, "K": info.K.ravel().tolist(), "D": info.D.tolist(),
            "distortion_model": info.distortion_model, "P": info.P.ravel().tolist(), "R": info.R.ravel().tolist()}


def _stamp_s(msg, bag_time_ns: int) -> float:
    header = getattr(msg, "header", None)
    if header is not None:
        stamp = header.stamp
        sec = getattr(stamp, "sec", getattr(stamp, "secs", 0))
        nsec = getattr(stamp, "nanosec", getattr(stamp, "nsecs", 0))
        if sec or nsec:
            return sec + nsec * 1e-9
    return bag_time_ns * 1e-9


class RosbagSequence(FrameSequence):
    """Camera frames of one image topic of a bag (rosbag2 folder, .mcap/.db3 file, or ROS 1 .bag).

    Args:
        path: the bag.
        image_topic: raw or compressed image topic (``<topic>/compressed`` is tried too).
        camera_info_topic: CameraInfo topic (default: ``<image namespace>/camera_info``).
        intrinsics: use these instead of a CameraInfo topic.
        cache_dir: where decoded frames go (default ``<bag>.depth_sfm_cache/<topic>``).
        camera_input: ``auto`` (rectified when the topic's name is ``image_rect*``), ``rectified`` or ``raw``
            (:func:`~depth_sfm_ros.geometry.camera_model.topic_is_rectified`).

    ``geometry`` is the :class:`~depth_sfm_ros.geometry.camera_model.InputGeometry` taken from the CameraInfo
    (None with explicit intrinsics); ``undistorter`` is not None when the frames are undistorted.
    """

    def __init__(self, path: str | Path, image_topic: str, camera_info_topic: str | None = None,
                 intrinsics: Intrinsics | None = None, cache_dir: str | Path | None = None,
                 camera_input: str = "auto") -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"bag {self.path} does not exist")
        self.image_topic = image_topic
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", image_topic.strip("/")) or "image"
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path(f"{self.path}.depth_sfm_cache") / safe
        self.name = f"{self.path.stem}/{safe}"
        index = self._load_index(camera_info_topic)
        if index is None:
            index = self._build_cache(camera_info_topic, intrinsics)
        self.stamps_s = list(index["stamps_s"])
        self._files = list(index["files"])
        if not self.stamps_s:
            raise ValueError(f"topic {image_topic} in {self.path} has no messages")
        self.geometry: InputGeometry | None = None
        self.undistorter = None
        if intrinsics is None:
            if index.get("camera") is None:
                raise ValueError(f"no CameraInfo found for {image_topic} in {self.path}; pass camera_info_topic or "
                                 "intrinsics")
            try:
                model = CameraModel.from_fields(**index["camera"])
                height, width = read_rgb(self.cache_dir / self._files[0]).shape[:2]
                if model.size != (width, height):  # binned / resized images with the full-size CameraInfo
                    model = model.scaled(width, height)
                self.geometry = resolve_input(model, rectified=topic_is_rectified(image_topic, camera_input))
            except ValueError as exc:
                raise ValueError(f"{self.path} {image_topic}: {exc}") from None
            self.undistorter = self.geometry.undistorter
            intrinsics = self.geometry.intrinsics
        self._K = intrinsics

    # ------------------------------------------------------------------------------------ cache
    def _expected_meta(self, camera_info_topic: str | None) -> dict:
        return {"version": CACHE_VERSION, "bag": _bag_signature(self.path), "image_topic": self.image_topic,
                "camera_info_topic": camera_info_topic}

    def _load_index(self, camera_info_topic: str | None) -> dict | None:
        index_file = self.cache_dir / "index.json"
        if not index_file.is_file():
            return None
        try:
            index = json.loads(index_file.read_text())
        except ValueError:
            return None
        if index.get("meta") != json.loads(json.dumps(self._expected_meta(camera_info_topic))):
            return None
        return index

    def _build_cache(self, camera_info_topic: str | None, intrinsics: Intrinsics | None) -> dict:
        from rosbags.highlevel import AnyReader

        with AnyReader([self.path]) as reader:
            topics = {c.topic: c.msgtype for c in reader.connections}
            image_topic = self.image_topic
            if topics.get(image_topic) not in IMAGE_TYPES and topics.get(image_topic + "/compressed") in IMAGE_TYPES:
                image_topic = image_topic + "/compressed"
            if image_topic not in topics:
                listing = ", ".join(f"{t} ({m})" for t, m in sorted(topics.items()))
                raise ValueError(f"topic {self.image_topic!r} not found in {self.path}; available topics: {listing}")
            if topics[image_topic] not in IMAGE_TYPES:
                raise ValueError(f"topic {image_topic!r} has type {topics[image_topic]}, expected one of {IMAGE_TYPES}")
            info_topic = camera_info_topic
            if info_topic is None:
                base = image_topic[:-len("/compressed")] if image_topic.endswith("/compressed") else image_topic
                info_topic = base.rsplit("/", 1)[0] + "/camera_info"
            if camera_info_topic is not None and camera_info_topic not in topics:
                listing = ", ".join(sorted(topics))
                raise ValueError(f"camera_info topic {camera_info_topic!r} not found in {self.path}; "
                                 f"available topics: {listing}")
            wanted = [c for c in reader.connections if c.topic == image_topic or
                      (c.topic == info_topic and c.msgtype == CAMERA_INFO_TYPE)]
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            frames: list[tuple[float, str]] = []
            camera = None
            for connection, bag_time_ns, raw in reader.messages(connections=wanted):
                msg = reader.deserialize(raw, connection.msgtype)
                if connection.topic == info_topic:
                    if camera is None:
                        camera = _camera_info_calibration(msg)
                    continue
                rgb = decode_image_msg(msg, connection.msgtype)
                name = f"frame_{len(frames):07d}.png"
                write_png(self.cache_dir / name, rgb)
                frames.append((_stamp_s(msg, bag_time_ns), name))
        frames.sort(key=lambda item: item[0])  # stable: equal stamps keep bag order
        index = {"meta": self._expected_meta(camera_info_topic), "stamps_s": [s for s, _ in frames],
                 "files": [n for _, n in frames], "camera": camera}
        (self.cache_dir / "index.json").write_text(json.dumps(index))
        return index

    # ----------------------------------------------------------------------------------- frames
    def __len__(self) -> int:
        return len(self.stamps_s)

    def frame_id(self, i: int) -> str:
        return f"{i:06d}"

    def image_rgb(self, i: int) -> np.ndarray:
        image = read_rgb(self.cache_dir / self._files[i])
        return image if self.geometry is None else self.geometry.prepare(image)

    def intrinsics(self, i: int) -> Intrinsics:
        return self._K
