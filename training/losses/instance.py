"""Instance-wise depth and motion pieces of seed 001 (Lee et al., "Instance-wise Depth and Motion
Learning from Monocular Videos").

Pipeline for one source (reference, frame 1) and the target (frame 2):

1. Intermediate frame: forward-project the source image with its own depth and the forward ego
   motion ``T_tgt_src`` (:func:`forward_warp`, depth pre-upsampled by ``alpha = 2``). Obj-PoseNet
   (not here) sees this frame and the target and predicts each object's residual motion.
2. Object motion convention: ``M_k`` (B, N, 4, 4) moves object k's points, already expressed in the
   target camera by the ego motion, to where they are at target time:
   ``p_tgt = M_k @ T_tgt_src @ p_src``. The composite motion of instance k is therefore
   ``T_tgt_src^k = M_k @ T_tgt_src`` and inverse warping needs ``T_src_tgt^k = T_src_tgt @ M_k^-1``.
3. Final reconstruction: every target pixel is inverse-warped with the motion of the region it
   belongs to (instance id 0 = background/ego, k >= 1 = ``M_{k-1}`` in the motions tensor). With
   seed 000's residual 3-D flow as well, the flow is added to the background's rigid motion only.
4. Losses: the photometric and the geometric (SC-Depth) consistency of this reconstruction,
   averaged per region so that background and each object count equally
   (``regions=instance_ids`` in :func:`reprojection_loss` / :func:`geometric_consistency_loss`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from depth_sfm_ros.geometry.ops import forward_warp, invert_transform, inverse_warp

from .instance_ids import relabel_instances_with_table

__all__ = ["composite_motions", "IntermediateFrame", "intermediate_frame", "InstanceWarp", "instance_warp"]


def _check_motions(object_motions: torch.Tensor, batch: int) -> None:
    if (not isinstance(object_motions, torch.Tensor) or object_motions.dim() != 4
            or object_motions.shape[0] != batch or object_motions.shape[2:] != (4, 4)):
        shape = (tuple(object_motions.shape) if isinstance(object_motions, torch.Tensor)
                 else type(object_motions).__name__)
        raise ValueError(f"object_motions must be (B={batch}, N, 4, 4), got {shape}")


def composite_motions(T_src_tgt: torch.Tensor, object_motions: torch.Tensor) -> torch.Tensor:
    """Per-instance ``T_src_tgt^k = T_src_tgt @ M_k^-1`` (B, N, 4, 4) from the ego pose (B, 4, 4)
    and object motions ``M_k`` (B, N, 4, 4) (convention in the module docstring)."""
    _check_motions(object_motions, T_src_tgt.shape[0])
    b, n = object_motions.shape[:2]
    inv = invert_transform(object_motions.reshape(b * n, 4, 4)).reshape(b, n, 4, 4)
    return T_src_tgt.unsqueeze(1) @ inv


class IntermediateFrame(NamedTuple):
    image: torch.Tensor         # (B, C, H, W) source forward-projected by the ego motion, 0 in holes
    valid: torch.Tensor         # (B, 1, H, W) 1 where a source pixel landed
    instance_ids: torch.Tensor | None  # (B, 1, H, W) long, source instance ids carried along (0 in holes)


def intermediate_frame(image_src: torch.Tensor, depth_src_m: torch.Tensor, T_tgt_src: torch.Tensor,
                       K: torch.Tensor, instance_ids_src: torch.Tensor | None = None,
                       upsample: int = 2) -> IntermediateFrame:
    """Seed 001 step 1: ``F_fw(I_1, D_1, P_{1->2}, K)`` with ``upsample`` = alpha (default 2).

    image_src (B, C, H, W), depth_src_m (B, 1, H, W), T_tgt_src (B, 4, 4), K (B, 3, 3);
    instance_ids_src (B, 1, H, W) int (any values, e.g. Cityscapes' 26001) are splatted along
    (one-hot over the ids relabelled 1..N per frame, nearest z wins) and returned as the raw ids.
    """
    warped = forward_warp(image_src, depth_src_m, T_tgt_src, K, upsample=upsample)
    ids_out = None
    if instance_ids_src is not None:
        if instance_ids_src.shape != depth_src_m.shape:
            raise ValueError(f"instance_ids_src must be {tuple(depth_src_m.shape)}, "
                             f"got {tuple(instance_ids_src.shape)}")
        # splat one channel per object: relabel the raw ids 1..N per frame first (26001 -> 1), map back after
        labels, table = relabel_instances_with_table(instance_ids_src, per_frame=True)  # table (B, N + 1)
        n = table.shape[1]
        one_hot = F.one_hot(labels[:, 0], n).permute(0, 3, 1, 2).to(depth_src_m.dtype)
        splat = forward_warp(one_hot, depth_src_m.detach(), T_tgt_src.detach(), K, upsample=upsample)
        label_out = splat.image.argmax(dim=1, keepdim=True) * (splat.valid > 0).long()  # (B, 1, H, W)
        ids_out = table.gather(1, label_out.flatten(1)).reshape(label_out.shape)
    return IntermediateFrame(warped.image, warped.valid, ids_out)


class InstanceWarp(NamedTuple):
    image: torch.Tensor            # (B, C, H, W) source reconstructed in the target view
    valid: torch.Tensor            # (B, 1, H, W) warp validity of each pixel's own motion
    depth_in_source: torch.Tensor  # (B, 1, H, W) z of the target points in the source frame
    depth_src_sampled: torch.Tensor | None  # (B, 1, H, W) source depth sampled there (if given)


def instance_warp(image_src: torch.Tensor, depth_tgt_m: torch.Tensor, T_src_tgt: torch.Tensor, K: torch.Tensor,
                  instance_ids_tgt: torch.Tensor, object_motions: torch.Tensor,
                  depth_src_m: torch.Tensor | None = None,
                  flow3d_src: torch.Tensor | None = None) -> InstanceWarp:
    """Seed 001 step 3: inverse-warp every region with its own (composite) motion.

    image_src (B, C, H, W); depth_tgt_m, instance_ids_tgt (B, 1, H, W); T_src_tgt (B, 4, 4) ego;
    object_motions (B, N, 4, 4) with instance id k >= 1 using ``object_motions[:, k - 1]``;
    depth_src_m (B, 1, H, W) optional, sampled for the geometric consistency loss.
    flow3d_src (B, 3, H, W) optional residual 3-D flow of seed 000 (source camera frame, depth units):
    added to the background region's rigid motion (``p_src = T_src_tgt p + F``), i.e. it explains the
    non-rigid / unsegmented motion outside the instances, while instance pixels move with their
    object's composite motion only.
    """
    b = image_src.shape[0]
    _check_motions(object_motions, b)
    if instance_ids_tgt.shape != depth_tgt_m.shape:
        raise ValueError(f"instance_ids_tgt must be {tuple(depth_tgt_m.shape)}, got {tuple(instance_ids_tgt.shape)}")
    ids = instance_ids_tgt.long()
    n = object_motions.shape[1]
    if ids.numel() and (int(ids.min().item()) < 0 or int(ids.max().item()) > n):
        raise ValueError(f"instance ids must lie in [0, {n}] for {n} object motions, "
                         f"got [{int(ids.min().item())}, {int(ids.max().item())}]")
    c = image_src.shape[1]
    src = image_src if depth_src_m is None else torch.cat([image_src, depth_src_m], dim=1)
    motions = torch.cat([T_src_tgt.unsqueeze(1), composite_motions(T_src_tgt, object_motions)], dim=1)
    out = valid = z = None
    for region in range(n + 1):
        sel = (ids == region).to(image_src.dtype)
        if region > 0 and not bool(sel.any()):
            continue
        res = inverse_warp(src, depth_tgt_m, motions[:, region], K, padding_mode="border",
                           flow3d_src=flow3d_src if region == 0 else None)
        parts = (res.image * sel, res.valid * sel, res.depth_in_source * sel)
        out, valid, z = parts if out is None else (out + parts[0], valid + parts[1], z + parts[2])
    sampled = out[:, c:] if depth_src_m is not None else None
    return InstanceWarp(out[:, :c], valid, z, sampled)
