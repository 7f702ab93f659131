"""compute_losses: compose every switched-on technique of :class:`LossConfig` into one scalar.

Shapes: B batch, S sources, H x W full (input) resolution, (h_i, w_i) the resolution of scale i.
All poses are ``T_src_tgt`` (B, 4, 4): target points -> source camera (what inverse warping needs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from depth_sfm_ros.geometry.ops import invert_transform, inverse_warp

from .auto_weight import dynamic_sample_weights
from .boundary import boundary_loss
from .config import LossConfig
from .cycle import pose_cycle_loss
from .explainability import explainability_masks, explainability_regularizer
from .flow3d import dynamic_prob_loss, flow_sparsity_loss, flow_warp
from .geometric import depth_inconsistency, geometric_consistency_loss, inconsistency_from_warp
from .instance import instance_warp
from .normals import edge_guided_pairs, normal_l1_loss, relative_normal_loss
from .occlusion_masks import blank_mask, overlap_mask
from .photometric import reprojection_loss, upsample_depth
from .smoothness import smoothness_loss

__all__ = ["FrameBatchOutputs", "compute_losses"]


@dataclass
class FrameBatchOutputs:
    """What the trainer hands to :func:`compute_losses` for one batch.

    Required:
        target_image: (B, 3, H, W) RGB in [0, 1].
        source_images: S tensors (B, 3, H, W), e.g. [frame t-1, frame t+1].
        K: (B, 3, 3) intrinsics at H x W (pixel-centre convention of geometry.ops).
        depths: per scale (B, 1, h_i, w_i) target depth; scale 0 first. Coarser scales are brought to
            H x W (bilinear in inverse depth, i.e. like upsampling the disparity, monodepth2).
        T_src_tgt: S poses (B, 4, 4), PoseNet(target, source_s).
    Optional (needed by the technique named):
        disparities: per scale (B, 1, h_i, w_i) network disparity for smoothness / boundary
            (default: 1 / depth, which differs from the sigmoid disparity only by an affine map).
        T_tgt_src: S poses (B, 4, 4) predicted in the other direction, PoseNet(source_s, target) (cycle).
        explainability_logits: per scale (B, S, h_i, w_i) (explainability).
        source_depths: S tensors (B, 1, H, W): the depth net on each source frame (geometric,
            blank mask, instance geometric consistency).
        instance_ids: (B, 1, H, W) int of the target, 0 = background (boundary, instance).
        object_motions: S tensors (B, N, 4, 4), Obj-PoseNet motion M_k of instance id k+1 (instance).
        dynamic_masks: (B, 1, H, W) bool/float teacher masks of the target (auto_weight, dynamic_prob).
        flow3d: S tensors (B, 3, H, W) residual 3-D flow in depth units, source frame (flow3d).
        dynamic_prob: (B, 1, H, W) in [0, 1] from the mask net (flow3d's dynamic_prob term).
        depth_prior: (B, 1, H, W) depth from a prior model (normal, ranking).
    """

    target_image: torch.Tensor
    source_images: Sequence[torch.Tensor]
    K: torch.Tensor
    depths: Sequence[torch.Tensor]
    T_src_tgt: Sequence[torch.Tensor]
    disparities: Sequence[torch.Tensor] | None = None
    T_tgt_src: Sequence[torch.Tensor] | None = None
    explainability_logits: Sequence[torch.Tensor] | None = None
    source_depths: Sequence[torch.Tensor] | None = None
    instance_ids: torch.Tensor | None = None
    object_motions: Sequence[torch.Tensor] | None = None
    dynamic_masks: torch.Tensor | None = None
    flow3d: Sequence[torch.Tensor] | None = None
    dynamic_prob: torch.Tensor | None = None
    depth_prior: torch.Tensor | None = None

    def validate(self) -> None:
        """Raise ValueError with the offending field when shapes do not fit together."""
        tgt = self.target_image
        if not isinstance(tgt, torch.Tensor) or tgt.dim() != 4 or tgt.shape[1] != 3:
            raise ValueError(f"target_image must be (B, 3, H, W), got {getattr(tgt, 'shape', type(tgt))}")
        b, _, h, w = tgt.shape
        n_src = len(self.source_images)
        if n_src == 0:
            raise ValueError("source_images must hold at least one source")
        for s, img in enumerate(self.source_images):
            if img.shape != tgt.shape:
                raise ValueError(f"source_images[{s}] must be {tuple(tgt.shape)}, got {tuple(img.shape)}")
        if self.K.shape != (b, 3, 3):
            raise ValueError(f"K must be ({b}, 3, 3), got {tuple(self.K.shape)}")
        if len(self.depths) == 0:
            raise ValueError("depths must hold at least scale 0")
        for i, d in enumerate(self.depths):
            if d.dim() != 4 or d.shape[:2] != (b, 1):
                raise ValueError(f"depths[{i}] must be ({b}, 1, h, w), got {tuple(d.shape)}")
        if self.disparities is not None and len(self.disparities) != len(self.depths):
            raise ValueError(f"disparities has {len(self.disparities)} scales, depths {len(self.depths)}")
        if self.explainability_logits is not None and len(self.explainability_logits) != len(self.depths):
            raise ValueError(f"explainability_logits has {len(self.explainability_logits)} scales, "
                             f"depths {len(self.depths)}")
        for name in ("T_src_tgt", "T_tgt_src"):
            poses = getattr(self, name)
            if poses is None:
                continue
            if len(poses) != n_src:
                raise ValueError(f"{name} has {len(poses)} poses for {n_src} sources")
            for s, T in enumerate(poses):
                if T.shape != (b, 4, 4):
                    raise ValueError(f"{name}[{s}] must be ({b}, 4, 4), got {tuple(T.shape)}")
        for name, channels in (("source_depths", 1), ("flow3d", 3)):
            seq = getattr(self, name)
            if seq is None:
                continue
            if len(seq) != n_src:
                raise ValueError(f"{name} has {len(seq)} entries for {n_src} sources")
            for s, t in enumerate(seq):
                if t.shape != (b, channels, h, w):
                    raise ValueError(f"{name}[{s}] must be ({b}, {channels}, {h}, {w}), got {tuple(t.shape)}")
        if self.object_motions is not None and len(self.object_motions) != n_src:
            raise ValueError(f"object_motions has {len(self.object_motions)} entries for {n_src} sources")
        for name in ("instance_ids", "dynamic_masks", "dynamic_prob", "depth_prior"):
            t = getattr(self, name)
            if t is not None and t.shape != (b, 1, h, w):
                raise ValueError(f"{name} must be ({b}, 1, {h}, {w}), got {tuple(t.shape)}")


def _require(outputs: FrameBatchOutputs, field: str, technique: str):
    value = getattr(outputs, field)
    if value is None:
        raise ValueError(f"LossConfig.{technique} is on but FrameBatchOutputs.{field} is None")
    return value


def compute_losses(outputs: FrameBatchOutputs, config: LossConfig | None = None,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss (scalar) and the unweighted terms ``{name: scalar}`` (names in
    ``config.TERM_WEIGHTS``); ``total = sum(weight[name] * terms[name])`` over switched-on terms.

    Per-scale terms (photometric, smoothness / 2^i, explainability, geometric, boundary) are
    averaged over scales; cycle, normal, ranking and the flow terms use scale 0.
    The view synthesis of each source is: the instance-wise composite warp (``instance``; with
    ``flow3d`` too, the residual 3-D flow is added to the background region's rigid motion, so both
    enter view synthesis), else the rigid + residual 3-D flow warp (``flow3d``), else the rigid
    inverse warp. Binary masks (warp validity, overlap, blank) exclude pixels; soft masks
    (explainability, 1 - depth inconsistency) multiply the error of the source that the per-pixel
    minimum picked on the raw errors; auto-weights scale each sample.
    Terms keep their graph (detach or ``.item()`` them for logging).
    ``generator`` seeds the edge-guided pair sampling of the ranking loss.
    """
    config = config or LossConfig()
    outputs.validate()
    tgt = outputs.target_image
    size = tuple(tgt.shape[-2:])
    K = outputs.K
    sources = list(outputs.source_images)
    n_scales = len(outputs.depths)

    sample_weight = None
    if config.auto_weight != "none":
        sample_weight = dynamic_sample_weights(_require(outputs, "dynamic_masks", "auto_weight"), config.auto_weight)
    source_depths = outputs.source_depths
    if config.geometric or config.blank_mask:
        source_depths = _require(outputs, "source_depths", "geometric / blank_mask")
    use_instance = config.instance
    if use_instance:
        _require(outputs, "instance_ids", "instance")
        _require(outputs, "object_motions", "instance")
    if config.flow3d:
        _require(outputs, "flow3d", "flow3d")

    # Binary occlusion masks of seed 003, from scale-0 depth (no gradient).
    static_valid = [torch.ones_like(tgt[:, :1]) for _ in sources]
    depth0 = upsample_depth(outputs.depths[0], size)
    for s, T in enumerate(outputs.T_src_tgt):
        if config.overlap_mask:  # occlusion: target points hidden behind nearer target points in the source
            static_valid[s] = static_valid[s] * overlap_mask(depth0.detach(), T.detach(), K,
                                                             config.overlap_rel_tolerance)
        if config.blank_mask:
            static_valid[s] = static_valid[s] * blank_mask(
                source_depths[s].detach(), invert_transform(T.detach()), K, upsample=config.forward_upsample)

    sums: dict[str, torch.Tensor] = {}

    def add(name: str, value: torch.Tensor) -> None:
        sums[name] = sums[name] + value if name in sums else value

    regions = outputs.instance_ids if use_instance else None
    for i in range(n_scales):
        depth_i = upsample_depth(outputs.depths[i], size)
        exp_masks = None
        if config.explainability:
            logits = _require(outputs, "explainability_logits", "explainability")[i]
            if logits.shape[1] != len(sources):
                raise ValueError(f"explainability_logits[{i}] must have S={len(sources)} channels, "
                                 f"got {logits.shape[1]}")
            exp_masks = explainability_masks(logits, size)
            add("explainability", explainability_regularizer(logits))
        warped, valid, weights = [], [], []
        for s, (src, T) in enumerate(zip(sources, outputs.T_src_tgt)):
            weight = torch.ones_like(depth_i)
            incons = None
            if use_instance:
                res = instance_warp(src, depth_i, T, K, outputs.instance_ids, outputs.object_motions[s],
                                    source_depths[s] if (config.geometric and source_depths is not None) else None,
                                    flow3d_src=outputs.flow3d[s] if config.flow3d else None)
                image_s, valid_s = res.image, res.valid
                if res.depth_src_sampled is not None:
                    incons = inconsistency_from_warp(res.depth_in_source, res.depth_src_sampled, res.valid)
            elif config.flow3d:
                res = flow_warp(src, depth_i, T, K, outputs.flow3d[s])
                image_s, valid_s = res.image, res.valid
            elif config.geometric:  # one warp samples the source image and the source depth
                res = inverse_warp(torch.cat([src, source_depths[s]], 1), depth_i, T, K, padding_mode="border")
                image_s, valid_s = res.image[:, :-1], res.valid
                incons = inconsistency_from_warp(res.depth_in_source, res.image[:, -1:], res.valid)
            else:
                res = inverse_warp(src, depth_i, T, K, padding_mode="border")
                image_s, valid_s = res.image, res.valid
            if config.geometric and incons is None:
                incons = depth_inconsistency(depth_i, source_depths[s], T, K)
            if incons is not None:
                add("geometric", geometric_consistency_loss(incons, regions) / len(sources))
                if config.geometric_mask:
                    weight = weight * incons.weight_mask
            if exp_masks is not None:
                weight = weight * exp_masks[s]
            if not config.valid_mask:
                valid_s = torch.ones_like(valid_s)
            warped.append(image_s)
            valid.append(valid_s * static_valid[s])
            weights.append(weight)
        photo = reprojection_loss(tgt, warped, valid, weights, sources if config.automask else None,
                                  config.ssim_weight, config.min_reprojection, sample_weight, regions)
        add("photometric", photo.loss)
        disp_i = outputs.disparities[i] if outputs.disparities is not None else 1.0 / outputs.depths[i].clamp(min=1e-6)
        add("smoothness", smoothness_loss(disp_i, tgt) / (2 ** i))
        if config.boundary:
            add("boundary", boundary_loss(disp_i, _require(outputs, "instance_ids", "boundary"), config.boundary_order))

    terms = {name: value / n_scales for name, value in sums.items()}

    if config.cycle:
        backward = _require(outputs, "T_tgt_src", "cycle")
        terms["cycle"] = sum(pose_cycle_loss(a, b) for a, b in zip(outputs.T_src_tgt, backward)) / len(sources)
    if config.normal or config.ranking:
        prior = _require(outputs, "depth_prior", "normal / ranking")
        if config.normal:
            terms["normal"] = normal_l1_loss(depth0, prior, K)
        if config.ranking:
            pairs = edge_guided_pairs(tgt, config.ranking_pairs, generator)
            terms["ranking"] = relative_normal_loss(depth0, prior, K, pairs)
    if config.flow3d:
        flows = outputs.flow3d
        terms["flow_sparsity"] = sum(flow_sparsity_loss(f, config.flow_sparsity) for f in flows) / len(flows)
        if outputs.dynamic_prob is not None:
            if outputs.dynamic_masks is not None:
                terms["dynamic_prob"] = dynamic_prob_loss(outputs.dynamic_prob, outputs.dynamic_masks)
            else:
                largest = torch.stack([f.norm(dim=1) for f in flows]).argmax(0)  # flow of the strongest source
                flow_max = torch.stack(list(flows)).gather(
                    0, largest.unsqueeze(0).unsqueeze(2).expand(1, -1, 3, -1, -1))[0]
                terms["dynamic_prob"] = dynamic_prob_loss(outputs.dynamic_prob, None, flow_max, depth0,
                                                          config.dynamic_flow_rel_threshold)

    weights = config.active_weights()
    total = sum(weights[name] * value for name, value in terms.items() if name in weights)
    return total, terms
