"""The learner of online adaptation (``depth_sfm_ros.runtime.online_adapter``): self-supervised steps on buffered
triplets with the training code's own path (``TrainingForward`` -> ``build_loss_inputs`` -> ``compute_losses``,
monodepth2's photometric loss with min reprojection, auto-mask, validity mask and edge-aware smoothness), and
the held-out score of ``depth-sfm adapt`` (:func:`depth_sfm_training.adapt.heldout_photometric_losses`).

BatchNorm layers stay in eval mode (their running statistics are not updated by batches of two frames of one
place); the motion net, if any, is not trained (as in the offline adapt's default config).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from depth_sfm_ros.models import runtime_modules
from depth_sfm_ros.models.weights_file import bundle_from_weights, save_bundle_weights

from .adapt import heldout_photometric_losses
from .forward import TrainingForward
from .loss_adapter import build_loss_inputs
from .losses import LossConfig, compute_losses

__all__ = ["PhotometricLearner"]


class PhotometricLearner:
    """Adam on the depth and pose nets of ``bundle``; the interface OnlineAdapter drives."""

    def __init__(self, bundle: Any, model_config: dict[str, Any], lr: float = 1e-5, device: str = "cpu",
                 ssim_weight: float = 0.85) -> None:
        self.device = torch.device(device)
        self.bundle = bundle.to(self.device)
        self.model_config = model_config
        self.ssim_weight = ssim_weight
        self.loss_config = LossConfig(ssim_weight=ssim_weight, min_reprojection=True, automask=True,
                                      valid_mask=True)
        self.forward = TrainingForward(self.bundle, model_config["min_depth"], model_config["max_depth"])
        params = list(self.bundle.depth.parameters()) + list(self.bundle.pose.parameters())
        self.optimizer = torch.optim.Adam(params, lr=lr)
        self._train_mode()

    @classmethod
    def from_weights(cls, path: str | os.PathLike, lr: float = 1e-5, device: str = "cpu") -> "PhotometricLearner":
        bundle, model_config = bundle_from_weights(path)
        return cls(bundle, model_config, lr=lr, device=device)

    def _train_mode(self) -> None:
        self.bundle.train()
        for module in self.bundle.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
        if getattr(self.bundle, "motion", None) is not None:
            self.bundle.motion.eval()

    def _batch(self, triplets: Sequence[Any]) -> dict[str, torch.Tensor]:
        images = torch.stack([torch.from_numpy(t.images) for t in triplets]).to(self.device)
        K = torch.stack([torch.from_numpy(t.K) for t in triplets]).float().to(self.device)
        return {"images": images, "images_raw": images, "K": K}

    def step(self, triplets: Sequence[Any]) -> float:
        self._train_mode()
        batch = self._batch(triplets)
        outputs = self.forward(batch["images"], batch["K"])
        inputs = build_loss_inputs(outputs, batch, None, self.loss_config, use_dataset_dynamic_masks=False)
        total, _ = compute_losses(inputs, self.loss_config)
        self.optimizer.zero_grad(set_to_none=True)
        loss = float(total.detach())
        if not torch.isfinite(total):
            return loss  # no step: the adapter restores and stops
        total.backward()
        self.optimizer.step()
        return loss

    def heldout_loss(self, triplets: Sequence[Any]) -> float:
        samples = [{"images": torch.from_numpy(t.images), "images_raw": torch.from_numpy(t.images),
                    "K": torch.from_numpy(t.K).float()} for t in triplets]
        losses = heldout_photometric_losses(self.bundle, samples, self.model_config, self.device, self.ssim_weight)
        self._train_mode()
        return float(sum(losses) / len(losses)) if losses else float("nan")

    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return copy.deepcopy(self.bundle.state_dict()), copy.deepcopy(self.optimizer.state_dict())

    def restore(self, state: tuple[dict[str, Any], dict[str, Any]]) -> None:
        self.bundle.load_state_dict(state[0])
        self.optimizer.load_state_dict(state[1])

    def runtime_networks(self) -> tuple[Any, Any, Any]:
        modules = runtime_modules(copy.deepcopy(self.bundle))
        return modules.depth, modules.pose, modules.mask

    def save(self, path: str | os.PathLike) -> Path:
        return save_bundle_weights(self.bundle, self.model_config, path)
