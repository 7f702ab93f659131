"""The learner of online adaptation (``depth_sfm_ros.runtime.online_adapter``): self-supervised steps on buffered
triplets with the training code's own path (``TrainingForward`` -> ``build_loss_inputs`` -> ``compute_losses``,
monodepth2's photometric loss with min reprojection, auto-mask, validity mask and edge-aware smoothness), and
the held-out score of ``depth-sfm adapt`` (:func:`depth_sfm_training.adapt.heldout_photometric_losses`).

BatchNorm layers stay in eval mode (their running statistics are not updated by batches of two frames of one
place); the motion net, if any, is not trained (as in the offline adapt's default config).

:class:`ReplaySet`: triplets of a replay folder (the folders ``depth-sfm adapt --replay`` takes, e.g. the synthetic
set ``default_replay_set`` renders) that the adapter mixes into its batches against forgetting.
"""
from __future__ import annotations

import copy
import os
import random
from pathlib import Path
from typing import Any, Sequence

import torch

from depth_sfm_ros.models import runtime_modules
from depth_sfm_ros.models.weights_file import bundle_from_weights, save_bundle_weights
from depth_sfm_ros.runtime.online_adapter import ReplaySetError, Triplet

from .adapt import _evenly_spaced, _replay_components, heldout_photometric_losses
from .forward import TrainingForward
from .loss_adapter import build_loss_inputs
from .losses import LossConfig, compute_losses

__all__ = ["PhotometricLearner", "ReplaySet"]

REPLAY_FRAME_OFFSETS = (0, -1, 1)  # target, previous, next: the order of Triplet.images


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


class ReplaySet:
    """Replay triplets at the network size from a dataset, loaded on first use and kept in memory.

    At most ``max_samples`` samples, evenly spaced over the dataset, are ever used (bounded memory: one triplet
    is 3 x 3 x H x W float32, about 0.9 MB at 128 x 192). Not thread-safe: the adaptation worker alone samples.
    """

    def __init__(self, dataset: Any, description: str, max_samples: int = 64) -> None:
        if len(dataset) == 0:
            raise ReplaySetError(f"replay set {description}: no samples of three consecutive frames")
        self.dataset = dataset
        self.description = description
        self.indices = _evenly_spaced(len(dataset), max_samples)
        self._cache: dict[int, Triplet] = {}

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, height: int, width: int, seed: int = 0,
                    max_samples: int = 64) -> "ReplaySet":
        """A folder as ``depth-sfm adapt --replay FOLDER`` takes it: synthetic KITTI-like folders (``image_2/``;
        the folder itself or its sub-folders, e.g. ``default_replay_set()``'s), or images with ``calib.yaml``.
        ReplaySetError naming the folder when it is none of these or holds no sample."""
        from .datasets import build_dataset

        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise ReplaySetError(f"replay set {path}: not a directory")
        try:
            (component,), info = _replay_components(str(path), 3, None)
            dataset = build_dataset({**component, "height": int(height), "width": int(width),
                                     "frame_offsets": list(REPLAY_FRAME_OFFSETS), "augment": False,
                                     "seed": int(seed)})
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise ReplaySetError(f"replay set {path}: expected synthetic KITTI-like folders (image_2/) or images with "
                             f"calib.yaml: {exc}") from exc
        return cls(dataset, f"{info['kind']} {path}")

    def __len__(self) -> int:
        return len(self.indices)

    def describe(self) -> str:
        return f"{self.description} ({len(self.indices)} samples, {len(self._cache)} loaded)"

    def triplet(self, index: int) -> Triplet:
        """Sample ``index`` (of the dataset) as a Triplet with source "replay"."""
        if index not in self._cache:
            sample = self.dataset[index]
            self._cache[index] = Triplet(sample["images"].numpy().astype("float32", copy=False),
                                         sample["K"].numpy().astype("float32", copy=False), float(index), "replay")
        return self._cache[index]

    def sample(self, n: int, rng: random.Random) -> list[Triplet]:
        """``n`` distinct random triplets (fewer when the set is smaller)."""
        return [self.triplet(i) for i in rng.sample(self.indices, min(n, len(self.indices)))]
