"""Real-camera benchmark core (``bench/real_eval.py`` is its command line; the default-model builder uses it too).

Scores a model on every real sequence available.

Runs the same :class:`~depth_sfm_ros.runtime.pipeline.Pipeline` as the node, frame by frame, on the
development sequences of ``../shared/real`` (see its README; loaders in ``training/datasets/real.py``)
and prints, per sequence and per part (all frames / the held-out frames no training run has seen /
the still start):

* depth (where GT depth exists): abs_rel and a1, median-scaled per image (monocular protocol), next to
  two trivial baselines on the same frames and pixels: a median-scaled **constant** depth, and the
  **per-row median** of the GT depth of the sequence's training frames (an oracle-ish layout prior
  that no self-supervised model sees);
* odometry (where GT poses exist): ATE after Sim(3) alignment, and the path-length ratio (predicted /
  GT) with the depth's own scale (the median GT / predicted depth ratio of the sequence, so that depth
  and motion share one scale); on a driving sequence with a known camera height (KITTI: 1.65 m) the
  pipeline runs the node's ``camera_height`` scale mode and the ratio is of the metric path it publishes;
* on a still stretch: the odometry speed in m/s at that scale, and the fraction of frames the pipeline
  called still;
* on a static scene: the fraction of pixels the dynamic mask marks (7-Scenes has no moving object);
* on DAVIS: mask IoU / precision / recall against the annotated moving object (micro over frames);
* with :class:`AdaptBench` (``bench/real_eval.py --adapt-minutes M``): per sequence with GT depth, ``depth-sfm
  adapt`` on the frames no training run has seen (7-Scenes: the held-out part; ``--dataset``: the whole
  sequence), written as a rosbag2 by ``depth-sfm to-bag``'s writer, from the same start model; then the start and
  the adapted model scored with the same :func:`score_parts` on the adaptation's own held-out frames (its last
  15 %, mapped back to the sequence's frame numbers), beside adapt's held-out photometric loss, steps and minutes
  (:func:`adaptation_scores`).

``evaluate`` returns a JSON-ready dict (``clean``), ``markdown`` its table.
"""
from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from depth_sfm_ros import metrics as M
from depth_sfm_ros.bag.scoring import resize_depth, resize_mask
from depth_sfm_ros.runtime.pipeline import Pipeline, PipelineConfig

# ../shared/real beside the repository (development machines and CI; a user's clone has none)
DEFAULT_REAL_ROOT = Path(__file__).resolve().parents[2] / "shared" / "real"


@dataclass
class Part:
    """One evaluated stretch of a sequence: frames [start, stop), and what to measure on it."""

    name: str
    start: int
    stop: int
    heldout: bool = False
    still: bool = False


@dataclass
class SequenceSpec:
    key: str                   # folder under the real root
    kind: str                  # seven_scenes | kitti_odom_folder | davis
    fps: float
    depth_range_m: tuple[float, float] = (0.1, 80.0)
    static_scene: bool = False
    camera_height_m: float | None = None   # known mounting height: run the node's camera_height scale mode
    parts: list[Part] = field(default_factory=list)


def default_specs() -> list[SequenceSpec]:
    """The development sequences and their parts (frame ranges from REAL_DEV_SPLITS)."""
    from depth_sfm_training.datasets.real import REAL_DEV_SPLITS as S

    k7, kk = S["7scenes_redkitchen"], S["kitti_odometry_51"]
    return [
        SequenceSpec("7scenes_redkitchen", "seven_scenes", 30.0, (0.1, 10.0), static_scene=True,
                     parts=[Part("all", 0, 400), Part("heldout", *k7["heldout"], heldout=True),
                            Part("still", *k7["still"], still=True)]),
        SequenceSpec("kitti_odometry_51", "kitti_odom_folder", 10.0, camera_height_m=1.65,
                     parts=[Part("all", 0, 51), Part("heldout", *kk["heldout"], heldout=True)]),
        SequenceSpec("davis_moving_camera", "davis", 24.0, parts=[Part("all", 0, 10 ** 6)]),
    ]


def _image_and_encoding(rgb: np.ndarray) -> tuple[np.ndarray, str]:
    """Grey sources (three equal channels) go in as mono8, as a grey camera driver would send them."""
    from depth_sfm_training.datasets.io import is_grey

    if is_grey(rgb):
        return np.ascontiguousarray(rgb[..., 0]), "mono8"
    return rgb, "rgb8"


