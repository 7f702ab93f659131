"""Read camera frames and ground truth out of any bag that ``rosbags`` opens.

Supported: rosbag2 directories (mcap and sqlite3 storage), bare ``.mcap`` files and ROS 1 ``.bag``
files. Message types come from the definitions stored in the bag (a Jazzy typestore is the
fallback for bags without them). Images may be ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage``.
An mcap file that ``rosbags`` cannot open (no footer / summary after a killed recorder, damaged
records) is read record by record with :mod:`.mcap_salvage` up to the damage.

:class:`BagFrameReader` yields :class:`Frame` objects in the order the images were recorded,
each paired by *header stamp* (not receive time) with the nearest CameraInfo, ground-truth depth
image, ground-truth dynamic mask, ground-truth pose and the speed of an odometry topic. A truncated
or corrupt bag ends the iteration early: the frames read so far are yielded and
:attr:`BagFrameReader.error` tells how far it got.

numpy + OpenCV + rosbags only (no torch, no rclpy).
"""
from __future__ import annotations

import logging
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from depth_sfm_ros.geometry import Pose
from depth_sfm_ros.geometry.camera_model import CameraModel
from depth_sfm_ros.msgs import (camera_info_to_model, compressed_msg_to_numpy, image_msg_to_numpy, odometry_speed_mps,
                                pose_from_point_quaternion, stamp_to_nanoseconds)
from depth_sfm_ros.msgs.rosbags_msgs import typestore
from .mcap_salvage import McapDamage, McapSalvageReader

log = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POSE_TYPES = ("nav_msgs/msg/Odometry", "geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped",
              "geometry_msgs/msg/TransformStamped", "tf2_msgs/msg/TFMessage")
NS_PER_S = 1_000_000_000


class BagError(RuntimeError):
    """A bag that cannot be used: missing file, unreadable header, missing topic, wrong message type."""


class BagTopicError(BagError):
    """A requested topic is not in the bag; the message lists the topics the bag has."""


@dataclass
class BagReadIssue:
    """Where reading a damaged bag stopped."""

    messages_read: int
    frames_read: int
    last_stamp_s: float | None
    error: str

    def describe(self) -> str:
        where = "before the first message" if self.last_stamp_s is None else f"after bag time {self.last_stamp_s:.3f} s"
        return (f"bag is truncated or corrupt: stopped {where} ({self.messages_read} messages, "
                f"{self.frames_read} frames read): {self.error}")

    def to_dict(self) -> dict:
        return {"messages_read": self.messages_read, "frames_read": self.frames_read,
                "last_stamp_s": self.last_stamp_s, "error": self.error}


@dataclass
class Frame:
    """One camera image with whatever ground truth the bag pairs with it.

    Attributes:
        index: position of the image on its topic (0-based, counting every image of the bag).
        stamp_ns / stamp_s: the image's header stamp.
        image: (H, W, C) or (H, W) array in ``encoding`` (rgb8, bgr8, mono8, mono16, ...), as recorded.
        camera: the calibration of the nearest CameraInfo (K, D, R, P, distortion model; possibly of another
            image size), None without one. Which intrinsics the image has, and whether it must be undistorted
            first, is the camera policy's (:mod:`depth_sfm_ros.geometry.camera_model`, applied by eval-bag).
        gt_depth_m: (H', W') float32 metres, NaN where unknown, in the image topic's geometry; None without
            a depth topic / match.
        gt_dynamic_mask: (H', W') bool, True = moving object (image topic's geometry); None without a mask
            topic / match.
        gt_T_world_cam: ground-truth pose of the camera; None without a pose topic / match.
        speed_mps: speed of an odometry source (nav_msgs/Odometry twist, e.g. wheel odometry) for the
            ``external`` scale; None without a speed topic / match.
    """

    index: int
    stamp_ns: int
    image: np.ndarray
    encoding: str
    camera: CameraModel | None = None
    gt_depth_m: np.ndarray | None = None
    gt_dynamic_mask: np.ndarray | None = None
    gt_T_world_cam: Pose | None = None
    speed_mps: float | None = None
    frame_id: str = ""

    @property
    def stamp_s(self) -> float:
        return self.stamp_ns / NS_PER_S


