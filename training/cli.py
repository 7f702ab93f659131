"""``depth-sfm train --config FILE [key.sub=value ...] [--resume CKPT] [--out DIR]``.

Examples::

    depth-sfm train --config training/configs/synthetic_default_model.yaml --out runs/synth
    depth-sfm train --config kitti_eigen.yaml optim.lr=2e-4 train.batch_size=8
    depth-sfm train --config kitti_eigen.yaml --resume runs/kitti/checkpoints/last.pt --out runs/kitti
    torchrun --nproc_per_node=4 -m depth_sfm_ros.cli train --config kitti_eigen.yaml --out runs/kitti4

``--config`` takes a path or the name of a shipped config (``kitti_eigen`` or ``kitti_eigen.yaml``).
``--print-config`` prints the merged, validated config and exits.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="experiment YAML (path, or the name of a file in depth_sfm_training/configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="config overrides, values typed as YAML (e.g. optim.lr=2e-4 data.frame_offsets=[0,-1,1])")
    parser.add_argument("--resume", default=None, help="checkpoint to continue from (weights, optimiser, step)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/<experiment>)")
    parser.add_argument("--print-config", action="store_true", help="print the merged config and exit")


def resolve_config_path(name: str) -> Path:
    """A path as given, or a shipped config by name (with or without ``.yaml``)."""
    from depth_sfm_training.config import CONFIG_DIR, ConfigError

    path = Path(name)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config {name!r} not found (not a file, and not one of the shipped configs: {shipped})")


def run(args: argparse.Namespace) -> int:
    from depth_sfm_training.config import ConfigError, dump_config, load_config

    try:
        config = load_config(resolve_config_path(args.config), args.overrides)
    except ConfigError as exc:
        print(f"depth-sfm train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(dump_config(config), end="")
        return 0
    if args.resume is not None and not Path(args.resume).is_file():
        print(f"depth-sfm train: --resume {args.resume}: no such file", file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else Path("runs") / config["experiment"]

    from depth_sfm_training.distributed import cleanup_distributed
    from depth_sfm_training.trainer import Trainer

    try:
        try:
            trainer = Trainer(config, out_dir, resume=args.resume)
        except ConfigError as exc:  # found while building (e.g. depth_prior.checkpoint missing for normal losses)
            print(f"depth-sfm train: {exc}", file=sys.stderr)
            return 2
        result = trainer.fit()
    finally:
        cleanup_distributed()
    if trainer.is_main:
        abs_rel = result.val_metrics.get("all", {}).get("abs_rel") if result.val_metrics else None
        print(f"trained {result.step} steps; last loss {result.losses[-1] if result.losses else float('nan'):.4f}"
              + (f"; val abs_rel {abs_rel:.3f}" if abs_rel is not None else "")
              + f"; checkpoint {result.last_checkpoint}; logs {out_dir}")
    return 0