def run_pipeline(pipeline: Pipeline, sequence, start: int, stop: int, fps: float) -> list:
    """FrameResults of frames [start, stop) of a FrameSequence (the pipeline is reset first)."""
    pipeline.reset("new sequence")
    results = []
    for i in range(start, min(stop, len(sequence))):
        image, encoding = _image_and_encoding(sequence.image_rgb(i))
        results.append(pipeline.process(image, encoding, stamp_s=i / fps, intrinsics=sequence.intrinsics(i)))
    return results


def per_row_prior(sequence, frames: range, depth_range_m: tuple[float, float]) -> np.ndarray:
    """(H,) per-row median of the GT depth over ``frames`` (NaN rows filled with the global median)."""
    depths = []
    for i in frames:
        d = sequence.depth_m(i)
        if d is not None:
            depths.append(np.where((d > depth_range_m[0]) & (d < depth_range_m[1]), d, np.nan))
    stack = np.asarray(depths, dtype=np.float32)
    rows = np.nanmedian(stack, axis=(0, 2))
    return np.where(np.isfinite(rows), rows, np.nanmedian(stack)).astype(np.float32)


def depth_scores(results: list, sequence, start: int, depth_range_m: tuple[float, float],
                 row_prior: np.ndarray | None) -> dict:
    """Mean per-image median-scaled metrics of the model and the two baselines on the same pixels,
    and the median GT / predicted depth ratio (the sequence's depth scale)."""
    acc = {name: M.DepthMetricsAccumulator() for name in ("model", "constant", "per_row")}
    ratios = []
    lo, hi = depth_range_m
    for n, result in enumerate(results):
        gt = sequence.depth_m(start + n)
        if gt is None:
            continue
        pred = resize_depth(result.depth_m, gt.shape)
        valid = M.valid_depth_mask(pred, gt, None, lo, hi)
        if not valid.any():
            continue
        acc["model"].add(M.compute_depth_metrics(pred, gt, valid, lo, hi))
        ratios.append(float(np.median(gt[valid]) / np.median(pred[valid])))
        acc["constant"].add(M.compute_depth_metrics(np.ones_like(gt), gt, valid, lo, hi))
        if row_prior is not None:
            prior = np.broadcast_to(row_prior[:, None], gt.shape)
            acc["per_row"].add(M.compute_depth_metrics(prior, gt, valid, lo, hi))
    out = {name: a.result().get("all") for name, a in acc.items()}
    out["depth_scale"] = float(np.median(ratios)) if ratios else math.nan
    return out


def odometry_scores(results: list, sequence, start: int, fps: float, scale: float | None) -> dict:
    """ATE (Sim(3)), path-length ratio at ``scale`` (None: the Sim(3) scale), speed, still fraction."""
    T_odom_cam = np.asarray([r.T_odom_cam.matrix for r in results])
    gt = [sequence.T_world_cam(start + n) for n in range(len(results))]
    out: dict = {"still_fraction": float(np.mean([bool(getattr(r, "still", False)) for r in results]))}
    steps = np.linalg.norm(np.diff(T_odom_cam[:, :3, 3], axis=0), axis=1)
    duration_s = max(len(results) - 1, 1) / fps
    if any(g is None for g in gt) or len(results) < 3:
        out["speed_units_per_s"] = float(steps.sum() / duration_s)
        return out
    gt = np.asarray(gt)
    try:
        ate = M.ate(T_odom_cam, gt, align="sim3")
    except ValueError:  # a trajectory standing still (e.g. every frame judged still): nothing to align
        ate = {"rmse_m": math.nan, "scale": math.nan}
    s = scale if scale is not None and math.isfinite(scale) else ate["scale"]
    gt_path = float(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1).sum())
    out.update(ate_m=ate["rmse_m"], path_ratio=float(s * steps.sum() / gt_path) if gt_path > 0 else math.nan,
               speed_mps=float(s * steps.sum() / duration_s), gt_speed_mps=gt_path / duration_s, scale_used=s)
    return out


def mask_fraction(results: list) -> float | None:
    masks = [r.dynamic_mask for r in results if r.dynamic_mask is not None]
    if not masks:
        return None
    return float(np.mean([np.mean(m > 0) for m in masks]))


