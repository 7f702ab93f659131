"""``depth-sfm``: one command, one subcommand per job.

Each subcommand lives in its own module, imported only when it is used, so that
``depth-sfm --help`` and ``depth-sfm synth`` need neither torch nor ROS. A subcommand module
provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("depth_sfm_ros.synth.cli", "render a synthetic sequence with ground truth (KITTI folder + rosbag2); "
              "--randomize train|heldout for domain randomisation"),
    "train": ("depth_sfm_training.cli", "self-supervised training from a YAML config (torchrun for multi-GPU)"),
    "adapt": ("depth_sfm_training.adapt", "fine-tune a model on one unlabelled recording (bag or image folder) with "
              "a replay set, a time / step budget and a held-out before/after check; exports a model dir"),
    "average": ("depth_sfm_training.average", "average the weights of several checkpoints of one run (stochastic "
                "weight averaging after the fact)"),
    "pseudo-masks": ("depth_sfm_training.pseudo_masks", "label-free dynamic-object masks of a training set from the "
                     "motion teacher (flow the camera motion cannot explain), for data.*.dynamic_mask_dir"),
    "evaluate": ("depth_sfm_training.evaluate", "KITTI Eigen / Cityscapes / odometry / synthetic evaluation of a checkpoint"),
    "export": ("depth_sfm_ros.runtime.export", "export a checkpoint to ONNX (+ model card) and optionally TensorRT engines"),
    "eval-bag": ("depth_sfm_ros.bag.cli", "replay a rosbag through the pipeline and score it against ground truth"),
    "to-bag": ("depth_sfm_training.to_bag", "write a dataset sequence (7-Scenes, KITTI, TUM, EuRoC, DAVIS ...) as a rosbag2"),
    "demo": ("depth_sfm_ros.demo", "held-out synthetic drive -> eval-bag with the default model -> report"),
    "bench": ("depth_sfm_ros.bench_cli", "run the benchmarks in bench/"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="depth-sfm",
        description="Self-supervised monocular depth, ego-motion and dynamic masks: data, training, export, evaluation.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands:\n" + "\n".join(f"  {name:<10} {text}" for name, (_, text) in SUBCOMMANDS.items())
        + "\n\nRun 'depth-sfm SUBCOMMAND --help' for its options.",
    )
    parser.add_argument("subcommand", choices=sorted(SUBCOMMANDS), metavar="SUBCOMMAND")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    verbose = "-v" in argv or "--verbose" in argv
    argv = [a for a in argv if a not in ("-v", "--verbose")]
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    if argv[0] not in SUBCOMMANDS:
        top.parse_args(argv[:1])  # prints the usage error and exits 2
    name = argv[0]
    module_name, text = SUBCOMMANDS[name]
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"depth-sfm {name}: cannot load ({exc}). Install the extras it needs, e.g. "
              f"pip install -e '.[dev]'", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"depth-sfm {name}", description=text)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
