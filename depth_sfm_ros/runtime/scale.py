"""Metric scale recovery for monocular depth + ego-motion (numpy only).

Modes (one scale multiplies both the depth and the predicted translation):

- ``none``: scale 1 (network units).
- ``fixed``: a configured factor.
- ``camera_height``: fit the ground plane to the predicted depth of the lower image part
  (back-projected with :func:`geometry.backproject_np`), RANSAC with the normal near the camera's
  up axis (-y in the optical frame); scale = camera_height_m / fitted plane distance; the output is
  the median of the recent accepted estimates (robust to outlier frames).
- ``external``: another odometry source gives the speed; scale = speed * dt / |t_pred|, median-smoothed.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..geometry import Intrinsics, backproject_np

log = logging.getLogger(__name__)

SCALE_MODES = ("none", "fixed", "camera_height", "external")


@dataclass(frozen=True)
class PlaneFit:
    """Ground plane n . p + d = 0 in the camera frame with n (unit) pointing up (n_y < 0), d > 0 the
    camera's distance to the plane (network units), ``inlier_ratio`` of the candidate points."""

    normal: np.ndarray
    distance: float
    inlier_ratio: float
    num_points: int


def fit_ground_plane(depth: np.ndarray, intrinsics: Intrinsics, region_top: float = 0.6,
                     max_tilt_deg: float = 20.0, inlier_tol: float = 0.01, iterations: int = 100,
                     min_inlier_ratio: float = 0.3, max_points: int = 4000, seed: int = 0) -> PlaneFit | None:
    """RANSAC ground plane in the rows below ``region_top * H`` of ``depth`` (H, W) (any units, NaN ignored).

    ``inlier_tol`` is relative: a point is an inlier within ``inlier_tol * median depth`` of the plane
    (so the fit does not depend on the unknown scale). Returns None when no plane with the normal
    within ``max_tilt_deg`` of up and at least ``min_inlier_ratio`` inliers is found.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    if not 0.0 <= region_top < 1.0:
        raise ValueError(f"region_top must be in [0, 1), got {region_top}")
    points = backproject_np(depth, intrinsics)[int(region_top * depth.shape[0]):].reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1) & (points[:, 2] > 0) & (points[:, 1] > 0)]  # below the camera
    if len(points) < 3:
        return None
    rng = np.random.default_rng(seed)
    if len(points) > max_points:
        points = points[rng.choice(len(points), max_points, replace=False)]
    points = points.astype(np.float64)
    tol = inlier_tol * float(np.median(points[:, 2]))
    cos_tilt = math.cos(math.radians(max_tilt_deg))
    # all hypotheses at once: a plane through 3 random points each, kept if not degenerate and level enough
    samples = rng.integers(0, len(points), size=(iterations, 3))
    p0, p1, p2 = points[samples[:, 0]], points[samples[:, 1]], points[samples[:, 2]]
    normals = np.cross(p1 - p0, p2 - p0)  # (iterations, 3)
    norms = np.linalg.norm(normals, axis=1)
    keep = norms >= 1e-12
    normals = normals[keep] / norms[keep, None]
    level = np.abs(normals[:, 1]) >= cos_tilt
    normals, p0 = normals[level], p0[keep][level]
    if len(normals) == 0:
        return None
    offsets = np.einsum("kj,kj->k", normals, p0)  # n . p0 of each plane
    inlier_counts = (np.abs(points @ normals.T - offsets) < tol).sum(axis=0)  # (N, k) -> (k,)
    best = int(np.argmax(inlier_counts))  # the first of the best, as a sequential RANSAC would keep
    best_inliers = np.abs(points @ normals[best] - offsets[best]) < tol
    if best_inliers.sum() < max(3, min_inlier_ratio * len(points)):
        return None
    inlier_points = points[best_inliers]  # least-squares refinement (smallest singular vector)
    centroid = inlier_points.mean(axis=0)
    normal = np.linalg.svd(inlier_points - centroid, full_matrices=False)[2][-1]
    if normal[1] > 0:
        normal = -normal  # point up (-y)
    if abs(normal[1]) < cos_tilt:
        return None
    distance = float(-normal @ centroid)
    if distance <= 0:
        return None
    return PlaneFit(normal=normal, distance=distance, inlier_ratio=float(best_inliers.mean()),
                    num_points=len(points))


class ScaleEstimator:
    """Per-frame metric scale with temporal smoothing (median of the last ``window`` accepted estimates).

    Until the first accepted estimate, ``scale`` is ``initial_scale`` and ``valid`` is False.
    """

    def __init__(self, mode: str = "none", fixed_scale: float = 1.0, camera_height_m: float = 1.65,
                 window: int = 15, region_top: float = 0.6, max_tilt_deg: float = 20.0,
                 initial_scale: float = 1.0) -> None:
        if mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {mode!r}")
        for name, value in (("fixed_scale", fixed_scale), ("camera_height_m", camera_height_m),
                            ("initial_scale", initial_scale)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if int(window) != window or window < 1:
            raise ValueError(f"scale window must be a positive integer, got {window!r}")
        self.mode = mode
        self.fixed_scale = float(fixed_scale)
        self.camera_height_m = float(camera_height_m)
        self.region_top = float(region_top)
        self.max_tilt_deg = float(max_tilt_deg)
        self.initial_scale = float(initial_scale)
        self._history: deque[float] = deque(maxlen=int(window))
        self.last_raw: float | None = None

    @property
    def valid(self) -> bool:
        return self.mode in ("none", "fixed") or len(self._history) > 0

    @property
    def scale(self) -> float:
        if self.mode == "none":
            return 1.0
        if self.mode == "fixed":
            return self.fixed_scale
        return float(np.median(self._history)) if self._history else self.initial_scale

    def reset(self) -> None:
        self._history.clear()
        self.last_raw = None

    def _accept(self, raw: float | None) -> None:
        self.last_raw = raw
        if raw is not None and math.isfinite(raw) and raw > 0:
            self._history.append(raw)

    def update(self, depth: np.ndarray | None = None, intrinsics: Intrinsics | None = None,
               translation: np.ndarray | None = None, dt_s: float | None = None,
               speed_mps: float | None = None) -> float:
        """Feed one frame and return the current (smoothed) scale.

        camera_height: needs ``depth`` (H, W) in network units and its ``intrinsics``.
        external: needs the predicted ``translation`` (3,) in network units, ``dt_s`` and ``speed_mps``;
        frames without them (or with |t| ~ 0) keep the previous scale.
        """
        if self.mode == "camera_height":
            if depth is None or intrinsics is None:
                raise ValueError("camera_height scale needs the depth and its intrinsics")
            fit = fit_ground_plane(depth, intrinsics, region_top=self.region_top, max_tilt_deg=self.max_tilt_deg)
            self._accept(self.camera_height_m / fit.distance if fit is not None else None)
            if fit is None:
                log.debug("no ground plane found this frame; keeping scale %.4f", self.scale)
        elif self.mode == "external":
            if speed_mps is not None and not (math.isfinite(speed_mps) and speed_mps >= 0):
                raise ValueError(f"external speed must be finite and >= 0 m/s, got {speed_mps!r}")
            norm = float(np.linalg.norm(translation)) if translation is not None else 0.0
            if speed_mps is not None and dt_s is not None and dt_s > 0 and norm > 1e-6 and speed_mps > 0:
                self._accept(speed_mps * dt_s / norm)
        return self.scale