def davis_scores(pipeline: Pipeline, root: Path, fps: float) -> dict:
    from depth_sfm_training.datasets.real import REAL_DEV_SPLITS, davis_sequences

    heldout = set(REAL_DEV_SPLITS["davis_moving_camera"]["heldout_clips"])
    out = {}
    for clip in davis_sequences(root):
        results = run_pipeline(pipeline, clip, 0, len(clip), fps)
        tp = fp = fn = 0
        n_masks = 0
        for n, result in enumerate(results):
            gt = clip.dynamic_mask(n)
            if gt is None or result.dynamic_mask is None:
                continue
            scores = M.mask_metrics(resize_mask(result.dynamic_mask > 0, gt.shape), gt)
            tp, fp, fn, n_masks = tp + scores["tp"], fp + scores["fp"], fn + scores["fn"], n_masks + 1
        row = M.mask_scores(tp, fp, fn) if n_masks else {"iou": None, "precision": None, "recall": None}
        out[clip.name] = {"heldout": clip.name in heldout, "frames": len(results), "scored_frames": n_masks,
                          "iou": row["iou"], "precision": row["precision"], "recall": row["recall"]}
    return out


def _sequence(spec: SequenceSpec, root: Path):
    from depth_sfm_training.datasets.real import KittiOdometryFolderSequence, SevenScenesSequence

    if spec.kind == "seven_scenes":
        return SevenScenesSequence(root)
    return KittiOdometryFolderSequence(root)


def score_parts(pipeline: Pipeline, sequence, parts: list[Part], fps: float, depth_range_m: tuple[float, float],
                prior: np.ndarray | None, metric_scale: bool, static_scene: bool, max_frames: int | None) -> dict:
    """Run the pipeline over each part of one sequence and score it (the rows of one sequence)."""
    rows = {}
    for part in parts:
        stop = part.stop if max_frames is None else min(part.stop, part.start + max_frames)
        t0 = time.perf_counter()
        results = run_pipeline(pipeline, sequence, part.start, stop, fps)
        row: dict = {"frames": len(results), "heldout": part.heldout,
                     "ms_per_frame": 1000 * (time.perf_counter() - t0) / max(len(results), 1)}
        scale = None
        if sequence.has_depth:
            row["depth"] = depth_scores(results, sequence, part.start, depth_range_m, prior)
            scale = row["depth"]["depth_scale"]
        if metric_scale:
            scale = 1.0  # the pipeline's own metric scale (camera_height mode)
        row["odometry"] = odometry_scores(results, sequence, part.start, fps, scale)
        if static_scene:
            row["dynamic_fraction_static_scene"] = mask_fraction(results)
        rows[part.name] = row
    return rows


@dataclass
class AdaptBench:
    """What ``bench/real_eval.py --adapt-minutes / --adapt-steps`` asks of :func:`adaptation_scores`: the budget
    and replay of ``depth-sfm adapt`` (the rest are adapt's defaults: stride 1, last 15 % held out)."""

    minutes: float | None = None
    steps: int | None = None
    replay: str = "synthetic"
    replay_cache: str | None = None
    progress: bool = True


ADAPT_PART = "adapt_heldout"


