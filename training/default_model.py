"""Build the bundled default model: export a checkpoint and score it on the held-out demo drive.

    python -m depth_sfm_training.default_model --checkpoint runs/default/checkpoints/last.pt \
        --out depth_sfm_ros/data/default_model --data "synthetic seeds 11-18, 250 frames each" \
        --machine "2-core x86_64 CPU, no GPU"

The model card then carries, besides what ``depth-sfm export`` writes (ONNX files and
``weights.safetensors``), ``metrics.held_out``: the eval-bag metrics of the exact drive ``depth-sfm demo``
renders (seed 2026, 100 frames, 640x192), so the demo's printed numbers can be checked against the card;
``metrics.real``: :mod:`depth_sfm_training.real_benchmark` on every real sequence found under ``--real-root``
(``bench/real_eval.py``'s numbers, with the trivial baselines); and ``metrics.training`` (data, steps,
machine, the training run's last logged losses).
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import sys
import tempfile
from pathlib import Path

LOG = logging.getLogger("depth_sfm.default_model")


def _last_logged(run_dir: Path) -> dict:
    metrics_file = run_dir / "metrics.jsonl"
    if not metrics_file.is_file():
        return {}
    last_train, last_val = {}, {}
    for line in metrics_file.read_text().splitlines():
        record = json.loads(line)
        if "val" in record:
            last_val = {"step": record["step"], **{k: record["val"]["all"].get(k) for k in ("abs_rel", "a1")}}
        elif "total" in record:
            last_train = {k: record[k] for k in ("step", "total", "photometric") if k in record}
    return {"last_train_log": last_train, "last_validation_all": last_val}


def build_default_model(checkpoint: Path, out: Path, data: str, machine: str, frames: int = 100,
                        intrinsics_normalized: list[float] | None = None, real_root: Path | None = None,
                        depth_flip_average: bool | None = None) -> dict:
    from depth_sfm_ros.demo import HELD_OUT_SEED, run_demo
    from depth_sfm_ros.models import build_from_checkpoint, load_checkpoint
    from depth_sfm_ros.runtime.export import export_bundle

    ckpt = load_checkpoint(checkpoint)
    bundle, model_config = build_from_checkpoint(checkpoint)
    extra = ckpt.get("extra") or {}
    training = {"data": data, "steps": ckpt.get("step"), "machine": machine,
                "python": platform.python_version(), "checkpoint_git_commit": ckpt.get("git_commit"),
                **_last_logged(checkpoint.parent.parent)}

    def export(target: Path, metrics: dict) -> None:
        export_bundle(bundle, model_config, target, train_config=ckpt.get("train_config"), checkpoint_extra=extra,
                      intrinsics_normalized=intrinsics_normalized, git_commit=ckpt.get("git_commit"), metrics=metrics,
                      depth_flip_average=depth_flip_average)

    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model"
        export(staged, {"training": training})
        held_out = run_demo(Path(tmp) / "demo", model=str(staged), frames=frames, write_bag=False, progress=False)
        real = _real_metrics(staged, real_root, machine)
    summary = {"protocol": f"depth-sfm demo: synthetic drive seed {HELD_OUT_SEED}, {frames} frames, 640x192, "
                           "eval-bag with the node's defaults",
               **{k: held_out.get(k) for k in ("frames", "depth", "odometry", "mask", "scale")}}
    metrics = {"training": training, "held_out": summary}
    if real is not None:
        metrics["real"] = real
    if out.exists():
        shutil.rmtree(out)
    export(out, metrics)
    return {"held_out": summary, "real": real}


def _real_metrics(model_dir: Path, real_root: Path | None, machine: str) -> dict | None:
    """The real-camera benchmark of ``model_dir`` (None when no real sequences are found)."""
    from depth_sfm_training.real_benchmark import DEFAULT_REAL_ROOT, clean, evaluate

    root = real_root or DEFAULT_REAL_ROOT
    if not root.is_dir():
        LOG.warning("no real sequences at %s: the card gets no real-camera metrics", root)
        return None
    report = clean(evaluate(str(model_dir), "onnxruntime", root, threads=2, max_frames=None))
    report.pop("model", None)
    report["protocol"] = ("bench/real_eval.py: median-scaled abs_rel / a1 vs a median-scaled constant and the "
                          "per-row median of the training frames' GT; held-out = frames no training run used")
    report["machine"] = machine
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--data", required=True, help="what it was trained on (goes into the card)")
    parser.add_argument("--machine", required=True, help="where it was trained (goes into the card)")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--real-root", type=Path, default=None,
                        help="real sequences for the card's real-camera metrics (default ../shared/real)")
    parser.add_argument("--intrinsics", default=None,
                        help="fx/W,fy/H,cx/W,cy/H of the training camera when the checkpoint lacks them")
    parser.add_argument("--depth-flip-average", action=argparse.BooleanOptionalAction, default=None,
                        help="the depth test-time flip in the exported model (default: the checkpoint's setting)")
    args = parser.parse_args(argv)
    intrinsics = [float(v) for v in args.intrinsics.split(",")] if args.intrinsics else None
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = build_default_model(args.checkpoint, args.out, args.data, args.machine, args.frames, intrinsics,
                                  args.real_root, args.depth_flip_average)
    print(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
