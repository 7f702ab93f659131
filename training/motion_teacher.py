"""A label-free teacher for the dynamic-object mask: the image motion that the camera's own motion cannot explain.

Seed 000 (3-D flow) and seed 001 (instance-wise photometric inconsistency) both find moving objects as the part
of the image motion that ego-motion and rigid depth cannot explain. Learning that from scratch needs far more
training than a CPU gives (issue 13's first ablation: mask IoU 0 after 300 steps), so the mask head is distilled
from this teacher instead, which needs no network and no label:

1. dense optical flow both ways between the target and a source frame (OpenCV's DIS); the forward-backward check
   keeps the pixels whose flow is trustworthy (not occluded, not in a texture-less blur);
2. the background's motion, fitted robustly (RANSAC) to well-textured reliable pixels on a grid: a fundamental
   matrix (any rigid scene, any camera motion with translation), or a homography where it explains the
   background as well (a camera that only rotates, or a planar scene, where the fundamental matrix is
   undetermined), or nothing at all where the image barely moves (a still camera: then every motion is residual);
3. per pixel the residual of its flow under that model, in pixels: the Sampson distance to its epipolar line, or
   the homography transfer error, or the flow itself; dynamic = reliable and residual above
   ``max(min_residual_px, median + residual_mad_factor * MAD)`` of the background;
4. the depth test (seed 000's rigid-flow test, in a form that tolerates a poor depth): along its epipolar line a
   static point moves by the parallax its depth predicts; a ratio of observed to predicted parallax outside
   ``[parallax_ratio_low, parallax_ratio_high]`` (and off by more than ``min_residual_px``) is also dynamic. It
   finds what moves along its own epipolar line (a car the camera follows), which step 3 cannot see.
   With several sources a pixel must be dynamic in every source where it is reliable;
5. cleaned: small specks removed (opening), holes closed, components below ``min_area_frac`` dropped.

Known limits: without a depth, a point that moves along its own epipolar line is not found; with one, the depth
test's tolerance is wide (the CPU-trained depth is often 2x off), so slow motion along the epipolar line still
passes; flow is unreliable on texture-less surfaces (left out by the forward-backward check, so never dynamic).

Conventions: images (H, W, 3) uint8 RGB or (H, W) uint8 grey; flows (H, W, 2) float32 in pixels, ``x_src = x_tgt +
flow``; masks (H, W) bool, True = moving; intrinsics are the project's :class:`Intrinsics` (resized with its own
``scaled``). Everything here is NumPy / OpenCV; no torch, no ROS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from depth_sfm_ros.geometry import Intrinsics
from depth_sfm_ros.geometry.camera import backproject_np

__all__ = ["TeacherConfig", "PairResidual", "standardize", "dense_flow", "forward_backward_valid", "pair_residual",
           "motion_mask", "clean_mask"]


@dataclass(frozen=True)
class TeacherConfig:
    """Settings of the motion teacher (pixels are those of the image given, not of the network)."""

    work_width: int = 480              # images are resized to this width first (flow cost, and px thresholds)
    fb_abs_px: float = 1.0             # forward-backward check: |f_fw + f_bw| < fb_abs_px + fb_rel * |f_fw|
    fb_rel: float = 0.05
    still_flow_px: float = 0.6         # 90th percentile of the grid's flow below this: a still camera, residual = flow
    grid_step: int = 6                 # correspondence grid for the model fit
    min_gradient: float = 8.0          # grey-level gradient (Sobel, /8) a grid point needs (aperture problem)
    ransac_px: float = 1.0             # RANSAC inlier threshold of the model fits
    homography_ratio: float = 0.95     # use H when its inliers are at least this share of F's
    min_residual_px: float = 1.5       # residual threshold floor
    residual_mad_factor: float = 6.0   # ... and this many background MADs
    min_area_frac: float = 0.002       # components smaller than this share of the image are dropped
    min_component_gradient: float = 4.0  # moving regions whose mean grey gradient is lower are dropped (flat walls)
    normalize: bool = True             # standardise each grey image (exposure / flicker changes) before the flow
    parallax_ratio_low: float = 0.5    # depth test: observed / predicted parallax of a static point is at least
    parallax_ratio_high: float = 3.0   # ... and at most this (depths are more often too far than too near)

    def __post_init__(self) -> None:
        for name in ("fb_abs_px", "fb_rel", "still_flow_px", "min_gradient", "ransac_px", "min_residual_px",
                     "residual_mad_factor", "min_area_frac", "parallax_ratio_low", "parallax_ratio_high",
                     "min_component_gradient"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"TeacherConfig.{name} must be a finite number >= 0, got {value!r}")
        if self.work_width < 64 or self.grid_step < 1:
            raise ValueError(f"TeacherConfig.work_width must be >= 64 and grid_step >= 1, got "
                             f"{self.work_width}, {self.grid_step}")
        if not 0 < self.homography_ratio <= 1:
            raise ValueError(f"TeacherConfig.homography_ratio must be in (0, 1], got {self.homography_ratio}")


class PairResidual(NamedTuple):
    residual_px: np.ndarray   # (H, W) float32 flow residual under the background model, NaN where unreliable
    threshold_px: float       # the pair's threshold for residual_px
    model: str                # "still" | "homography" | "fundamental" | "none" (too few points: no mask)
    parallax_px: np.ndarray | None = None      # (H, W) float32 translational parallax the depth predicts, or None
    parallax_ratio: np.ndarray | None = None   # (H, W) float32 observed / predicted parallax, NaN where unreliable
    ratio_range: tuple[float, float] = (0.0, np.inf)   # a static point's ratio lies inside
    min_residual_px: float = 0.0

    @property
    def reliable(self) -> np.ndarray:
        return np.isfinite(self.residual_px)

    @property
    def dynamic(self) -> np.ndarray:
        """(H, W) bool: off the background's epipolar geometry, or (with a depth) off its rigid flow."""
        moving = np.nan_to_num(self.residual_px, nan=0.0) > self.threshold_px
        if self.parallax_ratio is not None and self.parallax_px is not None:
            ratio = np.nan_to_num(self.parallax_ratio, nan=1.0)
            low, high = self.ratio_range
            off_px = np.abs(ratio - 1.0) * self.parallax_px
            moving |= ((ratio < low) | (ratio > high)) & (off_px > self.min_residual_px)
        return moving & self.reliable


