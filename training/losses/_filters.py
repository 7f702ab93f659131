"""Small image filters shared by the losses (Sobel gradients)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sobel", "sobel_magnitude"]


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel derivatives (d/du, d/dv), each (B, C, H, W), of x (B, C, H, W), replicate padding.
    A unit step across a straight edge gives a response of 4."""
    if x.dim() != 4:
        raise ValueError(f"sobel expects (B, C, H, W), got {tuple(x.shape)}")
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    weight = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3)
    b, c, h, w = x.shape
    padded = F.pad(x.reshape(b * c, 1, h, w), (1, 1, 1, 1), mode="replicate")
    g = F.conv2d(padded, weight).reshape(b, c, 2, h, w)
    return g[:, :, 0], g[:, :, 1]


def sobel_magnitude(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """L2 norm of the Sobel gradient (B, C, H, W); ``eps`` keeps the gradient finite at 0."""
    gx, gy = sobel(x)
    return torch.sqrt(gx * gx + gy * gy + eps)
