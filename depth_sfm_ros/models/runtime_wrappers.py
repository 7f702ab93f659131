"""The networks with the exported-model call signatures (docs/architecture.md, "Exported model").

These wrappers are what ``runtime/export.py`` exports to ONNX and what a PyTorch backend should
call, so torch and ONNX runs see the same graph:

* ``DepthRuntime(image (1,3,H,W)) -> (disparity (1,1,H,W), depth (1,1,H,W))``
* ``PoseRuntime(image_prev, image_cur) -> pose (1,6)`` = ``T_prev_cur`` (PoseNet(tgt=cur, src=prev))
* ``MaskRuntime(image_prev, image_cur) -> dynamic_prob (1,1,H,W)`` (MotionNet's mask output)

Images are float32 RGB in [0, 1]; normalisation is inside the networks.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.nn as nn

from .bundle import ModelBundle
from .checkpoint import build_from_checkpoint
from .depth_net import DepthNet
from .layers import disp_to_depth
from .motion_net import MotionNet
from .pose_net import PoseNet

__all__ = ["DepthRuntime", "PoseRuntime", "MaskRuntime", "RuntimeModules", "runtime_modules", "load_runtime_modules"]


class DepthRuntime(nn.Module):
    """image (B,3,H,W) -> (disparity (B,1,H,W) in (0,1), depth (B,1,H,W) in [min_depth, max_depth]).

    The disparity is ``DepthNet.predict``'s (with the net's test-time flip when it has ``flip_average``)."""

    def __init__(self, depth_net: DepthNet) -> None:
        super().__init__()
        self.net = depth_net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        disparity = self.net.predict(image)
        return disparity, disp_to_depth(disparity, self.net.min_depth, self.net.max_depth)[1]


class PoseRuntime(nn.Module):
    """(image_prev, image_cur) -> pose (B,6) = T_prev_cur as [t, axis-angle]."""

    def __init__(self, pose_net: PoseNet) -> None:
        super().__init__()
        self.net = pose_net

    def forward(self, image_prev: torch.Tensor, image_cur: torch.Tensor) -> torch.Tensor:
        return self.net(image_cur, image_prev)  # PoseNet(tgt, src) -> T_src_tgt


class MaskRuntime(nn.Module):
    """(image_prev, image_cur) -> dynamic_prob (B,1,H,W) in [0,1]."""

    def __init__(self, motion_net: MotionNet) -> None:
        super().__init__()
        self.net = motion_net

    def forward(self, image_prev: torch.Tensor, image_cur: torch.Tensor) -> torch.Tensor:
        return self.net(image_prev, image_cur)[1]


class RuntimeModules(NamedTuple):
    """Runtime-signature modules of a bundle (eval mode); ``mask`` is None without a MotionNet."""

    depth: DepthRuntime
    pose: PoseRuntime
    mask: MaskRuntime | None


def runtime_modules(bundle: ModelBundle) -> RuntimeModules:
    """Wrap a bundle's networks (shares their weights) and put them in eval mode."""
    if not isinstance(bundle, ModelBundle):
        raise TypeError(f"bundle must be a ModelBundle, got {type(bundle).__name__}")
    mask = MaskRuntime(bundle.motion).eval() if bundle.motion is not None else None
    return RuntimeModules(DepthRuntime(bundle.depth).eval(), PoseRuntime(bundle.pose).eval(), mask)


def load_runtime_modules(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> RuntimeModules:
    """Checkpoint -> RuntimeModules (for a PyTorch backend)."""
    bundle, _ = build_from_checkpoint(path, map_location=map_location)
    return runtime_modules(bundle)
