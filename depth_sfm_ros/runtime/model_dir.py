"""Read and validate an exported model directory (see docs/architecture.md, "Exported model").

Only the fields the runtime needs are read from ``model_card.yaml``; the card's writer lives in
``runtime/model_card.py`` (export side). numpy + PyYAML only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..geometry import Intrinsics

CARD_FILE = "model_card.yaml"
# file -> (input names, output names), the exported-model contract
ONNX_SPECS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "depth.onnx": (("image",), ("disparity", "depth")),
    "pose.onnx": (("image_prev", "image_cur"), ("pose",)),
    "mask.onnx": (("image_prev", "image_cur"), ("dynamic_prob",)),
}
REQUIRED_ONNX = ("depth.onnx", "pose.onnx")  # mask.onnx is optional: no dynamic mask without it


class ModelDirError(ValueError):
    """The model directory is missing a file or does not match the exported-model contract."""


@dataclass(frozen=True)
class ModelCard:
    """What the runtime needs from ``model_card.yaml``.

    ``intrinsics_normalized`` is (fx/W, fy/H, cx/W, cy/H) of the training images.
    """

    input_height: int
    input_width: int
    intrinsics_normalized: tuple[float, float, float, float]
    min_depth: float
    max_depth: float
    encoder: str = "unknown"
    raw: dict | None = None

    def __post_init__(self) -> None:
        if self.input_height < 1 or self.input_width < 1:
            raise ModelDirError(f"model card input size must be positive, got {self.input_width}x{self.input_height}")
        if len(self.intrinsics_normalized) != 4 or not all(math.isfinite(v) for v in self.intrinsics_normalized):
            raise ModelDirError(f"model card intrinsics_normalized must be 4 finite numbers, "
                                f"got {self.intrinsics_normalized!r}")
        if self.intrinsics_normalized[0] <= 0 or self.intrinsics_normalized[1] <= 0:
            raise ModelDirError(f"model card focal lengths must be > 0, got {self.intrinsics_normalized!r}")
        if not (0 < self.min_depth < self.max_depth and math.isfinite(self.max_depth)):
            raise ModelDirError(f"model card needs 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    def intrinsics_for(self, width: int, height: int) -> Intrinsics:
        """The card's normalised intrinsics scaled to an image of ``width`` x ``height``."""
        fx, fy, cx, cy = self.intrinsics_normalized
        return Intrinsics.from_normalized(fx, fy, cx, cy, width=width, height=height)

    def to_dict(self) -> dict:
        fx, fy, cx, cy = self.intrinsics_normalized
        return {"input_height": self.input_height, "input_width": self.input_width,
                "intrinsics_normalized": {"fx": fx, "fy": fy, "cx": cx, "cy": cy},
                "min_depth": self.min_depth, "max_depth": self.max_depth, "encoder": self.encoder}


def _number(card: dict, key: str, path: Path) -> float:
    if key not in card:
        raise ModelDirError(f"{path}: missing field {key!r}")
    try:
        value = float(card[key])
    except (TypeError, ValueError):
        raise ModelDirError(f"{path}: field {key!r} must be a number, got {card[key]!r}") from None
    return value


def _intrinsics(value: Any, path: Path) -> tuple[float, float, float, float]:
    if isinstance(value, dict):
        missing = [k for k in ("fx", "fy", "cx", "cy") if k not in value]
        if missing:
            raise ModelDirError(f"{path}: intrinsics_normalized lacks {missing}")
        value = [value["fx"], value["fy"], value["cx"], value["cy"]]
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ModelDirError(f"{path}: intrinsics_normalized must be {{fx, fy, cx, cy}} or a list of 4, got {value!r}")
    try:
        return tuple(float(v) for v in value)  # type: ignore[return-value]
    except (TypeError, ValueError):
        raise ModelDirError(f"{path}: intrinsics_normalized must be numbers, got {value!r}") from None


def read_model_card(path: str | Path) -> ModelCard:
    """Parse ``model_card.yaml`` (the file or its directory); ModelDirError on anything missing or invalid."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILE
    if not path.is_file():
        raise ModelDirError(f"{path}: model card not found (expected {CARD_FILE} with input_height, input_width, "
                            f"intrinsics_normalized, min_depth, max_depth)")
    try:
        card = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ModelDirError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(card, dict):
        raise ModelDirError(f"{path}: expected a mapping at the top level, got {type(card).__name__}")
    height, width = _number(card, "input_height", path), _number(card, "input_width", path)
    if height != int(height) or width != int(width):
        raise ModelDirError(f"{path}: input size must be integers, got {width}x{height}")
    if "intrinsics_normalized" not in card:
        raise ModelDirError(f"{path}: missing field 'intrinsics_normalized'")
    return ModelCard(input_height=int(height), input_width=int(width),
                     intrinsics_normalized=_intrinsics(card["intrinsics_normalized"], path),
                     min_depth=_number(card, "min_depth", path), max_depth=_number(card, "max_depth", path),
                     encoder=str(card.get("encoder", "unknown")), raw=card)


def onnx_files(model_dir: str | Path) -> dict[str, Path]:
    """The ONNX files of a model dir: required ones must exist (ModelDirError names the file), mask is optional."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir}: not a directory (expected an exported model dir with {CARD_FILE}, "
                            f"{', '.join(ONNX_SPECS)})")
    found: dict[str, Path] = {}
    for name, (inputs, outputs) in ONNX_SPECS.items():
        path = model_dir / name
        if path.is_file():
            found[name] = path
        elif name in REQUIRED_ONNX:
            raise ModelDirError(f"{path}: missing; expected an ONNX model with inputs {list(inputs)} "
                                f"[1,3,H,W] float32 and outputs {list(outputs)}")
    return found


def check_io(file_name: str, path: Path, inputs: list[tuple[str, list]], outputs: list[str],
             card: ModelCard) -> None:
    """Check an ONNX model's declared inputs ((name, shape) pairs) and output names against the contract.

    Dynamic dimensions (strings / None) are accepted; a concrete dimension that differs from
    [1, 3, input_height, input_width] of the card is a ModelDirError.
    """
    want_inputs, want_outputs = ONNX_SPECS[file_name]
    names = [name for name, _ in inputs]
    if sorted(names) != sorted(want_inputs):
        raise ModelDirError(f"{path}: inputs are {names}, expected {list(want_inputs)}")
    missing = [o for o in want_outputs if o not in outputs]
    if missing:
        raise ModelDirError(f"{path}: outputs {outputs} lack {missing}")
    expected = [1, 3, card.input_height, card.input_width]
    for name, shape in inputs:
        if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape, expected)):
            raise ModelDirError(f"{path}: input {name!r} has shape {list(shape)} but the model card says "
                                f"{expected} (input_height={card.input_height}, input_width={card.input_width}); "
                                f"re-export the model or fix {CARD_FILE}")
