"""The shape checks the loss modules share (one definition, one message)."""
from __future__ import annotations

import torch


def check_depth_map(depth: torch.Tensor, name: str) -> None:
    """Raise ValueError naming ``name`` unless ``depth`` is a (B, 1, H, W) tensor."""
    if not isinstance(depth, torch.Tensor) or depth.dim() != 4 or depth.shape[1] != 1:
        raise ValueError(f"{name} must be (B, 1, H, W), got "
                         f"{tuple(depth.shape) if isinstance(depth, torch.Tensor) else type(depth).__name__}")
