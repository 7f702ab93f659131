"""Normal matching losses of seed 000 sec. 3.4 (weights 0.1 each in the paper).

* L1 normal loss (eq. 4): ``L_N = 1/N sum_i ||n_i - n*_i||_1`` between the normals of the predicted
  depth and of a depth prior (both from :func:`depth_sfm_ros.geometry.ops.depth_to_normals`).
* Edge-aware relative-normal (ranking) loss (eq. 5):
  ``L_ERN = 1/N sum_i |n_Ai . n_Bi - n*_Ai . n*_Bi|`` over point pairs (A_i, B_i) sampled across
  image edges (edge-guided sampling): edge pixels are drawn where the Sobel magnitude of the guide
  (image or prior) exceeds ``edge_threshold`` x its per-sample maximum, and A / B are placed on both
  sides of the edge along the gradient direction at a random distance. Deterministic for a given
  ``torch.Generator``, which must live on the guide's device (``torch.multinomial`` / ``torch.rand``
  refuse a generator of another device): create it with :func:`sampling_generator` (the trainer does).

The prior is a target, so its normals carry no gradient. Normals are scale invariant, so a
prior with another depth scale is fine.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from depth_sfm_ros.geometry.ops import depth_to_normals

from ._filters import sobel
from .shapes import check_depth_map

__all__ = ["NORMAL_WEIGHT", "RANKING_WEIGHT", "normal_l1_loss", "PointPairs", "sampling_generator",
           "edge_guided_pairs", "relative_normal_loss"]

NORMAL_WEIGHT = 0.1
RANKING_WEIGHT = 0.1


def normal_l1_loss(depth_m: torch.Tensor, depth_prior_m: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Eq. 4 for depth and prior (B, 1, H, W) with K (B, 3, 3) at H x W: mean over pixels of the
    L1 norm (sum over x, y, z) of the normal difference. 0 for identical depths."""
    check_depth_map(depth_m, "depth_m")
    check_depth_map(depth_prior_m, "depth_prior_m")
    if depth_m.shape != depth_prior_m.shape:
        raise ValueError(f"depth {tuple(depth_m.shape)} and prior {tuple(depth_prior_m.shape)} differ in shape")
    n = depth_to_normals(depth_m, K)
    n_prior = depth_to_normals(depth_prior_m, K).detach()
    return (n - n_prior).abs().sum(dim=1).mean()


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` name the same device when the current device is 0."""
    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.type == "cuda" and (a.index is None or b.index is None):
        current = torch.cuda.current_device()
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return a.index == b.index or a.index is None or b.index is None


def sampling_generator(device: torch.device | str, seed: int) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (where the sampled tensors live), seeded with ``seed``.

    The one way the trainer makes the generator of :func:`edge_guided_pairs`: a generator must be on
    the device of the tensors it samples (a CUDA generator with a CPU ``multinomial`` fails).
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return torch.Generator(device=device).manual_seed(int(seed))


class PointPairs(NamedTuple):
    index_a: torch.Tensor  # (B, P) long, flat pixel index v * W + u
    index_b: torch.Tensor  # (B, P) long


def edge_guided_pairs(guide: torch.Tensor, num_pairs: int = 1024, generator: torch.Generator | None = None,
                      edge_threshold: float = 0.1, min_offset: float = 2.0, max_offset: float = 8.0) -> PointPairs:
    """Sample point pairs across edges of ``guide`` (B, C, H, W) (channel mean is used).

    For each sample: an edge pixel p (uniform among pixels with Sobel magnitude above
    ``edge_threshold`` x max; all pixels when the guide is flat), a unit gradient direction d and a
    distance s ~ U[min_offset, max_offset] pixels give A = p - s d and B = p + s d (rounded,
    clamped to the image). Sampling runs on ``guide.device``; ``generator``, when given, must be on
    that device too (see :func:`sampling_generator`), else ValueError.
    """
    if guide.dim() != 4:
        raise ValueError(f"guide must be (B, C, H, W), got {tuple(guide.shape)}")
    if num_pairs < 1 or not 0.0 <= edge_threshold < 1.0 or not 0.0 <= min_offset <= max_offset:
        raise ValueError(f"bad sampling parameters: num_pairs={num_pairs}, edge_threshold={edge_threshold}, "
                         f"offsets=[{min_offset}, {max_offset}]")
    b, _, h, w = guide.shape
    device = guide.device
    if generator is not None and not _same_device(generator.device, device):
        raise ValueError(f"edge_guided_pairs: the generator is on {generator.device} but the guide on {device}; "
                         f"create it with sampling_generator(guide.device, seed)")
    with torch.no_grad():
        gx, gy = sobel(guide.detach().float().mean(dim=1, keepdim=True))
        gx, gy = gx.reshape(b, -1), gy.reshape(b, -1)
        mag = torch.sqrt(gx * gx + gy * gy)
        peak = mag.amax(dim=1, keepdim=True)
        weights = ((mag > edge_threshold * peak) & (peak > 0)).float()
        weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, torch.ones_like(weights))
        centre = torch.multinomial(weights, num_pairs, replacement=True, generator=generator)  # (B, P) on device
        offset = min_offset + (max_offset - min_offset) * torch.rand(b, num_pairs, generator=generator,
                                                                     device=device, dtype=weights.dtype)
        dx, dy = gx.gather(1, centre), gy.gather(1, centre)
        norm = torch.sqrt(dx * dx + dy * dy)
        # flat spots (fallback sampling) get a horizontal pair
        dx = torch.where(norm > 0, dx / norm.clamp(min=1e-12), torch.ones_like(dx))
        dy = torch.where(norm > 0, dy / norm.clamp(min=1e-12), torch.zeros_like(dy))
        u = (centre % w).float()
        v = torch.div(centre, w, rounding_mode="floor").float()

        def flat(uu: torch.Tensor, vv: torch.Tensor) -> torch.Tensor:
            return vv.round().clamp(0, h - 1).long() * w + uu.round().clamp(0, w - 1).long()

        return PointPairs(flat(u - offset * dx, v - offset * dy), flat(u + offset * dx, v + offset * dy))


def relative_normal_loss(depth_m: torch.Tensor, depth_prior_m: torch.Tensor, K: torch.Tensor,
                         pairs: PointPairs) -> torch.Tensor:
    """Eq. 5: mean over pairs of ``|n_A . n_B - n*_A . n*_B|`` for depth and prior (B, 1, H, W)."""
    check_depth_map(depth_m, "depth_m")
    if depth_m.shape != depth_prior_m.shape:
        raise ValueError(f"depth {tuple(depth_m.shape)} and prior {tuple(depth_prior_m.shape)} differ in shape")
    b = depth_m.shape[0]
    if pairs.index_a.shape[0] != b or pairs.index_a.shape != pairs.index_b.shape:
        raise ValueError(f"pairs must be (B={b}, P), got {tuple(pairs.index_a.shape)} / {tuple(pairs.index_b.shape)}")

    def dots(depth: torch.Tensor) -> torch.Tensor:
        n = depth_to_normals(depth, K).reshape(b, 3, -1)
        n_a = n.gather(2, pairs.index_a.unsqueeze(1).expand(b, 3, -1))
        n_b = n.gather(2, pairs.index_b.unsqueeze(1).expand(b, 3, -1))
        return (n_a * n_b).sum(dim=1)

    return (dots(depth_m) - dots(depth_prior_m).detach()).abs().mean()
