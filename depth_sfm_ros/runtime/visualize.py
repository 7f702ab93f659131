"""Pictures for people: colorized depth and mask overlays (numpy + OpenCV, no torch, no ROS).

One implementation used by the node's ``~/depth/colored``, the bag report and the output bag.
"""
from __future__ import annotations

import cv2
import numpy as np

UNKNOWN_BGR = (0, 0, 0)


def colorize_depth(depth_m: np.ndarray, min_m: float = 1.0, max_m: float = 80.0,
                   colormap: int = cv2.COLORMAP_TURBO, out: np.ndarray | None = None) -> np.ndarray:
    """Depth (H, W) in metres -> BGR (H, W, 3) uint8; near is warm, far is cool, NaN/inf black.

    Inverse depth is mapped linearly between 1/max_m and 1/min_m, which spreads the colours
    where monocular depth is most accurate (near the camera).

    >>> colorize_depth(np.array([[1.0, np.nan]]), 1.0, 10.0)[0, 1].tolist()
    [0, 0, 0]
    """
    depth_m = np.asarray(depth_m)
    if depth_m.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth_m.shape}")
    if not (0 < min_m < max_m):
        raise ValueError(f"need 0 < min_m < max_m, got {min_m}, {max_m}")
    valid = np.isfinite(depth_m) & (depth_m > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(valid, 1.0 / np.where(valid, depth_m, 1.0), 0.0)
    lo, hi = 1.0 / max_m, 1.0 / min_m
    scaled = np.clip((inv - lo) / (hi - lo), 0.0, 1.0)
    gray = (scaled * 255.0).astype(np.uint8)
    bgr = cv2.applyColorMap(gray, colormap, dst=out)
    bgr[~valid] = UNKNOWN_BGR
    return bgr


def overlay_mask(image_bgr: np.ndarray, mask: np.ndarray, color_bgr: tuple[int, int, int] = (0, 0, 255),
                 alpha: float = 0.5) -> np.ndarray:
    """Blend ``color_bgr`` into ``image_bgr`` (H, W, 3) uint8 where ``mask`` (H, W) is non-zero."""
    if image_bgr.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image {image_bgr.shape[:2]} and mask {mask.shape[:2]} sizes differ")
    out = image_bgr.copy()
    sel = mask.astype(bool)
    out[sel] = (out[sel] * (1.0 - alpha) + np.asarray(color_bgr, dtype=np.float32) * alpha).astype(np.uint8)
    return out
