"""Overlap and blank masks (Wang et al., ICRA 2019, seed 003), as functions of depth, pose and K.

Both masks exclude target pixels whose reconstruction cannot be right because the scene point is
not in both views, so that they do not pollute the reconstruction and SSIM losses
(``L = sum |X_t - X^_t| M_edg M_ove M_bla``, seed 003):

* overlap mask ``M_ove`` (inverse direction): 1 at target pixels whose 3-D point (target depth,
  ``T_src_tgt``) projects inside the source image in front of the camera; when the source depth
  is given it must also be consistent in the reverse direction: the source pixel it lands on must
  itself project back inside the target (the two views overlap there, both ways).
* blank mask ``M_bla`` (forward direction): the source image is forward-projected into the target
  view with the source depth and ``T_tgt_src``; target pixels that no source pixel reaches are
  blank (newly visible content, regions outside the source's field of view) and get 0.

For a camera translating sideways both masks cut the strip of the target that the source never
saw. The seed shows the masks only as figures; the definitions above are our reading of it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from depth_sfm_ros.geometry.ops import forward_warp, invert_transform, inverse_warp, pixels_to_grid

__all__ = ["overlap_mask", "blank_mask"]


def _check_depth(depth: torch.Tensor, name: str) -> None:
    if not isinstance(depth, torch.Tensor) or depth.dim() != 4 or depth.shape[1] != 1:
        raise ValueError(f"{name} must be (B, 1, H, W), got "
                         f"{tuple(depth.shape) if isinstance(depth, torch.Tensor) else type(depth).__name__}")


@torch.no_grad()
def overlap_mask(depth_tgt_m: torch.Tensor, T_src_tgt: torch.Tensor, K: torch.Tensor,
                 depth_src_m: torch.Tensor | None = None) -> torch.Tensor:
    """Overlap mask (B, 1, H, W) float {0, 1} of the target; see the module docstring.

    depth_tgt_m, depth_src_m (B, 1, H, W) metres; T_src_tgt (B, 4, 4); K (B, 3, 3) at H x W.
    No gradient (a mask, not a loss).
    """
    _check_depth(depth_tgt_m, "depth_tgt_m")
    ones = torch.ones_like(depth_tgt_m)
    fwd = inverse_warp(ones, depth_tgt_m, T_src_tgt, K)
    mask = fwd.valid
    if depth_src_m is not None:
        _check_depth(depth_src_m, "depth_src_m")
        back = inverse_warp(ones, depth_src_m, invert_transform(T_src_tgt), K)  # source pixels -> target
        h, w = depth_src_m.shape[-2:]
        grid = pixels_to_grid(fwd.uv_source, h, w)
        src_sees_tgt = F.grid_sample(back.valid, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        mask = mask * (src_sees_tgt > 0.5).to(mask.dtype)
    return mask


@torch.no_grad()
def blank_mask(depth_src_m: torch.Tensor, T_tgt_src: torch.Tensor, K: torch.Tensor, upsample: int = 2) -> torch.Tensor:
    """Blank mask (B, 1, H, W) float {0, 1} of the target: 1 where at least one source pixel lands
    when the source is forward-projected (``forward_warp`` with ``upsample`` to close splatting holes)."""
    _check_depth(depth_src_m, "depth_src_m")
    ones = torch.ones_like(depth_src_m)
    return forward_warp(ones, depth_src_m, T_tgt_src, K, upsample=upsample).valid
