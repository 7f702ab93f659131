"""THE metrics of the project (numpy only): depth, odometry and mask metrics.

Used by training validation, ``depth-sfm evaluate``, bag evaluation and the benchmarks, so a
number means the same everywhere.

Depth (monodepth2 / KITTI Eigen protocol)
    valid pixels: ``min_depth < gt < max_depth``, inside the crop and the optional mask, finite
    prediction > 0; per-image median scaling ``pred *= median(gt) / median(pred)`` (mono), then
    ``pred`` is clamped to ``[min_depth, max_depth]``; metrics are averaged per image first and
    then over images (:class:`DepthMetricsAccumulator`).
Crops (fractions of the evaluated frame, so they work at any resolution)
    ``garg``: rows [0.40810811 H, 0.99189189 H), cols [0.03594771 W, 0.96405229 W) (KITTI Eigen).
    ``cityscapes``: ManyDepth's ``[256:, 192:1856]`` on the 768 x 2048 frame left after the
    bottom 25 % (the ego car's hood) was dropped, i.e. rows [H/3, H), cols [0.09375 W, 0.90625 W)
    of that hood-cropped frame. Use :func:`cityscapes_hood_crop_height` to drop the hood from a
    full-frame ground truth first.
Odometry
    Umeyama SE(3)/Sim(3) alignment, ATE (RMSE of positions after alignment, metres), the
    SfMLearner 5-frame snippet ATE, RPE over a frame step, KITTI t_err (%) / r_err (deg/100 m)
    over 100..800 m segments, and an optional cross-check with ``evo`` (imported lazily).
Masks
    IoU, precision, recall, F1 of boolean masks.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

DEPTH_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")

# Garg / Eigen crop of KITTI, as fractions of (height, width): top, bottom, left, right.
GARG_CROP_FRACTIONS = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
# ManyDepth's Cityscapes crop [256:, 192:1856] of the 768 x 2048 hood-cropped frame.
CITYSCAPES_CROP_FRACTIONS = (256.0 / 768.0, 1.0, 192.0 / 2048.0, 1856.0 / 2048.0)
CITYSCAPES_HOOD_FRACTION = 0.75  # keep the top 75 % of the 1024-row frame
KITTI_SEGMENT_LENGTHS_M = (100, 200, 300, 400, 500, 600, 700, 800)


# ----------------------------------------------------------------------------------------- depth
def crop_box(name: str, height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel box ``(top, bottom, left, right)`` (end-exclusive) of a named evaluation crop.

    ``garg`` truncates the fractions like monodepth2 (``int(f * size)``), which gives exactly
    rows 153:371, cols 44:1197 for a 375 x 1242 KITTI frame.
    """
    if name == "garg":
        fr = GARG_CROP_FRACTIONS
    elif name == "cityscapes":
        fr = CITYSCAPES_CROP_FRACTIONS
    else:
        raise ValueError(f"unknown crop {name!r}; expected 'garg', 'cityscapes', a (H, W) bool array or None")
    return int(fr[0] * height), int(fr[1] * height), int(fr[2] * width), int(fr[3] * width)


def crop_mask(crop: str | np.ndarray | None, height: int, width: int) -> np.ndarray:
    """Boolean (H, W) mask of the pixels an evaluation crop keeps (all True for ``None``)."""
    if crop is None:
        return np.ones((height, width), dtype=bool)
    if isinstance(crop, str):
        top, bottom, left, right = crop_box(crop, height, width)
        mask = np.zeros((height, width), dtype=bool)
        mask[top:bottom, left:right] = True
        return mask
    crop = np.asarray(crop)
    if crop.shape != (height, width):
        raise ValueError(f"crop mask shape {crop.shape} does not match the depth shape {(height, width)}")
    return crop.astype(bool)


def cityscapes_hood_crop_height(height: int) -> int:
    """Rows kept when the bottom 25 % (ego car) is dropped from a full Cityscapes frame (768 of 1024)."""
    return int(round(height * CITYSCAPES_HOOD_FRACTION))


def _nan_depth_metrics(scale: float = math.nan) -> dict:
    out = {name: math.nan for name in DEPTH_METRIC_NAMES}
    out.update(scale=scale, n_valid=0)
    return out


