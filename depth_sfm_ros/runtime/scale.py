"""Metric scale recovery for monocular depth + ego-motion (numpy only).

Modes (one scale multiplies both the depth and the predicted translation):

- ``none``: scale 1 (network units).
- ``fixed``: a configured factor.
- ``camera_height``: fit the ground plane to the predicted depth of the lower image part
  (back-projected with :func:`geometry.backproject_np`) with RANSAC, the normal near the camera's
  ``up`` direction (from the camera mounting; -y of the optical frame for a level, forward-looking
  camera); scale = camera_height_m / fitted plane distance. Each frame's fit is judged before it is
  used (:func:`judge_ground_plane`: inlier fraction, tilt of the normal against ``up``, residual
  spread, and a jump against the smoothed scale); a refused frame keeps the last accepted scale and
  is counted by reason. The output is the median of the recent accepted estimates.
- ``external``: another odometry source gives the speed; scale = speed * dt / |t_pred|, median-smoothed.

Before the first accepted estimate the scale is ``initial_scale`` (1: the model's own units, what the
model card's ``scale_convention`` says they are; ``relative`` for a self-supervised model) and the
status is ``no_scale_yet``. :meth:`ScaleEstimator.state` says which assumption the scale rests on.
"""
from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..geometry import Intrinsics, backproject_np

log = logging.getLogger(__name__)

SCALE_MODES = ("none", "fixed", "camera_height", "external")
# why a frame's estimate was not used (camera_height: the first five; external: the last two)
REFUSAL_REASONS = ("no_plane", "few_inliers", "tilt", "residual", "jump", "no_speed", "no_motion")
UP_OPTICAL = (0.0, -1.0, 0.0)  # 'up' of a level, forward-looking camera in its optical frame (y down)
_SEARCH_CONE_DEG = 45.0  # RANSAC looks this far from 'up' to tell a tilted plane from no plane
_MIN_HISTORY_FOR_JUMP = 3  # accepted estimates before the jump check applies


@dataclass(frozen=True)
class PlaneFit:
    """Ground plane n . p + d = 0 in the camera frame with n (unit) pointing up (n . up > 0), d > 0 the
    camera's distance to the plane (network units), ``inlier_ratio`` of the ``num_points`` candidate points,
    ``tilt_deg`` between n and the expected up, ``residual_ratio`` = RMS distance of the inliers to the
    refined plane / d."""

    normal: np.ndarray
    distance: float
    inlier_ratio: float
    num_points: int
    tilt_deg: float = 0.0
    residual_ratio: float = 0.0


def _unit(vector: Sequence[float], name: str = "up") -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64).reshape(3)
    norm = float(np.linalg.norm(v))
    if not np.all(np.isfinite(v)) or norm < 1e-9:
        raise ValueError(f"{name} must be a finite non-zero 3-vector, got {vector!r}")
    return v / norm


def _ransac_plane(points: np.ndarray, up: np.ndarray, cone_deg: float, tol: float, iterations: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray] | None:
    """Best plane (normal, offset n . p, inlier mask) among ``iterations`` 3-point hypotheses whose
    normal is within ``cone_deg`` of ``up``; None when there is none."""
    samples = rng.integers(0, len(points), size=(iterations, 3))
    p0, p1, p2 = points[samples[:, 0]], points[samples[:, 1]], points[samples[:, 2]]
    normals = np.cross(p1 - p0, p2 - p0)  # (iterations, 3), all hypotheses at once
    norms = np.linalg.norm(normals, axis=1)
    keep = norms >= 1e-12
    normals = normals[keep] / norms[keep, None]
    level = np.abs(normals @ up) >= math.cos(math.radians(cone_deg))
    normals, p0 = normals[level], p0[keep][level]
    if len(normals) == 0:
        return None
    offsets = np.einsum("kj,kj->k", normals, p0)
    inlier_counts = (np.abs(points @ normals.T - offsets) < tol).sum(axis=0)  # (N, k) -> (k,)
    best = int(np.argmax(inlier_counts))  # the first of the best, as a sequential RANSAC would keep
    return normals[best], float(offsets[best]), np.abs(points @ normals[best] - offsets[best]) < tol


