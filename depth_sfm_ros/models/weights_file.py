"""The networks' PyTorch weights as one safetensors file (``weights.safetensors``) beside the ONNX files.

An exported model directory ships it so that users (``model.init_weights=MODEL_DIR``) and the adaptation
tools can fine-tune the model they run, without a training checkpoint and without unpickling anything:
safetensors holds raw tensors and a string-to-string metadata header, nothing executable.

Layout: tensor ``"<network>.<parameter name>"`` for each network of the bundle (``depth``, ``pose``,
``motion``, ``obj_pose``), floating-point tensors stored as FP16 by default (half the size; a relative
rounding of ~5e-4 is irrelevant for a fine-tuning start; a tensor FP16 cannot hold stays FP32) and read
back as FP32; metadata ``format`` (:data:`WEIGHTS_FORMAT`) and ``model_config`` (JSON of the
validated model config, see :func:`~depth_sfm_ros.models.bundle.validate_model_config`).

Needs the ``safetensors`` package (the ``train`` extra); the runtime (ONNX / TensorRT) never reads this file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from ..fileio import atomic_write
from .bundle import ModelBundle, build_models, validate_model_config

__all__ = ["WEIGHTS_FILE", "WEIGHTS_FORMAT", "WeightsFileError", "save_bundle_weights", "load_bundle_weights",
           "bundle_from_weights", "weights_path_of"]

WEIGHTS_FILE = "weights.safetensors"
WEIGHTS_FORMAT = "depth_sfm_ros/weights/v1"


class WeightsFileError(ValueError):
    """A weights file that is missing, damaged, foreign or does not fit the model."""


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError as exc:  # pragma: no cover - the train extra installs it
        raise WeightsFileError("reading or writing weights.safetensors needs the 'safetensors' package "
                               "(pip install safetensors, or the project's 'train' extra)") from exc
    return st


def weights_path_of(path: str | os.PathLike) -> Path:
    """``path`` itself for a file, ``path / weights.safetensors`` for an exported model directory."""
    path = Path(path)
    return path / WEIGHTS_FILE if path.is_dir() else path


def save_bundle_weights(bundle: ModelBundle, model_config: Mapping[str, Any], path: str | os.PathLike,
                        half: bool = True) -> Path:
    """Write every network of ``bundle`` to ``path`` atomically (FP16 floats when ``half``); returns the path."""
    st = _safetensors()
    cfg = validate_model_config(model_config)
    tensors: dict[str, torch.Tensor] = {}
    for net_name in ModelBundle.SUBNETS:
        net = getattr(bundle, net_name)
        if net is None:
            continue
        for key, value in net.state_dict().items():
            value = value.detach().to("cpu")
            if value.is_floating_point():
                value = value.float()
                if half and bool(torch.isfinite(value.half()).all()):
                    value = value.half()
            tensors[f"{net_name}.{key}"] = value.contiguous()
    metadata = {"format": WEIGHTS_FORMAT, "model_config": json.dumps(cfg, sort_keys=True)}
    path = Path(path)
    with atomic_write(path, "wb", file_mode=0o644) as handle:
        handle.write(st.save(tensors, metadata=metadata))
    return path


def load_bundle_weights(path: str | os.PathLike) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read a weights file (or a model directory's) -> ({network: state_dict}, validated model config)."""
    _safetensors()  # a clear error when the package is missing
    path = weights_path_of(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path} (an exported model directory has {WEIGHTS_FILE} "
                                f"since the real-camera default model; re-export older models)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        tensors = {key: (t.float() if t.is_floating_point() else t) for key, t in tensors.items()}
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError for damaged files
        raise WeightsFileError(f"{path}: not a readable safetensors file (corrupt or truncated?): {exc}") from exc
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise WeightsFileError(f"{path}: not a depth_sfm_ros weights file (format {metadata.get('format')!r}, "
                               f"expected {WEIGHTS_FORMAT!r})")
    try:
        model_config = validate_model_config(json.loads(metadata["model_config"]))
    except (KeyError, json.JSONDecodeError, ValueError) as exc:
        raise WeightsFileError(f"{path}: bad model_config metadata: {exc}") from exc
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        net_name, _, param = key.partition(".")
        if net_name not in ModelBundle.SUBNETS or not param:
            raise WeightsFileError(f"{path}: tensor {key!r} belongs to no network ({list(ModelBundle.SUBNETS)})")
        state.setdefault(net_name, {})[param] = value
    if "depth" not in state or "pose" not in state:
        raise WeightsFileError(f"{path}: needs depth and pose weights, has {sorted(state)}")
    return state, model_config


def bundle_from_weights(path: str | os.PathLike) -> tuple[ModelBundle, dict[str, Any]]:
    """Build the networks a weights file describes and load them strictly (eval mode)."""
    state, model_config = load_bundle_weights(path)
    bundle = build_models(model_config)
    for net_name in ModelBundle.SUBNETS:
        net = getattr(bundle, net_name)
        if (net is None) != (net_name not in state):
            raise WeightsFileError(f"{weights_path_of(path)}: network {net_name!r} is "
                                   f"{'missing from the file' if net is not None else 'not in its model_config'}")
        if net is not None:
            try:
                net.load_state_dict(state[net_name])
            except RuntimeError as exc:
                raise WeightsFileError(f"{weights_path_of(path)}: {net_name} weights do not fit: {exc}") from exc
    return bundle.eval(), model_config
