"""The model card (``model_card.yaml``) of an exported model directory: read, validate, write.

No torch here: backends read the card with numpy + PyYAML only. YAML is parsed with
``yaml.safe_load`` (plain data only; ``!!python/...`` tags are refused, never executed).

Fields (``ModelCard``):

* ``format`` - ``depth_sfm_ros/model_card/v1``
* ``input_height``, ``input_width`` - network input size in pixels (multiples of 32)
* ``intrinsics_normalized`` - ``[fx/W, fy/H, cx/W, cy/H]`` of the training data, or null if unknown
  (the runtime then needs a CameraInfo)
* ``min_depth``, ``max_depth`` - range of ``depth = 1 / (1/max + (1/min - 1/max) * disparity)``
* ``scale_convention`` - ``relative`` (monocular, up to an unknown scale: recover it at run time)
  or ``metric`` (depth output already in metres)
* ``encoder``, ``pose_encoder`` - network names
* ``files`` - ``{"depth.onnx": sha256, "pose.onnx": sha256, "mask.onnx": sha256, "weights.safetensors": sha256}``
  (the last: the PyTorch weights for fine-tuning, absent in older exports); depth.onnx is
  required, pose.onnx / mask.onnx are present when the model has those networks
* ``opset``, ``precision`` (of the ONNX files, ``fp32``), ``export_time`` (ISO 8601 UTC), ``git_commit``
* ``parameter_counts``, ``model_config``, ``training_config``, ``metrics`` - informational dicts
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import re
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from depth_sfm_ros.fileio import atomic_write

__all__ = [
    "MODEL_CARD_FORMAT", "MODEL_CARD_NAME", "ONNX_FILES", "ModelCard", "ModelCardError", "read_model_card",
    "write_model_card", "sha256_file", "verify_files", "utc_now_iso",
]

MODEL_CARD_FORMAT = "depth_sfm_ros/model_card/v1"
MODEL_CARD_NAME = "model_card.yaml"
# file -> (input names, output names): the exported-model contract of docs/architecture.md
# The networks' PyTorch weights (safetensors, for fine-tuning; see depth_sfm_ros.models.weights_file), listed in
# ``files`` with their hash like the ONNX files; the runtime never loads them.
WEIGHTS_FILE_NAME = "weights.safetensors"
ONNX_FILES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "depth.onnx": (("image",), ("disparity", "depth")),
    "pose.onnx": (("image_prev", "image_cur"), ("pose",)),
    "mask.onnx": (("image_prev", "image_cur"), ("dynamic_prob",)),
}
SCALE_CONVENTIONS = ("relative", "metric")
_MAX_CARD_BYTES = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelCardError(ValueError):
    """A model card that is missing, unreadable or invalid (the message names the field)."""


def utc_now_iso() -> str:
    """Current UTC time as ``2026-11-20T23:59:59Z``."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ModelCard:
    """Typed, validated contents of ``model_card.yaml`` (see the module docstring)."""

    input_height: int
    input_width: int
    min_depth: float
    max_depth: float
    encoder: str
    files: dict[str, str]
    scale_convention: str = "relative"
    intrinsics_normalized: list[float] | None = None
    pose_encoder: str | None = None
    opset: int = 17
    precision: str = "fp32"
    export_time: str = ""
    git_commit: str | None = None
    parameter_counts: dict[str, int] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)
    training_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format: str = MODEL_CARD_FORMAT

    def __post_init__(self) -> None:
        self.validate()

    @property
    def has_pose(self) -> bool:
        return "pose.onnx" in self.files

    @property
    def has_mask(self) -> bool:
        return "mask.onnx" in self.files

    def validate(self) -> None:
        """Raise ModelCardError naming the first invalid field."""
        if self.format != MODEL_CARD_FORMAT:
            raise ModelCardError(f"format must be {MODEL_CARD_FORMAT!r}, got {self.format!r}")
        for name in ("input_height", "input_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 32 or value % 32:
                raise ModelCardError(f"{name} must be a positive multiple of 32, got {value!r}")
        for name in ("min_depth", "max_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ModelCardError(f"{name} must be a finite number > 0, got {value!r}")
            setattr(self, name, float(value))
        if self.max_depth <= self.min_depth:
            raise ModelCardError(f"max_depth ({self.max_depth}) must exceed min_depth ({self.min_depth})")
        if self.scale_convention not in SCALE_CONVENTIONS:
            raise ModelCardError(f"scale_convention must be one of {list(SCALE_CONVENTIONS)}, "
                                 f"got {self.scale_convention!r}")
        if not isinstance(self.encoder, str) or not self.encoder:
            raise ModelCardError(f"encoder must be a non-empty string, got {self.encoder!r}")
        if self.pose_encoder is not None and not isinstance(self.pose_encoder, str):
            raise ModelCardError(f"pose_encoder must be a string or null, got {self.pose_encoder!r}")
        if self.intrinsics_normalized is not None:
            k = self.intrinsics_normalized
            if (not isinstance(k, (list, tuple)) or len(k) != 4
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in k)
                    or k[0] <= 0 or k[1] <= 0):
                raise ModelCardError(f"intrinsics_normalized must be null or [fx/W, fy/H, cx/W, cy/H] (4 finite "
                                     f"numbers, fx, fy > 0), got {k!r}")
            self.intrinsics_normalized = [float(x) for x in k]
        if not isinstance(self.files, dict) or "depth.onnx" not in self.files:
            raise ModelCardError(f"files must map file names to sha256 and include depth.onnx, got {self.files!r}")
        for name, digest in self.files.items():
            if name not in ONNX_FILES and name != WEIGHTS_FILE_NAME:
                raise ModelCardError(f"files: unknown file {name!r}; known: {sorted(ONNX_FILES) + [WEIGHTS_FILE_NAME]}")
            if not isinstance(digest, str) or not _SHA256.match(digest):
                raise ModelCardError(f"files[{name!r}] must be a lowercase hex sha256, got {digest!r}")
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or self.opset < 17:
            raise ModelCardError(f"opset must be an integer >= 17, got {self.opset!r}")
        if self.precision not in ("fp32", "fp16"):
            raise ModelCardError(f"precision must be 'fp32' or 'fp16', got {self.precision!r}")
        if not isinstance(self.export_time, str):
            raise ModelCardError(f"export_time must be an ISO 8601 string, got {self.export_time!r}")
        if self.git_commit is not None and not isinstance(self.git_commit, str):
            raise ModelCardError(f"git_commit must be a string or null, got {self.git_commit!r}")
        for name in ("parameter_counts", "model_config", "training_config", "metrics"):
            if not isinstance(getattr(self, name), dict):
                raise ModelCardError(f"{name} must be a mapping, got {type(getattr(self, name)).__name__}")

    @classmethod
    def from_dict(cls, data: Any, source: str = "model card") -> "ModelCard":
        """Plain dict (e.g. from YAML) -> ModelCard; unknown or missing fields raise ModelCardError."""
        if not isinstance(data, Mapping):
            raise ModelCardError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelCardError(f"{source}: unknown field(s) {unknown}")
        required = [n for n, f in cls.__dataclass_fields__.items()
                    if f.default is MISSING and f.default_factory is MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise ModelCardError(f"{source}: missing required field(s) {missing}")
        if "format" in data and data["format"] != MODEL_CARD_FORMAT:
            raise ModelCardError(f"{source}: format must be {MODEL_CARD_FORMAT!r}, got {data['format']!r}")
        try:
            return cls(**dict(data))
        except ModelCardError as exc:
            raise ModelCardError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def intrinsics_matrix(self, width: int | None = None, height: int | None = None) -> list[list[float]] | None:
        """3x3 K (nested lists) at ``width`` x ``height`` (default the input size), or None if unknown."""
        if self.intrinsics_normalized is None:
            return None
        w = self.input_width if width is None else width
        h = self.input_height if height is None else height
        fx, fy, cx, cy = self.intrinsics_normalized
        return [[fx * w, 0.0, cx * w], [0.0, fy * h, cy * h], [0.0, 0.0, 1.0]]


def _card_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path / MODEL_CARD_NAME if path.is_dir() else path


def read_model_card(path: str | os.PathLike) -> ModelCard:
    """Read ``model_card.yaml`` (``path`` is the file or the model directory) with yaml.safe_load."""
    card_path = _card_path(path)
    if not card_path.is_file():
        raise ModelCardError(f"model card not found: {card_path}")
    if card_path.stat().st_size > _MAX_CARD_BYTES:
        raise ModelCardError(f"{card_path}: larger than {_MAX_CARD_BYTES} bytes, refusing to parse")
    try:
        data = yaml.safe_load(card_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelCardError(f"{card_path}: not valid plain YAML: {exc}") from exc
    return ModelCard.from_dict(data, source=str(card_path))


def write_model_card(card: ModelCard, path: str | os.PathLike) -> Path:
    """Validate and write ``card`` (``path`` is the file or the model directory) atomically."""
    card.validate()
    card_path = _card_path(path)
    text = yaml.safe_dump(card.to_dict(), sort_keys=False, default_flow_style=None, allow_unicode=True)
    # mkstemp makes it private; a model card is meant to be shared
    with atomic_write(card_path, "w", encoding="utf-8", file_mode=0o644) as handle:
        handle.write("# depth_sfm_ros exported model card (docs/architecture.md)\n")
        handle.write(text)
    return card_path


def verify_files(card: ModelCard, model_dir: str | os.PathLike) -> None:
    """Check that every file the card lists exists in ``model_dir`` with the recorded sha256."""
    model_dir = Path(model_dir)
    for name, digest in card.files.items():
        file_path = model_dir / name
        if not file_path.is_file():
            raise ModelCardError(f"{model_dir}: {name} is listed in the model card but missing")
        actual = sha256_file(file_path)
        if actual != digest:
            raise ModelCardError(f"{file_path}: sha256 {actual} does not match the model card ({digest}); "
                                 f"the file was modified or belongs to another export")