def adaptation_scores(model: str, backend: str, threads: int, sequence, start: int, stop: int, fps: float,
                      depth_range_m: tuple[float, float], prior: np.ndarray | None, camera_height_m: float | None,
                      static_scene: bool, options: AdaptBench) -> dict:
    """``depth-sfm adapt`` on frames [start, stop) of ``sequence`` (frames no training run has seen), then the start
    and the adapted model scored on the adaptation's held-out frames.

    The frames go to a rosbag2 in a temporary folder through ``depth-sfm to-bag``'s writer, as a user's recording
    would; :func:`~depth_sfm_training.adapt.adapt_recording` trains on its first 85 % from ``model`` (an exported
    model directory with ``weights.safetensors``) and holds out the rest, which is mapped back to the sequence's
    frame numbers and scored for both models with :func:`score_parts` (the table's own depth scores and baselines).
    Adapt's own lines go to stderr (stdout is the benchmark's table and JSON line)."""
    from depth_sfm_ros.runtime.model_card import sha256_file
    from depth_sfm_training.adapt import WEIGHTS_FILE, AdaptOptions, adapt_recording
    from depth_sfm_training.datasets import FrameRange
    from depth_sfm_training.to_bag import write_sequence_bag

    with tempfile.TemporaryDirectory(prefix="real_eval_adapt_") as tmp:
        bag = Path(tmp) / "recording"
        written = write_sequence_bag(FrameRange(sequence, start, stop), bag, fps=fps)
        result = adapt_recording(AdaptOptions(
            recording=str(bag), out=str(Path(tmp) / "adapted"), model=str(model), minutes=options.minutes,
            steps=options.steps, replay=options.replay, replay_cache=options.replay_cache, threads=threads,
            progress=options.progress), stream=sys.stderr)
        if result.split.n_frames != written.num_frames:
            raise RuntimeError(f"adapt read {result.split.n_frames} frames from a bag of {written.num_frames}: the "
                               f"held-out frames cannot be mapped back to {sequence.name}'s frame numbers")
        held = (start + result.split.heldout[0], start + result.split.heldout[1])
        rows = {}
        for name, model_dir in (("before", str(model)), ("after", str(result.out_dir))):
            pipeline = _pipeline(model_dir, backend, threads, camera_height_m)
            try:
                rows[name] = score_parts(pipeline, sequence, [Part(ADAPT_PART, *held, heldout=True)], fps,
                                         depth_range_m, prior, camera_height_m is not None, static_scene,
                                         None)[ADAPT_PART]
            finally:
                pipeline.close()
        adapted_sha = sha256_file(result.out_dir / WEIGHTS_FILE)
    ad = result.adaptation
    before, after = ((rows[n]["depth"]["model"] or {}).get("abs_rel", math.nan) for n in ("before", "after"))
    return {
        "recording_frames": [start, stop], "train_frames": [start + f for f in result.split.train],
        "heldout_frames": list(held),
        "abs_rel_before": before, "abs_rel_after": after,
        "abs_rel_change": (after - before) / before if before > 0 else math.nan,
        "photometric_before": result.before, "photometric_after": result.after,
        "photometric_change": ad["heldout_photometric"]["relative_change"],
        "photometric_samples": ad["heldout_photometric"]["samples"],
        "steps": result.steps, "minutes": ad["minutes"], "stopped_by": result.stopped_by, "verdict": ad["verdict"],
        "replay": ad["replay"]["kind"], "torch_threads": ad["torch_threads"], "device": ad["device"],
        "start_weights_sha256": ad["start_model"]["weights_sha256"], "adapted_weights_sha256": adapted_sha,
        "before": rows["before"], "after": rows["after"],
    }


# The node's default dynamic-probability threshold (config/depth_sfm.yaml ``mask_threshold``), so that the mask
# numbers are the ones a user of the node sees.
NODE_MASK_THRESHOLD = 0.5


def _pipeline(model: str, backend: str, threads: int, camera_height_m: float | None) -> Pipeline:
    return Pipeline(PipelineConfig(
        model=model, backend=backend, device="cpu", threads=threads, min_depth_m=1e-3, max_depth_m=1e4,
        scale_mode="none" if camera_height_m is None else "camera_height", camera_height_m=camera_height_m or 1.0,
        mask_threshold=NODE_MASK_THRESHOLD))


def evaluate(model: str, backend: str, real_root: Path, threads: int, max_frames: int | None,
             adapt: AdaptBench | None = None) -> dict:
    """The development benchmark: every sequence of :func:`default_specs` found under ``real_root``; with
    ``adapt``, each sequence with GT depth is also adapted on its held-out part (:func:`adaptation_scores`)."""
    from depth_sfm_training.datasets.real import REAL_DEV_SPLITS

    report: dict = {"model": model, "backend": backend, "sequences": {}}
    for spec in default_specs():
        root = real_root / spec.key
        if not root.is_dir():
            report["sequences"][spec.key] = {"skipped": f"{root} not found"}
            continue
        pipeline = _pipeline(model, backend, threads, spec.camera_height_m)
        try:
            if spec.kind == "davis":
                report["sequences"][spec.key] = {"clips": davis_scores(pipeline, root, spec.fps)}
                continue
            sequence = _sequence(spec, root)
            prior = None
            if sequence.has_depth:
                train = REAL_DEV_SPLITS[spec.key]["train"]
                prior = per_row_prior(sequence, range(train[0], train[1], 5), spec.depth_range_m)
            rows = score_parts(pipeline, sequence, spec.parts, spec.fps, spec.depth_range_m, prior,
                               spec.camera_height_m is not None, spec.static_scene, max_frames)
            report["sequences"][spec.key] = {"parts": rows}
        finally:
            pipeline.close()
        if adapt is not None:
            unseen = next((p for p in spec.parts if p.heldout), None)
            if not sequence.has_depth or unseen is None:
                report["sequences"][spec.key]["adaptation"] = {"skipped": "no ground-truth depth to score"}
                continue
            report["sequences"][spec.key]["adaptation"] = adaptation_scores(
                model, backend, threads, sequence, unseen.start, unseen.stop, spec.fps, spec.depth_range_m, prior,
                spec.camera_height_m, spec.static_scene, adapt)
    return report


