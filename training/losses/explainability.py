"""SfMLearner explainability mask (Zhou et al. 2017; seeds 002 and 004).

The pose/explainability net predicts, per source and scale, a logit map; its sigmoid E_s in
(0, 1) multiplies the photometric error of that source (seed 002 eq. 1). A cross-entropy
regulariser towards the constant label 1 (weight 0.2 in SfMLearner, summed over sources and
scales there; averaged over scales here like every other term) keeps E from collapsing to 0.
A single logit with sigmoid is the two-class softmax of SfMLearner written with one channel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["explainability_masks", "explainability_regularizer", "EXPLAINABILITY_WEIGHT"]

EXPLAINABILITY_WEIGHT = 0.2  # SfMLearner default (lambda_m, seed 002 eq. 2)


def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
        raise ValueError(f"explainability logits must be (B, S, h, w), got "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")


def explainability_masks(logits: torch.Tensor, size: tuple[int, int]) -> list[torch.Tensor]:
    """Logits (B, S, h, w) -> S masks (B, 1, H, W) in (0, 1), bilinearly upsampled to ``size``."""
    _check_logits(logits)
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    probs = torch.sigmoid(logits)
    return [probs[:, s:s + 1] for s in range(probs.shape[1])]


def explainability_regularizer(logits: torch.Tensor) -> torch.Tensor:
    """Scalar mean binary cross-entropy of sigmoid(logits) (B, S, h, w) against label 1,
    i.e. ``mean(-log E)``: minimal (-> 0) when the mask is 1 everywhere."""
    _check_logits(logits)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