# --- opening and listing ----------------------------------------------------------------------
def check_bag_path(path: str | Path) -> Path:
    """``path`` as a Path if it can be a bag (rosbag2 dir, .mcap, ROS 1 .bag); BagError saying why not."""
    path = Path(path).expanduser()
    if not path.exists():
        raise BagError(f"{path}: no such bag (expected a rosbag2 directory, an .mcap file or a ROS 1 .bag file)")
    if path.is_file() and path.suffix not in (".bag", ".mcap"):
        raise BagError(f"{path}: a single file must be a ROS 1 .bag or an .mcap; pass the rosbag2 directory "
                       f"(with metadata.yaml) for sqlite3 bags")
    if path.is_dir() and not (path / "metadata.yaml").is_file() and not _mcap_files(path):
        raise BagError(f"{path}: a rosbag2 directory needs metadata.yaml or .mcap files "
                       f"(found {sorted(p.name for p in path.iterdir())})")
    return path


def _mcap_files(path: Path) -> list[Path]:
    return [path] if path.suffix == ".mcap" and path.is_file() else sorted(path.glob("*.mcap")) if path.is_dir() else []


def open_bag(path: str | Path) -> Any:
    """An opened ``rosbags.highlevel.AnyReader`` (use as a context manager or call ``close()``).

    Raises :class:`BagError` with the reason when ``rosbags`` cannot open the bag.
    """
    from rosbags.highlevel import AnyReader

    path = check_bag_path(path)
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(f"{path}: no metadata.yaml (the recorder did not finish?)")
    if path.suffix == ".mcap":
        raise BagError(f"{path}: a bare .mcap file is read with the salvage reader, not rosbags")
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except Exception as exc:  # rosbags raises several unrelated types for damaged files
        raise BagError(f"{path}: cannot open the bag: {type(exc).__name__}: {exc}") from exc
    return reader


