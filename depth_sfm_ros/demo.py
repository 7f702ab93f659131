"""``depth-sfm demo``: from nothing to numbers and pictures in one command, no ROS needed.

1. renders a held-out synthetic drive (a seed the default model never saw) into an mcap rosbag2,
2. runs ``eval-bag`` on it with the bundled default model (the same Pipeline the ROS node runs),
3. writes the report (markdown + HTML + pictures) and an output bag for rviz / Foxglove,
4. prints the metrics table and where everything is.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from .runtime.model_dir import DEFAULT_MODEL_DIR

LOG = logging.getLogger("depth_sfm.demo")
MARKER = ".depth_sfm_demo"  # marks an output folder the demo made, so a rerun may replace it
HELD_OUT_SEED = 2026        # training of the default model uses other seeds (see its model card)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--model", default=None, help=f"exported model dir (default: the bundled {DEFAULT_MODEL_DIR})")
    parser.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime", "torch"])
    parser.add_argument("--frames", type=int, default=100, help="frames of the held-out drive (default 100)")
    parser.add_argument("--width", type=int, default=640, help="camera image width (default 640)")
    parser.add_argument("--height", type=int, default=192, help="camera image height (default 192)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help=f"scene seed (default {HELD_OUT_SEED}, held out)")
    parser.add_argument("--scale-mode", default=None, choices=["none", "fixed", "camera_height", "external"],
                        help="metric scale recovery (default: the node's default)")
    parser.add_argument("--no-bag", action="store_true", help="do not write the output bag")


def _prepare_out_dir(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise ValueError(f"{out} exists, is not empty and was not made by the demo; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by depth-sfm demo; a rerun replaces this folder\n")


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def metrics_table(metrics: dict) -> str:
    """The headline numbers of an eval-bag metrics dict as a plain-text table."""
    depth = metrics.get("depth") or {}
    regions = depth.get("regions") or {}
    rows = [("depth", "all", depth)] + [("depth", name, regions.get(name) or {}) for name in ("static", "dynamic")]
    lines = [f"{'':<8}{'region':<9}{'abs_rel':>9}{'sq_rel':>9}{'rmse':>9}{'rmse_log':>9}{'a1':>8}{'a2':>8}{'a3':>8}"]
    for kind, name, m in rows:
        if not m:
            continue
        lines.append(f"{kind:<8}{name:<9}" + "".join(f"{_fmt(m.get(k)):>{w}}" for k, w in
                                                     [("abs_rel", 9), ("sq_rel", 9), ("rmse", 9), ("rmse_log", 9),
                                                      ("a1", 8), ("a2", 8), ("a3", 8)]))
    odo, mask, speed, scale = (metrics.get(k) or {} for k in ("odometry", "mask", "speed", "scale"))
    if odo:
        lines.append(f"odometry ATE {_fmt(odo.get('ate_m'))} m, RPE {_fmt(odo.get('rpe_trans_m'))} m / "
                     f"{_fmt(odo.get('rpe_rot_deg'))} deg ({odo.get('alignment', '?')} alignment)")
    if mask:
        lines.append(f"mask     IoU {_fmt(mask.get('iou'))}, precision {_fmt(mask.get('precision'))}, "
                     f"recall {_fmt(mask.get('recall'))}")
    if scale:
        lines.append(f"scale    mode {scale.get('mode')}, median ratio to GT {_fmt(scale.get('median_ratio_to_gt'))}")
    if speed:
        lines.append(f"speed    {_fmt(speed.get('fps'))} frames/s, latency p50 {_fmt(speed.get('latency_ms_p50'))} ms, "
                     f"p99 {_fmt(speed.get('latency_ms_p99'))} ms")
    return "\n".join(lines)


def run_demo(out: Path, model: str | None = None, backend: str = "auto", frames: int = 100, width: int = 640,
             height: int = 192, seed: int = HELD_OUT_SEED, scale_mode: str | None = None,
             write_bag: bool = True, progress: bool = True) -> dict:
    """Render the held-out drive into ``out/drive_bag`` and evaluate it into ``out/eval``; returns the metrics."""
    from .bag.eval_bag import evaluate_bag
    from .synth import SynthConfig, SyntheticScene, iter_frames, write_rosbag

    if frames < 3:
        raise ValueError(f"--frames must be at least 3, got {frames}")
    _prepare_out_dir(out)
    config = SynthConfig(seed=seed, width=width, height=height, num_frames=frames)
    started = time.perf_counter()
    LOG.info("rendering a held-out synthetic drive: %d frames at %dx%d, seed %d", frames, width, height, seed)
    intrinsics = SyntheticScene(config).intrinsics
    write_rosbag(iter_frames(config), intrinsics, out / "drive_bag", storage="mcap")
    LOG.info("wrote %s in %.1f s", out / "drive_bag", time.perf_counter() - started)
    return evaluate_bag(out / "drive_bag", out / "eval", model=model, backend=backend, scale_mode=scale_mode,
                        write_bag=write_bag, report=True, progress=progress)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        metrics = run_demo(out, model=args.model, backend=args.backend, frames=args.frames, width=args.width,
                           height=args.height, seed=args.seed, scale_mode=args.scale_mode,
                           write_bag=not args.no_bag, progress=sys.stderr.isatty())
    except ValueError as exc:
        print(f"depth-sfm demo: {exc}", file=sys.stderr)
        return 2
    eval_dir = out / "eval"
    print()
    print(f"depth_sfm_ros demo: {metrics.get('frames')} frames of a held-out synthetic drive, model "
          f"{metrics.get('source', {}).get('model', args.model or DEFAULT_MODEL_DIR)}")
    print(metrics_table(metrics))
    print()
    print(f"input bag      {out / 'drive_bag'}")
    print(f"metrics        {eval_dir / 'metrics.json'}")
    print(f"report         {eval_dir / 'report.md'}  (and report.html, with pictures)")
    if not args.no_bag:
        print(f"output bag     {eval_dir / 'output_bag'}  (ros2 bag play it and open config/depth_sfm.rviz)")
    for note in metrics.get("notes") or []:
        print(f"note: {note}")
    LOG.debug("metrics: %s", json.dumps(metrics)[:2000])
    return 0
