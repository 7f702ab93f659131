"""Checkpoints: one ``torch.save`` file per training state, read back with ``weights_only=True`` only.

Layout (format ``depth_sfm_ros/checkpoint/v1``)::

    {"format": "depth_sfm_ros/checkpoint/v1",
     "model_config": {...validated model_config...},
     "train_config": {...plain data...},
     "state_dict": {"depth": sd, "pose": sd, "motion": sd | None, "obj_pose": sd | None},
     "step": int, "epoch": int, "git_commit": str | None,
     "optimizer": optimizer.state_dict() | None, "extra": {...plain data...} | None}

Configs and ``extra`` must be plain data (dict / list / str / int / float / bool / None) so
that the weights-only unpickler accepts the file. Writes are atomic (temp file + rename), so a
crash mid-save never leaves a truncated checkpoint under the final name.
"""
from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path
from typing import Any, Mapping

import torch

from ..fileio import atomic_write
from .bundle import ModelBundle, build_models, validate_model_config

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint", "build_from_checkpoint",
           "bundle_from_checkpoint_data", "git_commit", "plain_data"]

CHECKPOINT_FORMAT = "depth_sfm_ros/checkpoint/v1"
_FORMAT_PREFIX = "depth_sfm_ros/checkpoint/"


class CheckpointError(ValueError):
    """A file that is not a loadable depth_sfm_ros checkpoint (corrupt, foreign, unsafe, wrong version)."""


def plain_data(value: Any, where: str = "value") -> Any:
    """Deep-copy ``value`` as plain data (dict with str keys, list, str, int, float, bool, None).

    Tuples become lists, numpy / torch scalars become Python numbers. Anything else raises
    ValueError naming the path (e.g. ``train_config['optim']['betas'][0]``).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a non-string key {key!r}; configs must be plain data")
            out[key] = plain_data(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [plain_data(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return plain_data(value.item(), where)  # numpy / torch scalar
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ValueError(f"{where} is a {type(value).__name__}; configs must be plain data "
                     f"(dict/list/str/number/bool/None)")


def git_commit(path: str | os.PathLike | None = None, mark_dirty: bool = False) -> str | None:
    """The git commit of the checkout holding ``path`` (default: this package), or None outside git.

    ``mark_dirty`` appends ``+dirty`` when tracked files have uncommitted changes (what a training run records).
    """
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        commit = result.stdout.strip()
        if result.returncode != 0 or len(commit) != 40:
            return None
        if mark_dirty:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                    capture_output=True, text=True, timeout=10)
            if status.returncode == 0 and status.stdout.strip():
                commit += "+dirty"
    except (OSError, subprocess.SubprocessError):
        return None
    return commit


def save_checkpoint(path: str | os.PathLike, bundle: ModelBundle, model_config: Mapping[str, Any],
                    train_config: Mapping[str, Any] | None, step: int, epoch: int,
                    optimizer_state: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temp file in the same directory + ``os.replace``). Returns the path."""
    if not isinstance(bundle, ModelBundle):
        raise TypeError(f"bundle must be a ModelBundle, got {type(bundle).__name__}")
    for name, value in (("step", step), ("epoch", epoch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    cfg = validate_model_config(model_config)
    for name in ("motion", "obj_pose"):
        flag = "use_motion_net" if name == "motion" else "use_obj_pose"
        if cfg[flag] != (getattr(bundle, name) is not None):
            raise ValueError(f"model_config[{flag!r}]={cfg[flag]} does not match the bundle (has {name}: "
                             f"{getattr(bundle, name) is not None})")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_config": cfg,
        "train_config": plain_data(dict(train_config or {}), "train_config"),
        "state_dict": {name: (None if sd is None else {k: v.detach().cpu() for k, v in sd.items()})
                       for name, sd in bundle.subnet_state_dicts().items()},
        "step": int(step),
        "epoch": int(epoch),
        "git_commit": git_commit(),
        "optimizer": None if optimizer_state is None else dict(optimizer_state),
        "extra": None if extra is None else plain_data(dict(extra), "extra"),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        torch.save(payload, handle)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint with ``torch.load(weights_only=True)``; never executes pickled code.

    Raises FileNotFoundError for a missing file and CheckpointError for a corrupt file, a pickle
    the weights-only unpickler refuses, a foreign file or another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused by the weights-only unpickler (it would need to run code or "
                              f"build arbitrary objects; not a depth_sfm_ros checkpoint): {exc}") from exc
    except Exception as exc:  # torch raises RuntimeError / EOFError / zipfile errors for damaged files
        raise CheckpointError(f"{path}: not a readable torch checkpoint (corrupt or truncated?): {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("format"), str):
        raise CheckpointError(f"{path}: not a depth_sfm_ros checkpoint (no 'format' entry)")
    if data["format"] != CHECKPOINT_FORMAT:
        if data["format"].startswith(_FORMAT_PREFIX):
            raise CheckpointError(f"{path}: checkpoint format {data['format']!r} is not supported by this version "
                                  f"(expected {CHECKPOINT_FORMAT!r})")
        raise CheckpointError(f"{path}: not a depth_sfm_ros checkpoint (format {data['format']!r})")
    missing = [k for k in ("model_config", "state_dict", "step", "epoch") if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    state = data["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(state.get(k), dict) for k in ("depth", "pose")):
        raise CheckpointError(f"{path}: 'state_dict' must hold 'depth' and 'pose' state dicts")
    try:
        data["model_config"] = validate_model_config(data["model_config"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: invalid model_config: {exc}") from exc
    data.setdefault("train_config", {})
    data.setdefault("git_commit", None)
    data.setdefault("optimizer", None)
    data.setdefault("extra", None)
    return data


def build_from_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                          eval_mode: bool = True) -> tuple[ModelBundle, dict[str, Any]]:
    """Checkpoint -> (ModelBundle with its weights, in eval mode by default; model_config).

    ImageNet ``weights_path`` entries are not re-read (the checkpoint holds the trained weights).
    Mismatching weights raise CheckpointError listing missing / unexpected keys.
    """
    data = load_checkpoint(path, map_location=map_location)
    return bundle_from_checkpoint_data(data, map_location=map_location, eval_mode=eval_mode, source=str(path))


def bundle_from_checkpoint_data(data: Mapping[str, Any], map_location: str | torch.device = "cpu",
                                eval_mode: bool = True, source: str = "checkpoint") -> tuple[ModelBundle, dict]:
    """:func:`build_from_checkpoint` for a dict already returned by :func:`load_checkpoint`."""
    cfg = dict(data["model_config"], weights_path=None, pose_weights_path=None)
    bundle = build_models(cfg)
    for name in ModelBundle.SUBNETS:
        net, sd = getattr(bundle, name), data["state_dict"].get(name)
        if net is None and sd is None:
            continue
        if net is None or sd is None:
            raise CheckpointError(f"{source}: sub-network {name!r} is {'absent' if net is None else 'present'} in "
                                  f"model_config but its weights are {'present' if sd is not None else 'absent'}")
        try:
            result = net.load_state_dict(sd, strict=False)
        except RuntimeError as exc:  # shape mismatch
            raise CheckpointError(f"{source}: weights of {name!r} do not fit model_config: {exc}") from exc
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(f"{source}: weights of {name!r} do not fit model_config: missing keys "
                                  f"{result.missing_keys[:8]}, unexpected keys {result.unexpected_keys[:8]}")
    bundle.to(map_location)
    bundle.train(not eval_mode)
    return bundle, dict(data["model_config"])
