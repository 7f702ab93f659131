"""Pose cycle consistency (seed 000 eq. 1): ``L = sum |T_{t-1->t} T_{t->t-1} - I_4|``.

The pose net is run in both directions; the product of the two predicted transforms must be the
identity. Element-wise L1 summed over the 4x4 matrix (eq. 1), averaged over the batch.
"""
from __future__ import annotations

import torch

__all__ = ["pose_cycle_loss"]


def pose_cycle_loss(T_a_b: torch.Tensor, T_b_a: torch.Tensor) -> torch.Tensor:
    """Scalar cycle loss for transforms (B, 4, 4) predicted in the two directions.

    Zero exactly when ``T_a_b @ T_b_a == I``; differentiable in both inputs.
    """
    for name, T in (("T_a_b", T_a_b), ("T_b_a", T_b_a)):
        if not isinstance(T, torch.Tensor) or T.dim() != 3 or T.shape[1:] != (4, 4):
            raise ValueError(f"{name} must be (B, 4, 4), got "
                             f"{tuple(T.shape) if isinstance(T, torch.Tensor) else type(T).__name__}")
    if T_a_b.shape[0] != T_b_a.shape[0]:
        raise ValueError(f"batch sizes differ: {T_a_b.shape[0]} vs {T_b_a.shape[0]}")
    eye = torch.eye(4, dtype=T_a_b.dtype, device=T_a_b.device)
    return (T_a_b @ T_b_a - eye).abs().sum(dim=(1, 2)).mean()
