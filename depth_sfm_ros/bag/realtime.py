"""``eval-bag --realtime``: play the bag over DDS at its recorded rate through a real ``depth_sfm_node``
process, record what the node publishes, and score it like the offline path.

Three processes besides this one:

* the recorder (``python -m depth_sfm_ros.bag.realtime record``): subscribes (reliable) to the
  node's ``~/depth``, ``~/dynamic_mask`` and ``~/odometry``, writes them unchanged into an mcap
  bag (``OUT/realtime_bag``, bag time = header stamp) and prints one line per depth image with its
  receive time;
* the node (the ``depth_sfm_node`` executable) with the model, backend and depth range of the
  offline pipeline, ``base_frame:=''`` so ``~/odometry`` is the camera pose, and its ``image`` /
  ``camera_info`` inputs remapped to the bag's topics;
* the player (``python -m depth_sfm_ros.bag.realtime play``): publishes the bag's image and
  CameraInfo messages (serialised bytes as stored; ROS 1 bags converted to CDR) at the recorded
  rate, and prints one line per image with its publish time.

The latency is receive time - publish time of the same stamp (both wall clocks of this machine).
With ``compare_offline`` the offline pipeline also runs over the bag and ``metrics["comparison"]``
gives the largest depth difference on the frames both paths processed.

rclpy is imported only inside the player / recorder functions (never by the parent).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np

from depth_sfm_ros.geometry import Pose
from depth_sfm_ros.ros.topics import NODE_NAME, resolve

from depth_sfm_ros.msgs import image_msg_to_numpy, odometry_msg_to_pose
from depth_sfm_ros.msgs.rosbags_msgs import typestore

from .defaults import (ALIGNMENTS, DEFAULT_CAMERA_INFO_TOPIC, DEFAULT_GT_DEPTH_TOPIC, DEFAULT_GT_MASK_TOPIC,
                       DEFAULT_GT_ODOM_TOPIC, DEFAULT_IMAGE_TOPIC)
from .eval_bag import (BagCameraInput, evaluate_bag, finish, node_pipeline_config, open_frames, reader_notes,
                       resolve_model, with_kitti)
from .reader import NS_PER_S, BagError, MessageSource, check_bag_path, decode_mask, stamp_ns_of
from .scoring import FrameScorer

log = logging.getLogger(__name__)

DEPTH_TOPIC = resolve("~/depth", NODE_NAME)
MASK_TOPIC = resolve("~/dynamic_mask", NODE_NAME)
ODOM_TOPIC = resolve("~/odometry", NODE_NAME)
RECORDED = {DEPTH_TOPIC: "sensor_msgs/msg/Image", MASK_TOPIC: "sensor_msgs/msg/Image",
            ODOM_TOPIC: "nav_msgs/msg/Odometry"}


# --- child processes --------------------------------------------------------------------------
def _rclpy_type(msgtype: str) -> Any:
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    import importlib
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _say(*words: Any) -> None:
    print(*words, flush=True)


def play(bag: str, topics: Sequence[str], image_topic: str, start_s: float, duration_s: float | None,
         wait_s: float) -> int:
    """Publish ``topics`` of ``bag`` at the recorded rate; prints ``PUB <stamp_ns> <wall_s>`` per image."""
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    source = MessageSource(check_bag_path(bag))
    missing = [t for t in topics if t not in source.topics]
    if missing:
        print(f"player: topics {missing} are not in the bag", file=sys.stderr)
        return 2
    rclpy.init()
    node = rclpy.create_node("depth_sfm_bag_player")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
    pubs = {t: node.create_publisher(_rclpy_type(source.topics[t][0]), t, qos) for t in topics}
    deadline = time.monotonic() + wait_s
    while pubs[image_topic].get_subscription_count() == 0:
        if time.monotonic() > deadline:
            print(f"player: nobody subscribed to {image_topic} within {wait_s} s", file=sys.stderr)
            return 3
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # let the other subscriptions (CameraInfo) finish matching
    first_image_ns = first_log_ns = wall0 = None
    try:
        for topic, _, log_ns, data, msg in source.raw_messages(set(topics)):
            if topic == image_topic:
                stamp_ns = stamp_ns_of(msg)
                if first_image_ns is None:
                    first_image_ns = stamp_ns
                offset_s = (stamp_ns - first_image_ns) / NS_PER_S
                if offset_s < start_s:
                    continue
                if duration_s is not None and offset_s > start_s + duration_s:
                    break
            elif first_image_ns is None:
                continue
            if first_log_ns is None:
                first_log_ns, wall0 = log_ns, time.monotonic()
            delay = wall0 + (log_ns - first_log_ns) / NS_PER_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pubs[topic].publish(bytes(data))
            if topic == image_topic:
                _say("PUB", stamp_ns, f"{time.time():.6f}")
    except Exception as exc:  # a damaged bag: what was played stays played
        print(f"player: stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
    _say("DONE")
    time.sleep(0.2)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def record(out: str, wait_s: float) -> int:
    """Record the node's outputs into the mcap bag ``out`` until SIGINT / SIGTERM.

    Prints ``READY`` once the node's depth publisher is matched and ``GOT <stamp_ns> <wall_s>`` per depth image.
    """
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message
    from rclpy.signals import SignalHandlerOptions
    from rosbags.rosbag2 import StoragePlugin, Writer

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("depth_sfm_bag_recorder")
    writer = Writer(Path(out), version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conns = {topic: writer.add_connection(topic, msgtype, typestore=typestore())
             for topic, msgtype in RECORDED.items()}
    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)

    def callback(topic: str, cls: Any) -> Any:
        def on_message(data: bytes) -> None:
            received = time.time()
            msg = deserialize_message(data, cls)
            stamp_ns = int(msg.header.stamp.sec) * NS_PER_S + int(msg.header.stamp.nanosec)
            writer.write(conns[topic], stamp_ns, data)
            if topic == DEPTH_TOPIC:
                _say("GOT", stamp_ns, f"{received:.6f}")
        return on_message

    for topic, msgtype in RECORDED.items():
        cls = _rclpy_type(msgtype)
        node.create_subscription(cls, topic, callback(topic, cls), qos, raw=True)
    deadline = time.monotonic() + wait_s
    ready = False
    while not stop.is_set():
        rclpy.spin_once(node, timeout_sec=0.05)
        if not ready and node.count_publishers(DEPTH_TOPIC) > 0:
            ready = True
            time.sleep(0.3)  # matching completes on both sides
            _say("READY")
        if not ready and time.monotonic() > deadline:
            print(f"recorder: no publisher on {DEPTH_TOPIC} within {wait_s} s", file=sys.stderr)
            break
    writer.close()
    node.destroy_node()
    rclpy.try_shutdown()
    return 0 if ready else 3


# --- the parent -------------------------------------------------------------------------------
class _Child:
    """A child process whose stdout lines are collected by a thread."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.lines: list[str] = []
        self.stderr_path = log_dir / f"{name}.log"
        self._stderr = self.stderr_path.open("w")
        log.debug("starting %s: %s", name, " ".join(command))
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._stderr, env=env, text=True,
                                     bufsize=1)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_for(self, word: str, timeout_s: float, others: Sequence["_Child"] = ()) -> None:
        deadline = time.monotonic() + timeout_s
        while not any(line.startswith(word) for line in self.lines):
            for child in (self, *others):
                if child.proc.poll() is not None:
                    raise RuntimeError(f"{child.name} exited with {child.proc.returncode} before {self.name} said "
                                       f"{word}: {child.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not say {word} within {timeout_s} s; logs: "
                                   f"{'; '.join(c.name + ': ' + c.tail() for c in (self, *others))}")
            time.sleep(0.05)

    def tail(self, chars: int = 1500) -> str:
        self._stderr.flush()
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return text[-chars:].strip() or "(no output)"

    def stop(self, timeout_s: float = 10.0, grace_s: float = 0.0) -> int:
        """Wait ``grace_s`` for it to exit on its own, then SIGINT, then SIGKILL after ``timeout_s``;
        returns the exit code."""
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop on SIGINT; killing it", self.name)
                self.proc.kill()
                self.proc.wait()
        self._thread.join(timeout=2.0)
        self._stderr.close()
        return int(self.proc.returncode)