def ground_plane_candidate(depth: np.ndarray, intrinsics: Intrinsics, region_top: float = 0.6,
                           up: Sequence[float] = UP_OPTICAL, max_tilt_deg: float = 20.0, inlier_tol: float = 0.01,
                           iterations: int = 100, min_inlier_ratio: float = 0.3, max_points: int = 4000,
                           seed: int = 0) -> PlaneFit | None:
    """The best RANSAC ground plane in the rows below ``region_top * H`` of ``depth`` (H, W) (any units,
    NaN ignored), before any judgement; None when there is no plane at all (fewer than 3 points below the
    camera, or no hypothesis within 45 degrees of ``up``).

    Hypotheses within ``max_tilt_deg`` of ``up`` are tried first; only when none of them gets
    ``min_inlier_ratio`` inliers is the search widened to 45 degrees, so that a tilted plane is reported
    as such (and refused for its tilt) rather than as no plane. ``inlier_tol`` is relative: a point is an
    inlier within ``inlier_tol * median depth`` of the plane (so the fit does not depend on the unknown scale).
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    if not 0.0 <= region_top < 1.0:
        raise ValueError(f"region_top must be in [0, 1), got {region_top}")
    up_unit = _unit(up)
    points = backproject_np(depth, intrinsics)[int(region_top * depth.shape[0]):].reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1) & (points[:, 2] > 0)]
    points = points[points.astype(np.float64) @ up_unit < 0]  # below the camera
    if len(points) < 3:
        return None
    rng = np.random.default_rng(seed)
    if len(points) > max_points:
        points = points[rng.choice(len(points), max_points, replace=False)]
    points = points.astype(np.float64)
    tol = inlier_tol * float(np.median(points[:, 2]))
    found = _ransac_plane(points, up_unit, max_tilt_deg, tol, iterations, rng)
    if found is None or found[2].mean() < min_inlier_ratio:
        wide = _ransac_plane(points, up_unit, max(_SEARCH_CONE_DEG, max_tilt_deg), tol, iterations, rng)
        if wide is not None and (found is None or wide[2].sum() > found[2].sum()):
            found = wide
    if found is None:
        return None
    inliers = found[2]
    inlier_points = points[inliers]
    if len(inlier_points) < 3:
        return None
    centroid = inlier_points.mean(axis=0)  # least-squares refinement (smallest singular vector)
    normal = np.linalg.svd(inlier_points - centroid, full_matrices=False)[2][-1]
    if normal @ up_unit < 0:
        normal = -normal  # point up
    distance = float(-normal @ centroid)
    residuals = (inlier_points - centroid) @ normal
    tilt_deg = math.degrees(math.acos(min(1.0, abs(float(normal @ up_unit)))))
    residual_ratio = float(np.sqrt(np.mean(residuals ** 2))) / distance if distance > 0 else math.inf
    return PlaneFit(normal=normal, distance=distance, inlier_ratio=float(inliers.mean()), num_points=len(points),
                    tilt_deg=tilt_deg, residual_ratio=residual_ratio)


def judge_ground_plane(fit: PlaneFit | None, max_tilt_deg: float = 20.0, min_inlier_ratio: float = 0.3,
                       max_residual_ratio: float = 0.05) -> str:
    """Why ``fit`` is not a usable ground plane ('' when it is): ``no_plane`` (None, or the camera is not
    above it), ``few_inliers`` (< ``min_inlier_ratio`` of the points), ``tilt`` (normal more than
    ``max_tilt_deg`` from up), ``residual`` (inlier RMS > ``max_residual_ratio`` x the camera height)."""
    if fit is None or not fit.distance > 0:
        return "no_plane"
    if fit.inlier_ratio < min_inlier_ratio:
        return "few_inliers"
    if fit.tilt_deg > max_tilt_deg:
        return "tilt"
    if fit.residual_ratio > max_residual_ratio:
        return "residual"
    return ""


def fit_ground_plane(depth: np.ndarray, intrinsics: Intrinsics, region_top: float = 0.6,
                     max_tilt_deg: float = 20.0, inlier_tol: float = 0.01, iterations: int = 100,
                     min_inlier_ratio: float = 0.3, max_points: int = 4000, seed: int = 0,
                     up: Sequence[float] = UP_OPTICAL, max_residual_ratio: float = 0.05) -> PlaneFit | None:
    """The ground plane of ``depth`` (:func:`ground_plane_candidate`) if :func:`judge_ground_plane`
    accepts it, else None (no guess)."""
    fit = ground_plane_candidate(depth, intrinsics, region_top=region_top, up=up, max_tilt_deg=max_tilt_deg,
                                 inlier_tol=inlier_tol, iterations=iterations, min_inlier_ratio=min_inlier_ratio,
                                 max_points=max_points, seed=seed)
    reason = judge_ground_plane(fit, max_tilt_deg, min_inlier_ratio, max_residual_ratio)
    return None if reason else fit


@dataclass(frozen=True)
class ScaleState:
    """Where the scale stands after a frame (what diagnostics report).

    scale: the factor applied (metres per network unit; 1 = network units before any estimate).
    valid: an estimate was accepted at some point (always True for none / fixed).
    status: ``ok`` (this frame's estimate accepted; always for none / fixed), ``refused:<reason>`` (this
        frame's estimate refused or missing: the last accepted scale is kept) or ``no_scale_yet``.
    assumption: what the metric scale rests on, in words.
    refusals: frames refused so far, and ``refusals_by_reason`` (every reason of :data:`REFUSAL_REASONS`).
    raw: this frame's estimate (NaN when none).
    """

    scale: float
    valid: bool
    status: str
    assumption: str
    refusals: int
    refusals_by_reason: dict = field(default_factory=dict)
    raw: float = math.nan


class ScaleEstimator:
    """Per-frame metric scale with temporal smoothing (median of the last ``window`` accepted estimates).

    camera_height judgement: ``max_tilt_deg`` (normal vs ``up``), ``min_inlier_ratio``, ``max_residual_ratio``
    (see :func:`judge_ground_plane`), and ``max_jump``: once 3 estimates are accepted, one differing from the
    smoothed scale by more than this factor is refused (``jump``); ``window`` jump refusals in a row that agree
    among themselves (within ``max_jump``) replace the history (a lasting change, e.g. a wrong first lock).
    Refusals are logged at most once per ``log_throttle_s``.
    Until the first accepted estimate, ``scale`` is ``initial_scale`` and ``valid`` is False.
    """

    def __init__(self, mode: str = "none", fixed_scale: float = 1.0, camera_height_m: float = 1.65,
                 window: int = 15, region_top: float = 0.6, max_tilt_deg: float = 20.0,
                 initial_scale: float = 1.0, up: Sequence[float] = UP_OPTICAL, min_inlier_ratio: float = 0.3,
                 max_residual_ratio: float = 0.05, max_jump: float = 1.5, log_throttle_s: float = 10.0) -> None:
        if mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {mode!r}")
        for name, value in (("fixed_scale", fixed_scale), ("camera_height_m", camera_height_m),
                            ("initial_scale", initial_scale), ("max_residual_ratio", max_residual_ratio)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if int(window) != window or window < 1:
            raise ValueError(f"scale window must be a positive integer, got {window!r}")
        if not (isinstance(max_tilt_deg, (int, float)) and 0 < max_tilt_deg <= 45):
            raise ValueError(f"max_tilt_deg must be in (0, 45], got {max_tilt_deg!r}")
        if not (isinstance(min_inlier_ratio, (int, float)) and 0 < min_inlier_ratio < 1):
            raise ValueError(f"min_inlier_ratio must be in (0, 1), got {min_inlier_ratio!r}")
        if not (isinstance(max_jump, (int, float)) and math.isfinite(max_jump) and max_jump > 1):
            raise ValueError(f"max_jump must be a finite number > 1, got {max_jump!r}")
        self.mode = mode
        self.fixed_scale = float(fixed_scale)
        self.camera_height_m = float(camera_height_m)
        self.region_top = float(region_top)
        self.max_tilt_deg = float(max_tilt_deg)
        self.min_inlier_ratio = float(min_inlier_ratio)
        self.max_residual_ratio = float(max_residual_ratio)
        self.max_jump = float(max_jump)
        self.initial_scale = float(initial_scale)
        self.up = _unit(up)
        self.log_throttle_s = float(log_throttle_s)
        self._window = int(window)
        self._history: deque[float] = deque(maxlen=self._window)
        self._jump_streak: list[float] = []
        self.refusals = {reason: 0 for reason in REFUSAL_REASONS}
        self.last_raw: float | None = None
        self.last_fit: PlaneFit | None = None
        self._status = "ok" if mode in ("none", "fixed") else "no_scale_yet"
        self._last_log_s = -math.inf
        self._logged_since = 0

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

    @property
    def assumption(self) -> str:
        """What the scale rests on (for diagnostics and logs)."""
        if self.mode == "none":
            return "none: depth and odometry in network units (relative, no metric scale)"
        if self.mode == "fixed":
            return f"fixed: fixed_scale={self.fixed_scale:g} m per network unit"
        if self.mode == "camera_height":
            up = ", ".join(f"{v:.3g}" for v in self.up)
            return (f"ground plane at camera_height_m={self.camera_height_m:g} m below the camera "
                    f"(normal within {self.max_tilt_deg:g} deg of up = [{up}] in the camera frame)")
        return "external: speed of the external odometry (nav_msgs/Odometry twist) x frame time"

    def state(self) -> ScaleState:
        """The current :class:`ScaleState`."""
        raw = self.last_raw if self.last_raw is not None else math.nan
        return ScaleState(scale=self.scale, valid=self.valid, status=self._status, assumption=self.assumption,
                          refusals=sum(self.refusals.values()), refusals_by_reason=dict(self.refusals), raw=raw)

    def reset(self) -> None:
        """Forget the accepted estimates (counters are kept)."""
        self._history.clear()
        self._jump_streak.clear()
        self.last_raw = None
        if self.mode in ("camera_height", "external"):
            self._status = "no_scale_yet"

    def _accept(self, raw: float) -> None:
        first = not self._history
        self._history.append(raw)
        self._jump_streak.clear()
        self._status = "ok"
        if first:
            log.info("metric scale (%s): first estimate %.4g accepted [%s]", self.mode, raw, self.assumption)

    def _refuse(self, reason: str, detail: str = "") -> None:
        self.refusals[reason] += 1
        self._status = f"refused:{reason}" if self._history else "no_scale_yet"
        if self.mode != "camera_height":
            return  # external: the node counts a missing speed itself; no speed when stopped is normal
        self._logged_since += 1
        now = time.monotonic()
        if now - self._last_log_s >= self.log_throttle_s:
            kept = (f"keeping scale {self.scale:.4g}" if self._history else
                    f"no ground plane accepted yet: depth and odometry stay in network units (scale {self.scale:g})")
            counts = ", ".join(f"{k} {v}" for k, v in self.refusals.items() if v)
            log.warning("camera_height scale: ground plane refused (%s%s); %s [%d refused since the last line; "
                        "so far: %s]", reason, f": {detail}" if detail else "", kept, self._logged_since, counts)
            self._last_log_s = now
            self._logged_since = 0

    def _judge_jump(self, raw: float) -> bool:
        """True when ``raw`` may be accepted; handles the jump streak."""
        if len(self._history) < _MIN_HISTORY_FOR_JUMP:
            return True
        smoothed = self.scale
        if max(raw / smoothed, smoothed / raw) <= self.max_jump:
            return True
        self._jump_streak.append(raw)
        streak = self._jump_streak[-self._window:]
        if len(streak) >= self._window and max(streak) / min(streak) <= self.max_jump:
            log.warning("camera_height scale: %d estimates in a row differ from the smoothed scale %.4g by more than "
                        "x%g but agree among themselves: restarting the scale at %.4g", len(streak), smoothed,
                        self.max_jump, float(np.median(streak)))
            self._history.clear()
            self._history.extend(streak)
            self._jump_streak.clear()
            self._status = "ok"
            return False  # already in the history
        self._refuse("jump", f"{raw:.4g} vs smoothed {smoothed:.4g}, more than x{self.max_jump:g}")
        return False

    def update(self, depth: np.ndarray | None = None, intrinsics: Intrinsics | None = None,
               translation: np.ndarray | None = None, dt_s: float | None = None,
               speed_mps: float | None = None) -> float:
        """Feed one frame and return the current (smoothed) scale; :meth:`state` tells what happened.

        camera_height: needs ``depth`` (H, W) in network units and its ``intrinsics``.
        external: needs the predicted ``translation`` (3,) in network units, ``dt_s`` and ``speed_mps``;
        frames without them (or with |t| ~ 0, e.g. a still camera) keep the previous scale.
        """
        if self.mode == "camera_height":
            if depth is None or intrinsics is None:
                raise ValueError("camera_height scale needs the depth and its intrinsics")
            fit = ground_plane_candidate(depth, intrinsics, region_top=self.region_top, up=self.up,
                                         max_tilt_deg=self.max_tilt_deg, min_inlier_ratio=self.min_inlier_ratio)
            self.last_fit = fit
            reason = judge_ground_plane(fit, self.max_tilt_deg, self.min_inlier_ratio, self.max_residual_ratio)
            if reason:
                self.last_raw = None
                detail = "" if fit is None else (f"inliers {fit.inlier_ratio:.2f}, tilt {fit.tilt_deg:.1f} deg, "
                                                 f"residual {fit.residual_ratio:.3f} x height")
                self._refuse(reason, detail)
            else:
                raw = self.camera_height_m / fit.distance
                self.last_raw = raw
                if self._judge_jump(raw):
                    self._accept(raw)
        elif self.mode == "external":
            if speed_mps is not None and not (math.isfinite(speed_mps) and speed_mps >= 0):
                raise ValueError(f"external speed must be finite and >= 0 m/s, got {speed_mps!r}")
            norm = float(np.linalg.norm(translation)) if translation is not None else 0.0
            if translation is None and dt_s is None:
                self.last_raw = None  # no frame pair yet (first frame after a (re)start): nothing to estimate
            elif speed_mps is None or dt_s is None or not dt_s > 0:
                self.last_raw = None
                self._refuse("no_speed")
            elif norm <= 1e-6 or speed_mps <= 0:
                self.last_raw = None
                self._refuse("no_motion")
            else:
                self.last_raw = speed_mps * dt_s / norm
                self._accept(self.last_raw)
        return self.scale
