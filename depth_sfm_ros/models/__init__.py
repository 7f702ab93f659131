"""Networks (torch): DepthNet, PoseNet, ObjPoseNet, MotionNet, the ModelBundle and checkpoints.

Importing this package imports torch. Everything returns plain tensors or tuples of tensors
(no dicts), so every network traces and exports to ONNX.
"""
from .bundle import DEFAULT_MODEL_CONFIG, ModelBundle, build_models, count_parameters, validate_model_config
from .checkpoint import (CHECKPOINT_FORMAT, CheckpointError, build_from_checkpoint, load_checkpoint,
                         save_checkpoint)
from .depth_net import DepthNet
from .encoders import ENCODER_NAMES, LiteEncoder, ResNetEncoder, build_encoder
from .layers import disp_to_depth
from .motion_net import MotionNet
from .pose_net import ObjPoseNet, PoseNet
from .runtime_wrappers import RuntimeModules, load_runtime_modules, runtime_modules

__all__ = [
    "DEFAULT_MODEL_CONFIG", "ModelBundle", "build_models", "count_parameters", "validate_model_config",
    "CHECKPOINT_FORMAT", "CheckpointError", "build_from_checkpoint", "load_checkpoint", "save_checkpoint",
    "DepthNet", "ENCODER_NAMES", "LiteEncoder", "ResNetEncoder", "build_encoder", "disp_to_depth",
    "MotionNet", "ObjPoseNet", "PoseNet", "RuntimeModules", "load_runtime_modules", "runtime_modules",
]
