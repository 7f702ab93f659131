"""Online adaptation's cost on the inference path (issue 16: p50 latency may rise by at most 10 %).

Runs the node's Pipeline (torch backend) on a synthetic drive, frames paced like a camera (``--rate``), twice:
without adaptation, then with the online adapter attached (its worker thread training in the background, as
``adapt_online: true`` does in the node). Prints p50 / p90 of the Pipeline's total per-frame time in both
runs, their ratio, and the adapter's steps, rollbacks, swaps and held-out trend.

    python bench/bench_online_adapt.py --model MODEL_DIR [--frames 150] [--rate 10] [--threads 1] [--duty-cycle 0.2]

MODEL_DIR needs model_card.yaml + weights.safetensors (default: the bundled model). ROS-free.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _run(model: Path, frames, intrinsics, rate_hz: float, threads: int, adapt: bool, duty_cycle: float = 0.2) -> dict:
    from depth_sfm_ros.runtime.online_adapter import OnlineAdaptConfig, create_online_adapter
    from depth_sfm_ros.runtime.pipeline import Pipeline, PipelineConfig

    pipeline = Pipeline(PipelineConfig(model=str(model), backend="torch", device="cpu", threads=threads,
                                       scale_mode="none"))
    adapter = None
    if adapt:
        adapter = create_online_adapter(model, pipeline.backend, OnlineAdaptConfig(duty_cycle=duty_cycle))
        pipeline.frame_sink = adapter.frame_sink
        adapter.start()
    totals = []
    period = 1.0 / rate_hz
    next_t = time.monotonic()
    for frame in frames:
        result = pipeline.process(frame.image_rgb, "rgb8", frame.stamp_s, intrinsics)
        totals.append(result.timings_ms["total"])
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))
    status = None
    if adapter is not None:
        adapter.stop()
        status = adapter.status()
    pipeline.close()
    warm = np.asarray(totals[5:])  # the first frames include lazy initialisation
    return {"p50_ms": float(np.percentile(warm, 50)), "p90_ms": float(np.percentile(warm, 90)),
            "frames": len(totals), "adapter": status}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rate", type=float, default=10.0, help="camera rate, Hz")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (shared by inference and adaptation)")
    parser.add_argument("--duty-cycle", type=float, default=0.2, help="the adapter's duty_cycle (default as the node)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.model is None:
        from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR

        args.model = DEFAULT_MODEL_DIR
    if not (args.model / "weights.safetensors").is_file():
        parser.error(f"{args.model} has no weights.safetensors")
    from depth_sfm_ros.runtime.model_dir import read_model_card
    from depth_sfm_ros.synth import SynthConfig, render_sequence

    card = read_model_card(args.model)
    seq = render_sequence(SynthConfig(seed=5, width=2 * card.input_width, height=2 * card.input_height,
                                      num_frames=args.frames))
    frames = [seq[i] for i in range(len(seq))]
    base = _run(args.model, frames, seq.intrinsics, args.rate, args.threads, adapt=False)
    online = _run(args.model, frames, seq.intrinsics, args.rate, args.threads, adapt=True, duty_cycle=args.duty_cycle)
    ratio = online["p50_ms"] / base["p50_ms"]
    result = {"model": str(args.model), "rate_hz": args.rate, "threads": args.threads,
              "duty_cycle": args.duty_cycle, "baseline": base,
              "adapting": online, "p50_ratio": ratio}
    print(f"pipeline total per frame: baseline p50 {base['p50_ms']:.1f} ms (p90 {base['p90_ms']:.1f}), "
          f"adapting p50 {online['p50_ms']:.1f} ms (p90 {online['p90_ms']:.1f}): x{ratio:.2f} "
          f"({'within' if ratio <= 1.10 else 'OVER'} the +10 % target)")
    st = online["adapter"]
    print(f"adapter: {st['state']}, {st['steps']} steps, {st['accepted']} accepted, {st['rollbacks']} rolled back, "
          f"{st['swaps']} swaps, held-out change {st['heldout_change']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
