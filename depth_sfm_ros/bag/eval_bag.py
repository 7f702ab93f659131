"""``depth-sfm eval-bag``: replay a bag through the Pipeline and score it against ground truth.

Python entry point: :func:`evaluate_bag` (the demo calls it) returns the metrics dict that is
also written to ``OUT/metrics.json``::

    frames, depth {abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3, n_images, regions {static, dynamic},
    unscaled {...}}, odometry {ate_m, rpe_trans_m, rpe_rot_deg, alignment, ...}, mask {iou, precision,
    recall}, speed {fps, latency_ms_p50, latency_ms_p99}, scale {mode, median_ratio_to_gt, assumption,
    status_last, refusals, refusals_by_reason}, motion {still_frames, moving_frames, ...} (the still-camera
    test; offline only), notes [...], bag_error {...} (only for a damaged bag), source {...}

Each frame goes through the node's camera policy first (:class:`BagCameraInput`: a raw distorted camera's
image, and the ground truth recorded with it, are undistorted; ``notes`` / ``source.camera`` say what was
decided). A ground-truth stream that the bag lacks leaves its section out, with a line in ``notes``. All
numbers come from :mod:`depth_sfm_ros.metrics` (the one implementation shared with training).
``--realtime`` runs the same bag through a real ``depth_sfm_node`` over DDS instead (see
:mod:`depth_sfm_ros.bag.realtime`, which builds on this module); the command line is :mod:`depth_sfm_ros.bag.cli`.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from depth_sfm_ros.geometry import Intrinsics, Pose
from depth_sfm_ros.geometry.camera_model import CameraInputResolver, InputGeometry, topic_is_rectified

from .defaults import (ALIGNMENTS, DEFAULT_CAMERA_INFO_TOPIC, DEFAULT_GT_DEPTH_TOPIC, DEFAULT_GT_MASK_TOPIC,
                       DEFAULT_GT_ODOM_TOPIC, DEFAULT_IMAGE_TOPIC)
from .kitti_gt import KittiGroundTruth
from .reader import BagFrameReader, BagTopicError, Frame, describe_topics, topic_selection
from .report import ReportData, write_report
from .scoring import FrameScorer

log = logging.getLogger(__name__)


# --- helpers ----------------------------------------------------------------------------------
def resolve_model(model: str | Path | None) -> Path:
    """The model to load: ``model``, or the bundled default model; ValueError with the fix otherwise."""
    if model:
        path = Path(model).expanduser()
        if not path.exists():
            raise ValueError(f"--model {path}: no such file or directory (expected an exported model dir)")
        return path
    from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR as default
    if not (default / "model_card.yaml").is_file():
        raise ValueError(f"no --model given and the default model is not bundled at {default}; pass --model DIR "
                         f"(an exported model dir, see 'depth-sfm export')")
    return default

def node_pipeline_config(model: str | Path, backend: str = "auto", device: str = "auto",
                         scale_mode: str | None = None) -> Any:
    """The :class:`~depth_sfm_ros.runtime.pipeline.PipelineConfig` that ``depth_sfm_node`` runs with for
    these settings and its parameter defaults for everything else (depth range, mask threshold, ...),
    so a number measured here is the number the node produces. ``scale_mode`` None = the node's default;
    "external" (offline only: the speed comes from the ground-truth poses) is accepted too.
    """
    from dataclasses import replace

    from depth_sfm_ros.ros.params import ParameterError, validate
    from depth_sfm_ros.ros.pipeline_factory import pipeline_config

    values = {"model": str(model), "backend": backend, "device": device}
    if scale_mode is not None and scale_mode != "external":
        values["scale_mode"] = scale_mode
    try:
        config = pipeline_config(validate(values))
    except ParameterError as exc:
        raise ValueError(str(exc)) from None
    return replace(config, scale_mode="external") if scale_mode == "external" else config


def node_camera_input(camera_input: str | None = None, undistort_alpha: float | None = None) -> tuple[str, float]:
    """The node's ``camera_input`` / ``undistort_alpha`` parameters, validated as the node validates them
    (None = the node's default); ValueError naming the bad one."""
    from depth_sfm_ros.ros.params import ParameterError, validate

    values: dict[str, Any] = {}
    if camera_input is not None:
        values["camera_input"] = camera_input
    if undistort_alpha is not None:
        values["undistort_alpha"] = undistort_alpha
    try:
        params = validate(values, check_model_files=False)
    except ParameterError as exc:
        raise ValueError(str(exc)) from None
    return params.camera_input, params.undistort_alpha


class BagCameraInput:
    """The node's camera policy (:mod:`depth_sfm_ros.geometry.camera_model`) for a bag's frames, so eval-bag
    feeds the Pipeline what ``depth_sfm_node`` feeds it: one
    :class:`~depth_sfm_ros.geometry.camera_model.CameraInputResolver` for the image topic (rectified when
    ``camera_input`` says so, or with ``auto`` when the topic is ``image_rect*``: P, no remap; raw: K, or the
    image undistorted with cached remap tables).

    :meth:`prepare` puts a frame's image *and its ground truth* (depth, dynamic mask: recorded in the image
    topic's geometry) into the geometry of the intrinsics it returns, in place. ``intrinsics`` (fx, fy, cx, cy
    of the bag's images, ``--intrinsics``) overrides the CameraInfo: the images are used as they are.
    ``messages`` collects each decision once (for the report's notes).
    """

    def __init__(self, image_topic: str, camera_input: str | None = None, undistort_alpha: float | None = None,
                 intrinsics: Sequence[float] | None = None) -> None:
        if intrinsics is not None and len(intrinsics) != 4:
            raise ValueError(f"intrinsics must be (fx, fy, cx, cy), got {intrinsics!r}")
        self.setting, self.alpha = node_camera_input(camera_input, undistort_alpha)
        self.rectified = topic_is_rectified(image_topic, self.setting)
        self.override = None if intrinsics is None else tuple(float(v) for v in intrinsics)
        self.resolver = CameraInputResolver(self.rectified, self.alpha)
        self._label_resolvers: dict[tuple[int, int], CameraInputResolver] = {}  # ground truth of another size
        self.messages: list[str] = []

    def prepare(self, frame: Frame) -> Intrinsics | None:
        """The intrinsics to give the Pipeline for ``frame`` (None: the model card's), after putting
        ``frame.image``, ``frame.gt_depth_m`` (NaN where no raw pixel maps) and ``frame.gt_dynamic_mask`` into
        their geometry. Raises ValueError (:class:`~depth_sfm_ros.geometry.camera_model.UnsupportedCameraModel`
        for a raw image of a distortion model that cannot be undistorted, as the node then publishes no depth)."""
        h, w = frame.image.shape[:2]
        if self.override is not None:
            return Intrinsics(*self.override, width=w, height=h)
        if frame.camera is None:
            return None
        model = frame.camera if frame.camera.size == (w, h) else frame.camera.scaled(w, h)
        geometry, changed = self.resolver.resolve(model)
        if changed and geometry.message not in self.messages:
            self.messages.append(geometry.message)
        if geometry.remaps:
            frame.image = geometry.prepare(frame.image)
            if frame.gt_depth_m is not None:
                frame.gt_depth_m = self._labels(geometry, frame.gt_depth_m, np.nan)
            if frame.gt_dynamic_mask is not None:
                frame.gt_dynamic_mask = self._labels(geometry, frame.gt_dynamic_mask, 0)
        return geometry.intrinsics

    def _labels(self, geometry: InputGeometry, array: np.ndarray, fill: float) -> np.ndarray:
        """Ground truth in the image's undistorted geometry (nearest neighbour); ground truth of another size
        than the image is undistorted with the camera scaled to it."""
        gh, gw = array.shape[:2]
        if (gw, gh) != geometry.model.size:
            resolver = self._label_resolvers.setdefault((gw, gh), CameraInputResolver(self.rectified, self.alpha))
            geometry = resolver.resolve(geometry.model.scaled(gw, gh))[0]
        return geometry.prepare_labels(array, fill)


def _finite_or_none(value: Any) -> Any:
    """NaN / inf -> None recursively, so metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value

def _gt_speed_mps(prev: tuple[float, Pose] | None, stamp_s: float, pose: Pose | None) -> float | None:
    if prev is None or pose is None or stamp_s <= prev[0]:
        return None
    return float(np.linalg.norm(pose.t - prev[1].t) / (stamp_s - prev[0]))


def _progress(total: int, enabled: bool) -> Any:
    """A tqdm bar (frames, frames/s, ETA) on stderr, or None when disabled / tqdm is missing."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        log.info("tqdm is not installed: progress is logged every 100 frames")
        return None
    return tqdm(total=total, unit="frame", desc="eval-bag", dynamic_ncols=True)

# --- pieces shared with the realtime path -----------------------------------------------------
def finish(out_dir: Path, metrics: dict, data: ReportData, report: bool) -> dict:
    """Make ``metrics`` strict JSON (NaN -> None), write metrics.json and the report; return the metrics."""
    metrics = _finite_or_none(metrics)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    if report:
        write_report(out_dir, metrics, data)
    for note in metrics.get("notes", []):
        log.info("eval-bag: %s", note)
    return metrics


def open_frames(bag: str | Path, image_topic: str, camera_info_topic: str | None, gt_depth_topic: str | None,
                gt_odom_topic: str | None, gt_mask_topic: str | None, gt_tf_frames: Sequence[str] | None,
                gt_kitti: str | Path | None, start_s: float, duration_s: float | None, every: int,
                max_stamp_diff_s: float, speed_topic: str | None = None
                ) -> tuple[BagFrameReader, KittiGroundTruth | None, list[str], dict]:
    """The frame reader, the KITTI ground truth (or None), the notes about missing streams, and
    which ground-truth streams were asked for. A ``speed_topic`` the bag lacks is an error (BagTopicError)."""
    kitti = KittiGroundTruth(gt_kitti) if gt_kitti else None
    topics = topic_selection(image_topic, camera_info_topic,
                             None if kitti and "depth" in kitti.streams else gt_depth_topic,
                             None if kitti and "mask" in kitti.streams else gt_mask_topic,
                             None if kitti and "pose" in kitti.streams else gt_odom_topic, gt_tf_frames,
                             speed=speed_topic)
    from depth_sfm_ros.ros.params import PARAMETERS_BY_NAME
    reader = BagFrameReader(bag, topics, start_s=start_s, duration_s=duration_s, every=every,
                            max_stamp_diff_s=max_stamp_diff_s,
                            speed_tolerance_s=PARAMETERS_BY_NAME["external_odometry_tolerance_s"].default)
    if "speed" in reader.missing:
        raise BagTopicError(f"{bag}: speed topic {speed_topic!r} is not in the bag. It has:\n"
                            f"{describe_topics(reader.available)}")
    notes = [f"the bag has no {stream} topic {topic!r}: " + {
        "camera_info": "intrinsics from --intrinsics or the model card",
        "gt_depth": "no depth metrics", "gt_mask": "no mask metrics and no static/dynamic depth regions",
        "gt_pose": "no odometry metrics"}[stream] for stream, topic in reader.missing.items()]
    if reader.source.note:
        notes.append(reader.source.note)
    expected = {}
    for stream, topic, key in (("depth", gt_depth_topic, "gt_depth"), ("mask", gt_mask_topic, "gt_mask"),
                               ("pose", gt_odom_topic, "gt_pose")):
        in_kitti = bool(kitti and stream in kitti.streams)
        expected[stream] = in_kitti or bool(topic and key not in reader.missing)
        if not topic and not in_kitti:
            notes.append(f"no ground-truth {stream} stream requested: its section is left out")
    return reader, kitti, notes, expected


def with_kitti(frame: Frame, kitti: KittiGroundTruth | None) -> Frame:
    """Put the KITTI folder's ground truth (for the streams it has) into ``frame``."""
    if kitti is not None:
        if "depth" in kitti.streams:
            frame.gt_depth_m = kitti.depth_m(frame.index)
        if "mask" in kitti.streams:
            frame.gt_dynamic_mask = kitti.dynamic_mask(frame.index)
        if "pose" in kitti.streams:
            frame.gt_T_world_cam = kitti.pose(frame.index)
    return frame


def reader_notes(reader: BagFrameReader, metrics: dict, notes: list[str]) -> None:
    """Add the damaged-bag and decode-error findings of ``reader`` to the metrics and notes."""
    if reader.error is not None:
        metrics["bag_error"] = reader.error.to_dict()
        notes.append(reader.error.describe())
    if reader.decode_errors:
        notes.append(f"messages that could not be decoded were skipped: {reader.decode_errors}")


# --- the evaluation ---------------------------------------------------------------------------
def evaluate_bag(bag: str | Path, out_dir: str | Path, *, image_topic: str = DEFAULT_IMAGE_TOPIC,
                 camera_info_topic: str | None = DEFAULT_CAMERA_INFO_TOPIC,
                 gt_depth_topic: str | None = DEFAULT_GT_DEPTH_TOPIC,
                 gt_odom_topic: str | None = DEFAULT_GT_ODOM_TOPIC,
                 gt_mask_topic: str | None = DEFAULT_GT_MASK_TOPIC,
                 gt_tf_frames: Sequence[str] | None = None, gt_kitti: str | Path | None = None,
                 model: str | Path | None = None, backend: str = "auto", device: str = "auto",
                 scale_mode: str | None = None, pipeline_config: Any = None, pipeline: Any = None,
                 intrinsics: Sequence[float] | None = None, camera_input: str | None = None,
                 undistort_alpha: float | None = None, start_s: float = 0.0, duration_s: float | None = None,
                 every: int = 1, write_bag: bool = False, report: bool = True, progress: bool = False,
                 min_depth_m: float = 1e-3, max_depth_m: float = 80.0, alignment: str = "auto",
                 max_stamp_diff_s: float = 0.02, strip_frames: int = 4, speed_topic: str | None = None,
                 on_frame: Callable[[Frame, Any], None] | None = None) -> dict:
    """Run the Pipeline over a bag and score it; writes metrics.json (+ report, + output bag) into ``out_dir``.

    Args:
        bag: rosbag2 directory (mcap / sqlite3), ``.mcap`` file or ROS 1 ``.bag``.
        image_topic: Image or CompressedImage topic (required; BagTopicError lists the bag's topics).
        camera_info_topic / gt_*_topic: None or "" to ignore; a topic the bag lacks is noted and skipped.
        gt_tf_frames: (parent, child) when ``gt_odom_topic`` is a TF topic.
        gt_kitti: KITTI-format ground-truth folder (overrides the GT topics for the streams it has).
        model / backend / device / scale_mode: build the pipeline with :func:`node_pipeline_config`
            (the node's configuration; scale_mode None = the node's default), ignored when ``pipeline``
            or ``pipeline_config`` is given.
        pipeline: a ready :class:`~depth_sfm_ros.runtime.pipeline.Pipeline` (the caller closes it).
        intrinsics: (fx, fy, cx, cy) in pixels of the bag's images; overrides the bag's CameraInfo (the
            images are used as they are, no undistortion).
        camera_input / undistort_alpha: the node's parameters of those names (None = the node's defaults):
            with the bag's CameraInfo, what the image topic carries (``auto``: rectified when it is
            ``image_rect*``) and the undistortion's alpha; see :class:`BagCameraInput`.
        start_s / duration_s / every: which images (offsets from the first image stamp; every N-th).
        min_depth_m / max_depth_m: the ground-truth range scored.
        alignment: trajectory alignment; "auto" = sim3 for scale_mode none, else se3.
        speed_topic: nav_msgs/Odometry whose twist gives the speed for scale_mode external, as the node's
            ``external_odometry`` input (e.g. wheel odometry); None = the speed of the ground-truth poses.
        on_frame: called with (frame, result) for every processed frame.
    Returns:
        the metrics dict (NaN as None), also in ``out_dir/metrics.json``.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    if not 0 <= min_depth_m < max_depth_m:
        raise ValueError(f"need 0 <= min_depth_m < max_depth_m, got {min_depth_m}, {max_depth_m}")
    camera = BagCameraInput(image_topic, camera_input, undistort_alpha, intrinsics)
    out_dir = Path(out_dir)
    reader, kitti, notes, expected = open_frames(bag, image_topic, camera_info_topic, gt_depth_topic, gt_odom_topic,
                                                 gt_mask_topic, gt_tf_frames, gt_kitti, start_s, duration_s, every,
                                                 max_stamp_diff_s, speed_topic)
    owns_pipeline = pipeline is None
    model_path = None
    if pipeline is None:
        from depth_sfm_ros.runtime.pipeline import Pipeline
        if pipeline_config is None:
            model_path = resolve_model(model)
            pipeline_config = node_pipeline_config(model_path, backend, device, scale_mode)
        pipeline = Pipeline(pipeline_config)
    scale_mode = pipeline.config.scale_mode
    if scale_mode == "external":
        notes.append(f"external scale: speed from {speed_topic}" if speed_topic else
                     "external scale: speed from the ground-truth poses")
    if alignment == "auto":
        alignment = "sim3" if scale_mode == "none" else "se3"
    out_dir.mkdir(parents=True, exist_ok=True)

    picture_range = (max(pipeline.config.min_depth_m, 0.5), pipeline.config.max_depth_m)
    scorer = FrameScorer(min_depth_m, max_depth_m, strip_frames, picture_range)
    scorer.expected_gt = expected
    writer = None
    if write_bag:
        from .output_bag import OutputBagWriter
        bag_path = out_dir / "output_bag"
        if bag_path.exists():
            raise FileExistsError(f"{bag_path} exists; remove it or choose another --out")
        writer = OutputBagWriter(bag_path, image_topic=image_topic, min_depth_m=picture_range[0],
                                 max_depth_m=picture_range[1]).__enter__()
    bar = _progress(reader.expected_frames, progress)
    prev_gt: tuple[float, Pose] | None = None
    skipped: dict[str, int] = {}  # reason -> frames the pipeline refused
    wall_start = time.perf_counter()
    try:
        for frame in reader:
            with_kitti(frame, kitti)
            speed = None
            if scale_mode == "external":
                speed = (frame.speed_mps if speed_topic else
                         _gt_speed_mps(prev_gt, frame.stamp_s, frame.gt_T_world_cam))
            t0 = time.perf_counter()
            try:
                # as the node: the camera policy (undistortion included) is part of the frame's time
                K = camera.prepare(frame)
                result = pipeline.process(frame.image, frame.encoding, frame.stamp_s, K, external_speed_mps=speed,
                                          rescale_intrinsics=True)
            except ValueError as exc:  # e.g. an encoding the pipeline does not take, an unsupported camera model
                if not skipped:
                    log.warning("eval-bag: frame %d (stamp %.3f s) skipped: %s", frame.index, frame.stamp_s, exc)
                skipped[str(exc).split(";")[0]] = skipped.get(str(exc).split(";")[0], 0) + 1
                continue
            latency_ms = (time.perf_counter() - t0) * 1e3
            if frame.gt_T_world_cam is not None:
                prev_gt = (frame.stamp_s, frame.gt_T_world_cam)
            scorer.add(frame, result, latency_ms)
            if writer is not None:
                writer.write(frame.stamp_ns, frame.frame_id, frame.image, frame.encoding, K, result)
            if on_frame is not None:
                on_frame(frame, result)
            if bar is not None:
                bar.update(1)
            elif scorer.frames % 100 == 0:
                log.info("eval-bag: %d frames, %.1f frames/s", scorer.frames,
                         scorer.frames / (time.perf_counter() - wall_start))
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.__exit__(None, None, None)
        if owns_pipeline:
            pipeline.close()
    wall_s = time.perf_counter() - wall_start
    notes.extend(f"camera: {message}" for message in camera.messages)
    if skipped:
        notes.append(f"frames the pipeline refused were skipped: {skipped}")
    if not scorer.frames:
        where = f" ({reader.error.describe()})" if reader.error else f" ({notes[-1]})" if skipped else ""
        raise RuntimeError(f"{bag}: no frame could be evaluated{where}; check --start/--duration and the image topic")

    metrics, data = scorer.metrics(scale_mode, alignment, notes)
    metrics["speed"]["wall_fps"] = scorer.frames / wall_s
    reader_notes(reader, metrics, notes)
    metrics["notes"] = notes
    metrics["source"] = {"bag": str(bag), "image_topic": image_topic, "frames_in_topic": reader.image_count,
                         "model": str(model_path or getattr(pipeline.config, "model", "") or ""),
                         "backend": type(pipeline.backend).__name__, "path": "offline", "every": every,
                         "start_s": start_s, "duration_s": duration_s, "camera": list(camera.messages)}
    if writer is not None:
        metrics["output_bag"] = {"path": str(writer.path), "topics": writer.counts}
    return finish(out_dir, metrics, data, report)
