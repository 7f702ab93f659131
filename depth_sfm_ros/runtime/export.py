"""``depth-sfm export``: checkpoint -> exported model directory (ONNX + model card [+ TensorRT engines]).

Writes, per docs/architecture.md ("Exported model"), with fixed batch 1 and opset >= 17:

* ``depth.onnx``  image [1,3,H,W] -> disparity [1,1,H,W], depth [1,1,H,W]
* ``pose.onnx``   image_prev, image_cur [1,3,H,W] -> pose [1,6] (T_prev_cur, [t, axis-angle])
* ``mask.onnx``   image_prev, image_cur [1,3,H,W] -> dynamic_prob [1,1,H,W] (only with a MotionNet)
* ``model_card.yaml`` (written last: its presence means the export finished)

Each ONNX file passes ``onnx.checker`` (full check) and, unless disabled, is compared with
PyTorch in ONNX Runtime on random input. ``--engine`` / ``--fp16`` / ``--int8`` additionally build
TensorRT engines with ``runtime.tensorrt_engine.build_engine`` (engine cache) with the installed TensorRT:
8.6 / 10.x set the FP16 / INT8 builder flags (INT8 with an entropy calibrator on the ``--calib`` frames),
11+ parses an FP16 copy of each ONNX file or an INT8 Q/DQ copy calibrated on those frames with
onnxruntime.quantization (strongly typed networks). Without TensorRT the ONNX export still stands, a
message says so, and only ``--engine`` makes the exit code non-zero; a failed engine build
(:class:`EngineBuildError`) always does.

Python entry point: :func:`export_bundle` (the demo and bench call it directly).
torch is imported inside the functions (this module must import without torch).
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from depth_sfm_ros.fileio import atomic_write
from depth_sfm_ros.msgs.image import compressed_msg_to_numpy, image_msg_to_numpy

from .model_card import (MODEL_CARD_NAME, ONNX_FILES, SCALE_CONVENTIONS, ModelCard, sha256_file, utc_now_iso,
                         write_model_card)

__all__ = ["ExportResult", "export_bundle", "export_runtime_onnx", "export_checkpoint", "load_calibration_images",
           "resolve_intrinsics", "add_arguments", "run", "TensorRTUnavailable", "EngineBuildError"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff")


MISSING_INTRINSICS = ("the normalised intrinsics the model was trained with are unknown, so the model card has "
                      "intrinsics_normalized: null and the runtime will need a CameraInfo. Pass --intrinsics "
                      "fx/W,fy/H,cx/W,cy/H (Python: intrinsics_normalized=...) or record 'intrinsics_normalized' in "
                      "the checkpoint's extra / train_config")


class TensorRTUnavailable(RuntimeError):
    """TensorRT (or the engine builder module) is not installed on this machine."""


class EngineBuildError(RuntimeError):
    """TensorRT is installed but an engine could not be built (the ONNX files and the card were written)."""


@dataclass
class ExportResult:
    """What :func:`export_bundle` wrote. ``parity`` holds max |onnx - torch| per output when verified."""

    out_dir: Path
    onnx_files: dict[str, Path]
    card_path: Path
    card: ModelCard
    parity: dict[str, float] = field(default_factory=dict)
    engines: dict[str, Path] = field(default_factory=dict)
    engine_error: str | None = None


# ------------------------------------------------------------------------------------------ intrinsics
def _intrinsics_value(value: Any, where: str) -> list[float]:
    if isinstance(value, Mapping):
        missing = [k for k in ("fx", "fy", "cx", "cy") if k not in value]
        if missing:
            raise ValueError(f"{where}: intrinsics lack {missing}")
        value = [value["fx"], value["fy"], value["cx"], value["cy"]]
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: intrinsics_normalized must be 4 numbers fx/W, fy/H, cx/W, cy/H, got {value!r}") \
            from None
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers) or numbers[0] <= 0 or numbers[1] <= 0:
        raise ValueError(f"{where}: intrinsics_normalized must be 4 finite numbers fx/W, fy/H, cx/W, cy/H with "
                         f"fx, fy > 0, got {value!r}")
    return numbers


def resolve_intrinsics(explicit: Any = None, train_config: Mapping[str, Any] | None = None,
                       extra: Mapping[str, Any] | None = None) -> list[float] | None:
    """Normalised intrinsics [fx/W, fy/H, cx/W, cy/H] the model was trained with, or None if unknown.

    Looked up in order: ``explicit`` (list / "fx,fy,cx,cy" / {fx, fy, cx, cy}), the checkpoint's
    ``extra["intrinsics_normalized"]``, then ``train_config["intrinsics_normalized"]``,
    ``train_config["data"]["intrinsics_normalized"]`` and ``train_config["data"]["extra"]["intrinsics_normalized"]``.
    """
    if explicit is not None:
        return _intrinsics_value(explicit, "intrinsics")
    candidates: list[tuple[str, Any]] = []
    if isinstance(extra, Mapping):
        candidates.append(("checkpoint extra", extra.get("intrinsics_normalized")))
    if isinstance(train_config, Mapping):
        candidates.append(("train_config", train_config.get("intrinsics_normalized")))
        data = train_config.get("data")
        if isinstance(data, Mapping):
            candidates.append(("train_config.data", data.get("intrinsics_normalized")))
            if isinstance(data.get("extra"), Mapping):
                candidates.append(("train_config.data.extra", data["extra"].get("intrinsics_normalized")))
    for where, value in candidates:
        if value is not None:
            return _intrinsics_value(value, where)
    return None


# ------------------------------------------------------------------------------------------ calibration
def _preprocess(image: np.ndarray, encoding: str, height: int, width: int) -> np.ndarray:
    from .image_io import ImagePreprocessor  # the runtime's own preprocessing: calibration sees what inference sees

    return ImagePreprocessor(height, width)(image, encoding).copy()


def _images_from_folder(folder: Path, height: int, width: int, max_images: int) -> list[np.ndarray]:
    import cv2

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) for calibration")
    step = max(1, len(files) // max_images)
    frames = []
    for path in files[::step][:max_images]:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"{path}: cannot decode image")
        if image.ndim == 2:
            encoding = "mono16" if image.dtype == np.uint16 else "mono8"
        elif image.dtype != np.uint8:
            raise ValueError(f"{path}: colour images must be 8-bit, got {image.dtype}")
        else:
            encoding = "bgra8" if image.shape[2] == 4 else "bgr8"
        frames.append(_preprocess(image, encoding, height, width))
    return frames


def _images_from_bag(bag: Path, height: int, width: int, max_images: int, topic: str | None) -> list[np.ndarray]:
    try:
        from ..msgs import rosbags_msgs
    except ImportError as exc:
        raise ValueError(f"reading calibration frames from a bag needs the 'rosbags' package ({exc}); pass a "
                         f"folder of images instead") from exc
    topics = rosbags_msgs.bag_topics(bag)
    image_types = (rosbags_msgs.MSG_IMAGE, rosbags_msgs.MSG_COMPRESSED_IMAGE)
    if topic is None:
        found = sorted(t for t, (msgtype, count) in topics.items() if msgtype in image_types and count > 0)
        if not found:
            raise ValueError(f"{bag}: no sensor_msgs/Image or CompressedImage topic for calibration; topics: "
                             f"{sorted(topics)}")
        topic = found[0]
        log.info("calibration frames from %s topic %s", bag, topic)
    elif topic not in topics or topics[topic][0] not in image_types:
        raise ValueError(f"{bag}: calibration topic {topic!r} is not an image topic; topics: {sorted(topics)}")
    count = topics[topic][1]
    step = max(1, count // max_images)
    frames = []
    for index, (_, _, msg) in enumerate(rosbags_msgs.read_messages(bag, [topic])):
        if index % step or len(frames) >= max_images:
            continue
        if topics[topic][0] == rosbags_msgs.MSG_COMPRESSED_IMAGE:  # the node's decoders: the node's pixels
            frames.append(_preprocess(*compressed_msg_to_numpy(msg), height, width))
        else:
            frames.append(_preprocess(image_msg_to_numpy(msg), str(msg.encoding), height, width))
    return frames


def load_calibration_images(source: str | os.PathLike, height: int, width: int, max_images: int = 64,
                            topic: str | None = None) -> np.ndarray:
    """INT8 calibration frames (N, 3, H, W) float32 RGB in [0, 1], preprocessed like the runtime does.

    ``source`` is a folder of images (png/jpg/...; sorted by name, evenly subsampled) or a rosbag2
    directory (the first image topic, or ``topic``). Frames stay in temporal order, so consecutive
    frames form the (prev, cur) pairs the two-input models see.
    """
    source = Path(source)
    if max_images < 2:
        raise ValueError(f"max_images must be >= 2, got {max_images}")
    if not source.exists():
        raise FileNotFoundError(f"calibration source not found: {source}")
    is_bag = source.is_dir() and any(source.glob("metadata.yaml"))
    if source.is_dir() and not is_bag:
        frames = _images_from_folder(source, height, width, max_images)
    elif is_bag or source.suffix in (".mcap", ".db3"):
        frames = _images_from_bag(source if source.is_dir() else source.parent, height, width, max_images, topic)
    else:
        raise ValueError(f"{source}: calibration source must be a folder of images or a rosbag2 directory")
    if len(frames) < 2:
        raise ValueError(f"{source}: need at least 2 calibration frames, found {len(frames)}")
    return np.concatenate(frames, axis=0)


# ------------------------------------------------------------------------------------------ ONNX
def _check_onnx(path: Path, inputs: Sequence[str], outputs: Sequence[str], opset: int, height: int,
                width: int) -> None:
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    graph_inputs = [i.name for i in model.graph.input]
    graph_outputs = [o.name for o in model.graph.output]
    if graph_inputs != list(inputs) or graph_outputs != list(outputs):
        raise RuntimeError(f"{path}: exported I/O {graph_inputs} -> {graph_outputs}, expected {list(inputs)} -> "
                           f"{list(outputs)}")
    for value in model.graph.input:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if dims != [1, 3, height, width]:
            raise RuntimeError(f"{path}: input {value.name} has shape {dims}, expected [1, 3, {height}, {width}]")
    default_opset = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not default_opset or default_opset[0] < opset:
        raise RuntimeError(f"{path}: opset {default_opset} is below the requested {opset}")


def _onnx_parity(path: Path, module: Any, inputs: Sequence[np.ndarray], names: Sequence[str],
                 tolerance: float) -> dict[str, float]:
    """Run ``path`` in ONNX Runtime and ``module`` in torch on ``inputs``; max |diff| per output name.

    Raises RuntimeError when an output differs by more than ``tolerance`` x its max |value|.
    """
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), inputs)})
    with torch.no_grad():
        want = module(*[torch.from_numpy(x) for x in inputs])
    want = want if isinstance(want, tuple) else (want,)
    diffs = {}
    for name, a, b in zip(names, got, want):
        b = b.numpy()
        if a.shape != b.shape:
            raise RuntimeError(f"{path}: output {name} has shape {a.shape} in ONNX Runtime, {b.shape} in torch")
        diffs[name] = diff = float(np.max(np.abs(a - b)))
        scale = max(float(np.max(np.abs(b))), 1e-6)
        if diff > tolerance * scale:
            raise RuntimeError(f"{path}: ONNX Runtime output {name} differs from torch by {diff:.3g} "
                               f"(> {tolerance:g} x max |value| {scale:.3g})")
    return diffs


def _export_one(module: Any, args: tuple, path: Path, inputs: Sequence[str], outputs: Sequence[str],
                opset: int) -> None:
    import torch

    with warnings.catch_warnings(), atomic_write(path) as handle:
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(module, args, handle, input_names=list(inputs), output_names=list(outputs),
                          opset_version=opset, dynamo=False, do_constant_folding=True)


def export_runtime_onnx(depth: Any, pose: Any, mask: Any, out_dir: str | os.PathLike, height: int, width: int, *,
                        opset: int = 17, verify: bool = True, parity_tolerance: float = 1e-4
                        ) -> tuple[dict[str, Path], dict[str, float]]:
    """Export runtime-signature networks (``models.runtime_modules``: depth, pose, mask or None; CPU, eval mode)
    to ``out_dir``/depth.onnx, pose.onnx [, mask.onnx] at batch 1 x 3 x ``height`` x ``width``.

    Each file is written atomically, passes ``onnx.checker`` and the I/O check, and with ``verify`` is compared
    with torch in ONNX Runtime on random input (relative ``parity_tolerance``; RuntimeError beyond it). Returns
    (file name -> path, "file:output" -> max |onnx - torch|). Used by :func:`export_bundle` and by online
    adaptation's background export (``runtime.online_swap``).
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    image_a = rng.random((1, 3, height, width), dtype=np.float32)
    image_b = np.clip(image_a + 0.05 * rng.standard_normal((1, 3, height, width)).astype(np.float32), 0, 1)
    jobs: list[tuple[str, Any, tuple[np.ndarray, ...]]] = [("depth.onnx", depth, (image_a,)),
                                                          ("pose.onnx", pose, (image_b, image_a))]
    if mask is not None:
        jobs.append(("mask.onnx", mask, (image_b, image_a)))
    files: dict[str, Path] = {}
    parity: dict[str, float] = {}
    with torch.no_grad():
        for file_name, module, inputs in jobs:
            in_names, out_names = ONNX_FILES[file_name]
            path = out / file_name
            started = time.perf_counter()
            _export_one(module, tuple(torch.from_numpy(x) for x in inputs), path, in_names, out_names, opset)
            _check_onnx(path, in_names, out_names, opset, height, width)
            files[file_name] = path
            if verify:
                diffs = _onnx_parity(path, module, inputs, out_names, parity_tolerance)
                parity.update({f"{file_name}:{name}": diff for name, diff in diffs.items()})
            log.info("exported %s in %.1f s", path, time.perf_counter() - started)
    return files, parity


