"""SC-Depth scale-consistent geometric loss (Bian et al. 2019) and its self-discovered mask.

For every target pixel, ``depth_in_source`` (z of the target's back-projected point in the source
camera, from :func:`depth_sfm_ros.geometry.ops.inverse_warp`) is compared with the source's own
predicted depth sampled at the same place (the same ``inverse_warp`` applied to the source depth):

    D_diff = |D_src_projected - D_src_interpolated| / (D_src_projected + D_src_interpolated)  in [0, 1)

L_GC is the mean of D_diff over valid pixels (weight 0.5 in SC-Depth) and ``M = 1 - D_diff`` is the
weight mask multiplied into the photometric error (moving objects / occlusions get low weight).
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from depth_sfm_ros.geometry.ops import inverse_warp

from .photometric import reduce_masked

__all__ = ["GEOMETRIC_WEIGHT", "DepthInconsistency", "depth_inconsistency", "inconsistency_from_warp",
           "geometric_consistency_loss"]

GEOMETRIC_WEIGHT = 0.5  # SC-Depth's gamma (photometric 1.0, smoothness 0.1)


class DepthInconsistency(NamedTuple):
    diff: torch.Tensor    # (B, 1, H, W) normalised inconsistency in [0, 1)
    valid: torch.Tensor   # (B, 1, H, W) float, 1 where the target point lands inside the source
    weight_mask: torch.Tensor  # (B, 1, H, W) 1 - diff (SC-Depth's self-discovered mask)


def depth_inconsistency(depth_tgt_m: torch.Tensor, depth_src_m: torch.Tensor, T_src_tgt: torch.Tensor,
                        K: torch.Tensor) -> DepthInconsistency:
    """Depth inconsistency of the target depth (B, 1, H, W) against the source depth (B, 1, H, W)
    under ``T_src_tgt`` (B, 4, 4) with intrinsics K (B, 3, 3) at H x W. Differentiable in both
    depths and the pose."""
    if depth_src_m.shape != depth_tgt_m.shape:
        raise ValueError(f"depth_src_m {tuple(depth_src_m.shape)} and depth_tgt_m {tuple(depth_tgt_m.shape)} differ")
    result = inverse_warp(depth_src_m, depth_tgt_m, T_src_tgt, K, padding_mode="border")
    return inconsistency_from_warp(result.depth_in_source, result.image, result.valid)


def inconsistency_from_warp(depth_projected_m: torch.Tensor, depth_interpolated_m: torch.Tensor,
                            valid: torch.Tensor) -> DepthInconsistency:
    """Inconsistency from an already computed warp (all (B, 1, H, W)): the target points' z in the
    source frame, the source depth sampled there, and the warp's valid mask (used by the
    instance-wise warp of seed 001, which composes one warp per object)."""
    diff = (depth_projected_m - depth_interpolated_m).abs() / (depth_projected_m + depth_interpolated_m).clamp(min=1e-6)
    diff = diff.clamp(0.0, 1.0)
    return DepthInconsistency(diff, valid, 1.0 - diff)


def geometric_consistency_loss(inconsistency: DepthInconsistency, regions: torch.Tensor | None = None) -> torch.Tensor:
    """Scalar L_GC: batch mean of the per-sample mean inconsistency over valid pixels (with
    ``regions`` (B, 1, H, W) ids, averaged per background/instance region, seed 001)."""
    return reduce_masked(inconsistency.diff, inconsistency.valid, regions).mean()
