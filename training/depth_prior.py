"""Depth prior for the seed-000 normal losses (eqs. 4-5): a frozen copy of the depth net."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from depth_sfm_ros.fileio import atomic_write
from depth_sfm_training.validation import full_res

__all__ = ["DepthPrior"]


class DepthPrior:
    """Depth prior for the seed-000 normal losses: a frozen copy of the depth net.

    ``depth_prior.source: snapshot`` copies the current depth net every ``refresh_steps``
    (self-distillation; the first copy is taken at the start, so it is useful only after some training
    or with a resume); ``checkpoint`` loads the depth net of ``depth_prior.checkpoint`` once. Disabled -> ``depth()`` gives None.
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
        if not self.enabled:
            return
        if self.mode == "checkpoint":
            from depth_sfm_ros.models import build_from_checkpoint

            if not n["checkpoint"]:
                raise ValueError("depth_prior.source is 'checkpoint' but depth_prior.checkpoint is not set")
            prior_bundle, prior_cfg = build_from_checkpoint(n["checkpoint"])
            self.net = prior_bundle.depth.to(device)
            self.min_depth, self.max_depth = float(prior_cfg["min_depth"]), float(prior_cfg["max_depth"])
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
        disp = full_res(self.net(image))
        return disp_to_depth(disp.float(), self.min_depth, self.max_depth)[1]
