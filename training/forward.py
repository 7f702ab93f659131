"""The training forward pass: every network output the configured losses need, in one nn.Module.

:class:`TrainingForward` wraps the model bundle so that DistributedDataParallel sees ONE forward call
per step (DDP's gradient hooks only work through the wrapped module's ``forward``). It returns a
:class:`ForwardOutputs`; :func:`depth_sfm_training.trainer.build_loss_inputs` turns that into what
``compute_losses`` takes.

Shapes: B batch, S sources (= len(frame_offsets) - 1), H x W network input, n scales.

Mixed precision: the trainer runs this module under ``torch.autocast``. The networks run in fp16 / bf16;
everything geometric (depth from disparity, pose matrices, the forward projection of the instance-aware
path and its rounding to pixels) runs in float32: the geometry functions of ``depth_sfm_ros.geometry.ops``
leave autocast themselves, and :func:`depth_from_disp` does here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from depth_sfm_ros.geometry.ops import invert_transform, pose_vec_to_matrix
from depth_sfm_ros.models import disp_to_depth
from depth_sfm_training.losses.instance_ids import relabel_instances  # one relabelling for forward pass and losses


@dataclass
class ForwardOutputs:
    """Network outputs for one batch (all tensors on the training device).

    disps: n tensors (B, 1, H/2^s, W/2^s) sigmoid disparity of the target, full resolution first.
    depths: n tensors, the same shapes, depth (network units) from ``disp_to_depth``.
    T_src_tgt: S tensors (B, 4, 4), pose net(target, source) (maps target points into the source).
    T_tgt_src: S tensors (B, 4, 4) from pose net(source, target), only with the pose cycle / blank mask /
        geometric consistency (else empty).
    source_depths: S tensors (B, 1, H, W) depth of each source (geometric consistency, blank mask), or empty.
    flow3d: S tensors (B, 3, H, W) residual 3D motion of the target's pixels towards each source (motion net).
    dynamic_prob: S tensors (B, 1, H, W) in [0, 1] from the motion net (target frame), or empty.
    explainability_logits: (B, S, H, W) or None (SfMLearner mask, see :class:`TrainingForward`).
    object_motions: S tensors (B, N, 4, 4) per-instance motion M_k (seed 001, instance id k uses
        ``[:, k - 1]``), or empty. N = the largest instance id in the batch.
    intermediate: S tensors (B, 3, H, W), the source forward-projected by the ego motion (seed 001).
    instance_ids: (B, 1, H, W) int64 target instance ids relabelled 1..N (see :func:`relabel_instances`).
    """

    disps: list[torch.Tensor]
    depths: list[torch.Tensor]
    T_src_tgt: list[torch.Tensor]
    T_tgt_src: list[torch.Tensor] = field(default_factory=list)
    source_depths: list[torch.Tensor] = field(default_factory=list)
    flow3d: list[torch.Tensor] = field(default_factory=list)
    dynamic_prob: list[torch.Tensor] = field(default_factory=list)
    explainability_logits: torch.Tensor | None = None
    object_motions: list[torch.Tensor] = field(default_factory=list)
    intermediate: list[torch.Tensor] = field(default_factory=list)
    instance_ids: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _as_tuple(disps: Any) -> list[torch.Tensor]:
    """The depth net returns a tuple of scales in training mode and may return one tensor in eval."""
    if isinstance(disps, torch.Tensor):
        return [disps]
    if isinstance(disps, (tuple, list)) and disps and all(isinstance(d, torch.Tensor) for d in disps):
        return list(disps)
    raise TypeError(f"depth net must return a tensor or a tuple of tensors, got {type(disps).__name__}")


def depth_from_disp(disps: list[torch.Tensor], min_depth: float, max_depth: float) -> list[torch.Tensor]:
    """Sigmoid disparities -> float32 depths (same shapes) with the model's min/max depth (float32 also under
    autocast: 1 / (a + b d) in bf16 is ~0.4 % off, a depth error the geometry would carry)."""
    if not disps:
        return []
    with torch.autocast(device_type=disps[0].device.type, enabled=False):
        return [disp_to_depth(d.float(), min_depth, max_depth)[1] for d in disps]


class TrainingForward(nn.Module):
    """Runs the depth, pose and (optionally) motion nets on a batch of frames.

    Args:
        bundle: the model bundle from ``depth_sfm_ros.models.build_models`` (``.depth``, ``.pose``,
            ``.motion`` optional).
        min_depth, max_depth: the model's depth range (``disp_to_depth``).
        need_reverse_pose: also predict T_tgt_src = pose(source, target) (pose cycle, blank mask).
        need_source_depth: also run the depth net on every source (SC-Depth geometric consistency, blank mask).
        use_motion: run the motion net (3D flow / dynamic probability) for every (source, target) pair.
        train_motion: False when no loss trains the motion net (auto-weight only reads its mask): it then runs
            under ``no_grad`` (the trainer also freezes it), so no graph reaches DDP without a gradient.
        explainability: SfMLearner's mask. The networks have no explainability head, so the motion net's
            dynamic probability stands in for "not explainable by rigid motion": logits = logit(1 - p),
            one channel per source. Requires ``use_motion``.
        instance: seed 001: forward-project each source into the target view with its depth and the ego
            motion (``losses.instance.intermediate_frame``), then Obj-PoseNet(intermediate, target, target
            instance masks) gives each object's motion. Requires ``need_source_depth`` and ``bundle.obj_pose``.
        forward_upsample: alpha of the forward projection (seed 001: 2).
        max_objects: instance-aware training uses the ``max_objects`` largest objects of the batch
            (0 = all); the rest count as background.
    """

    def __init__(self, bundle: nn.Module, min_depth: float, max_depth: float, need_reverse_pose: bool = False,
                 need_source_depth: bool = False, use_motion: bool = False, explainability: bool = False,
                 instance: bool = False, forward_upsample: int = 2, max_objects: int = 0,
                 train_motion: bool = True) -> None:
        super().__init__()
        if instance and getattr(bundle, "obj_pose", None) is None:
            raise ValueError("instance-aware training needs Obj-PoseNet: set model.use_obj_pose: true")
        if instance and not need_source_depth:
            raise ValueError("instance-aware training needs the source depths (need_source_depth=True)")
        if explainability and not use_motion:
            raise ValueError("the explainability mask comes from the motion net: set model.use_motion_net: true")
        if use_motion and getattr(bundle, "motion", None) is None:
            raise ValueError("the motion net is needed but the model bundle has none (model.use_motion_net)")
        if explainability and not train_motion:
            raise ValueError("the explainability mask trains the motion net: train_motion must be True")
        self.bundle = bundle
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.need_reverse_pose = need_reverse_pose
        self.need_source_depth = need_source_depth
        self.use_motion = use_motion
        self.train_motion = train_motion
        self.explainability = explainability
        self.instance = instance
        self.forward_upsample = int(forward_upsample)
        self.max_objects = int(max_objects)

    def forward(self, images: torch.Tensor, K: torch.Tensor | None = None,
                instance_ids: torch.Tensor | None = None) -> ForwardOutputs:
        """images: (B, 1 + S, 3, H, W) RGB in [0, 1], target first; K (B, 3, 3) at (H, W) and
        instance_ids (B, 1 + S, 1, H, W) int (0 = background) are needed only for instance-aware training."""
        if images.dim() != 5 or images.shape[2] != 3 or images.shape[1] < 2:
            raise ValueError(f"images must be (B, 1 + S, 3, H, W) with S >= 1 sources, got {tuple(images.shape)}")
        target = images[:, 0]
        sources = [images[:, s] for s in range(1, images.shape[1])]
        disps = _as_tuple(self.bundle.depth(target))
        out = ForwardOutputs(disps=disps, depths=depth_from_disp(disps, self.min_depth, self.max_depth),
                             T_src_tgt=[pose_vec_to_matrix(self.bundle.pose(target, src)) for src in sources])
        if self.need_reverse_pose:
            out.T_tgt_src = [pose_vec_to_matrix(self.bundle.pose(src, target)) for src in sources]
        if self.need_source_depth:
            # one batched pass over all sources keeps BatchNorm statistics comparable to the target's
            src_disp = _as_tuple(self.bundle.depth(torch.cat(sources, 0)))[0]
            src_depth = depth_from_disp([src_disp], self.min_depth, self.max_depth)[0]
            out.source_depths = list(src_depth.chunk(len(sources), 0))
        if self.use_motion:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.train_motion):
                depth_cur = out.depths[0].detach()  # the flow's unit: a fraction of the target pixel's depth
                for src in sources:
                    motion_rel, prob = self.bundle.motion(src, target)
                    out.flow3d.append(motion_rel * depth_cur)
                    out.dynamic_prob.append(prob)
            if self.explainability:
                p = torch.cat(out.dynamic_prob, 1).clamp(1e-4, 1 - 1e-4)
                out.explainability_logits = torch.log1p(-p) - torch.log(p)  # logit(1 - p)
        if self.instance:
            self._instance_motions(out, target, sources, K, instance_ids)
        return out

    def _instance_motions(self, out: ForwardOutputs, target: torch.Tensor, sources: list[torch.Tensor],
                          K: torch.Tensor | None, instance_ids: torch.Tensor | None) -> None:
        """Seed 001: intermediate frames and Obj-PoseNet object motions, one per source."""
        from depth_sfm_training.losses.instance import intermediate_frame

        if K is None or instance_ids is None:
            raise ValueError("instance-aware training needs K and instance_ids in the batch")
        b = instance_ids.shape[0]
        ids_tgt = relabel_instances(instance_ids[:, 0].long(), self.max_objects)
        out.instance_ids = ids_tgt
        n = max(int(ids_tgt.max().item()), 1)  # N object slots (an unused slot is harmless)
        masks = torch.stack([(ids_tgt[:, 0] == k) for k in range(1, n + 1)], 1).to(target.dtype)  # (B, N, H, W)
        for s, src in enumerate(sources):
            T_tgt_src = invert_transform(out.T_src_tgt[s])
            mid = intermediate_frame(src, out.source_depths[s], T_tgt_src, K,
                                     instance_ids_src=instance_ids[:, 1 + s].long(), upsample=self.forward_upsample)
            vec = self.bundle.obj_pose(mid.image, target, masks)  # (B, N, 6)
            out.object_motions.append(pose_vec_to_matrix(vec.reshape(b * n, 6)).reshape(b, n, 4, 4))
            out.intermediate.append(mid.image)
