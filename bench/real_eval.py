"""Real-camera benchmark: the bundled model (or ``--model``) on every real sequence available.

What it measures is in :mod:`depth_sfm_training.real_benchmark` (depth vs a median-scaled constant and
the per-row median on the same frames, ATE / path-length ratio, still-camera drift, dynamic pixels on a
static scene, DAVIS mask IoU), per sequence and for the held-out frames no training run has seen.
Prints a table, then one JSON line; ``--out DIR`` also writes ``real_eval_<stamp>.md`` and ``.json``.
``--adapt-minutes M`` (or ``--adapt-steps N``) also runs ``depth-sfm adapt`` from the same model on each
sequence's unseen frames (7-Scenes 300-399; with ``--dataset`` all frames) and adds the start and adapted
models' scores on the adaptation's held-out frames (docs/adapt.md).

    python bench/real_eval.py                                       # bundled model, onnxruntime
    python bench/real_eval.py --model runs/x/checkpoints/last.pt    # a checkpoint (exported first)
    python bench/real_eval.py --model last.pt --depth-flip-average  # ... exported with the test-time flip
    python bench/real_eval.py --dataset tum_rgbd --path ~/data/rgbd_dataset_freiburg1_desk --depth-range 0.1 10
    python bench/real_eval.py --threads 1 --adapt-minutes 7 --out bench/results   # + before / after adapt
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR
import yaml

from depth_sfm_training.real_benchmark import (DEFAULT_REAL_ROOT, AdaptBench, clean, evaluate, evaluate_dataset,
                                               example_strip, markdown)


def _budget(adapt: AdaptBench) -> str:
    parts = ([f"{adapt.minutes:g} min"] if adapt.minutes is not None else []) + \
        ([f"{adapt.steps} steps"] if adapt.steps is not None else [])
    return " / ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                        help="exported model dir, or a training checkpoint (.pt, exported to ONNX first); "
                             "default: the bundled model")
    parser.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch"))
    parser.add_argument("--depth-flip-average", action=argparse.BooleanOptionalAction, default=None,
                        help="with a checkpoint --model: export it with (or without) the depth test-time flip "
                             "(default: the checkpoint's model.depth_flip_average)")
    parser.add_argument("--real-root", type=Path, default=DEFAULT_REAL_ROOT,
                        help="folder with the real sequences (default ../shared/real)")
    parser.add_argument("--dataset", default=None,
                        help="instead of the development sequences: any dataset type (seven_scenes, tum_rgbd, euroc, "
                             "kitti_odom, kitti_raw, ...; see docs/real_data.md) at --path")
    parser.add_argument("--path", type=Path, default=None, help="the dataset's folder (with --dataset)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra dataset option (YAML value), e.g. frames=[0,300] or sequences=[09]")
    parser.add_argument("--depth-range", type=float, nargs=2, default=(0.1, 80.0), metavar=("MIN_M", "MAX_M"),
                        help="GT depth range scored with --dataset (indoor: 0.1 10)")
    parser.add_argument("--camera-height", type=float, default=None,
                        help="with --dataset: the camera's height above the ground in m, to score the node's "
                             "camera_height metric scale (else the depth's median scale is used)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-frames", type=int, default=None, help="at most this many frames per part (smoke runs)")
    parser.add_argument("--machine", default=None, help="free text describing the machine, copied into the report")
    parser.add_argument("--out", type=Path, default=None, help="also write real_eval_<stamp>.md / .json here")
    parser.add_argument("--pictures", type=Path, default=None,
                        help="also write a PNG strip of example frames: image | depth | GT depth | mask")
    parser.add_argument("--adapt-minutes", type=float, default=None,
                        help="also adapt the model (depth-sfm adapt, this time budget) on each sequence's unseen "
                             "frames with GT depth and score it before / after on adapt's held-out frames "
                             "(--max-frames does not shorten this)")
    parser.add_argument("--adapt-steps", type=int, default=None,
                        help="the same with a step budget (smoke tests); with --adapt-minutes, whichever ends first")
    parser.add_argument("--adapt-replay", default="synthetic",
                        help="adapt's --replay: synthetic (default, adapt's own default), none, a dataset YAML or "
                             "a folder")
    args = parser.parse_args(argv)
    logging.getLogger("depth_sfm_ros.runtime.pipeline").setLevel(logging.ERROR)  # the resets are deliberate
    if args.dataset is None and not args.real_root.is_dir():
        print(f"real sequences not found at {args.real_root} (see ../shared/real/README.md or docs/real_data.md)",
              file=sys.stderr)
        return 2
    adapt = None
    if args.adapt_minutes is not None or args.adapt_steps is not None:
        if args.adapt_minutes is not None and not args.adapt_minutes > 0:
            parser.error("--adapt-minutes must be > 0")
        if args.adapt_steps is not None and args.adapt_steps < 1:
            parser.error("--adapt-steps must be >= 1")
        adapt = AdaptBench(minutes=args.adapt_minutes, steps=args.adapt_steps, replay=args.adapt_replay)
    model = args.model
    with tempfile.TemporaryDirectory() as tmp:
        if Path(model).is_file():  # a training checkpoint: export it first, as a user would
            from depth_sfm_ros.runtime.export import export_checkpoint

            # adapt fine-tunes the exported weights.safetensors, so write them when adapting
            export_checkpoint(model, Path(tmp) / "model", weights=adapt is not None,
                              depth_flip_average=args.depth_flip_average)
            model = str(Path(tmp) / "model")
        if args.dataset is not None:
            if args.path is None:
                parser.error("--dataset needs --path")
            dataset = {"type": args.dataset, "data_path": str(args.path)}
            for option in args.option:
                key, sep, value = option.partition("=")
                if not sep:
                    parser.error(f"--option must be KEY=VALUE, got {option!r}")
                dataset[key] = yaml.safe_load(value)
            report = clean(evaluate_dataset(model, args.backend, dataset, args.threads, args.max_frames,
                                            tuple(args.depth_range), args.camera_height, adapt=adapt))
        else:
            report = clean(evaluate(model, args.backend, args.real_root, args.threads, args.max_frames, adapt))
        if args.pictures is not None:
            example_strip(model, args.real_root, args.pictures, args.backend)
    report["model"] = args.model
    if adapt is not None:
        report["adapt"] = {"minutes": adapt.minutes, "steps": adapt.steps, "replay": adapt.replay}
    report["machine"] = args.machine or f"{platform.machine()} {platform.processor() or ''}".strip()
    report["stamp"] = time.strftime("%Y%m%dT%H%MZ", time.gmtime())
    table = markdown(report)
    print(table)
    print(json.dumps(report, allow_nan=False, sort_keys=True))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        command = shlex.join(sys.argv[1:] if argv is None else argv)
        adapt_line = "" if adapt is None else (
            f"adapt: `depth-sfm adapt` from the same model, budget {_budget(adapt)}, replay {adapt.replay}, "
            f"{args.threads} torch thread(s); command: `python bench/real_eval.py {command}`\n\n")
        (args.out / f"real_eval_{report['stamp']}.md").write_text(
            f"# real_eval {report['stamp']}\n\nmodel: `{args.model}` ({args.backend}); machine: {report['machine']}\n\n"
            f"{adapt_line}{table}\n")
        (args.out / f"real_eval_{report['stamp']}.json").write_text(json.dumps(report, indent=1, allow_nan=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