class MessageSource:
    """Deserialised messages of some topics, from rosbags or (for damaged / unfinished mcap) the salvage reader.

    ``messages()`` yields ``(topic, msgtype, log_ns, msg)`` and may raise on damage; ``topics``
    is ``{topic: (msgtype, count)}``; ``note`` says when the salvage reader is in use.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.note: str | None = None
        self._salvage: list[McapSalvageReader] = []
        try:
            reader = open_bag(path)
        except BagError as exc:
            mcaps = _mcap_files(path)
            if not mcaps:
                raise BagError(f"{exc}. A truncated ROS 1 bag needs 'rosbag reindex' first; a damaged sqlite3 "
                               f"bag cannot be salvaged") from exc
            self.note = (f"rosbags could not open the bag ({exc}); reading the intact part of "
                         f"{', '.join(p.name for p in mcaps)} record by record")
            log.warning("%s", self.note)
            try:
                self._salvage = [McapSalvageReader(p) for p in mcaps]
            except McapDamage as damage:
                raise BagError(f"{path}: not a readable bag: {damage}") from exc
            self.topics: dict[str, tuple[str, int]] = {}
            for salvage in self._salvage:
                for topic, (msgtype, count) in salvage.topics().items():
                    self.topics[topic] = (msgtype, self.topics.get(topic, (msgtype, 0))[1] + count)
            return
        try:
            self.topics = {name: (info.msgtype or "", int(info.msgcount)) for name, info in reader.topics.items()}
        finally:
            reader.close()

    def messages(self, topics: set[str]) -> Iterator[tuple[str, str, int, Any]]:
        for topic, msgtype, log_ns, _, msg in self.raw_messages(topics, cdr=False):
            yield topic, msgtype, log_ns, msg

    def raw_messages(self, topics: set[str], cdr: bool = True) -> Iterator[tuple[str, str, int, bytes, Any]]:
        """Yield ``(topic, msgtype, log_ns, data, msg)``: ``data`` is the CDR serialisation (ROS 1
        messages are converted) when ``cdr``, else the stored bytes; ``msg`` the deserialised message."""
        if self._salvage:
            for salvage in self._salvage:
                store = salvage.typestore()
                for topic, msgtype, log_ns, raw in salvage.raw_messages():
                    if topic in topics:
                        yield topic, msgtype, log_ns, raw, store.deserialize_cdr(raw, msgtype)
                if salvage.damage is not None:
                    raise salvage.damage
            return
        reader = open_bag(self.path)
        try:
            conns = [c for c in reader.connections if c.topic in topics]
            for conn, log_ns, raw in reader.messages(connections=conns):
                msg = reader.deserialize(raw, conn.msgtype)
                if cdr and not reader.is2:
                    raw = reader.typestore.ros1_to_cdr(raw, conn.msgtype)
                yield conn.topic, conn.msgtype, int(log_ns), raw, msg
        finally:
            reader.close()


def bag_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """topic -> (message type, message count) of any bag (intact messages only for a damaged mcap)."""
    return MessageSource(check_bag_path(path)).topics


def describe_topics(topics: dict[str, tuple[str, int]]) -> str:
    """Lines ``  /topic  type  (N msgs)`` for error messages."""
    if not topics:
        return "  (the bag has no topics)"
    return "\n".join(f"  {name}  {msgtype}  ({count} msgs)" for name, (msgtype, count) in sorted(topics.items()))


# --- message decoding -------------------------------------------------------------------------
def stamp_ns_of(msg: Any) -> int:
    """Header stamp of a message in integer nanoseconds."""
    return stamp_to_nanoseconds(msg.header.stamp)


def decode_image(msg: Any, msgtype: str) -> tuple[np.ndarray, str]:
    """Image or CompressedImage message -> (array, encoding) with the node's decoders
    (:mod:`depth_sfm_ros.msgs`; compressed: bgr8 / bgra8 / mono8 / mono16), so offline and node see the
    same pixels. Raises ValueError (:class:`~depth_sfm_ros.msgs.ImageDecodeError`) for a bad message."""
    if msgtype == "sensor_msgs/msg/CompressedImage":
        return compressed_msg_to_numpy(msg)
    return image_msg_to_numpy(msg, copy=True), str(msg.encoding)


def decode_depth(msg: Any, msgtype: str) -> np.ndarray:
    """Depth image message -> (H, W) float32 metres, NaN where unknown.

    32FC1 is metres (non-finite or <= 0 = unknown); 16UC1 / mono16 is millimetres (0 = unknown), REP 118.
    """
    if msgtype != "sensor_msgs/msg/Image":
        raise ValueError(f"ground-truth depth must be sensor_msgs/msg/Image (32FC1 or 16UC1), got {msgtype}")
    array = image_msg_to_numpy(msg)
    encoding = str(msg.encoding)
    if encoding == "32FC1":
        depth_m = array.astype(np.float32, copy=True)
        with np.errstate(invalid="ignore"):
            depth_m[~(np.isfinite(depth_m) & (depth_m > 0))] = np.nan
        return depth_m
    if encoding in ("16UC1", "mono16"):
        depth_m = array.astype(np.float32) * np.float32(1e-3)
        depth_m[array == 0] = np.nan
        return depth_m
    raise ValueError(f"ground-truth depth encoding must be 32FC1 (m) or 16UC1 (mm), got {encoding!r}")


def decode_mask(msg: Any, msgtype: str) -> np.ndarray:
    """Mask image (mono8 / 8UC1 / rgb8 ..., non-zero = dynamic) -> (H, W) bool."""
    if msgtype == "sensor_msgs/msg/CompressedImage":
        array, _ = compressed_msg_to_numpy(msg)
    else:
        array = image_msg_to_numpy(msg)
    return array > 0 if array.ndim == 2 else np.any(array > 0, axis=2)


def camera_info_model(msg: Any) -> CameraModel:
    """CameraInfo of ROS 2 (``k``, ``p``, ``d``) or ROS 1 (``K``, ``P``, ``D``) -> its calibration
    (:func:`depth_sfm_ros.msgs.camera_info_to_model`, as the node reads it)."""
    return camera_info_to_model(msg)


def _pose_of(p: Any, q: Any) -> Pose:
    return pose_from_point_quaternion(p, q)


def decode_poses(msg: Any, msgtype: str, tf_frames: tuple[str, str] | None) -> list[tuple[int, Pose]]:
    """Pose-carrying message -> [(stamp_ns, T_parent_child)].

    Odometry and PoseStamped give their pose; TransformStamped its transform; a TFMessage the
    transforms whose (frame_id, child_frame_id) equal ``tf_frames`` (required for TF).
    """
    if msgtype == "nav_msgs/msg/Odometry" or msgtype == "geometry_msgs/msg/PoseWithCovarianceStamped":
        return [(stamp_ns_of(msg), _pose_of(msg.pose.pose.position, msg.pose.pose.orientation))]
    if msgtype == "geometry_msgs/msg/PoseStamped":
        return [(stamp_ns_of(msg), _pose_of(msg.pose.position, msg.pose.orientation))]
    if msgtype == "geometry_msgs/msg/TransformStamped":
        return [(stamp_ns_of(msg), _pose_of(msg.transform.translation, msg.transform.rotation))]
    if msgtype == "tf2_msgs/msg/TFMessage":
        if tf_frames is None:
            raise ValueError("a TF ground-truth topic needs the (parent, child) frames of the camera pose")
        parent, child = (f.lstrip("/") for f in tf_frames)
        return [(stamp_ns_of(t), _pose_of(t.transform.translation, t.transform.rotation)) for t in msg.transforms
                if t.header.frame_id.lstrip("/") == parent and t.child_frame_id.lstrip("/") == child]
    raise ValueError(f"unsupported ground-truth pose type {msgtype}; expected one of {POSE_TYPES}")


# the streams paired with each image by stamp
STREAMS = ("camera_info", "gt_depth", "gt_mask", "gt_pose", "speed")


# --- stamp matching ---------------------------------------------------------------------------
@dataclass
class _StampedBuffer:
    """Items sorted by header stamp with nearest-stamp lookup (items may arrive out of order)."""

    stamps: list[int] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)

    def add(self, stamp_ns: int, item: Any) -> None:
        i = bisect_left(self.stamps, stamp_ns)
        self.stamps.insert(i, stamp_ns)
        self.items.insert(i, item)

    def nearest(self, stamp_ns: int, tolerance_ns: int | None) -> Any:
        """The item with the stamp closest to ``stamp_ns`` (within ``tolerance_ns`` unless None), or None."""
        if not self.stamps:
            return None
        i = bisect_left(self.stamps, stamp_ns)
        best = min((j for j in (i - 1, i) if 0 <= j < len(self.stamps)), key=lambda j: abs(self.stamps[j] - stamp_ns))
        if tolerance_ns is not None and abs(self.stamps[best] - stamp_ns) > tolerance_ns:
            return None
        return self.items[best]

    def drop_before(self, stamp_ns: int, keep_last: bool = False) -> None:
        """Forget items stamped before ``stamp_ns`` (but the newest of them with ``keep_last``)."""
        i = bisect_left(self.stamps, stamp_ns)
        if keep_last:
            i -= 1
        if i > 0:
            del self.stamps[:i]
            del self.items[:i]


@dataclass(frozen=True)
class TopicSelection:
    """Which topics feed which stream. ``None`` (or an empty string) means: not used."""

    image: str
    camera_info: str | None = None
    gt_depth: str | None = None
    gt_mask: str | None = None
    gt_pose: str | None = None
    gt_tf_frames: tuple[str, str] | None = None  # (parent, child) when gt_pose is a TF topic
    speed: str | None = None  # nav_msgs/Odometry whose twist gives the speed (scale_mode external)


class BagFrameReader:
    """Iterate the frames of a bag (see the module docstring).

    Args:
        path: rosbag2 directory or ROS 1 ``.bag`` file.
        topics: the topics to read. The image topic must exist (:class:`BagTopicError` lists the
            bag's topics otherwise); an optional topic that is missing is recorded in
            :attr:`missing` and its stream stays None.
        start_s: skip images whose stamp is less than ``start_s`` after the first image.
        duration_s: stop after images ``duration_s`` past the start (None = to the end).
        every: keep every N-th image after ``start_s``.
        max_stamp_diff_s: largest |stamp difference| for pairing ground truth with an image.
        speed_tolerance_s: largest |stamp difference| for pairing the speed topic with an image (the
            node's ``external_odometry_tolerance_s`` default, so offline and node pair alike).
        lookahead_s: how far (in bag time) to read past an image before pairing it, so ground
            truth recorded slightly later still matches.

    After iteration, :attr:`error` is a :class:`BagReadIssue` if the bag was damaged.
    """

    def __init__(self, path: str | Path, topics: TopicSelection, start_s: float = 0.0, duration_s: float | None = None,
                 every: int = 1, max_stamp_diff_s: float = 0.02, speed_tolerance_s: float = 0.05,
                 lookahead_s: float = 1.0) -> None:
        if every < 1 or int(every) != every:
            raise ValueError(f"every must be a positive integer, got {every}")
        if start_s < 0 or not np.isfinite(start_s):
            raise ValueError(f"start must be >= 0 seconds, got {start_s}")
        if duration_s is not None and not (duration_s > 0 and np.isfinite(duration_s)):
            raise ValueError(f"duration must be > 0 seconds, got {duration_s}")
        if not (max_stamp_diff_s >= 0 and lookahead_s >= 0 and speed_tolerance_s >= 0):
            raise ValueError(f"max_stamp_diff_s, speed_tolerance_s and lookahead_s must be >= 0, got "
                             f"{max_stamp_diff_s}, {speed_tolerance_s}, {lookahead_s}")
        self.path = check_bag_path(path)
        self.topics = topics
        self.start_ns = int(round(start_s * NS_PER_S))
        self.duration_ns = None if duration_s is None else int(round(duration_s * NS_PER_S))
        self.every = int(every)
        self.tolerance_ns = int(round(max_stamp_diff_s * NS_PER_S))
        self.speed_tolerance_ns = int(round(speed_tolerance_s * NS_PER_S))
        self.lookahead_ns = int(round(lookahead_s * NS_PER_S))
        self.error: BagReadIssue | None = None
        self.missing: dict[str, str] = {}  # stream -> topic that the bag lacks
        self.source = MessageSource(self.path)
        self.available = self.source.topics
        self.image_count = self._check_topics()
        self.frames_read = 0
        self.decode_errors: dict[str, int] = {}

    # -- topic checks -------------------------------------------------------------------------
    def _check_topics(self) -> int:
        sel = self.topics
        if sel.image not in self.available:
            raise BagTopicError(f"{self.path}: image topic {sel.image!r} is not in the bag. It has:\n"
                                f"{describe_topics(self.available)}")
        image_type = self.available[sel.image][0]
        if image_type not in IMAGE_TYPES:
            raise BagError(f"{self.path}: topic {sel.image} carries {image_type}, expected one of {IMAGE_TYPES}")
        wanted = {"camera_info": (sel.camera_info, (CAMERA_INFO_TYPE,)),
                  "gt_depth": (sel.gt_depth, ("sensor_msgs/msg/Image",)),
                  "gt_mask": (sel.gt_mask, IMAGE_TYPES),
                  "gt_pose": (sel.gt_pose, POSE_TYPES),
                  "speed": (sel.speed, ("nav_msgs/msg/Odometry",))}
        for stream, (topic, types) in wanted.items():
            if not topic:
                continue
            if topic not in self.available:
                self.missing[stream] = topic
                log.warning("%s: %s topic %s is not in the bag; that stream is left out", self.path, stream, topic)
                continue
            if self.available[topic][0] not in types:
                raise BagError(f"{self.path}: {stream} topic {topic} carries {self.available[topic][0]}, "
                               f"expected one of {types}")
            if self.available[topic][0] == "tf2_msgs/msg/TFMessage" and sel.gt_tf_frames is None:
                raise BagError(f"{self.path}: ground-truth pose topic {topic} is TF; give the (parent, child) frames "
                               f"of the camera pose")
        return self.available[sel.image][1]

    def _topic(self, stream: str) -> str | None:
        topic = getattr(self.topics, stream)
        return None if not topic or stream in self.missing else topic

    @property
    def expected_frames(self) -> int:
        """Upper bound of the frames this reader yields (from the image count, ignoring start/duration)."""
        return (self.image_count + self.every - 1) // self.every

    # -- iteration ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        streams = {name: self._topic(name) for name in STREAMS}
        topic_stream = {topic: name for name, topic in streams.items() if topic}
        topic_stream[self.topics.image] = "image"
        buffers = {name: _StampedBuffer() for name in STREAMS}
        pending: list[tuple[int, int, Any, str]] = []  # (log time, image index, msg, msgtype)
        state = {"image_index": 0, "first_ns": None, "kept": 0, "done": False}
        messages_read = 0
        last_log_ns: int | None = None
        stream = self.source.messages(set(topic_stream))
        while True:
            try:
                item = next(stream, None)
            except Exception as exc:  # damaged chunk / record / CDR payload
                self.error = BagReadIssue(messages_read, self.frames_read,
                                          None if last_log_ns is None else last_log_ns / NS_PER_S,
                                          f"{type(exc).__name__}: {exc}")
                break
            if item is None:
                break
            topic, msgtype, log_ns, msg = item
            messages_read += 1
            last_log_ns = log_ns
            name = topic_stream[topic]
            if name == "image":
                pending.append((log_ns, state["image_index"], msg, msgtype))
                state["image_index"] += 1
            else:
                self._buffer(name, msg, msgtype, buffers[name])
            while pending and log_ns - pending[0][0] > self.lookahead_ns:
                yield from self._emit(pending.pop(0), buffers, state)
                if state["done"]:
                    stream.close()
                    return
        while pending and not state["done"]:
            yield from self._emit(pending.pop(0), buffers, state)
        if self.error is not None:
            self.error.frames_read = self.frames_read
            log.error("%s: %s", self.path, self.error.describe())

    def _buffer(self, name: str, msg: Any, msgtype: str, buffer: _StampedBuffer) -> None:
        """Decode a non-image message into its stream's stamp buffer (a bad message is counted and skipped)."""
        try:
            if name == "camera_info":
                buffer.add(stamp_ns_of(msg), camera_info_model(msg))
            elif name == "gt_depth":
                buffer.add(stamp_ns_of(msg), (msg, msgtype))  # decoded on use: most are never needed twice
            elif name == "gt_mask":
                buffer.add(stamp_ns_of(msg), (msg, msgtype))
            elif name == "speed":
                buffer.add(stamp_ns_of(msg), odometry_speed_mps(msg))
            else:
                for stamp_ns, pose in decode_poses(msg, msgtype, self.topics.gt_tf_frames):
                    buffer.add(stamp_ns, pose)
        except (ValueError, TypeError) as exc:
            self._count_decode_error(name, exc)

    def _count_decode_error(self, name: str, exc: Exception) -> None:
        if name not in self.decode_errors:
            log.warning("%s: cannot decode a %s message (%s); skipping such messages", self.path, name, exc)
        self.decode_errors[name] = self.decode_errors.get(name, 0) + 1

    def _emit(self, entry: tuple[int, int, Any, str], buffers: dict[str, _StampedBuffer],
              state: dict) -> Iterator[Frame]:
        _, index, msg, msgtype = entry
        stamp_ns = stamp_ns_of(msg)
        if state["first_ns"] is None:
            state["first_ns"] = stamp_ns
        offset_ns = stamp_ns - state["first_ns"]
        if offset_ns < self.start_ns:
            return
        if self.duration_ns is not None and offset_ns > self.start_ns + self.duration_ns:
            state["done"] = True
            return
        state["kept"] += 1
        if (state["kept"] - 1) % self.every:
            return
        try:
            image, encoding = decode_image(msg, msgtype)
        except ValueError as exc:
            self._count_decode_error("image", exc)
            return
        frame = Frame(index=index, stamp_ns=stamp_ns, image=image, encoding=encoding,
                      camera=buffers["camera_info"].nearest(stamp_ns, None), frame_id=str(msg.header.frame_id))
        depth = buffers["gt_depth"].nearest(stamp_ns, self.tolerance_ns)
        if depth is not None:
            try:
                frame.gt_depth_m = decode_depth(*depth)
            except ValueError as exc:
                self._count_decode_error("gt_depth", exc)
        mask = buffers["gt_mask"].nearest(stamp_ns, self.tolerance_ns)
        if mask is not None:
            try:
                frame.gt_dynamic_mask = decode_mask(*mask)
            except ValueError as exc:
                self._count_decode_error("gt_mask", exc)
        frame.gt_T_world_cam = buffers["gt_pose"].nearest(stamp_ns, self.tolerance_ns)
        frame.speed_mps = buffers["speed"].nearest(stamp_ns, self.speed_tolerance_ns)
        horizon = stamp_ns - self.lookahead_ns - max(self.tolerance_ns, self.speed_tolerance_ns)
        for name in ("gt_depth", "gt_mask", "gt_pose", "speed"):
            buffers[name].drop_before(horizon)
        buffers["camera_info"].drop_before(horizon, keep_last=True)  # a CameraInfo sent once stays in use
        self.frames_read += 1
        yield frame


def topic_selection(image: str, camera_info: str | None = None, gt_depth: str | None = None,
                    gt_mask: str | None = None, gt_pose: str | None = None,
                    gt_tf_frames: Sequence[str] | None = None, speed: str | None = None) -> TopicSelection:
    """Build a :class:`TopicSelection`, normalising empty strings to None and checking the TF frames."""
    if not image:
        raise ValueError("an image topic is required")
    frames = None
    if gt_tf_frames:
        if len(gt_tf_frames) != 2 or not all(gt_tf_frames):
            raise ValueError(f"TF frames must be (parent, child), got {gt_tf_frames!r}")
        frames = (str(gt_tf_frames[0]), str(gt_tf_frames[1]))
    return TopicSelection(image=image, camera_info=camera_info or None, gt_depth=gt_depth or None,
                          gt_mask=gt_mask or None, gt_pose=gt_pose or None, gt_tf_frames=frames, speed=speed or None)
