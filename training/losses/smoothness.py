"""Edge-aware smoothness of mean-normalised disparity (monodepth2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["smoothness_loss"]


def smoothness_loss(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Scalar ``mean(|d_x d*| e^{-|d_x I|}) + mean(|d_y d*| e^{-|d_y I|})`` with
    ``d* = disp / mean(disp)`` per sample (so the loss cannot shrink by scaling the depth).

    disp: (B, 1, h, w) disparity (or inverse depth); image: (B, 3, H, W) RGB, resized to h x w
    (area) when its size differs. Zero for a constant disparity.
    """
    if disp.dim() != 4 or disp.shape[1] != 1:
        raise ValueError(f"disp must be (B, 1, h, w), got {tuple(disp.shape)}")
    if image.dim() != 4 or image.shape[0] != disp.shape[0]:
        raise ValueError(f"image must be (B, C, H, W) with B={disp.shape[0]}, got {tuple(image.shape)}")
    if image.shape[-2:] != disp.shape[-2:]:
        image = F.interpolate(image, size=disp.shape[-2:], mode="area")
    norm = disp / disp.mean(dim=(2, 3), keepdim=True).clamp(min=1e-7)
    grad_d_x = (norm[..., :, :-1] - norm[..., :, 1:]).abs()
    grad_d_y = (norm[..., :-1, :] - norm[..., 1:, :]).abs()
    grad_i_x = (image[..., :, :-1] - image[..., :, 1:]).abs().mean(1, keepdim=True)
    grad_i_y = (image[..., :-1, :] - image[..., 1:, :]).abs().mean(1, keepdim=True)
    return (grad_d_x * torch.exp(-grad_i_x)).mean() + (grad_d_y * torch.exp(-grad_i_y)).mean()