def _grey(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"images must be (H, W) or (H, W, 3) uint8, got {image.dtype} {image.shape}")
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def standardize(grey: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey image with mean 128 and standard deviation 40: a global exposure or flicker change
    between two frames then no longer breaks the flow's brightness constancy."""
    g = grey.astype(np.float32)
    return np.clip((g - g.mean()) * (40.0 / max(float(g.std()), 1.0)) + 128.0, 0, 255).astype(np.uint8)


def dense_flow(grey_a: np.ndarray, grey_b: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 DIS optical flow from grey_a to grey_b: grey_a(x) ~ grey_b(x + flow(x))."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(grey_a, grey_b, None)


def forward_backward_valid(flow_fw: np.ndarray, flow_bw: np.ndarray, abs_px: float, rel: float) -> np.ndarray:
    """(H, W) bool: the backward flow at x + flow_fw(x) brings x back (within abs_px + rel * |flow_fw|) and
    x + flow_fw(x) lies inside the image."""
    h, w = flow_fw.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = xs + flow_fw[..., 0], ys + flow_fw[..., 1]
    back = cv2.remap(flow_bw, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    error = np.linalg.norm(flow_fw + back, axis=2)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return inside & (error < abs_px + rel * np.linalg.norm(flow_fw, axis=2))


def _sampson_px(F: np.ndarray, x_tgt: np.ndarray, x_src: np.ndarray) -> np.ndarray:
    """Sampson distance (N,) in pixels of correspondences x_tgt -> x_src (N, 2) under x_src^T F x_tgt = 0."""
    a = np.concatenate([x_tgt, np.ones((len(x_tgt), 1))], 1)
    b = np.concatenate([x_src, np.ones((len(x_src), 1))], 1)
    Fa, Ftb = a @ F.T, b @ F
    algebraic = np.sum(b * Fa, 1)
    denom = Fa[:, 0] ** 2 + Fa[:, 1] ** 2 + Ftb[:, 0] ** 2 + Ftb[:, 1] ** 2
    return np.abs(algebraic) / np.sqrt(np.maximum(denom, 1e-12))


def pair_residual(grey_tgt: np.ndarray, grey_src: np.ndarray, config: TeacherConfig = TeacherConfig(),
                  seed: int = 0, intrinsics: Intrinsics | None = None,
                  inv_depth: np.ndarray | None = None) -> PairResidual:
    """Flow residual of every target pixel under the background motion model to one source frame
    (both (H, W) uint8 grey, already at the working size). Deterministic for a given seed.

    With the ``intrinsics`` and an inverse depth of the target up to scale ``inv_depth`` (H, W) (both at
    the working size), a translating camera also gets seed 000's depth test: the camera motion (R, t direction)
    from the essential matrix, the depth's scale fitted to the background's parallax, and the residual of every
    pixel's flow against the rigid flow of that scaled depth, with a threshold of ``depth_rel_tolerance`` times
    the pixel's predicted parallax (a depth that is 30 % off is not a moving object)."""
    if grey_tgt.shape != grey_src.shape:
        raise ValueError(f"target {grey_tgt.shape} and source {grey_src.shape} differ in size")
    cv2.setRNGSeed(seed)
    flow_fw, flow_bw = dense_flow(grey_tgt, grey_src), dense_flow(grey_src, grey_tgt)
    reliable = forward_backward_valid(flow_fw, flow_bw, config.fb_abs_px, config.fb_rel)
    h, w = grey_tgt.shape
    nan = np.full((h, w), np.nan, np.float32)
    magnitude = np.linalg.norm(flow_fw, axis=2)
    if reliable.mean() < 0.2:
        return PairResidual(nan, np.inf, "none")

    gradient = grey_gradient(grey_tgt)
    textured = gradient >= config.min_gradient
    grid = np.zeros((h, w), bool)
    grid[config.grid_step // 2::config.grid_step, config.grid_step // 2::config.grid_step] = True
    ys, xs = np.nonzero(grid & reliable & textured)
    if len(xs) < 50:
        return PairResidual(nan, np.inf, "none")
    x_tgt = np.stack([xs, ys], 1).astype(np.float64)
    x_src = x_tgt + flow_fw[ys, xs].astype(np.float64)

    yy, xx = np.mgrid[0:h, 0:w]
    all_tgt = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float64)
    all_src = all_tgt + flow_fw.reshape(-1, 2).astype(np.float64)
    depth_test: tuple[np.ndarray, np.ndarray] | None = None
    if np.percentile(magnitude[ys, xs], 90) < config.still_flow_px:
        model, residual = "still", magnitude.astype(np.float64)
    else:
        H, h_inliers = cv2.findHomography(x_tgt, x_src, cv2.RANSAC, 2.0 * config.ransac_px, maxIters=2000)
        F, f_inliers = cv2.findFundamentalMat(x_tgt, x_src, cv2.FM_RANSAC, config.ransac_px, 0.999, 2000)
        n_h = 0 if h_inliers is None else int(h_inliers.sum())
        n_f = 0 if f_inliers is None or F is None or F.shape != (3, 3) else int(f_inliers.sum())
        if H is not None and n_h >= config.homography_ratio * n_f:
            projected = cv2.perspectiveTransform(all_tgt[None], H)[0]
            model, residual = "homography", np.linalg.norm(projected - all_src, axis=1).reshape(h, w)
        elif n_f > 0:
            model, residual = "fundamental", _sampson_px(F, all_tgt, all_src).reshape(h, w)
        else:
            return PairResidual(nan, np.inf, "none")
        if intrinsics is not None and inv_depth is not None:
            depth_test = _depth_test(intrinsics, inv_depth, (ys, xs), x_src, all_src, reliable, config)
    residual = residual.astype(np.float32)
    background = residual[ys, xs]
    median = float(np.median(background))
    mad = float(np.median(np.abs(background - median))) * 1.4826
    threshold = max(config.min_residual_px, median + config.residual_mad_factor * mad)
    return PairResidual(np.where(reliable, residual, np.nan).astype(np.float32), threshold, model,
                        *(depth_test if depth_test is not None else (None, None)),
                        ratio_range=(config.parallax_ratio_low, config.parallax_ratio_high),
                        min_residual_px=config.min_residual_px)


def _depth_test(intrinsics: Intrinsics, inv_depth: np.ndarray, grid: tuple[np.ndarray, np.ndarray],
                x_src: np.ndarray, all_src: np.ndarray, reliable: np.ndarray,
                config: TeacherConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """The translational parallax the depth predicts (px) and the observed / predicted ratio along it (both
    (H, W)), or None where the camera motion cannot be fitted. ``grid`` = (rows, cols) of the fit's points,
    ``x_src`` (N, 2) their source pixels, ``all_src`` (H*W, 2) every pixel's.

    The camera motion comes from PnP (RANSAC) on the grid correspondences with the depth's 3-D points, so R, t are
    in the depth's own (unknown) scale. A static point's flow is its rotation-only image point plus a parallax
    along the predicted direction, in proportion to its inverse depth: a ratio far from 1 means the point's
    motion along its epipolar line is not that of a static point at its depth (a car the camera follows has
    almost none), which the epipolar test cannot see.
    """
    h, w = inv_depth.shape
    if inv_depth.shape != reliable.shape or intrinsics.size != (w, h):
        raise ValueError(f"inv_depth {inv_depth.shape} and intrinsics {intrinsics.size} must be the working size "
                         f"{reliable.shape}")
    K = intrinsics.K.astype(np.float64)
    points_all = backproject_np(1.0 / np.maximum(inv_depth, 1e-6), intrinsics).astype(np.float64)  # (H, W, 3)
    points = points_all[grid]
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(points, x_src, K, None, iterationsCount=300,
                                                 reprojectionError=2.0 * config.ransac_px, confidence=0.999,
                                                 flags=cv2.SOLVEPNP_EPNP)
    if not ok or inliers is None or len(inliers) < max(30, 0.3 * len(points)):
        return None
    idx = inliers.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(points[idx], x_src[idx], K, None, rvec, tvec)
    rotated = points_all.reshape(-1, 3) @ cv2.Rodrigues(rvec)[0].T   # (H*W, 3) target points, source orientation
    project = lambda X: (X @ K.T)[:, :2] / np.maximum((X @ K.T)[:, 2:], 1e-9)  # noqa: E731
    static = project(rotated)                                          # where a point at infinity would go
    step = project(rotated + tvec.reshape(1, 3)) - static
    parallax = np.linalg.norm(step, axis=1)
    direction = step / np.maximum(parallax, 1e-9)[:, None]
    ratio = np.sum((all_src - static) * direction, 1) / np.maximum(parallax, 1e-9)
    ratio = np.where(reliable.reshape(-1) & (parallax > 1e-3), ratio, np.nan)
    return parallax.reshape(h, w).astype(np.float32), ratio.reshape(h, w).astype(np.float32)


def grey_gradient(grey: np.ndarray) -> np.ndarray:
    """(H, W) float32 gradient magnitude of a uint8 grey image (Sobel / 8: grey levels per pixel)."""
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0) / 8.0, cv2.Sobel(grey, cv2.CV_32F, 0, 1) / 8.0)


def clean_mask(mask: np.ndarray, min_area_frac: float, gradient: np.ndarray | None = None,
               min_component_gradient: float = 0.0) -> np.ndarray:
    """(H, W) bool: opening (3x3) removes specks, closing (7x7) fills holes, components below
    ``min_area_frac`` of the image are dropped, and (with ``gradient`` (H, W)) those whose mean gradient is
    below ``min_component_gradient``: a texture-less region's flow is a guess, not a motion."""
    m = mask.astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area_frac * m.size
    if gradient is not None and min_component_gradient > 0 and n > 1:
        mean_gradient = np.bincount(labels.ravel(), weights=gradient.ravel(), minlength=n) / np.maximum(
            np.bincount(labels.ravel(), minlength=n), 1)
        keep &= mean_gradient >= min_component_gradient
    return keep[labels]


def motion_mask(target: np.ndarray, sources: Sequence[np.ndarray], config: TeacherConfig = TeacherConfig(),
                seed: int = 0, intrinsics: Intrinsics | None = None,
                inv_depth: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool moving-object mask of ``target`` at its own size, from one or more source frames of the same
    camera (each (H, W, 3) RGB or (H, W) grey uint8, the target's size). A pixel is moving when it is dynamic
    (:attr:`PairResidual.dynamic`) in every source where its flow is reliable (and in at least one).

    ``intrinsics`` of the target's image and ``inv_depth`` (h, w) the target's inverse depth up to scale (any
    size: resized here; e.g. 1 / a depth net's depth) switch on the depth test for moving cameras."""
    if not sources:
        raise ValueError("motion_mask needs at least one source frame")
    if (intrinsics is None) != (inv_depth is None):
        raise ValueError("give both intrinsics and inv_depth for the depth test, or neither")
    h, w = target.shape[:2]
    scale = min(1.0, config.work_width / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))

    def prepare(image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != (h, w):
            raise ValueError(f"source {image.shape[:2]} and target {(h, w)} differ in size")
        grey = _grey(image)
        if scale != 1.0:
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        return standardize(grey) if config.normalize else grey

    grey_tgt = prepare(target)
    intrinsics_work = inv_work = None
    if intrinsics is not None and inv_depth is not None:
        if intrinsics.size != (w, h):
            raise ValueError(f"intrinsics are for {intrinsics.size}, the images are {(w, h)}")
        intrinsics_work = intrinsics.scaled(*size)
        if inv_depth.ndim != 2 or not np.all(np.isfinite(inv_depth)) or np.any(inv_depth <= 0):
            raise ValueError(f"inv_depth must be a finite positive (h, w) array, got shape {inv_depth.shape}")
        inv_work = cv2.resize(inv_depth.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    votes = np.zeros(grey_tgt.shape, np.int32)
    seen = np.zeros(grey_tgt.shape, np.int32)
    for k, source in enumerate(sources):
        pair = pair_residual(grey_tgt, prepare(source), config, seed=seed + k, intrinsics=intrinsics_work,
                             inv_depth=inv_work)
        if pair.model == "none":
            continue
        seen += pair.reliable
        votes += pair.dynamic
    mask = clean_mask((seen > 0) & (votes == seen), config.min_area_frac, grey_gradient(grey_tgt),
                      config.min_component_gradient)
    if scale != 1.0:
        mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return mask
