"""From the trainer's network outputs and a data batch to ``compute_losses``' inputs.

The one place that knows both contracts: :class:`depth_sfm_training.forward.ForwardOutputs` +
the dataset sample dict (``images`` (B, 1+S, 3, H, W), ``K``, ``instance_ids`` (B, 1+S, 1, H, W),
``dynamic_mask`` (B, 1+S, 1, H, W), ``has_instances`` / ``has_dynamic_mask`` (B,)) ->
:class:`depth_sfm_training.losses.FrameBatchOutputs`.

Frame conventions bridged here:
* MotionNet's residual motion is expressed in the TARGET (current) camera and applied before the ego
  motion (``p_src = T_src_tgt (X + m)``); the flow loss wants it in the SOURCE camera applied after
  (``p_src = T_src_tgt X + F``), so ``F = R_src_tgt m``.
* The motion net runs once per source; the losses take one dynamic probability for the target: the
  mean over sources.
"""
from __future__ import annotations

from typing import Any

import torch

from depth_sfm_training.forward import ForwardOutputs
from depth_sfm_training.losses import FrameBatchOutputs, LossConfig

__all__ = ["build_loss_config", "build_loss_inputs", "motion_to_source_flow"]


def build_loss_config(config: dict[str, Any]) -> LossConfig:
    """The ``losses`` section of a training config -> LossConfig (unknown keys are an error there too)."""
    return LossConfig.from_dict(config["losses"])


def motion_to_source_flow(motion_tgt: torch.Tensor, T_src_tgt: torch.Tensor) -> torch.Tensor:
    """Residual motion (B, 3, H, W) in the target camera -> the same displacement in the source camera."""
    b, _, h, w = motion_tgt.shape
    return (T_src_tgt[:, :3, :3] @ motion_tgt.reshape(b, 3, -1)).reshape(b, 3, h, w)


def _all_flags(batch: dict[str, Any], key: str) -> bool:
    flags = batch.get(key)
    if flags is None:
        return False
    if isinstance(flags, torch.Tensor):
        return bool(flags.all())
    return bool(all(flags)) if isinstance(flags, (list, tuple)) else bool(flags)


def build_loss_inputs(outputs: ForwardOutputs, batch: dict[str, Any], depth_prior: torch.Tensor | None,
                      config: LossConfig, use_dataset_dynamic_masks: bool = True) -> FrameBatchOutputs:
    """Assemble what ``compute_losses`` needs; raises ValueError naming what a switched-on technique lacks.

    Dynamic masks for auto-weighting / the dynamic-probability teacher: the dataset's masks of the target
    when every sample has one and ``use_dataset_dynamic_masks``; otherwise (auto-weight only) the motion
    net's detached dynamic probability > 0.5, which needs ``config.flow3d`` (the only loss that trains
    that probability; refused otherwise).
    """
    # the losses compare un-jittered frames (``images_raw``) while the networks saw the jittered ones
    images = batch.get("images_raw", batch["images"]).float()
    n_src = images.shape[1] - 1
    n_scales = len(outputs.depths)
    dyn_prob = torch.stack(outputs.dynamic_prob, 0).mean(0).float() if outputs.dynamic_prob else None

    dynamic_masks = None
    if use_dataset_dynamic_masks and _all_flags(batch, "has_dynamic_mask"):
        dynamic_masks = batch["dynamic_mask"][:, 0].float()
    elif config.auto_weight != "none":
        if dyn_prob is None or not config.flow3d:
            # an untrained motion net's probability stays near its initial 0.05: nothing passes 0.5 and every
            # auto-weight would silently be 1. Only the flow3d terms train it as a dynamic-mask predictor.
            raise ValueError("losses.auto_weight needs dynamic masks: from the dataset (every sample with a dynamic "
                             "mask, data.use_dynamic_masks: true) or from a motion net trained by losses.flow3d "
                             "(model.use_motion_net: true); "
                             + ("no motion net ran" if dyn_prob is None else "losses.flow3d is off, so no loss "
                                "trains the motion net's dynamic probability"))
        dynamic_masks = (dyn_prob.detach() > 0.5).float()

    instance_ids = None
    if config.instance or config.boundary:
        if not _all_flags(batch, "has_instances"):
            raise ValueError("losses.instance / losses.boundary need instance masks, but the dataset has none "
                             "(use a dataset with instance masks or a mask folder)")
        # the forward pass relabels ids 1..N for Obj-PoseNet; the losses must use the same labels
        instance_ids = outputs.instance_ids if outputs.instance_ids is not None else batch["instance_ids"][:, 0].long()

    flow3d = None
    if outputs.flow3d:
        flow3d = [motion_to_source_flow(m.float(), T.float()) for m, T in zip(outputs.flow3d, outputs.T_src_tgt)]
    logits = None
    if outputs.explainability_logits is not None:
        logits = [outputs.explainability_logits.float()] * n_scales  # one full-resolution mask for every scale

    return FrameBatchOutputs(
        target_image=images[:, 0],
        source_images=[images[:, 1 + s] for s in range(n_src)],
        K=batch["K"].float(),
        depths=[d.float() for d in outputs.depths],
        T_src_tgt=[T.float() for T in outputs.T_src_tgt],
        disparities=[d.float() for d in outputs.disps],
        T_tgt_src=[T.float() for T in outputs.T_tgt_src] or None,
        explainability_logits=logits,
        source_depths=[d.float() for d in outputs.source_depths] or None,
        instance_ids=instance_ids,
        object_motions=[m.float() for m in outputs.object_motions] or None,
        dynamic_masks=dynamic_masks,
        flow3d=flow3d,
        dynamic_prob=dyn_prob,
        depth_prior=depth_prior,
    )
