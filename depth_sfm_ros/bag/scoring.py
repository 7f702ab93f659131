"""Scoring of pipeline results against ground truth, frame by frame, with depth_sfm_ros.metrics.

:class:`FrameScorer` is shared by the offline path (:mod:`.eval_bag`) and the realtime path
(:mod:`.realtime`), so both give numbers computed the same way. numpy + OpenCV only.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from depth_sfm_ros import metrics as M
from depth_sfm_ros.geometry import Pose

from .reader import Frame
from .report import ReportData, StripFrame

log = logging.getLogger(__name__)


def resize_depth(depth_m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a depth map with NaN holes to ``shape`` (H, W); holes stay NaN (nearest)."""
    import cv2
    if depth_m.shape == tuple(shape):
        return depth_m
    h, w = shape
    valid = np.isfinite(depth_m)
    filled = cv2.resize(np.where(valid, depth_m, 0.0).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    weight = cv2.resize(valid.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    keep = cv2.resize(valid.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool) & (weight > 0)
    out = np.full((h, w), np.nan, np.float32)
    out[keep] = filled[keep] / weight[keep]  # renormalised: invalid neighbours do not pull towards 0
    return out


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a mask (non-zero = True) to (H, W) bool."""
    import cv2
    mask = np.asarray(mask)
    if mask.shape == tuple(shape):
        return mask.astype(bool)
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def image_to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    """Any supported camera image -> (H, W, 3) uint8 RGB for pictures."""
    from depth_sfm_ros.runtime.image_io import to_rgb_float
    return (to_rgb_float(image, encoding) * 255.0 + 0.5).astype(np.uint8)


class _StripSampler:
    """Keeps about ``count`` frames evenly spread over a stream of unknown length (halving stride)."""

    def __init__(self, count: int) -> None:
        self.count = max(0, int(count))
        self.stride = 1
        self.seen = 0
        self.kept: list[StripFrame] = []

    def wants(self) -> bool:
        return self.count > 0 and self.seen % self.stride == 0

    def add(self, item: StripFrame | None) -> None:
        if item is not None:
            self.kept.append(item)
            if len(self.kept) > 2 * self.count:
                self.kept = self.kept[::2]
                self.stride *= 2
        self.seen += 1

    def result(self) -> list[StripFrame]:
        if len(self.kept) <= self.count:
            return list(self.kept)
        picks = np.linspace(0, len(self.kept) - 1, self.count).round().astype(int)
        return [self.kept[i] for i in picks]


@dataclass
class _Trajectory:
    """Predicted and ground-truth poses of the frames with a GT pose, split where the pipeline reset."""

    segments: list[tuple[list[float], list[np.ndarray], list[np.ndarray]]] = field(default_factory=list)

    def add(self, stamp_s: float, T_odom_cam: Pose, T_world_cam: Pose, reset: bool) -> None:
        if reset or not self.segments:
            self.segments.append(([], [], []))
        stamps, est, gt = self.segments[-1]
        stamps.append(stamp_s)
        est.append(T_odom_cam.matrix)
        gt.append(T_world_cam.matrix)

    def evaluate(self, alignment: str, report: ReportData) -> dict | None:
        """ATE / RPE over the segments with >= 3 poses (pose-count weighted RMS); fills the report series."""
        used = [(s, np.asarray(e), np.asarray(g)) for s, e, g in self.segments if len(s) >= 3]
        if not used:
            return None
        rpe_align = {"sim3": "sim3", "scale": "scale"}.get(alignment, "none")
        sq_ate, sq_t, sq_r, n_ate, n_rpe, scales = 0.0, 0.0, 0.0, 0, 0, []
        stamps, gt_xyz, est_xyz = [], [], []
        for seg_stamps, est, gt in used:
            try:
                ate = M.ate(est, gt, alignment)
                aligned, _ = M.align_trajectory(est, gt, alignment)
                rpe = M.rpe(est, gt, delta=1, align=rpe_align)
            except ValueError as exc:  # e.g. a prediction that never moves cannot be scale-aligned
                log.warning("odometry segment of %d poses skipped: %s", len(seg_stamps), exc)
                continue
            sq_ate += ate["rmse_m"] ** 2 * ate["n"]
            n_ate += ate["n"]
            sq_t += rpe["trans_rmse_m"] ** 2 * rpe["n"]
            sq_r += rpe["rot_rmse_deg"] ** 2 * rpe["n"]
            n_rpe += rpe["n"]
            scales.append(ate["scale"])
            stamps += seg_stamps
            gt_xyz.append(gt[:, :3, 3])
            est_xyz.append(aligned[:, :3, 3])
        if n_ate == 0:
            return None
        report.traj_stamps_s = np.asarray(stamps)
        report.gt_xyz = np.concatenate(gt_xyz)
        report.est_xyz = np.concatenate(est_xyz)
        report.position_error_m = np.linalg.norm(report.est_xyz - report.gt_xyz, axis=1)
        return {"ate_m": math.sqrt(sq_ate / n_ate), "rpe_trans_m": math.sqrt(sq_t / n_rpe),
                "rpe_rot_deg": math.sqrt(sq_r / n_rpe), "alignment": alignment,
                "alignment_scale": float(np.median(scales)), "poses": n_ate, "segments": len(scales)}


class FrameScorer:
    """Accumulates the comparison of pipeline results with ground truth, frame by frame.

    ``result`` is anything with the :class:`~depth_sfm_ros.runtime.pipeline.FrameResult` fields
    ``depth_m``, ``dynamic_mask`` (or None), ``T_odom_cam``, ``reset`` and ``scale`` (NaN when unknown),
    so the offline pipeline and the outputs recorded from the ROS node are scored by the same code.
    """

    def __init__(self, min_depth_m: float = 1e-3, max_depth_m: float = 80.0, strip_frames: int = 4,
                 picture_range_m: tuple[float, float] = (0.5, 80.0)) -> None:
        self.min_depth_m, self.max_depth_m = min_depth_m, max_depth_m
        self.depth_acc, self.unscaled_acc = M.DepthMetricsAccumulator(), M.DepthMetricsAccumulator()
        self.trajectory = _Trajectory()
        self.mask_counts = {"tp": 0, "fp": 0, "fn": 0, "frames": 0}
        self.latencies_ms: list[float] = []
        self.stamps: list[float] = []
        self.abs_rels: list[float] = []
        self.scales: list[float] = []
        self.gt_ratios: list[float] = []
        self.motion_states: dict[str, int] = {}  # FrameResult.motion_state -> frames (offline pipeline only)
        self.scale_state = None  # the last FrameResult.scale_state (offline pipeline only)
        self.sampler = _StripSampler(strip_frames)
        self.picture_range_m = picture_range_m
        self.expected_gt = {"depth": False, "mask": False, "pose": False}

    @property
    def frames(self) -> int:
        return len(self.stamps)

    def add(self, frame: Frame, result: Any, latency_ms: float) -> None:
        """Score one frame; ``latency_ms`` is the time the pipeline took for it."""
        self.latencies_ms.append(float(latency_ms))
        self.stamps.append(frame.stamp_s)
        self.scales.append(float(result.scale))
        state = getattr(result, "motion_state", None)  # the node's recorded outputs do not carry it
        if state is not None:
            self.motion_states[state] = self.motion_states.get(state, 0) + 1
        if getattr(result, "scale_state", None) is not None:
            self.scale_state = result.scale_state
        gt_depth, gt_mask = frame.gt_depth_m, frame.gt_dynamic_mask
        shape = gt_depth.shape if gt_depth is not None else gt_mask.shape if gt_mask is not None \
            else result.depth_m.shape
        pred_m = resize_depth(result.depth_m, shape)
        region_mask = None if gt_mask is None or gt_mask.shape != shape else gt_mask
        abs_rel, median_scale = math.nan, 1.0
        if gt_depth is not None:
            by_region = M.compute_depth_metrics_by_region(pred_m, gt_depth, region_mask, self.min_depth_m,
                                                          self.max_depth_m)
            self.depth_acc.add_regions(by_region)
            self.unscaled_acc.add(M.compute_depth_metrics(pred_m, gt_depth, None, self.min_depth_m, self.max_depth_m,
                                                          median_scaling=False))
            abs_rel = by_region["all"]["abs_rel"]
            if by_region["all"]["n_valid"]:
                median_scale = by_region["all"]["scale"]
                self.gt_ratios.append(median_scale)
        self.abs_rels.append(abs_rel)
        pred_mask = None if result.dynamic_mask is None else resize_mask(result.dynamic_mask, shape)
        if pred_mask is not None and gt_mask is not None:
            counts = M.mask_metrics(pred_mask, gt_mask)
            for key in ("tp", "fp", "fn"):
                self.mask_counts[key] += counts[key]
            self.mask_counts["frames"] += 1
        if frame.gt_T_world_cam is not None:
            self.trajectory.add(frame.stamp_s, result.T_odom_cam, frame.gt_T_world_cam, bool(result.reset))
        if self.sampler.wants():
            self.sampler.add(StripFrame(stamp_s=frame.stamp_s, image_rgb=image_to_rgb8(frame.image, frame.encoding),
                                        pred_depth_m=pred_m * np.float32(median_scale), gt_depth_m=gt_depth,
                                        pred_mask=pred_mask, gt_mask=gt_mask))
        else:
            self.sampler.add(None)

    def metrics(self, scale_mode: str, alignment: str, notes: list[str]) -> tuple[dict, ReportData]:
        """The metrics dict (sections without data left out, with a line in ``notes``) and the report series."""
        lo, hi = self.picture_range_m
        data = ReportData(min_depth_m=lo, max_depth_m=hi)
        metrics: dict = {"frames": self.frames}
        names = (*M.DEPTH_METRIC_NAMES, "n_images", "n_skipped")
        depth = self.depth_acc.result()
        if "all" in depth and depth["all"]["n_images"] > 0:
            section = {k: depth["all"][k] for k in names}
            section["regions"] = {r: {k: depth[r][k] for k in names} for r in ("static", "dynamic") if r in depth}
            unscaled = self.unscaled_acc.result()["all"]
            section["unscaled"] = {k: unscaled[k] for k in (*M.DEPTH_METRIC_NAMES, "n_images")}
            section.update(median_scaling=True, min_depth_m=self.min_depth_m, max_depth_m=self.max_depth_m)
            metrics["depth"] = section
        elif self.expected_gt["depth"]:
            notes.append("no frame had ground-truth depth within the stamp tolerance (or no valid pixel): "
                         "no depth metrics")
        odometry = self.trajectory.evaluate(alignment, data)
        if odometry is not None:
            metrics["odometry"] = odometry
        elif any(len(s[0]) for s in self.trajectory.segments):
            notes.append("too few poses with ground truth between odometry resets (need 3): no odometry metrics")
        if self.mask_counts["frames"]:
            c = self.mask_counts
            metrics["mask"] = {**M.mask_scores(c["tp"], c["fp"], c["fn"]), "frames": c["frames"]}
        elif self.expected_gt["mask"]:
            notes.append("the model produced no dynamic mask (or no frame had a ground-truth mask): no mask metrics")
        lat = np.asarray(self.latencies_ms)
        metrics["speed"] = {"fps": len(lat) / (lat.sum() / 1e3) if lat.sum() > 0 else math.nan,
                            "latency_ms_p50": float(np.percentile(lat, 50)),
                            "latency_ms_p99": float(np.percentile(lat, 99))}
        scales = np.asarray(self.scales)
        metrics["scale"] = {"mode": scale_mode,
                            "median_ratio_to_gt": float(np.median(self.gt_ratios)) if self.gt_ratios else math.nan,
                            "pipeline_scale_median": float(np.median(scales)) if np.all(np.isfinite(scales))
                            else math.nan}
        if self.scale_state is not None:
            metrics["scale"].update(assumption=self.scale_state.assumption, status_last=self.scale_state.status,
                                    refusals=self.scale_state.refusals,
                                    refusals_by_reason=dict(self.scale_state.refusals_by_reason))
        if self.motion_states:
            metrics["motion"] = {"still_frames": self.motion_states.get("still", 0),
                                 "moving_frames": self.motion_states.get("moving", 0),
                                 "unchecked_frames": self.motion_states.get("unchecked", 0),
                                 "first_frames": self.motion_states.get("first", 0)}
        data.stamps_s, data.abs_rel, data.scale = np.asarray(self.stamps), np.asarray(self.abs_rels), scales
        data.strip = self.sampler.result()
        return metrics, data