def valid_depth_mask(pred_m: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None,
                     min_depth: float = 1e-3, max_depth: float = 80.0,
                     crop: str | np.ndarray | None = None) -> np.ndarray:
    """Boolean (H, W) mask of the pixels a depth evaluation uses (see the module docstring)."""
    pred_m = np.asarray(pred_m)
    gt_m = np.asarray(gt_m)
    if pred_m.ndim != 2 or gt_m.ndim != 2:
        raise ValueError(f"depth maps must be (H, W), got pred {pred_m.shape} and gt {gt_m.shape}")
    if pred_m.shape != gt_m.shape:
        raise ValueError(f"prediction shape {pred_m.shape} does not match ground truth shape {gt_m.shape}; "
                         "resize the prediction to the ground-truth resolution first")
    if not 0 <= min_depth < max_depth:
        raise ValueError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(gt_m) & (gt_m > min_depth) & (gt_m < max_depth) & np.isfinite(pred_m) & (pred_m > 0)
    valid &= crop_mask(crop, *gt_m.shape)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != gt_m.shape:
            raise ValueError(f"mask shape {mask.shape} does not match depth shape {gt_m.shape}")
        valid &= mask.astype(bool)
    return valid


def depth_errors(pred: np.ndarray, gt: np.ndarray) -> dict:
    """The seven standard errors over matching 1-D arrays of positive depths (no masking, no scaling)."""
    pred = np.asarray(pred, dtype=np.float64).ravel()
    gt = np.asarray(gt, dtype=np.float64).ravel()
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same number of values")
    if pred.size == 0:
        return {name: math.nan for name in DEPTH_METRIC_NAMES}
    ratio = np.maximum(gt / pred, pred / gt)
    diff = gt - pred
    return {
        "abs_rel": float(np.mean(np.abs(diff) / gt)),
        "sq_rel": float(np.mean(diff ** 2 / gt)),
        "rmse": float(np.sqrt(np.mean(diff ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2))),
        "a1": float(np.mean(ratio < 1.25)),
        "a2": float(np.mean(ratio < 1.25 ** 2)),
        "a3": float(np.mean(ratio < 1.25 ** 3)),
    }


def compute_depth_metrics(pred_m: np.ndarray, gt_m: np.ndarray, mask: np.ndarray | None = None,
                          min_depth: float = 1e-3, max_depth: float = 80.0, median_scaling: bool = True,
                          crop: str | np.ndarray | None = None, scale: float | None = None) -> dict:
    """Depth metrics of one image.

    Args:
        pred_m: (H, W) predicted depth (metres, or network units when ``median_scaling``).
        gt_m: (H, W) ground-truth depth in metres; 0, NaN or out of range = invalid.
        mask: optional (H, W) bool, True where the pixel counts (e.g. static pixels only).
        crop: ``"garg"``, ``"cityscapes"``, an (H, W) bool array or None.
        median_scaling: scale the prediction by median(gt) / median(pred) over the valid pixels.
        scale: use this fixed scale instead (e.g. the whole-image median scale for a region).
    Returns:
        dict with abs_rel, sq_rel, rmse (m), rmse_log, a1, a2, a3, scale (applied factor) and
        n_valid (pixels used). No valid pixel gives NaN metrics with n_valid 0.
    """
    valid = valid_depth_mask(pred_m, gt_m, mask, min_depth, max_depth, crop)
    n_valid = int(valid.sum())
    if n_valid == 0:
        return _nan_depth_metrics()
    pred = np.asarray(pred_m, dtype=np.float64)[valid]
    gt = np.asarray(gt_m, dtype=np.float64)[valid]
    if scale is not None:
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite positive number, got {scale}")
        applied = float(scale)
    elif median_scaling:
        applied = float(np.median(gt) / np.median(pred))
    else:
        applied = 1.0
    pred = np.clip(pred * applied, min_depth, max_depth)
    out = depth_errors(pred, gt)
    out.update(scale=applied, n_valid=n_valid)
    return out


