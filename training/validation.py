"""Looking at a model during training: depth prediction, validation metrics, TensorBoard images,
and the windowed loss drop the tests and the ablation bench use."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from depth_sfm_training.forward import ForwardOutputs
from depth_sfm_training.logging_utils import colorize, to_uint8_image
from depth_sfm_training.losses import FrameBatchOutputs

__all__ = ["predict_depth", "evaluate_depth", "training_images", "mean_window_drop"]


@torch.no_grad()
def predict_depth(bundle: nn.Module, image: torch.Tensor, model_config: dict[str, Any]) -> torch.Tensor:
    """Depth (B, 1, H, W) in network units of images (B, 3, H, W), eval mode."""
    from depth_sfm_ros.models import disp_to_depth

    was_training = bundle.training
    bundle.eval()
    try:
        disp = bundle.depth.predict(image)
    finally:
        bundle.train(was_training)
    return disp_to_depth(disp, model_config["min_depth"], model_config["max_depth"])[1]


@torch.no_grad()
def evaluate_depth(bundle: nn.Module, dataset, model_config: dict[str, Any], device: torch.device,
                   max_frames: int = 200, min_depth: float = 1e-3, max_depth: float = 80.0) -> dict[str, Any]:
    """Mean per-image median-scaled metrics over up to ``max_frames`` evenly spaced samples with
    ``depth_gt``; regions static / dynamic when the sample has a dynamic mask. {} when no GT depth."""
    from depth_sfm_ros.metrics import DepthMetricsAccumulator, compute_depth_metrics_by_region

    n = len(dataset)
    if n == 0:
        return {}
    indices = np.unique(np.linspace(0, n - 1, num=min(n, max(1, max_frames))).round().astype(int))
    acc = DepthMetricsAccumulator()
    used = 0
    for i in indices:
        sample = dataset[int(i)]
        if "depth_gt" not in sample:
            return {}
        image = sample["images"][0:1].to(device)
        pred = predict_depth(bundle, image, model_config)[0, 0].float().cpu().numpy()
        gt = sample["depth_gt"][0].numpy()
        dyn = sample["dynamic_mask"][0, 0].numpy() > 0.5 if bool(sample.get("has_dynamic_mask", False)) else None
        acc.add_regions(compute_depth_metrics_by_region(pred, gt, dyn, min_depth=min_depth, max_depth=max_depth))
        used += 1
    out = acc.result()
    out["n_frames"] = used
    return out


def training_images(outputs: ForwardOutputs, inputs: FrameBatchOutputs, index: int = 0) -> dict[str, np.ndarray]:
    """TensorBoard images of sample ``index``: target, disparity (colormap), a warped source, masks."""
    from depth_sfm_ros.geometry.ops import inverse_warp

    images: dict[str, np.ndarray] = {"target": to_uint8_image(inputs.target_image[index])}
    images["disparity"] = colorize(outputs.disps[0][index].detach())
    warp = inverse_warp(inputs.source_images[0][index:index + 1].detach().float(),
                        outputs.depths[0][index:index + 1].detach().float(),
                        outputs.T_src_tgt[0][index:index + 1].detach().float(), inputs.K[index:index + 1].float())
    images["warped_source0"] = to_uint8_image(warp.image[0])
    images["warp_valid_source0"] = to_uint8_image(warp.valid[0])
    if outputs.dynamic_prob:
        images["dynamic_prob_source0"] = to_uint8_image(outputs.dynamic_prob[0][index].detach())
    if inputs.dynamic_masks is not None:
        images["dynamic_mask_used"] = to_uint8_image(inputs.dynamic_masks[index])
    if inputs.instance_ids is not None:
        ids = inputs.instance_ids[index].float()
        images["instances"] = colorize(ids, vmin=0.0, vmax=max(float(ids.max()), 1.0), colormap="jet")
    return images


def mean_window_drop(losses: list[float], window: int) -> float:
    """Relative drop of the mean loss from the first ``window`` steps to the last ``window`` steps."""
    if window < 1 or len(losses) < 2 * window:
        raise ValueError(f"need at least {2 * window} losses for windows of {window}, got {len(losses)}")
    first = float(np.mean(losses[:window]))
    last = float(np.mean(losses[-window:]))
    return (first - last) / first if first and math.isfinite(first) else math.nan
