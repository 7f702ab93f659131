"""ModelBundle: the networks of one model, built from a validated ``model_config`` dict.

The default configuration (``DEFAULT_MODEL_CONFIG``) and what each key means:

================== ==========  ==================================================================
key                default     meaning
================== ==========  ==================================================================
encoder            "lite"      DepthNet encoder: "resnet18" | "resnet34" | "resnet50" | "lite"
pose_encoder       "lite"      PoseNet encoder: "resnet18" | "lite"
num_scales         4           disparity scales returned in training (1..4)
min_depth          0.1         depth range of the sigmoid disparity (network units, > 0)
max_depth          100.0       (> min_depth)
height             192         training / export input size (pixels, multiples of 32, >= 64)
width              640
use_motion_net     True        build MotionNet (residual 3D motion + dynamic mask; mask.onnx)
motion_encoder     "lite_motion"  MotionNet encoder: "lite_motion" (~0.38M in all) | "lite_small" (~0.93M, the
                               encoder of a "lite_small" PoseNet: it can start from a trained pose encoder)
use_obj_pose       False       build ObjPoseNet (seed 001 per-instance object motion, training only)
weights_path       None        torchvision ImageNet state_dict for the depth encoder (ResNets only)
pose_weights_path  None        same for the pose encoder (ResNet-18 only)
depth_flip_average False       inference: depth = mean disparity of the image and its mirror image, mirrored
                               back (monodepth's test-time flip; ``DepthNet.predict``). Doubles the depth
                               net's cost; training is unaffected. A property of the exported model.
================== ==========  ==================================================================

``validate_model_config`` fills defaults and raises ValueError naming the offending key for
unknown keys and bad values. The result holds only str / int / float / bool / None, so it is
stored as-is in checkpoints (weights_only loading) and model cards (YAML).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch.nn as nn

from .depth_net import DepthNet
from .encoders import ENCODER_NAMES
from .motion_net import MOTION_ENCODERS, MotionNet
from .pose_net import POSE_ENCODERS, ObjPoseNet, PoseNet

__all__ = ["DEFAULT_MODEL_CONFIG", "ModelBundle", "build_models", "validate_model_config", "count_parameters"]

DEFAULT_MODEL_CONFIG: dict[str, Any] = {
    "encoder": "lite",
    "pose_encoder": "lite",
    "num_scales": 4,
    "min_depth": 0.1,
    "max_depth": 100.0,
    "height": 192,
    "width": 640,
    "use_motion_net": True,
    "motion_encoder": "lite_motion",
    "use_obj_pose": False,
    "weights_path": None,
    "pose_weights_path": None,
    "depth_flip_average": False,
}


def _positive_float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"model_config[{key!r}] must be a finite number > 0, got {value!r}")
    return float(value)


def _int_in(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"model_config[{key!r}] must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def validate_model_config(model_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults + ``model_config`` -> a checked plain dict. Raises ValueError naming the bad key."""
    if model_config is None:
        model_config = {}
    if not isinstance(model_config, Mapping):
        raise ValueError(f"model_config must be a mapping, got {type(model_config).__name__}")
    unknown = sorted(set(model_config) - set(DEFAULT_MODEL_CONFIG))
    if unknown:
        raise ValueError(f"unknown model_config key(s) {unknown}; known keys: {sorted(DEFAULT_MODEL_CONFIG)}")
    cfg = {**DEFAULT_MODEL_CONFIG, **dict(model_config)}
    if cfg["encoder"] not in ENCODER_NAMES:
        raise ValueError(f"model_config['encoder'] must be one of {list(ENCODER_NAMES)}, got {cfg['encoder']!r}")
    if cfg["pose_encoder"] not in POSE_ENCODERS:
        raise ValueError(f"model_config['pose_encoder'] must be one of {list(POSE_ENCODERS)}, "
                         f"got {cfg['pose_encoder']!r}")
    if cfg["motion_encoder"] not in MOTION_ENCODERS:
        raise ValueError(f"model_config['motion_encoder'] must be one of {list(MOTION_ENCODERS)}, "
                         f"got {cfg['motion_encoder']!r}")
    cfg["num_scales"] = _int_in("num_scales", cfg["num_scales"], 1, 4)
    cfg["min_depth"] = _positive_float("min_depth", cfg["min_depth"])
    cfg["max_depth"] = _positive_float("max_depth", cfg["max_depth"])
    if cfg["max_depth"] <= cfg["min_depth"]:
        raise ValueError(f"model_config['max_depth'] ({cfg['max_depth']}) must exceed min_depth ({cfg['min_depth']})")
    for key in ("height", "width"):
        cfg[key] = _int_in(key, cfg[key], 64, 8192)
        if cfg[key] % 32:
            raise ValueError(f"model_config[{key!r}] must be a multiple of 32, got {cfg[key]}")
    for key in ("use_motion_net", "use_obj_pose", "depth_flip_average"):
        if not isinstance(cfg[key], bool):
            raise ValueError(f"model_config[{key!r}] must be true or false, got {cfg[key]!r}")
    for key, encoder_key in (("weights_path", "encoder"), ("pose_weights_path", "pose_encoder")):
        if cfg[key] is not None:
            if not isinstance(cfg[key], str) or not cfg[key]:
                raise ValueError(f"model_config[{key!r}] must be a file path or null, got {cfg[key]!r}")
            if cfg[encoder_key].startswith("lite"):
                raise ValueError(f"model_config[{key!r}] is set but {encoder_key!r} is {cfg[encoder_key]!r} "
                                 f"(no ImageNet weights)")
    return cfg


def count_parameters(module: nn.Module | None) -> int:
    """Number of parameters of ``module`` (0 for None)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())


class ModelBundle(nn.Module):
    """depth (DepthNet), pose (PoseNet), motion (MotionNet or None), obj_pose (ObjPoseNet or None)."""

    SUBNETS = ("depth", "pose", "motion", "obj_pose")

    def __init__(self, depth: DepthNet, pose: PoseNet, motion: MotionNet | None = None,
                 obj_pose: ObjPoseNet | None = None) -> None:
        super().__init__()
        self.depth = depth
        self.pose = pose
        self.motion = motion
        self.obj_pose = obj_pose

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per sub-network (0 for an absent one)."""
        return {name: count_parameters(getattr(self, name)) for name in self.SUBNETS}

    def subnet_state_dicts(self) -> dict[str, dict | None]:
        """{name: state_dict or None}: the checkpoint layout."""
        return {name: (None if getattr(self, name) is None else getattr(self, name).state_dict())
                for name in self.SUBNETS}


def build_models(model_config: Mapping[str, Any] | None = None) -> ModelBundle:
    """Build the networks for ``model_config`` (validated; see the module docstring)."""
    cfg = validate_model_config(model_config)
    depth = DepthNet(cfg["encoder"], num_scales=cfg["num_scales"], min_depth=cfg["min_depth"],
                     max_depth=cfg["max_depth"], weights_path=cfg["weights_path"],
                     flip_average=cfg["depth_flip_average"])
    pose = PoseNet(cfg["pose_encoder"], num_input_frames=2, weights_path=cfg["pose_weights_path"])
    motion = MotionNet(cfg["motion_encoder"]) if cfg["use_motion_net"] else None
    obj_pose = ObjPoseNet() if cfg["use_obj_pose"] else None
    return ModelBundle(depth, pose, motion, obj_pose)
