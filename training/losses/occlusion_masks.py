"""Overlap and blank masks (Wang et al., ICRA 2019, seed 003), as functions of depth, pose and K.

Seed 003's motivation is "the occlusion during warping". Its loss is
``L = sum |X_t - X^_t| M_edg M_ove M_bla`` (and the same masks on the SSIM term): three binary
masks of the target:

* edge mask ``M_edg``: the target point projects outside the source (or behind it). That is the
  warp's in-view mask, ``LossConfig.valid_mask`` (``inverse_warp(...).valid``), not computed here.
* overlap mask ``M_ove`` (:func:`overlap_mask`, inverse direction, target depth only): the target
  pixels are projected into the source with the target depth and ``T_src_tgt``; where several of
  them land on the same source pixel (their projections overlap), the source shows only the nearest
  one: a z-buffer over the source pixels keeps the nearest target point and every target point more
  than ``rel_tolerance`` (relative) behind it is occluded in the source and gets 0. Its warped colour
  is the occluder's, so it must not enter the loss.
* blank mask ``M_bla`` (:func:`blank_mask`, forward direction, source depth): the source image is
  forward-projected into the target view with the source depth and ``T_tgt_src``; target pixels that
  no source pixel reaches are blank (newly visible content, regions outside the source's field of
  view, and, with good depths, the same occluded pixels seen from the other side) and get 0.

For a camera translating sideways past a near object, the background pixels next to the object on
the side it moves towards are occluded in the source: both masks drop them, the edge mask does not.
For a plane (no occlusion) the overlap mask is all ones; the blank mask cuts the strip of the target
that the source never saw. The seed shows the masks only as figures; the definitions above are our
reading of it (the overlap is the z-buffer test of target points that share a source pixel).
"""
from __future__ import annotations

import torch

from depth_sfm_ros.geometry.ops import backproject, forward_warp, project, transform_points
from .shapes import check_depth_map

__all__ = ["OVERLAP_REL_TOLERANCE", "overlap_mask", "blank_mask"]

OVERLAP_REL_TOLERANCE = 0.1  # a point > 10 % behind the nearest point on its source pixel is occluded


@torch.no_grad()
def overlap_mask(depth_tgt_m: torch.Tensor, T_src_tgt: torch.Tensor, K: torch.Tensor,
                 rel_tolerance: float = OVERLAP_REL_TOLERANCE) -> torch.Tensor:
    """Overlap (occlusion) mask (B, 1, H, W) float {0, 1} of the target; see the module docstring.

    depth_tgt_m (B, 1, H, W) depth units; T_src_tgt (B, 4, 4); K (B, 3, 3) at H x W (the source has
    the target's size and intrinsics). 0 where the target point lands on a source pixel that a nearer
    target point (by more than ``rel_tolerance`` x its depth) also lands on; 1 elsewhere, including
    points that leave the source (those are the edge mask's, ``valid_mask``). No gradient.
    """
    check_depth_map(depth_tgt_m, "depth_tgt_m")
    if rel_tolerance < 0:
        raise ValueError(f"rel_tolerance must be >= 0, got {rel_tolerance}")
    b, _, h, w = depth_tgt_m.shape
    # 1. every target pixel's 3-D point in the source camera, and the source pixel it lands on (nearest)
    uv, z = project(transform_points(T_src_tgt, backproject(depth_tgt_m, K)), K)
    u = torch.round(uv[..., 0]).long().reshape(b, -1)
    v = torch.round(uv[..., 1]).long().reshape(b, -1)
    z = z.reshape(b, -1)
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h) & (z > 1e-3)
    flat = v.clamp(0, h - 1) * w + u.clamp(0, w - 1) + (torch.arange(b, device=u.device) * (h * w)).unsqueeze(1)
    # 2. z-buffer over source pixels: the nearest target point that lands on each
    z_buffer = torch.full((b * h * w,), float("inf"), dtype=z.dtype, device=z.device)
    z_buffer = z_buffer.scatter_reduce(0, flat[inside], z[inside], reduce="amin", include_self=True)
    # 3. a point is visible in the source unless it is clearly behind the nearest point on its pixel
    visible = (z <= z_buffer[flat] * (1.0 + rel_tolerance)) | ~inside
    return visible.reshape(b, 1, h, w).to(depth_tgt_m.dtype)


@torch.no_grad()
def blank_mask(depth_src_m: torch.Tensor, T_tgt_src: torch.Tensor, K: torch.Tensor, upsample: int = 2) -> torch.Tensor:
    """Blank mask (B, 1, H, W) float {0, 1} of the target: 1 where at least one source pixel lands
    when the source is forward-projected (``forward_warp`` with ``upsample`` to close splatting holes)."""
    check_depth_map(depth_src_m, "depth_src_m")
    ones = torch.ones_like(depth_src_m)
    return forward_warp(ones, depth_src_m, T_tgt_src, K, upsample=upsample).valid
