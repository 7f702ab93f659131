"""Photometric reprojection loss (monodepth2 style): SSIM + L1 error maps, per-pixel minimum
reprojection over sources, identity auto-masking, multiplicative masks and per-sample weights.

Shapes: B batch, S sources, H x W full resolution. Images are RGB in [0, 1].
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from .instance_ids import relabel_instances

__all__ = [
    "ssim", "photometric_error", "upsample_depth", "reduce_masked", "PhotometricResult",
    "reprojection_loss",
]

_SSIM_C1 = 0.01 ** 2  # monodepth2 constants (dynamic range 1)
_SSIM_C2 = 0.03 ** 2
_IDENTITY_OFFSET = 1e-5  # ties between identity and reprojection go to reprojection


def _check_image(t: torch.Tensor, name: str) -> None:
    if not isinstance(t, torch.Tensor) or t.dim() != 4:
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got {shape}")


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM (B, C, H, W) of two images (B, C, H, W) with a 3x3 mean window and
    reflection padding (monodepth2). 1 for identical images; values lie in [-1, 1]."""
    _check_image(x, "x")
    if x.shape != y.shape:
        raise ValueError(f"ssim inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    x_p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y_p = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x = F.avg_pool2d(x_p, 3, 1)
    mu_y = F.avg_pool2d(y_p, 3, 1)
    sigma_x = F.avg_pool2d(x_p * x_p, 3, 1) - mu_x * mu_x
    sigma_y = F.avg_pool2d(y_p * y_p, 3, 1) - mu_y * mu_y
    sigma_xy = F.avg_pool2d(x_p * y_p, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + _SSIM_C1) * (2 * sigma_xy + _SSIM_C2)
    den = (mu_x * mu_x + mu_y * mu_y + _SSIM_C1) * (sigma_x + sigma_y + _SSIM_C2)
    return num / den


def photometric_error(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.85) -> torch.Tensor:
    """Error map (B, 1, H, W): ``a * (1 - SSIM) / 2 + (1 - a) * |pred - target|``, channel mean,
    with ``a = ssim_weight`` (0.85 in monodepth2). Zero for identical images."""
    if not 0.0 <= ssim_weight <= 1.0:
        raise ValueError(f"ssim_weight must be in [0, 1], got {ssim_weight}")
    _check_image(pred, "pred")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    l1 = (pred - target).abs().mean(dim=1, keepdim=True)
    if ssim_weight == 0.0:
        return l1
    dssim = ((1.0 - ssim(pred, target)) / 2.0).clamp(0.0, 1.0).mean(dim=1, keepdim=True)
    return ssim_weight * dssim + (1.0 - ssim_weight) * l1


def upsample_depth(depth_m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bring a coarse depth map (B, 1, h, w) to ``size`` (H, W) by bilinear interpolation of
    inverse depth. Because the network's disparity is affine in 1/depth, this equals upsampling
    the disparity first (monodepth2) without needing min/max depth here."""
    _check_image(depth_m, "depth_m")
    if tuple(depth_m.shape[-2:]) == tuple(size):
        return depth_m
    inv = F.interpolate(1.0 / depth_m.clamp(min=1e-6), size=size, mode="bilinear", align_corners=False)
    return 1.0 / inv.clamp(min=1e-6)


def reduce_masked(error: torch.Tensor, mask: torch.Tensor, regions: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample masked mean (B,) of ``error`` (B, 1, H, W) over pixels where ``mask`` (B, 1, H, W)
    is 1. With ``regions`` (B, 1, H, W) int (0 = background, k = instance k) the per-sample value is
    the mean over present regions of each region's masked mean (seed 001's instance-wise loss:
    background and every object count equally); the ids are relabelled 1..N per frame first
    (:func:`relabel_instances`), so raw ids such as 26001 cost no more than 1. Samples with no
    valid pixel give 0."""
    if error.shape != mask.shape:
        raise ValueError(f"error {tuple(error.shape)} and mask {tuple(mask.shape)} differ in shape")
    b = error.shape[0]
    if regions is None:
        num = (error * mask).reshape(b, -1).sum(1)
        den = mask.reshape(b, -1).sum(1)
        return num / den.clamp(min=1.0)
    if regions.shape != error.shape:
        raise ValueError(f"regions must be {tuple(error.shape)}, got {tuple(regions.shape)}")
    regions = relabel_instances(regions, per_frame=True)  # raw ids (e.g. 26001) -> 1..N per frame
    n_regions = int(regions.max().item()) + 1 if regions.numel() else 1
    one_hot = F.one_hot(regions[:, 0], n_regions).permute(0, 3, 1, 2).to(error.dtype)  # (B,R,H,W)
    m = one_hot * mask
    num = (m * error).reshape(b, n_regions, -1).sum(-1)
    den = m.reshape(b, n_regions, -1).sum(-1)
    present = (den > 0).to(error.dtype)
    per_region = num / den.clamp(min=1.0)
    return (per_region * present).sum(1) / present.sum(1).clamp(min=1.0)


class PhotometricResult(NamedTuple):
    loss: torch.Tensor         # scalar: batch mean of sample_weight * per-sample loss
    per_sample: torch.Tensor   # (B,) unweighted per-sample loss
    error: torch.Tensor        # (B, 1, H, W) combined per-pixel error
    mask: torch.Tensor         # (B, 1, H, W) float, pixels that entered the loss


def reprojection_loss(target: torch.Tensor, warped: Sequence[torch.Tensor],
                      valid: Sequence[torch.Tensor] | None = None,
                      weights: Sequence[torch.Tensor] | None = None,
                      sources: Sequence[torch.Tensor] | None = None,
                      ssim_weight: float = 0.85, min_reprojection: bool = True,
                      sample_weight: torch.Tensor | None = None,
                      regions: torch.Tensor | None = None) -> PhotometricResult:
    """Photometric loss of the target (B, 3, H, W) against its reconstructions from S sources.

    Args:
        warped: S images (B, 3, H, W), each source warped into the target view.
        valid: S binary masks (B, 1, H, W): 0 where the reconstruction is undefined (warp left the
            source, overlap / blank mask of seed 003). Such pixels are excluded, not zero-error.
        weights: S soft masks (B, 1, H, W) multiplied into the error (SfMLearner explainability,
            SC-Depth's 1 - depth inconsistency). With ``min_reprojection`` they scale the error of
            the source the minimum picked on the raw errors; otherwise each source's error in the mean.
        sources: S un-warped source images; when given, monodepth2 auto-masking keeps only pixels
            where the raw (unweighted) reprojection error is below the identity error (static
            camera, objects moving with the camera).
        min_reprojection: per-pixel minimum over sources (monodepth2) instead of their mean.
        sample_weight: (B,) per-sample weights (seed 000 auto-weight), default 1.
        regions: optional instance ids (B, 1, H, W) for the instance-wise (region-averaged) mean.
    """
    _check_image(target, "target")
    if len(warped) == 0:
        raise ValueError("reprojection_loss needs at least one warped source")
    for name, seq in (("valid", valid), ("weights", weights), ("sources", sources)):
        if seq is not None and len(seq) != len(warped):
            raise ValueError(f"{name} has {len(seq)} entries for {len(warped)} warped sources")
    # 1. raw per-source error maps, validity and soft weights, stacked over sources: (B, S, H, W)
    raw_errors, valids, soft = [], [], []
    for s, img in enumerate(warped):
        err = photometric_error(img, target, ssim_weight)
        raw_errors.append(err)
        valids.append(torch.ones_like(err) if valid is None else valid[s].to(err.dtype))
        soft.append(torch.ones_like(err) if weights is None else weights[s].to(err.dtype).expand_as(err))
    raw = torch.cat(raw_errors, 1)
    valid_all = torch.cat(valids, 1)
    weight_all = torch.cat(soft, 1)
    if min_reprojection:
        # 2a. monodepth2: per pixel, the valid source with the smallest RAW error. The soft weights are
        #     applied to the chosen source's error only afterwards: a weight in the minimum would let a
        #     source win because it is down-weighted, not because it reconstructs the pixel.
        big = torch.finfo(raw.dtype).max / 4
        raw_reproj, best = torch.where(valid_all > 0, raw, torch.full_like(raw, big)).min(dim=1, keepdim=True)
        mask = (valid_all > 0).any(dim=1, keepdim=True).to(raw.dtype)
        raw_reproj = torch.where(mask > 0, raw_reproj, torch.zeros_like(raw_reproj))
        reproj = raw_reproj * weight_all.gather(1, best)
    else:
        # 2b. SfMLearner: mean over the valid sources of E_s * error_s (seed 002 eq. 1)
        count = valid_all.sum(1, keepdim=True)
        raw_reproj = (raw * valid_all).sum(1, keepdim=True) / count.clamp(min=1.0)
        reproj = (raw * weight_all * valid_all).sum(1, keepdim=True) / count.clamp(min=1.0)
        mask = (count > 0).to(raw.dtype)
    if sources is not None:
        # 3. auto-masking (monodepth2) compares the RAW reprojection error with the identity error
        identity = torch.cat([photometric_error(src, target, ssim_weight) for src in sources], 1)
        identity = identity + _IDENTITY_OFFSET
        identity_ref = identity.min(1, keepdim=True)[0] if min_reprojection else identity.mean(1, keepdim=True)
        mask = mask * (raw_reproj.detach() < identity_ref).to(raw.dtype)
    per_sample = reduce_masked(reproj, mask, regions)
    if sample_weight is None:
        loss = per_sample.mean()
    else:
        if sample_weight.shape != per_sample.shape:
            raise ValueError(f"sample_weight must be (B,)={tuple(per_sample.shape)}, got {tuple(sample_weight.shape)}")
        loss = (sample_weight.to(per_sample.dtype) * per_sample).mean()
    return PhotometricResult(loss, per_sample, reproj, mask)