def _stamped(lines: list[str], word: str) -> dict[int, float]:
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == word:
            out[int(parts[1])] = float(parts[2])
    return out


def node_command(model: Path, config: Any, image_topic: str, camera_info_topic: str | None, compressed: bool,
                 executable: str | None = None, camera_input: str = "auto", undistort_alpha: float = 0.0) -> list[str]:
    """The ``depth_sfm_node`` command line matching the offline PipelineConfig ``config`` and camera policy
    (``camera_input`` / ``undistort_alpha``; with ``auto`` the node judges the remapped image topic, the bag's,
    as eval-bag does)."""
    exe = executable or shutil.which("depth_sfm_node") or str(Path(sys.executable).parent / "depth_sfm_node")
    base = image_topic[: -len("/compressed")] if compressed and image_topic.endswith("/compressed") else image_topic
    params = {"model": str(model), "backend": config.backend, "device": config.device,
              "scale_mode": config.scale_mode, "min_depth_m": float(config.min_depth_m),
              "max_depth_m": float(config.max_depth_m), "mask_threshold": float(config.mask_threshold),
              "max_stamp_gap_s": float(config.max_stamp_gap_s), "camera_height_m": float(config.camera_height_m),
              "fixed_scale": float(config.fixed_scale), "base_frame": "", "output_qos": "reliable",
              "input_qos": "reliable", "qos_depth": 10, "image_transport": "compressed" if compressed else "raw",
              "upsample_to_camera": bool(config.upsample_to_camera), "camera_input": camera_input,
              "undistort_alpha": float(undistort_alpha)}
    gate = getattr(config, "motion_gate", None)  # still-camera test and ground-plane judgement: as offline
    if gate is not None:
        params.update({"still_detection": bool(gate.enabled), "still_threshold_px": float(gate.threshold_px),
                       "still_max_translation_m": float(gate.max_translation_m),
                       "still_max_rotation_deg": float(gate.max_rotation_deg),
                       "ground_max_tilt_deg": float(config.ground_max_tilt_deg),
                       "ground_min_inlier_fraction": float(config.ground_min_inlier_ratio),
                       "scale_max_jump": float(config.scale_max_jump)})
    command = [exe, "--ros-args"]
    for name, value in params.items():
        text = ("true" if value else "false") if isinstance(value, bool) else (f"'{value}'" if value == "" else value)
        command += ["-p", f"{name}:={text}"]
    command += ["-r", f"image:={base}", "-r", f"image/compressed:={base}/compressed"]
    if camera_info_topic:
        command += ["-r", f"camera_info:={camera_info_topic}"]
    return command


