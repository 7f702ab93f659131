"""``depth-sfm pseudo-masks``: label-free dynamic-object masks for training, from the motion teacher.

Runs :mod:`depth_sfm_training.motion_teacher` over every frame of the sequences a dataset config describes (the
``data`` section of a training config, or one dataset / mixture) and writes one binary PNG per frame,
``<out>/<sequence name>/<frame id>.png`` (255 = moving), the layout the datasets' ``dynamic_mask_dir`` option
reads. No label is read: the teacher uses the images, the intrinsics and the inverse depth of a trained depth
network (``--depth-model``, default: the bundled model), which also stands in for seed 000's "depth prior".

    depth-sfm pseudo-masks --config training/configs/real_mixture.yaml --out data/teacher_masks
    depth-sfm pseudo-masks --config training/configs/real_mixture.yaml --out data/teacher_masks --every 1 --resume

Frames whose PNG exists are skipped with ``--resume`` (an interrupted run continues). Source frames are the
target's neighbours at ``--stride`` (both sides where they exist; one side at a sequence's ends).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .motion_teacher import TeacherConfig, motion_mask

log = logging.getLogger(__name__)

__all__ = ["TeacherDepth", "source_indices", "sequence_motion_mask", "write_pseudo_masks", "training_sequences",
           "add_arguments", "run"]


class TeacherDepth:
    """Inverse depth (up to scale) of an RGB image from a trained depth net (a model dir, its
    ``weights.safetensors`` or a training checkpoint), at the net's input size: ``__call__(rgb (H, W, 3) uint8)
    -> (h, w) float32 > 0``. Runs in PyTorch on the CPU with the net's own inference rule (``DepthNet.predict``)."""

    def __init__(self, model: str | Path, size: tuple[int, int] | None = None) -> None:
        import torch  # noqa: F401  (fail here, not at the first frame, if torch is missing)

        from .depth_prior import load_prior_depth_net
        from depth_sfm_ros.models.weights_file import load_bundle_weights, weights_path_of

        self.net, _, _ = load_prior_depth_net(model)
        if size is None:
            model = Path(model)
            if model.is_dir() or model.suffix == ".safetensors":
                config = load_bundle_weights(weights_path_of(model))[1]
            else:
                from depth_sfm_ros.models.checkpoint import load_checkpoint
                config = load_checkpoint(model)["model_config"]
            size = (int(config["height"]), int(config["width"]))
        self.size = size

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        import cv2
        import torch

        h, w = self.size
        x = torch.from_numpy(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None]
        with torch.no_grad():
            depth = self.net.to_depth(self.net.predict(x.float() / 255.0))
        return (1.0 / depth)[0, 0].numpy().astype(np.float32)


def source_indices(i: int, length: int, stride: int) -> list[int]:
    """The neighbours of frame i at ``stride`` that exist in a sequence of ``length`` frames (target excluded)."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return [j for j in (i - stride, i + stride) if 0 <= j < length]


def sequence_motion_mask(sequence, i: int, stride: int = 1,
                         inv_depth: Callable[[np.ndarray], np.ndarray] | None = None,
                         config: TeacherConfig = TeacherConfig()) -> np.ndarray:
    """(H, W) bool teacher mask of frame i of a :class:`~depth_sfm_training.datasets.base.FrameSequence` (its
    ``image_rgb`` size), from its neighbours at ``stride``; with ``inv_depth`` (e.g. a :class:`TeacherDepth`) the
    teacher's depth test is on. A one-frame sequence gives an empty mask (nothing to compare with)."""
    target = sequence.image_rgb(i)
    neighbours = source_indices(i, len(sequence), stride)
    if not neighbours:
        return np.zeros(target.shape[:2], bool)
    sources = [sequence.image_rgb(j) for j in neighbours]
    extra = {}
    if inv_depth is not None:
        extra = {"intrinsics": sequence.intrinsics(i), "inv_depth": inv_depth(target)}
    return motion_mask(target, sources, config, seed=i, **extra)


