"""Validate an exported model directory for the runtime (see docs/architecture.md, "Exported model").

The card itself is read and validated by :mod:`runtime.model_card` (one definition of the format);
this module adds what a backend needs: the ONNX files present with the recorded sha256, their
declared inputs / outputs against the contract, and the card's intrinsics as an
:class:`~depth_sfm_ros.geometry.Intrinsics`. numpy + PyYAML only.
"""
from __future__ import annotations

from pathlib import Path

from ..geometry import Intrinsics
from .model_card import MODEL_CARD_NAME, ONNX_FILES, ModelCard, ModelCardError, read_model_card, verify_files

CARD_FILE = MODEL_CARD_NAME
ONNX_SPECS = ONNX_FILES
REQUIRED_ONNX = ("depth.onnx", "pose.onnx")  # mask.onnx is optional: no dynamic mask without it
# The bundled default model (trained on the synthetic sequences, see its model_card.yaml): the default
# of the node, eval-bag and the demo.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "default_model"

__all__ = ["DEFAULT_MODEL_DIR", "ModelCard", "ModelDirError", "read_model_card", "onnx_files", "check_io", "card_input_hw",
           "card_intrinsics"]


class ModelDirError(ModelCardError):
    """The model directory is missing a file or does not match the exported-model contract."""


def card_input_hw(card: ModelCard) -> tuple[int, int]:
    """(H, W) of the network input."""
    return card.input_height, card.input_width


def card_intrinsics(card: ModelCard, width: int, height: int) -> Intrinsics:
    """The card's normalised training intrinsics scaled to an image of ``width`` x ``height``."""
    if card.intrinsics_normalized is None:
        raise ModelDirError("the model card has no intrinsics_normalized: pass the camera intrinsics (CameraInfo)")
    fx, fy, cx, cy = card.intrinsics_normalized
    return Intrinsics.from_normalized(fx, fy, cx, cy, width=width, height=height)


def onnx_files(model_dir: str | Path, card: ModelCard | None = None) -> dict[str, Path]:
    """The ONNX files of a model dir. Required ones must exist (ModelDirError names the file and what it
    should be); every file the card lists must match its recorded sha256."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir}: not a directory (expected an exported model dir with {CARD_FILE}, "
                            f"{', '.join(ONNX_SPECS)})")
    card = card if card is not None else read_model_card(model_dir)
    found: dict[str, Path] = {}
    for name, (inputs, outputs) in ONNX_SPECS.items():
        path = model_dir / name
        if path.is_file():
            found[name] = path
        elif name in REQUIRED_ONNX or name in card.files:
            raise ModelDirError(f"{path}: missing; expected an ONNX model with inputs {list(inputs)} "
                                f"[1,3,H,W] float32 and outputs {list(outputs)}")
    unlisted = [name for name in found if name not in card.files]
    if unlisted:
        raise ModelDirError(f"{model_dir}: {unlisted} not listed in {CARD_FILE} (files from another export?)")
    verify_files(card, model_dir)
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
