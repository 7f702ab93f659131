"""Dynamic-mask auto-weighting of the reprojection loss (seed 000 sec. 3.2, eq. 2).

Each sample's reprojection loss is multiplied by a weight from the size of its dynamic-object
mask M_i:

* ``"less_dynamic_more_weight"`` (the paper's winner, Table 1 "more dynamic less loss"):
  ``w_i = 1 - count(M_i) / (H W)``, in [0, 1].
* ``"more_dynamic_more_weight"`` (the paper's losing guess): ``w_i = 1 + count(M_i) / (H W)``,
  in [1, 2]. We chose ``1 + fraction`` rather than ``fraction`` so that an image without dynamic
  objects keeps its full weight instead of dropping out of training.
* ``"none"``: all weights 1.

The paper divides by 192 x 512 (its image size); here H x W is the mask's own size.
"""
from __future__ import annotations

import torch

from .config import AUTO_WEIGHT_MODES

__all__ = ["AUTO_WEIGHT_MODES", "dynamic_sample_weights"]


def dynamic_sample_weights(dynamic_mask: torch.Tensor, mode: str = "less_dynamic_more_weight") -> torch.Tensor:
    """Per-sample weights (B,) from a dynamic mask (B, 1, H, W) (bool, or float where > 0.5 counts).

    Weights carry no gradient (the mask is prior knowledge, not a prediction to train).
    """
    if mode not in AUTO_WEIGHT_MODES:
        raise ValueError(f"auto-weight mode must be one of {AUTO_WEIGHT_MODES}, got {mode!r}")
    if not isinstance(dynamic_mask, torch.Tensor) or dynamic_mask.dim() != 4 or dynamic_mask.shape[1] != 1:
        shape = tuple(dynamic_mask.shape) if isinstance(dynamic_mask, torch.Tensor) else type(dynamic_mask).__name__
        raise ValueError(f"dynamic_mask must be (B, 1, H, W), got {shape}")
    m = dynamic_mask.detach()
    m = m if m.dtype == torch.bool else m > 0.5
    b, _, h, w = m.shape
    fraction = m.reshape(b, -1).sum(1).to(torch.float32) / float(h * w)
    if mode == "less_dynamic_more_weight":
        return 1.0 - fraction
    if mode == "more_dynamic_more_weight":
        return 1.0 + fraction
    return torch.ones_like(fraction)