def _recording(seq) -> str:
    """Where a sequence's frames come from (a frame range: its recording's), to tell same-named recordings apart."""
    while hasattr(seq, "sequence"):  # FrameRange and other views
        seq = seq.sequence
    for attribute in ("root", "path"):
        if getattr(seq, attribute, None) is not None:
            return str(getattr(seq, attribute))
    images = getattr(seq, "images", None)
    return str(Path(images[0]).parent) if images else f"{type(seq).__name__}:{seq.name}"


def _check_unique_names(sequences: Sequence) -> None:
    seen: dict[str, str] = {}
    for seq in sequences:
        where = _recording(seq)
        if seen.setdefault(seq.name, where) != where:
            raise ValueError(f"two recordings are both named {seq.name!r} ({seen[seq.name]} and {where}): their masks "
                             f"would overwrite each other; write them to different --out folders")


def write_pseudo_masks(sequences: Sequence, out: str | Path, stride: int = 1,
                       inv_depth: Callable[[np.ndarray], np.ndarray] | None = None,
                       config: TeacherConfig = TeacherConfig(), resume: bool = False) -> dict[str, int]:
    """Write the teacher mask of every frame of ``sequences`` to ``out/<name>/<frame id>.png`` (uint8 0/255).
    Returns {sequence name: frames written}. Refuses an existing file unless ``resume`` (then it is kept)."""
    import cv2

    _check_unique_names(sequences)
    out = Path(out)
    written: dict[str, int] = {}
    done: set[Path] = set()
    for seq in sequences:
        folder = out / seq.name
        folder.mkdir(parents=True, exist_ok=True)
        written.setdefault(seq.name, 0)
        start = time.monotonic()
        for i in range(len(seq)):
            path = folder / f"{seq.frame_id(i)}.png"
            if path.exists():
                if resume or path in done:  # the same frames listed again (a mixture's strides)
                    continue
                raise FileExistsError(f"{path} exists (use --resume to keep existing masks, or another --out)")
            mask = sequence_motion_mask(seq, i, stride, inv_depth, config)
            tmp = path.with_suffix(".tmp.png")
            if not cv2.imwrite(str(tmp), mask.astype(np.uint8) * 255):
                raise OSError(f"could not write {tmp}")
            tmp.replace(path)
            done.add(path)
            written[seq.name] += 1
        log.info("%s: %d masks in %.0f s", seq.name, written[seq.name], time.monotonic() - start)
    return written


def training_sequences(config: dict) -> list:
    """The sequences of a training config's training set, as the trainer builds it (a mixture's components
    one by one; frame ranges kept, so held-out frames are never read)."""
    from .datasets import build_dataset
    from .trainer import dataset_config_from

    dataset = build_dataset(dataset_config_from(config, "train"))
    parts = getattr(dataset, "datasets", [dataset])
    return [seq for part in parts for seq in part.sequences]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config (its data section lists the sequences)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, as for train")
    parser.add_argument("--out", required=True, help="mask folder to write (the datasets' dynamic_mask_dir)")
    parser.add_argument("--depth-model", default=None,
                        help="trained depth net for the teacher's depth test (model dir, weights.safetensors or "
                             "checkpoint; default: the bundled model); 'none' = no depth test")
    parser.add_argument("--stride", type=int, default=1, help="source frames at +-stride (default 1)")
    parser.add_argument("--resume", action="store_true", help="keep masks that exist and write the rest")


def run(args: argparse.Namespace) -> int:
    from .cli import resolve_config_path
    from .config import ConfigError, load_config

    if args.stride < 1:
        print(f"depth-sfm pseudo-masks: --stride must be >= 1, got {args.stride}", file=sys.stderr)
        return 2
    try:
        config = load_config(resolve_config_path(args.config), args.overrides)
        sequences = training_sequences(config)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"depth-sfm pseudo-masks: {exc}", file=sys.stderr)
        return 2
    depth = None
    if (args.depth_model or "").lower() != "none":
        from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR
        depth = TeacherDepth(args.depth_model or DEFAULT_MODEL_DIR)
    written = write_pseudo_masks(sequences, args.out, args.stride, depth, resume=args.resume)
    print(f"wrote {sum(written.values())} masks for {len(written)} sequences to {args.out}")
    return 0