def _read_recording(path: Path) -> dict[int, dict]:
    """stamp_ns -> {"depth": (H, W) float32, "mask": bool array | None, "T": Pose | None} of the recorded bag."""
    out: dict[int, dict] = {}
    source = MessageSource(path)
    for topic, msgtype, _, msg in source.messages(set(RECORDED)):
        entry = out.setdefault(stamp_ns_of(msg), {"depth": None, "mask": None, "T": None})
        if topic == DEPTH_TOPIC:
            entry["depth"] = image_msg_to_numpy(msg).astype(np.float32)
        elif topic == MASK_TOPIC:
            entry["mask"] = decode_mask(msg, msgtype)
        else:
            entry["T"] = odometry_msg_to_pose(msg)
    return {stamp: e for stamp, e in out.items() if e["depth"] is not None}


def evaluate_bag_realtime(bag: str | Path, out_dir: str | Path, *, image_topic: str = DEFAULT_IMAGE_TOPIC,
                          camera_info_topic: str | None = DEFAULT_CAMERA_INFO_TOPIC,
                          gt_depth_topic: str | None = DEFAULT_GT_DEPTH_TOPIC,
                          gt_odom_topic: str | None = DEFAULT_GT_ODOM_TOPIC,
                          gt_mask_topic: str | None = DEFAULT_GT_MASK_TOPIC,
                          gt_tf_frames: Sequence[str] | None = None, gt_kitti: str | Path | None = None,
                          model: str | Path | None = None,
                          backend: str = "auto", device: str = "auto", scale_mode: str | None = None,
                          pipeline_config: Any = None, camera_input: str | None = None,
                          undistort_alpha: float | None = None,
                          start_s: float = 0.0, duration_s: float | None = None, min_depth_m: float = 1e-3,
                          max_depth_m: float = 80.0, alignment: str = "auto", compare_offline: bool = True,
                          report: bool = True, env: dict[str, str] | None = None, startup_timeout_s: float = 60.0,
                          node_executable: str | None = None) -> dict:
    """Score the outputs of a real ``depth_sfm_node`` fed by the bag at its recorded rate.

    Arguments as :func:`~depth_sfm_ros.bag.eval_bag.evaluate_bag` (``pipeline_config``: the node is started
    with its model, backend, scale and depth-range settings; ``camera_input`` / ``undistort_alpha``: its
    parameters of those names, and the ground truth is put into the published depth's geometry as offline);
    ``env`` adds environment variables for the child processes (e.g. ``ROS_DOMAIN_ID``), ``compare_offline`` also runs the offline
    path into ``OUT/offline`` and compares the depth of the frames both processed.
    Frames the node dropped (it keeps only the newest image when it falls behind) are counted in
    ``metrics["realtime"]["dropped"]``; the depth metrics cover the frames it published.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    if scale_mode == "external" or getattr(pipeline_config, "scale_mode", None) == "external":
        raise ValueError("scale_mode 'external' with --realtime: the replay plays the images and CameraInfo "
                         "only, no odometry for the node's external_odometry input; use it offline (without "
                         "--realtime), where the speed comes from the ground-truth poses")
    out_dir = Path(out_dir)
    camera = BagCameraInput(image_topic, camera_input, undistort_alpha)
    reader, kitti, notes, expected = open_frames(bag, image_topic, camera_info_topic, gt_depth_topic, gt_odom_topic,
                                                 gt_mask_topic, gt_tf_frames, gt_kitti, start_s, duration_s, 1,
                                                 0.02)
    if pipeline_config is not None:
        config, model_path = pipeline_config, resolve_model(pipeline_config.model)
    else:
        model_path = resolve_model(model)
        config = node_pipeline_config(model_path, backend, device, scale_mode)
    if alignment == "auto":
        alignment = "sim3" if config.scale_mode == "none" else "se3"
    out_dir.mkdir(parents=True, exist_ok=True)
    recording = out_dir / "realtime_bag"
    if recording.exists():
        raise FileExistsError(f"{recording} exists; remove it or choose another --out")
    compressed = reader.available[image_topic][0] == "sensor_msgs/msg/CompressedImage"
    camera_info = camera_info_topic if camera_info_topic and "camera_info" not in reader.missing else None
    child_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    me = [sys.executable, "-m", "depth_sfm_ros.bag.realtime"]
    children: list[_Child] = []
    try:
        recorder = _Child("recorder", me + ["record", str(recording), "--wait", str(startup_timeout_s)],
                          child_env, out_dir)
        children.append(recorder)
        node = _Child("node", node_command(model_path, config, image_topic, camera_info, compressed,
                                           node_executable, camera_input=camera.setting,
                                           undistort_alpha=camera.alpha), child_env, out_dir)
        children.append(node)
        recorder.wait_for("READY", startup_timeout_s, others=[node])
        player_topics = [image_topic] + ([camera_info] if camera_info else [])
        player_cmd = me + ["play", str(bag), "--image-topic", image_topic, "--topics", *player_topics,
                           "--start", str(start_s), "--wait", str(startup_timeout_s)]
        if duration_s is not None:
            player_cmd += ["--duration", str(duration_s)]
        player = _Child("player", player_cmd, child_env, out_dir)
        children.append(player)
        player.wait_for("DONE", startup_timeout_s + 3600.0, others=[node, recorder])
        published = _stamped(player.lines, "PUB")
        quiet_since, seen = time.monotonic(), -1
        while time.monotonic() - quiet_since < 2.0:  # until the node's outputs stop arriving
            got = _stamped(recorder.lines, "GOT")
            if set(published) <= set(got):
                break
            if len(got) != seen:
                seen, quiet_since = len(got), time.monotonic()
            time.sleep(0.05)
    finally:
        codes = {child.name: child.stop(grace_s=5.0 if child.name == "player" else 0.0)
                 for child in reversed(children)}
    received = _stamped(recorder.lines, "GOT")
    log.info("realtime: played %d images, the node published %d depth images (exit codes %s)", len(published),
             len(received), codes)
    outputs = _read_recording(recording)

    scorer = FrameScorer(min_depth_m, max_depth_m, 4, (max(config.min_depth_m, 0.5), config.max_depth_m))
    scorer.expected_gt = expected
    first = True
    for frame in reader:
        with_kitti(frame, kitti)
        output = outputs.get(frame.stamp_ns)
        if output is None or frame.stamp_ns not in published:
            continue
        try:
            camera.prepare(frame)  # ground truth into the geometry of the node's depth
        except ValueError as exc:  # an unsupported camera model: the node published no depth either
            notes.append(f"frame {frame.index}: {exc}")
            continue
        result = SimpleNamespace(depth_m=output["depth"], dynamic_mask=output["mask"],
                                 T_odom_cam=output["T"] if output["T"] is not None else Pose.identity(),
                                 reset=first, scale=math.nan)
        first = False
        latency_ms = (received.get(frame.stamp_ns, math.nan) - published[frame.stamp_ns]) * 1e3
        scorer.add(frame, result, latency_ms)
    if not scorer.frames:
        raise RuntimeError(f"the node published no depth for the {len(published)} images played; see "
                           f"{out_dir / 'node.log'}: {children[1].tail() if len(children) > 1 else ''}")
    metrics, data = scorer.metrics(config.scale_mode, alignment, notes)
    pub_times = sorted(published.values())
    metrics["speed"]["fps"] = (len(received) - 1) / (pub_times[-1] - pub_times[0]) if len(pub_times) > 1 \
        else math.nan  # frames published per second of playback
    metrics["realtime"] = {"frames_played": len(published), "frames_published": len(received),
                           "dropped": len(set(published) - set(received)), "recording": str(recording),
                           "exit_codes": codes}
    if len(received) < len(published):
        notes.append(f"the node dropped {len(published) - len(received)} of {len(published)} frames at the "
                     f"recorded rate; depth metrics cover the frames it published")
    reader_notes(reader, metrics, notes)
    if compare_offline:
        metrics["comparison"] = _compare_offline(bag, out_dir / "offline", outputs, config, image_topic,
                                                 camera_info_topic, gt_depth_topic, gt_odom_topic, gt_mask_topic,
                                                 gt_tf_frames, gt_kitti, start_s, duration_s, min_depth_m,
                                                 max_depth_m, camera)
    notes.extend(f"camera: {message}" for message in camera.messages)
    metrics["notes"] = notes
    metrics["source"] = {"bag": str(bag), "image_topic": image_topic, "frames_in_topic": reader.image_count,
                         "model": str(model_path), "backend": config.backend, "path": "realtime (depth_sfm_node)",
                         "start_s": start_s, "duration_s": duration_s, "camera": list(camera.messages)}
    return finish(out_dir, metrics, data, report)


def _compare_offline(bag: str | Path, out_dir: Path, outputs: dict[int, dict], config: Any, image_topic: str,
                     camera_info_topic: str | None, gt_depth_topic: str | None, gt_odom_topic: str | None,
                     gt_mask_topic: str | None, gt_tf_frames: Sequence[str] | None, gt_kitti: str | Path | None,
                     start_s: float, duration_s: float | None, min_depth_m: float, max_depth_m: float,
                     camera: BagCameraInput) -> dict:
    """Run the offline path with the node's configuration and compare depth on the common frames."""
    offline_depth: dict[int, np.ndarray] = {}

    def keep(frame: Any, result: Any) -> None:
        offline_depth[frame.stamp_ns] = result.depth_m.copy()

    offline = evaluate_bag(bag, out_dir, image_topic=image_topic, camera_info_topic=camera_info_topic,
                           gt_depth_topic=gt_depth_topic, gt_odom_topic=gt_odom_topic, gt_mask_topic=gt_mask_topic,
                           gt_tf_frames=gt_tf_frames, gt_kitti=gt_kitti, pipeline_config=config, start_s=start_s,
                           duration_s=duration_s, min_depth_m=min_depth_m, max_depth_m=max_depth_m, report=False,
                           on_frame=keep, camera_input=camera.setting, undistort_alpha=camera.alpha)
    common = sorted(set(offline_depth) & set(outputs))
    max_diff, nan_mismatch = 0.0, 0
    for stamp in common:
        a, b = offline_depth[stamp], outputs[stamp]["depth"]
        if a.shape != b.shape:
            raise RuntimeError(f"offline depth {a.shape} and node depth {b.shape} differ in size at stamp {stamp}")
        both = np.isfinite(a) & np.isfinite(b)
        nan_mismatch += int(np.sum(np.isfinite(a) != np.isfinite(b)))
        if both.any():
            max_diff = max(max_diff, float(np.max(np.abs(a[both] - b[both]))))
    return {"frames_compared": len(common), "depth_max_abs_diff_m": max_diff if common else math.nan,
            "depth_valid_mismatch_pixels": nan_mismatch, "offline_frames": offline["frames"],
            "offline_metrics": str(out_dir / "metrics.json")}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the player / recorder child processes."""
    parser = argparse.ArgumentParser(prog="python -m depth_sfm_ros.bag.realtime")
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("play", help="publish a bag's topics at the recorded rate")
    p.add_argument("bag")
    p.add_argument("--image-topic", required=True)
    p.add_argument("--topics", nargs="+", required=True)
    p.add_argument("--start", type=float, default=0.0)
    p.add_argument("--duration", type=float, default=None)
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for a subscriber")
    r = sub.add_parser("record", help="record the node's outputs into an mcap bag")
    r.add_argument("out")
    r.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the node's publisher")
    args = parser.parse_args(argv)
    try:
        if args.role == "play":
            return play(args.bag, args.topics, args.image_topic, args.start, args.duration, args.wait)
        return record(args.out, args.wait)
    except BagError as exc:
        print(f"{args.role}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