def evaluate_dataset(model: str, backend: str, dataset: dict, threads: int, max_frames: int | None,
                     depth_range_m: tuple[float, float] = (0.1, 80.0), camera_height_m: float | None = None,
                     fps: float | None = None, adapt: AdaptBench | None = None) -> dict:
    """The same scores on any dataset config (``{"type": "tum_rgbd", "data_path": ...}``, see
    ``depth_sfm_training.datasets``): one row per sequence over all its frames. The per-row baseline's
    prior is the median over the sequence's own frames (an oracle: it has seen the test frames). With ``adapt``,
    each sequence with GT depth is adapted on all its frames (a user's dataset is unseen by training) and scored
    on the adaptation's held-out frames (:func:`adaptation_scores`)."""
    from depth_sfm_training.datasets import build_sequences

    sequences, _ = build_sequences(dataset)
    report: dict = {"model": model, "backend": backend, "dataset": dataset, "sequences": {}}
    pipeline = _pipeline(model, backend, threads, camera_height_m)
    try:
        for sequence in sequences:
            rate = fps or float(getattr(sequence, "nominal_fps", None) or 10.0)
            prior = per_row_prior(sequence, range(0, len(sequence), 5), depth_range_m) if sequence.has_depth \
                else None
            rows = score_parts(pipeline, sequence, [Part("all", 0, len(sequence))], rate, depth_range_m, prior,
                               camera_height_m is not None, False, max_frames)
            report["sequences"][sequence.name] = {"parts": rows}
    finally:
        pipeline.close()
    if adapt is not None:
        for sequence in sequences:
            entry = report["sequences"][sequence.name]
            if not sequence.has_depth:
                entry["adaptation"] = {"skipped": "no ground-truth depth to score"}
                continue
            rate = fps or float(getattr(sequence, "nominal_fps", None) or 10.0)
            prior = per_row_prior(sequence, range(0, len(sequence), 5), depth_range_m)
            entry["adaptation"] = adaptation_scores(model, backend, threads, sequence, 0, len(sequence), rate,
                                                    depth_range_m, prior, camera_height_m, False, adapt)
    return report


