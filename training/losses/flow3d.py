"""Loss terms for the 3-D flow / motion net (seed 000 sec. 3.3, eq. 3: ``FlowNet(I_{t-1}, I_t) = F``).

The flow net predicts a residual 3-D flow per target pixel, in network depth units (those of the
predicted depth) in the source camera frame, which corrects the rigid (ego-motion) displacement of moving points:

    p_src = T_src_tgt p_tgt + F(p)

* :func:`flow_warp`: view synthesis with rigid + residual flow (the photometric loss then uses it
  like any other warp). With seed 001's instance-wise warp on as well, the flow is added to the
  background region's motion (:func:`depth_sfm_training.losses.instance.instance_warp`).
* :func:`flow_sparsity_loss`: most of the scene is static, so the residual flow should be sparse:
  ``"l1"`` = mean |F|, or ``"l1_2"`` = the L1/2-style prior of Li et al. 2020 ("Unsupervised
  monocular depth learning in dynamic scenes"): ``mean(2 <|F_c|> sqrt(1 + |F_c| / <|F_c|>))``
  per channel c, with <.> the per-sample spatial mean, which grows like sqrt(|F|) for large flow
  and favours a few large moving regions over a little flow everywhere.
* :func:`dynamic_prob_loss`: binary cross-entropy of the predicted ``dynamic_prob`` against teacher
  masks when given, otherwise against :func:`dynamic_flow_target`, ``|F| > rel_threshold * depth``
  from the (detached) residual flow and depth: flow and depth are both in network depth units, so
  the target is the same at any monocular scale. The motion net predicts its flow relative to the depth
  and does not gate it by its own probability (``depth_sfm_ros.models.motion_net``), so the target comes
  from what the photometric loss and the sparsity prior made of the flow alone: a label-free teacher for the
  mask head.

Seed 000 gives no weights for these terms; the defaults in ``LossConfig`` are our choice.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from depth_sfm_ros.geometry.ops import inverse_warp

from .config import SPARSITY_KINDS

__all__ = ["FlowWarpResult", "flow_warp", "flow_sparsity_loss", "dynamic_flow_target", "dynamic_prob_loss",
           "SPARSITY_KINDS"]


class FlowWarpResult(NamedTuple):
    image: torch.Tensor   # (B, C, H, W) source sampled at the flow-corrected target points
    valid: torch.Tensor   # (B, 1, H, W) 1 where the point projects inside the source, in front


def _check_flow(flow: torch.Tensor, like: torch.Tensor) -> None:
    if flow.dim() != 4 or flow.shape[1] != 3 or flow.shape[0] != like.shape[0] or flow.shape[-2:] != like.shape[-2:]:
        raise ValueError(f"flow3d must be (B, 3, H, W) matching depth {tuple(like.shape)}, got {tuple(flow.shape)}")


def flow_warp(image_src: torch.Tensor, depth_tgt_m: torch.Tensor, T_src_tgt: torch.Tensor, K: torch.Tensor,
              flow3d_m: torch.Tensor, padding_mode: str = "border") -> FlowWarpResult:
    """Inverse warp of image_src (B, C, H, W) with rigid motion T_src_tgt (B, 4, 4) plus residual
    3-D flow flow3d_m (B, 3, H, W, depth units, source frame) for target depth (B, 1, H, W) and K (B, 3, 3).
    With zero flow it equals ``inverse_warp``.
    """
    _check_flow(flow3d_m, depth_tgt_m)
    res = inverse_warp(image_src, depth_tgt_m, T_src_tgt, K, padding_mode=padding_mode, flow3d_src=flow3d_m)
    return FlowWarpResult(res.image, res.valid)


def flow_sparsity_loss(flow3d_m: torch.Tensor, kind: str = "l1_2") -> torch.Tensor:
    """Scalar sparsity prior on the residual flow (B, 3, H, W); (about) 0 for zero flow."""
    if kind not in SPARSITY_KINDS:
        raise ValueError(f"flow sparsity kind must be one of {SPARSITY_KINDS}, got {kind!r}")
    if flow3d_m.dim() != 4 or flow3d_m.shape[1] != 3:
        raise ValueError(f"flow3d must be (B, 3, H, W), got {tuple(flow3d_m.shape)}")
    mag = flow3d_m.abs()
    if kind == "l1":
        return mag.mean()
    mean_abs = mag.mean(dim=(2, 3), keepdim=True) + 1e-12
    return (2.0 * mean_abs * torch.sqrt(1.0 + mag / mean_abs)).mean()


def dynamic_flow_target(flow3d: torch.Tensor, depth: torch.Tensor, rel_threshold: float = 0.01) -> torch.Tensor:
    """Self-supervised dynamic mask (B, 1, H, W) float {0, 1}: ``||F|| > rel_threshold * depth``.

    flow3d (B, 3, H, W) residual flow and depth (B, 1, H, W) of the target, both in network depth
    units (the monocular scale is unknown, so an absolute threshold in metres would mean nothing):
    the ratio is unit-free, i.e. the same for any common scale of flow and depth. Detached.
    """
    if rel_threshold <= 0:
        raise ValueError(f"rel_threshold must be > 0, got {rel_threshold}")
    _check_flow(flow3d, depth)
    if depth.dim() != 4 or depth.shape[1] != 1:
        raise ValueError(f"depth must be (B, 1, H, W), got {tuple(depth.shape)}")
    ratio = flow3d.detach().norm(dim=1, keepdim=True) / depth.detach().clamp(min=1e-6)
    return (ratio > rel_threshold).to(flow3d.dtype)


def dynamic_prob_loss(dynamic_prob: torch.Tensor, teacher_mask: torch.Tensor | None = None,
                      flow3d: torch.Tensor | None = None, depth: torch.Tensor | None = None,
                      rel_threshold: float = 0.01) -> torch.Tensor:
    """Scalar BCE of dynamic_prob (B, 1, H, W) in [0, 1] against ``teacher_mask`` (B, 1, H, W)
    (bool/float) when given, else against :func:`dynamic_flow_target` of ``flow3d`` (B, 3, H, W) and
    ``depth`` (B, 1, H, W) (both detached)."""
    if dynamic_prob.dim() != 4 or dynamic_prob.shape[1] != 1:
        raise ValueError(f"dynamic_prob must be (B, 1, H, W), got {tuple(dynamic_prob.shape)}")
    if teacher_mask is not None:
        target = teacher_mask.to(dynamic_prob.dtype)
    elif flow3d is not None and depth is not None:
        target = dynamic_flow_target(flow3d, depth, rel_threshold).to(dynamic_prob.dtype)
    else:
        raise ValueError("dynamic_prob_loss needs a teacher mask or the residual flow and the depth")
    if target.shape != dynamic_prob.shape:
        raise ValueError(f"target {tuple(target.shape)} and dynamic_prob {tuple(dynamic_prob.shape)} differ in shape")
    return F.binary_cross_entropy(dynamic_prob.clamp(1e-6, 1.0 - 1e-6), target)