def compute_depth_metrics_by_region(pred_m: np.ndarray, gt_m: np.ndarray, dynamic_mask: np.ndarray | None,
                                   min_depth: float = 1e-3, max_depth: float = 80.0,
                                   median_scaling: bool = True, crop: str | np.ndarray | None = None,
                                   mask: np.ndarray | None = None) -> dict[str, dict]:
    """Metrics over all / static / dynamic pixels of one image.

    The median scale is computed once over *all* valid pixels and applied to every region, so a
    region is judged with the scale the whole image gets. ``dynamic_mask`` (H, W) bool (True =
    moving object); ``None`` gives only ``{"all": ...}``.
    """
    full = compute_depth_metrics(pred_m, gt_m, mask, min_depth, max_depth, median_scaling, crop)
    out = {"all": full}
    if dynamic_mask is None:
        return out
    dynamic_mask = np.asarray(dynamic_mask)
    if dynamic_mask.shape != np.shape(gt_m):
        raise ValueError(f"dynamic mask shape {dynamic_mask.shape} does not match depth shape {np.shape(gt_m)}")
    dynamic = dynamic_mask.astype(bool)
    base = np.ones_like(dynamic) if mask is None else np.asarray(mask, dtype=bool)
    for name, region in (("static", base & ~dynamic), ("dynamic", base & dynamic)):
        if full["n_valid"] == 0:
            out[name] = _nan_depth_metrics()
        else:
            out[name] = compute_depth_metrics(pred_m, gt_m, region, min_depth, max_depth, median_scaling, crop,
                                              scale=full["scale"])
    return out


class DepthMetricsAccumulator:
    """Mean of per-image metrics over a dataset (monodepth2 style), per region.

    Images without valid pixels in a region are counted in ``n_skipped`` and left out of that
    region's mean.
    """

    def __init__(self) -> None:
        self._rows: dict[str, list[dict]] = {}
        self._skipped: dict[str, int] = {}

    def add(self, metrics: dict, region: str = "all") -> None:
        """Add one image's :func:`compute_depth_metrics` result."""
        if metrics.get("n_valid", 0) == 0:
            self._skipped[region] = self._skipped.get(region, 0) + 1
            self._rows.setdefault(region, [])
            return
        self._rows.setdefault(region, []).append(metrics)

    def add_regions(self, by_region: dict[str, dict]) -> None:
        """Add a :func:`compute_depth_metrics_by_region` result."""
        for region, metrics in by_region.items():
            self.add(metrics, region)

    def result(self) -> dict[str, dict]:
        """``{region: {metric: mean, ..., "scale_median", "scale_std", "n_images", "n_skipped"}}``."""
        out = {}
        for region, rows in self._rows.items():
            summary: dict = {}
            for name in DEPTH_METRIC_NAMES:
                summary[name] = float(np.mean([r[name] for r in rows])) if rows else math.nan
            scales = np.array([r["scale"] for r in rows], dtype=np.float64)
            summary["scale_median"] = float(np.median(scales)) if rows else math.nan
            summary["scale_std"] = float(np.std(scales / np.median(scales))) if rows else math.nan
            summary["n_images"] = len(rows)
            summary["n_skipped"] = self._skipped.get(region, 0)
            out[region] = summary
        return out