# ------------------------------------------------------------------------------------------ engines
def _build_engines(onnx_files: Mapping[str, Path], precision: str, calibration_images: np.ndarray | None,
                   cache_dir: str | os.PathLike | None) -> dict[str, Path]:
    """Build (or find in the cache) one engine per ONNX file; TensorRTUnavailable / EngineBuildError."""
    if importlib.util.find_spec("tensorrt") is None:
        raise TensorRTUnavailable("TensorRT is not installed (python module 'tensorrt' not found)")
    try:
        importlib.import_module("tensorrt")  # a wheel whose native libraries are missing fails here
        from .tensorrt_engine import EngineCacheError, build_engine
    except ImportError as exc:
        raise TensorRTUnavailable(f"the TensorRT engine builder is unavailable: {exc}") from exc
    engines = {}
    for name, path in onnx_files.items():
        try:
            _, engine_path = build_engine(path, precision=precision, calibration_images=calibration_images,
                                          cache_dir=cache_dir)
        except (RuntimeError, EngineCacheError, AttributeError) as exc:
            raise EngineBuildError(f"TensorRT {precision} engine for {name}: {exc}") from exc
        engines[name] = Path(engine_path)
        log.info("TensorRT %s engine for %s: %s", precision, name, engine_path)
    return engines


