"""Depth prior for the seed-000 normal losses (eqs. 4-5).

Seed 000 (sec. 3.4) regularises the self-supervised depth with the surface normals of a *depth prior*:
an independent, already trained monocular depth model whose depth maps are smooth (Dynamic-Depth /
SC-DepthV3 use a pretrained model). The normal L1 loss and the edge-aware relative-normal (ranking)
loss pull the trained depth's normals towards the prior's, so the prior must be a trained model:
against a randomly initialised net they teach random normals.

``depth_prior.source``:

* ``checkpoint`` (default): the frozen depth net of ``depth_prior.checkpoint``, either a training
  checkpoint (``.pt``, the format of ``depth_sfm_ros.models.checkpoint``) or an exported model
  directory with ``weights.safetensors`` (or that file itself; see ``depth_sfm_ros.models.weights_file``),
  loaded once with its own min/max depth. Normals are scale invariant, so the prior's depth scale
  does not matter. Without a checkpoint the losses are refused when the prior is built (a
  ``ConfigError`` naming ``depth_prior.checkpoint``; ``depth-sfm train`` prints it and exits with 2).
* ``snapshot`` (explicit, not the default): self-distillation, a frozen copy of THIS run's depth net
  taken at the first step and refreshed every ``depth_prior.refresh_steps``. From random weights the
  first copy is random too, so it is meaningful only when the run starts from trained weights
  (``model.init_weights``) or resumes; it is not the paper's prior.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from depth_sfm_ros.fileio import atomic_write
from depth_sfm_training.config import ConfigError

__all__ = ["DepthPrior", "PRIOR_SOURCES", "PRIOR_REQUIRED", "load_prior_depth_net"]

PRIOR_SOURCES = ("checkpoint", "snapshot")
PRIOR_REQUIRED = ("config key 'depth_prior.checkpoint': losses.normal / losses.ranking (seed 000 eqs. 4-5) compare "
                  "the depth's normals with those of an independent, trained depth prior, and none is set: pass "
                  "depth_prior.checkpoint=PATH, a training checkpoint (.pt) or an exported model directory with "
                  "weights.safetensors (depth_prior.source=snapshot, a frozen copy of this run's own depth net, is "
                  "the explicit self-distillation alternative)")


def load_prior_depth_net(path: str | Path) -> tuple[nn.Module, float, float]:
    """The depth net of a training checkpoint (``.pt``) or an exported model directory / its
    ``weights.safetensors`` -> (depth net in eval mode on the CPU, min_depth, max_depth).

    Raises FileNotFoundError for a missing path and ValueError for a file that is not a model.
    """
    from depth_sfm_ros.models import build_from_checkpoint
    from depth_sfm_ros.models.weights_file import bundle_from_weights, weights_path_of

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"depth_prior.checkpoint {path} does not exist")
    if path.is_dir() or path.suffix == ".safetensors":  # an exported model dir, or its weights file
        bundle, model_config = bundle_from_weights(weights_path_of(path))
    else:
        bundle, model_config = build_from_checkpoint(path)
    return bundle.depth.eval(), float(model_config["min_depth"]), float(model_config["max_depth"])


class DepthPrior:
    """Prior depth of the target images for the normal / ranking losses (see the module docstring).

    Args:
        config: the training config (``losses``, ``depth_prior``, ``model`` sections).
        bundle: this run's networks (only ``snapshot`` copies ``bundle.depth``).
        device: where the prior runs.

    Raises:
        ConfigError (a ValueError): normal / ranking on with ``source: checkpoint`` and no
            ``depth_prior.checkpoint``; ValueError: an unknown source.
    """

    def __init__(self, config: dict[str, Any], bundle: nn.Module, device: torch.device) -> None:
        n = config["depth_prior"]
        self.enabled = bool(config["losses"]["normal"] or config["losses"]["ranking"])
        self.mode = n["source"]
        self.refresh = int(n["refresh_steps"])
        self.min_depth = float(config["model"]["min_depth"])
        self.max_depth = float(config["model"]["max_depth"])
        self.bundle = bundle
        self.net: nn.Module | None = None
        self.taken_at = -1
        if self.mode not in PRIOR_SOURCES:
            raise ValueError(f"depth_prior.source must be one of {PRIOR_SOURCES}, got {self.mode!r}")
        if not self.enabled:
            return
        if self.mode == "checkpoint":
            if not n["checkpoint"]:
                raise ConfigError(PRIOR_REQUIRED)
            self.net, self.min_depth, self.max_depth = load_prior_depth_net(n["checkpoint"])
            self.net.to(device)
            self._freeze()

    def _freeze(self) -> None:
        assert self.net is not None
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def _snapshot(self, step: int) -> None:
        self.net = copy.deepcopy(self.bundle.depth)
        self._freeze()
        self.taken_at = step

    def save_state(self, path: Path) -> int | None:
        """Write the snapshot's weights next to a checkpoint (tensors only); returns the step it was
        taken at, or None when there is no snapshot to save."""
        if not self.enabled or self.mode != "snapshot" or self.net is None:
            return None
        with atomic_write(path) as handle:
            torch.save({k: v.detach().cpu() for k, v in self.net.state_dict().items()}, handle)
        return self.taken_at

    def load_state(self, path: Path, taken_at: int, device: torch.device) -> None:
        """Restore the snapshot written by :meth:`save_state` (``weights_only`` loading)."""
        if not self.enabled or self.mode != "snapshot":
            return
        if not path.is_file():
            raise FileNotFoundError(f"normal-loss prior snapshot {path} (written with the checkpoint) is missing")
        self._snapshot(taken_at)
        self.net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        self.net.to(device)

    @torch.no_grad()
    def depth(self, image: torch.Tensor, step: int) -> torch.Tensor | None:
        """Prior depth (B, 1, H, W) of the target images (B, 3, H, W), or None when disabled."""
        from depth_sfm_ros.models import disp_to_depth

        if not self.enabled:
            return None
        if self.mode == "snapshot" and (self.net is None or step - self.taken_at >= self.refresh):
            self._snapshot(step)
        disp = self.net.predict(image)  # the prior's own inference rule (its test-time flip, if it has one)
        return disp_to_depth(disp.float(), self.min_depth, self.max_depth)[1]