# -------------------------------------------------------------------------------------- odometry
def _as_poses(poses: np.ndarray | Sequence, name: str) -> np.ndarray:
    arr = np.asarray([np.asarray(getattr(p, "matrix", p), dtype=np.float64) for p in poses]) \
        if not isinstance(poses, np.ndarray) else np.asarray(poses, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (4, 4):
        raise ValueError(f"{name} must be (N, 4, 4) homogeneous transforms, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    return arr


def _as_points(xyz: np.ndarray, name: str) -> np.ndarray:
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3) positions, got shape {xyz.shape}")
    return xyz


def umeyama_alignment(src_xyz: np.ndarray, dst_xyz: np.ndarray, with_scale: bool = True
                      ) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (Umeyama 1991) with ``dst ≈ s * R @ src + t``.

    Args:
        src_xyz, dst_xyz: (N, 3) corresponding points, N >= 3 (N >= 2 for a pure scale/translation).
        with_scale: Sim(3) when True, SE(3) (s = 1) otherwise.
    Returns:
        (s, R (3, 3), t (3,)).
    """
    src = _as_points(src_xyz, "src_xyz")
    dst = _as_points(dst_xyz, "dst_xyz")
    if src.shape != dst.shape:
        raise ValueError(f"src {src.shape} and dst {dst.shape} must have the same shape")
    if len(src) < 2:
        raise ValueError(f"alignment needs at least 2 points, got {len(src)}")
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    var_src = float(np.mean(np.sum(src_c ** 2, axis=1)))
    if var_src < 1e-18:
        raise ValueError("alignment is degenerate: the source points are all the same")
    cov = dst_c.T @ src_c / len(src)
    u, d, vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        S[2, 2] = -1.0
    R = u @ S @ vt
    s = float(np.trace(np.diag(d) @ S) / var_src) if with_scale else 1.0
    t = mu_dst - s * R @ mu_src
    return s, R, t


def align_trajectory(est_poses: np.ndarray, gt_poses: np.ndarray, mode: str = "sim3") -> tuple[np.ndarray, float]:
    """Align an estimated trajectory (N, 4, 4) of ``T_world_cam`` to the ground truth.

    ``mode``: ``"sim3"`` (rotation, translation, scale), ``"se3"``, ``"scale"`` (scale only,
    least squares of positions relative to the first pose, as used for monocular KITTI t_err),
    ``"none"``. Returns (aligned poses (N, 4, 4), scale).
    """
    est = _as_poses(est_poses, "est_poses")
    gt = _as_poses(gt_poses, "gt_poses")
    if est.shape != gt.shape:
        raise ValueError(f"est {est.shape} and gt {gt.shape} must have the same number of poses")
    if mode == "none":
        return est.copy(), 1.0
    if mode == "scale":
        p_est = est[:, :3, 3] - est[0, :3, 3]
        p_gt = gt[:, :3, 3] - gt[0, :3, 3]
        denom = float(np.sum(p_est ** 2))
        if denom < 1e-18:
            raise ValueError("scale alignment is degenerate: the estimated trajectory does not move")
        s = float(np.sum(p_est * p_gt) / denom)
        out = est.copy()
        out[:, :3, 3] = est[0, :3, 3] + s * p_est
        return out, s
    if mode not in ("sim3", "se3"):
        raise ValueError(f"unknown alignment mode {mode!r}; expected sim3, se3, scale or none")
    s, R, t = umeyama_alignment(est[:, :3, 3], gt[:, :3, 3], with_scale=(mode == "sim3"))
    out = est.copy()
    out[:, :3, :3] = R @ est[:, :3, :3]
    out[:, :3, 3] = s * est[:, :3, 3] @ R.T + t
    return out, s


def ate(est_poses: np.ndarray, gt_poses: np.ndarray, align: str = "sim3") -> dict:
    """Absolute trajectory error: RMSE (and mean, median, max) of the position errors in metres
    after alignment (``align`` as in :func:`align_trajectory`)."""
    aligned, s = align_trajectory(est_poses, gt_poses, align)
    gt = _as_poses(gt_poses, "gt_poses")
    err = np.linalg.norm(aligned[:, :3, 3] - gt[:, :3, 3], axis=1)
    return {"rmse_m": float(np.sqrt(np.mean(err ** 2))), "mean_m": float(np.mean(err)),
            "median_m": float(np.median(err)), "max_m": float(np.max(err)), "scale": s, "n": len(err)}


def chain_relative_poses(T_prev_cur: np.ndarray) -> np.ndarray:
    """Integrate relative poses (N-1, 4, 4) ``T_{i}_{i+1}`` into (N, 4, 4) ``T_0_i`` (first = identity)."""
    rel = _as_poses(T_prev_cur, "T_prev_cur") if len(T_prev_cur) else np.zeros((0, 4, 4))
    out = [np.eye(4)]
    for T in rel:
        out.append(out[-1] @ T)
    return np.asarray(out)


def snippet_ate(pred_T_prev_cur: np.ndarray, gt_T_prev_cur: np.ndarray, snippet_length: int = 5) -> dict:
    """SfMLearner / monodepth2 snippet ATE over every window of ``snippet_length`` frames.

    Each snippet's positions are chained from its relative poses (first frame = origin), the
    prediction is scaled by the least-squares factor ``sum(gt * pred) / sum(pred ** 2)``, and the
    snippet's error is ``sqrt(sum(|pred * s - gt|^2)) / snippet_length`` -- the protocol's own
    definition (not a true RMSE), kept so numbers compare with the literature.

    Args:
        pred_T_prev_cur, gt_T_prev_cur: (N-1, 4, 4) relative poses between consecutive frames.
    Returns:
        {"mean_m", "std_m", "n_snippets"}.
    """
    pred = _as_poses(pred_T_prev_cur, "pred_T_prev_cur")
    gt = _as_poses(gt_T_prev_cur, "gt_T_prev_cur")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same number of relative poses")
    if snippet_length < 2:
        raise ValueError(f"snippet_length must be >= 2, got {snippet_length}")
    errors = []
    for i in range(len(pred) - snippet_length + 2):
        p = chain_relative_poses(pred[i:i + snippet_length - 1])[:, :3, 3]
        g = chain_relative_poses(gt[i:i + snippet_length - 1])[:, :3, 3]
        denom = float(np.sum(p ** 2))
        s = float(np.sum(g * p) / denom) if denom > 0 else 0.0
        errors.append(np.sqrt(np.sum((p * s - g) ** 2)) / snippet_length)
    if not errors:
        raise ValueError(f"need at least {snippet_length - 1} relative poses for {snippet_length}-frame snippets, "
                         f"got {len(pred)}")
    return {"mean_m": float(np.mean(errors)), "std_m": float(np.std(errors)), "n_snippets": len(errors)}


def _rotation_angle(R: np.ndarray) -> np.ndarray:
    """Rotation angle(s) in radians of (..., 3, 3) matrices."""
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.arccos(np.clip(cos, -1.0, 1.0))


def rpe(est_poses: np.ndarray, gt_poses: np.ndarray, delta: int = 1, align: str = "none") -> dict:
    """Relative pose error over a step of ``delta`` frames.

    For each i: ``E = inv(inv(gt_i) gt_{i+d}) @ (inv(est_i) est_{i+d})``; translation error |t_E|
    in metres, rotation error angle(R_E) in degrees. ``align="scale"`` or ``"sim3"`` first
    rescales a monocular trajectory. Returns rmse and mean of both.
    """
    est, _ = align_trajectory(est_poses, gt_poses, align)
    gt = _as_poses(gt_poses, "gt_poses")
    if delta < 1 or delta >= len(gt):
        raise ValueError(f"delta must be in [1, {len(gt) - 1}] for {len(gt)} poses, got {delta}")
    rel_gt = np.linalg.inv(gt[:-delta]) @ gt[delta:]
    rel_est = np.linalg.inv(est[:-delta]) @ est[delta:]
    E = np.linalg.inv(rel_gt) @ rel_est
    t_err = np.linalg.norm(E[:, :3, 3], axis=1)
    r_err = np.degrees(_rotation_angle(E[:, :3, :3]))
    return {"trans_rmse_m": float(np.sqrt(np.mean(t_err ** 2))), "trans_mean_m": float(np.mean(t_err)),
            "rot_rmse_deg": float(np.sqrt(np.mean(r_err ** 2))), "rot_mean_deg": float(np.mean(r_err)),
            "n": len(t_err), "delta": delta}


def kitti_odometry_errors(est_poses: np.ndarray, gt_poses: np.ndarray,
                          lengths_m: Iterable[float] = KITTI_SEGMENT_LENGTHS_M, step_frames: int = 10,
                          align: str = "none") -> dict:
    """KITTI odometry devkit errors: mean over all segments of 100..800 m.

    Segments start every ``step_frames`` frames; a segment ends at the first frame whose
    ground-truth path length from the start is >= the segment length. Per segment
    ``E = inv(inv(est_a) est_b) @ (inv(gt_a) gt_b)``; errors are |t_E| / length and
    angle(R_E) / length. Returns ``t_err_pct`` (%), ``r_err_deg_per_100m`` and ``n_segments``
    (NaN errors with 0 segments when the trajectory is shorter than the shortest length).
    """
    est, s = align_trajectory(est_poses, gt_poses, align)
    gt = _as_poses(gt_poses, "gt_poses")
    step = np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1)
    dist = np.concatenate([[0.0], np.cumsum(step)])
    t_errs, r_errs = [], []
    for first in range(0, len(gt), step_frames):
        for length in lengths_m:
            ahead = np.nonzero(dist[first:] >= dist[first] + length)[0]
            if len(ahead) == 0:
                continue
            last = first + int(ahead[0])
            d_gt = np.linalg.inv(gt[first]) @ gt[last]
            d_est = np.linalg.inv(est[first]) @ est[last]
            E = np.linalg.inv(d_est) @ d_gt
            t_errs.append(np.linalg.norm(E[:3, 3]) / length)
            r_errs.append(float(_rotation_angle(E[:3, :3])) / length)
    if not t_errs:
        return {"t_err_pct": math.nan, "r_err_deg_per_100m": math.nan, "n_segments": 0, "scale": s}
    return {"t_err_pct": float(np.mean(t_errs) * 100.0),
            "r_err_deg_per_100m": float(np.degrees(np.mean(r_errs)) * 100.0),
            "n_segments": len(t_errs), "scale": s}


def evo_cross_check(est_poses: np.ndarray, gt_poses: np.ndarray, delta: int = 1) -> dict:
    """APE (Sim(3)-aligned translation RMSE, m) and RPE (translation RMSE over ``delta`` frames,
    m, after the same alignment) computed by ``evo``, to cross-check :func:`ate` / :func:`rpe`.

    Raises ImportError with an install hint when evo is missing.
    """
    try:
        from evo.core import metrics as evo_metrics
        from evo.core.trajectory import PosePath3D
    except ImportError as exc:  # pragma: no cover - evo is a test/eval extra
        raise ImportError("evo_cross_check needs evo: pip install evo") from exc
    est = _as_poses(est_poses, "est_poses")
    gt = _as_poses(gt_poses, "gt_poses")
    traj_est = PosePath3D(poses_se3=[p for p in est])
    traj_gt = PosePath3D(poses_se3=[p for p in gt])
    traj_est.align(traj_gt, correct_scale=True)
    ape = evo_metrics.APE(evo_metrics.PoseRelation.translation_part)
    ape.process_data((traj_gt, traj_est))
    rpe_metric = evo_metrics.RPE(evo_metrics.PoseRelation.translation_part, delta=delta,
                                 delta_unit=evo_metrics.Unit.frames, all_pairs=False)
    rpe_metric.process_data((traj_gt, traj_est))
    return {"ape_rmse_m": float(ape.get_statistic(evo_metrics.StatisticsType.rmse)),
            "rpe_trans_rmse_m": float(rpe_metric.get_statistic(evo_metrics.StatisticsType.rmse))}


# ----------------------------------------------------------------------------------------- masks
def mask_metrics(pred_mask: np.ndarray, gt_mask: np.ndarray, valid: np.ndarray | None = None) -> dict:
    """IoU, precision, recall and F1 of boolean (H, W) masks (True = dynamic / positive).

    Undefined ratios (e.g. IoU when both masks are empty) are NaN; the pixel counts tp, fp, fn
    are returned so callers can accumulate dataset-level (micro) scores with :func:`mask_scores`.
    """
    pred = np.asarray(pred_mask)
    gt = np.asarray(gt_mask)
    if pred.shape != gt.shape:
        raise ValueError(f"pred mask shape {pred.shape} does not match gt mask shape {gt.shape}")
    pred = pred.astype(bool)
    gt = gt.astype(bool)
    if valid is not None:
        valid = np.asarray(valid)
        if valid.shape != gt.shape:
            raise ValueError(f"valid mask shape {valid.shape} does not match mask shape {gt.shape}")
        pred = pred & valid.astype(bool)
        gt = gt & valid.astype(bool)
    tp = int(np.sum(pred & gt))
    fp = int(np.sum(pred & ~gt))
    fn = int(np.sum(~pred & gt))
    return mask_scores(tp, fp, fn)


def mask_scores(tp: int, fp: int, fn: int) -> dict:
    """IoU, precision, recall, F1 from pixel counts (NaN where the denominator is 0)."""
    def ratio(a: float, b: float) -> float:
        return float(a / b) if b > 0 else math.nan
    precision = ratio(tp, tp + fp)
    recall = ratio(tp, tp + fn)
    return {"iou": ratio(tp, tp + fp + fn), "precision": precision, "recall": recall,
            "f1": ratio(2 * tp, 2 * tp + fp + fn), "tp": tp, "fp": fp, "fn": fn}