# ------------------------------------------------------------------------------------------ main API
def export_bundle(bundle: Any, model_config: Mapping[str, Any], out_dir: str | os.PathLike,
                  height: int | None = None, width: int | None = None, *, opset: int = 17,
                  train_config: Mapping[str, Any] | None = None, intrinsics_normalized: Any = None,
                  checkpoint_extra: Mapping[str, Any] | None = None, scale_convention: str | None = None,
                  git_commit: str | None = None, metrics: Mapping[str, Any] | None = None, verify: bool = True,
                  parity_tolerance: float = 1e-4, engine: bool = False, fp16: bool = False, int8: bool = False,
                  calibration_images: np.ndarray | None = None,
                  engine_cache_dir: str | os.PathLike | None = None, weights: bool = True,
                  depth_flip_average: bool | None = None) -> ExportResult:
    """Export a ModelBundle to ``out_dir`` (see the module docstring) and return what was written.

    height / width default to model_config's (multiples of 32, >= 64). The intrinsics come from
    ``intrinsics_normalized`` or the training config (:func:`resolve_intrinsics`); an export without
    known intrinsics writes ``intrinsics_normalized: null`` with a warning (the runtime then needs a CameraInfo).
    ``verify`` compares ONNX Runtime with torch (relative tolerance ``parity_tolerance``; a larger
    difference raises RuntimeError). Engines are built when ``engine`` / ``fp16`` / ``int8``: a
    missing TensorRT is recorded in ``ExportResult.engine_error`` (the ONNX export stands).
    ``weights`` also writes the networks' PyTorch weights (``weights.safetensors``, listed in the card) so the
    exported model can be fine-tuned (``model.init_weights=out_dir``).
    ``depth_flip_average`` (None: model_config's) bakes the depth net's test-time flip into depth.onnx and records
    it in the card's / weights' model_config, so every backend of the model runs the same inference.
    """
    from ..models.bundle import ModelBundle, validate_model_config
    from ..models.checkpoint import git_commit as current_git_commit
    from ..models.checkpoint import plain_data
    from ..models.runtime_wrappers import runtime_modules

    if not isinstance(bundle, ModelBundle):
        raise TypeError(f"bundle must be a ModelBundle, got {type(bundle).__name__}")
    cfg = validate_model_config(model_config)
    if depth_flip_average is not None:
        if not isinstance(depth_flip_average, bool):
            raise ValueError(f"depth_flip_average must be true, false or None, got {depth_flip_average!r}")
        cfg["depth_flip_average"] = depth_flip_average
    height = cfg["height"] if height is None else height
    width = cfg["width"] if width is None else width
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 64 or value % 32:
            raise ValueError(f"{name} must be a multiple of 32 and >= 64, got {value!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 17:
        raise ValueError(f"opset must be an integer >= 17, got {opset!r}")
    if int8 and calibration_images is None:
        raise ValueError("int8 needs calibration_images (N, 3, H, W) float32 frames (see load_calibration_images)")
    train_cfg = plain_data(dict(train_config or {}), "train_config")
    intrinsics = resolve_intrinsics(intrinsics_normalized, train_cfg, checkpoint_extra)
    if intrinsics is None:
        log.warning("%s: %s", out_dir, MISSING_INTRINSICS)
    if scale_convention is None:
        scale_convention = str(train_cfg.get("scale_convention", "relative"))
    if scale_convention not in SCALE_CONVENTIONS:
        raise ValueError(f"scale_convention must be one of {list(SCALE_CONVENTIONS)}, got {scale_convention!r}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_CARD_NAME).unlink(missing_ok=True)  # the card is the commit marker: written last
    if any(p.device.type != "cpu" for p in bundle.parameters()):
        bundle = copy.deepcopy(bundle).cpu()  # export on the CPU; the caller's (GPU) bundle is left untouched
    was_training, was_flip_average = bundle.training, bundle.depth.flip_average
    bundle.depth.flip_average = cfg["depth_flip_average"]  # the exported inference rule; restored below
    modules = runtime_modules(bundle)  # puts the networks in eval mode; restored below
    if modules.mask is None and (out / "mask.onnx").exists():
        (out / "mask.onnx").unlink()  # a stale mask from an earlier export would not match this model
    try:
        files, parity = export_runtime_onnx(modules.depth, modules.pose, modules.mask, out, height, width,
                                            opset=opset, verify=verify, parity_tolerance=parity_tolerance)
    finally:
        bundle.train(was_training)
        bundle.depth.flip_average = was_flip_average
    card_files = {name: sha256_file(path) for name, path in files.items()}
    if weights:
        from ..models.weights_file import WEIGHTS_FILE, save_bundle_weights

        card_files[WEIGHTS_FILE] = sha256_file(save_bundle_weights(bundle, cfg, out / WEIGHTS_FILE))
    elif (out / "weights.safetensors").exists():
        (out / "weights.safetensors").unlink()  # stale weights of an earlier export would not match

    card = ModelCard(
        input_height=height, input_width=width, min_depth=cfg["min_depth"], max_depth=cfg["max_depth"],
        encoder=cfg["encoder"], pose_encoder=cfg["pose_encoder"],
        files=card_files,
        scale_convention=scale_convention, intrinsics_normalized=intrinsics, opset=opset, precision="fp32",
        export_time=utc_now_iso(), git_commit=git_commit if git_commit is not None else current_git_commit(),
        parameter_counts=bundle.parameter_counts(), model_config=cfg, training_config=train_cfg,
        metrics=plain_data(dict(metrics or {}), "metrics"))
    card_path = write_model_card(card, out)
    result = ExportResult(out, files, card_path, card, parity)

    if engine or fp16 or int8:
        precision = "int8" if int8 else "fp16" if fp16 else "fp32"
        try:
            result.engines = _build_engines(files, precision, calibration_images, engine_cache_dir)
        except TensorRTUnavailable as exc:
            result.engine_error = (f"ONNX files and the model card were written to {out}, but no TensorRT engine "
                                   f"was built because TensorRT is not installed here ({exc}). Build engines on "
                                   f"the target (Jetson / GPU) machine; the runtime builds and caches them on "
                                   f"first start.")
    return result


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, height: int | None = None,
                      width: int | None = None, **kwargs: Any) -> ExportResult:
    """:func:`export_bundle` for a checkpoint file (model/train config, git commit from the checkpoint), or for an
    exported model directory / its ``weights.safetensors`` (:func:`export_model_weights`)."""
    from ..models.checkpoint import bundle_from_checkpoint_data, load_checkpoint

    if Path(checkpoint).is_dir() or Path(checkpoint).suffix == ".safetensors":
        return export_model_weights(checkpoint, out_dir, height, width, **kwargs)
    data = load_checkpoint(checkpoint)
    bundle, model_config = bundle_from_checkpoint_data(data, source=str(checkpoint))
    kwargs.setdefault("git_commit", data.get("git_commit"))
    kwargs.setdefault("checkpoint_extra", data.get("extra"))
    extra = data.get("extra") or {}
    if isinstance(extra, Mapping) and isinstance(extra.get("metrics"), Mapping):
        kwargs.setdefault("metrics", extra["metrics"])
    return export_bundle(bundle, model_config, out_dir, height, width, train_config=data.get("train_config"),
                         **kwargs)


def export_model_weights(model: str | os.PathLike, out_dir: str | os.PathLike, height: int | None = None,
                         width: int | None = None, **kwargs: Any) -> ExportResult:
    """Re-export an exported model (its directory, or the ``weights.safetensors`` in one) from its PyTorch weights,
    e.g. with another ``depth_flip_average``, input size or TensorRT precision. The weights file is FP16-rounded,
    so the new ONNX files differ from the old ones by that rounding; training config, intrinsics, scale convention
    and commit come from the source card; its metrics do not (they belong to the old export) except the
    training record."""
    from ..models.weights_file import bundle_from_weights, weights_path_of
    from .model_card import read_model_card

    weights = weights_path_of(model)
    if not weights.is_file():
        raise FileNotFoundError(f"no weights.safetensors at {weights} (re-export needs the model's PyTorch weights)")
    card = read_model_card(weights.parent) if (weights.parent / MODEL_CARD_NAME).is_file() else None
    bundle, model_config = bundle_from_weights(weights)
    if card is not None:
        if kwargs.get("intrinsics_normalized") is None:  # the CLI passes None when --intrinsics is not given
            kwargs["intrinsics_normalized"] = card.intrinsics_normalized
        kwargs.setdefault("scale_convention", card.scale_convention)
        kwargs.setdefault("git_commit", card.git_commit)
        kwargs.setdefault("metrics", {"re_exported_from": str(weights.parent),
                                      **({"training": card.metrics["training"]} if "training" in card.metrics
                                         else {})})
    return export_bundle(bundle, model_config, out_dir, height, width,
                         train_config=card.training_config if card is not None else None, **kwargs)


# ------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="checkpoint written by training (.pt), or an exported model directory (re-exported "
                             "from its weights.safetensors)")
    parser.add_argument("--out", required=True, help="output model directory")
    parser.add_argument("--height", type=int, default=None, help="input height (default: the training size)")
    parser.add_argument("--width", type=int, default=None, help="input width (default: the training size)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    parser.add_argument("--intrinsics", default=None, metavar="FX,FY,CX,CY",
                        help="normalised intrinsics fx/W,fy/H,cx/W,cy/H of the training data (default: from the "
                             "checkpoint's training config)")
    parser.add_argument("--depth-flip-average", action=argparse.BooleanOptionalAction, default=None,
                        help="bake the depth test-time flip into depth.onnx (the mean of the image's and the mirror "
                             "image's disparity; 2x the depth net's cost) or not; default: the checkpoint's "
                             "model.depth_flip_average")
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs torch parity check")
    parser.add_argument("--engine", action="store_true", help="also build TensorRT engines (fails without TensorRT)")
    parser.add_argument("--fp16", action="store_true",
                        help="build FP16 TensorRT engines (if TensorRT is installed; on TensorRT 11+ from an FP16 "
                             "copy of the ONNX graph)")
    parser.add_argument("--int8", action="store_true",
                        help="build INT8 TensorRT engines (needs --calib; on TensorRT 11+ from a Q/DQ copy of the "
                             "ONNX graph calibrated with onnxruntime.quantization)")
    parser.add_argument("--calib", default=None, metavar="FRAMES_DIR_OR_BAG",
                        help="INT8 calibration frames: a folder of images or a rosbag2 directory")
    parser.add_argument("--calib-topic", default=None, help="image topic in the --calib bag (default: the first)")
    parser.add_argument("--calib-frames", type=int, default=64, help="number of calibration frames")
    parser.add_argument("--engine-cache", default=None, help="TensorRT engine cache dir (default: ~/.cache/...)")


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import CheckpointError

    if args.int8 and not args.calib:
        print("depth-sfm export: --int8 needs --calib FRAMES_DIR_OR_BAG", file=sys.stderr)
        return 2
    calibration = None
    try:
        if args.int8:
            from ..models.checkpoint import load_checkpoint
            from ..models.weights_file import load_bundle_weights

            source = Path(args.checkpoint)
            cfg = (load_bundle_weights(source)[1] if source.is_dir() or source.suffix == ".safetensors"
                   else load_checkpoint(source)["model_config"])
            calibration = load_calibration_images(args.calib, args.height or cfg["height"], args.width or cfg["width"],
                                                  max_images=args.calib_frames, topic=args.calib_topic)
        result = export_checkpoint(args.checkpoint, args.out, args.height, args.width, opset=args.opset,
                                   intrinsics_normalized=args.intrinsics, verify=not args.no_verify,
                                   engine=args.engine, fp16=args.fp16, int8=args.int8,
                                   calibration_images=calibration, engine_cache_dir=args.engine_cache,
                                   depth_flip_average=args.depth_flip_average)
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        print(f"depth-sfm export: {exc}", file=sys.stderr)
        return 2
    except EngineBuildError as exc:
        print(f"depth-sfm export: the ONNX files and {MODEL_CARD_NAME} were written to {args.out}, but the engine "
              f"build failed: {exc}", file=sys.stderr)
        return 1
    print(f"exported {', '.join(sorted(result.onnx_files))} and {MODEL_CARD_NAME} to {result.out_dir} "
          f"({result.card.input_width}x{result.card.input_height}, opset {result.card.opset})")
    for name, diff in sorted(result.parity.items()):
        print(f"  parity {name}: max |onnxruntime - torch| = {diff:.2e}")
    if result.card.intrinsics_normalized is None:
        print(f"warning: {MISSING_INTRINSICS}", file=sys.stderr)
    for name, path in sorted(result.engines.items()):
        print(f"  TensorRT engine for {name}: {path}")
    if result.engine_error:
        print(result.engine_error, file=sys.stderr)
        return 1 if args.engine else 0
    return 0