def clean(value):
    """JSON-safe copy: non-finite floats -> None, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: dict) -> str:
    lines = ["| sequence | part | frames | abs_rel model | const | per-row | a1 model | const | per-row | "
             "ATE [m] | path ratio | speed [m/s] (GT) | still frames | dyn. px static |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    davis = []
    for key, seq in report["sequences"].items():
        if "skipped" in seq:
            lines.append(f"| {key} | skipped: {seq['skipped']} |" + " |" * 12)
            continue
        if "clips" in seq:
            davis = seq["clips"]
            continue
        for part, row in seq["parts"].items():
            d = row.get("depth") or {}
            o = row["odometry"]
            get = (lambda name, metric: (d.get(name) or {}).get(metric))
            speed = f"{_fmt(o.get('speed_mps'))} ({_fmt(o.get('gt_speed_mps'))})" if "speed_mps" in o else "-"
            lines.append(f"| {key} | {part} | {row['frames']} | {_fmt(get('model', 'abs_rel'))} | "
                         f"{_fmt(get('constant', 'abs_rel'))} | {_fmt(get('per_row', 'abs_rel'))} | "
                         f"{_fmt(get('model', 'a1'))} | {_fmt(get('constant', 'a1'))} | {_fmt(get('per_row', 'a1'))} | "
                         f"{_fmt(o.get('ate_m'))} | {_fmt(o.get('path_ratio'), 2)} | {speed} | "
                         f"{_fmt(o.get('still_fraction'), 2)} | {_fmt(row.get('dynamic_fraction_static_scene'), 4)} |")
    adapted = {key: seq["adaptation"] for key, seq in report["sequences"].items() if "adaptation" in seq}
    if adapted:
        lines += ["", "Adaptation (`depth-sfm adapt` on the unseen frames, scored on its held-out frames):", "",
                  "| sequence | adapted on | scored | abs_rel before | after | change | const | per-row | "
                  "a1 before | after | photometric before | after | steps | minutes |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for key, ad in adapted.items():
            if "skipped" in ad:
                lines.append(f"| {key} | skipped: {ad['skipped']} |" + " |" * 12)
                continue
            depth = {name: ad[name]["depth"] for name in ("before", "after")}
            get = (lambda name, base, metric: (depth[name].get(base) or {}).get(metric))
            change = ad.get("abs_rel_change")
            lines.append(
                f"| {key} | {ad['train_frames'][0]}-{ad['train_frames'][1] - 1} | "
                f"{ad['heldout_frames'][0]}-{ad['heldout_frames'][1] - 1} | {_fmt(ad.get('abs_rel_before'))} | "
                f"{_fmt(ad.get('abs_rel_after'))} | {'-' if change is None else f'{change:+.1%}'} | "
                f"{_fmt(get('before', 'constant', 'abs_rel'))} | {_fmt(get('before', 'per_row', 'abs_rel'))} | "
                f"{_fmt(get('before', 'model', 'a1'))} | {_fmt(get('after', 'model', 'a1'))} | "
                f"{_fmt(ad.get('photometric_before'), 4)} | {_fmt(ad.get('photometric_after'), 4)} | {ad['steps']} | "
                f"{_fmt(ad.get('minutes'), 2)} |")
    if davis:
        lines += ["", "| DAVIS clip | held out | frames | mask IoU | precision | recall |", "|---|---|---|---|---|---|"]
        for clip, row in davis.items():
            lines.append(f"| {clip} | {'yes' if row['heldout'] else 'no'} | {row['frames']} | {_fmt(row['iou'])} | "
                         f"{_fmt(row['precision'])} | {_fmt(row['recall'])} |")
    return "\n".join(lines)


# Frames shown by :func:`example_strip`: (sequence folder, clip or None, frame) - held-out ones where there are,
# and one DAVIS clip the mask stage trained on (dog: what the mask does where it has learned).
EXAMPLE_FRAMES = (("7scenes_redkitchen", None, 340), ("7scenes_redkitchen", None, 380),
                  ("kitti_odometry_51", None, 45), ("davis_moving_camera", "dog", 30),
                  ("davis_moving_camera", "car-roundabout", 40), ("davis_moving_camera", "car-shadow", 20))


def example_strip(model: str, real_root: Path, out_png: Path, backend: str = "onnxruntime",
                  tile_width: int = 320) -> Path | None:
    """A picture for people: per example frame (a row), the camera image, the predicted depth (colour, near =
    warm, per-image range), the GT depth where there is one (else black), and the dynamic mask over the image
    (red). PNG or JPEG by the suffix of ``out_png``."""
    import cv2

    from depth_sfm_ros.runtime.visualize import colorize_depth, overlay_mask
    from depth_sfm_training.datasets.real import (DavisSequence, KittiOdometryFolderSequence,
                                                  SevenScenesSequence)

    pipeline = _pipeline(model, backend, 2, None)
    rows = []
    try:
        for key, clip, frame in EXAMPLE_FRAMES:
            root = real_root / key
            if not root.is_dir():
                continue
            seq = (SevenScenesSequence(root) if key.startswith("7scenes") else DavisSequence(root, clip) if clip
                   else KittiOdometryFolderSequence(root))
            results = run_pipeline(pipeline, seq, max(frame - 1, 0), frame + 1, 10.0)
            rgb, result = seq.image_rgb(frame), results[-1]
            h, w = rgb.shape[:2]
            size = (tile_width, int(round(h * tile_width / w)))
            pred = cv2.resize(result.depth_m, (w, h), interpolation=cv2.INTER_LINEAR)
            lo, hi = np.nanpercentile(pred, [2, 98])
            tiles = [cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), colorize_depth(pred, max(lo, 1e-6), max(hi, lo * 1.01))]
            gt = seq.depth_m(frame)
            if gt is not None:
                gt = np.where(gt > 0, gt, np.nan)
                g_lo, g_hi = np.nanpercentile(gt, [2, 98])
                tiles.append(colorize_depth(gt, g_lo, max(g_hi, g_lo * 1.01)))
            else:
                tiles.append(np.zeros_like(tiles[0]))
            mask = np.zeros((h, w), bool) if result.dynamic_mask is None else \
                cv2.resize(result.dynamic_mask, (w, h), interpolation=cv2.INTER_NEAREST) > 0
            tiles.append(overlay_mask(tiles[0], mask))
            rows.append(np.concatenate([cv2.resize(t, size, interpolation=cv2.INTER_AREA) for t in tiles], axis=1))
    finally:
        pipeline.close()
    if not rows:
        return None
    rows = [np.pad(r, ((0, 4), (0, 0), (0, 0))) for r in rows]
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_png), np.concatenate(rows, axis=0)):
        raise OSError(f"cannot write {out_png}")
    return out_png
