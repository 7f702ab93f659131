"""Online adaptation's cost on the inference path (issue 16: p50 latency may rise by at most 10 %).

Runs the node's Pipeline (torch backend) on a synthetic drive, frames paced like a camera (``--rate``), twice:
without adaptation, then with the online adapter attached (its worker thread training in the background, as
``adapt_online: true`` does in the node). Prints p50 / p90 of the Pipeline's total per-frame time in both
runs, their ratio, and the adapter's steps, rollbacks, swaps and held-out trend.

    python bench/bench_online_adapt.py --model MODEL_DIR [--frames 150] [--rate 10] [--threads 1] [--duty-cycle 0.2]

MODEL_DIR needs model_card.yaml + weights.safetensors (default: the bundled model). ROS-free.

``--node``: the same question over real DDS, on depth_sfm_node in its own process (bench_node.py's
``NodeUnderTest``: started as the launch file starts it, this process plays the camera and times the depth):

    python bench/bench_online_adapt.py --node [--frames 100] [--warmup 30] [--repeats 4] [--rate 5] [--threads 1]

``--repeats`` pairs of blocks, alternating ``adapt_online: false`` / ``true`` (off, on, off, on ...: load changes
on the machine hit both sides), each block a freshly started node (torch backend, the adaptation parameters of
config/depth_sfm.yaml; ``--duty-cycle``, default the node's 0.2) fed ``--warmup`` frames of the synthetic drive
(they fill the adaptation buffer, which skips still frames: the drive moves) and then the measured ``--frames``,
at ``--rate`` Hz. Reported per block and per side: the end-to-end latency (image stamp, wall clock -> depth
received here), p50 / p99, and the node's own Pipeline stage time (``timing_ms.node_pipeline`` and
``timing_ms.infer`` of its /diagnostics, sampled every 0.2 s on both sides, one sample per newly processed frame);
for the 'on' blocks, the adaptation steps done during the measured frames (from its online adaptation status). A
run in which no step happened during the 'on' blocks measures nothing about adaptation and says so (exit status 1).
Prints a table and one JSON line (prefix ``RESULT``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIAGNOSTICS_PERIOD_S = 0.2  # --node: the node's /diagnostics period (both sides), i.e. how often stage times are sampled


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


# ------------------------------------------------------------------------------------------------ --node: over DDS
def _bench_node():
    """bench/bench_node.py, whose node-over-DDS machinery (NodeUnderTest, summarize, ...) this mode reuses."""
    if str(REPO / "bench") not in sys.path:
        sys.path.insert(0, str(REPO / "bench"))
    import bench_node

    return bench_node


def _adapting_node_class():
    bench_node = _bench_node()

    class AdaptingNode(bench_node.NodeUnderTest):
        """bench_node's node under test that also keeps, from /diagnostics, the stage times of each newly
        processed frame (the node reports its last frame's) and the latest online adaptation status."""

        def __init__(self, *args, **kwargs) -> None:
            self.stage_samples: list[dict[str, float]] = []  # before super().__init__: it starts spinning
            self.adapt_status: dict[str, str] = {}
            self._frames_processed = None
            super().__init__(*args, **kwargs)

        def _on_diagnostics(self, msg) -> None:
            super()._on_diagnostics(msg)
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                if status.name.endswith(": online adaptation"):
                    self.adapt_status = dict(values, level=str(int.from_bytes(status.level, "little")))
                elif status.name.endswith(": depth_sfm") and values.get("frames_processed") != self._frames_processed:
                    self._frames_processed = values.get("frames_processed")
                    self.stage_samples.append({k.split(".", 1)[1]: float(v) for k, v in values.items()
                                               if k.startswith("timing_ms.")})

        def adapt_counts(self) -> dict[str, int]:
            st = self.adapt_status
            return {k: int(st.get(f"adapt_{k}", 0)) for k in ("steps", "accepted", "rollbacks", "swaps")}

    return AdaptingNode


def _node_block(node_cls, adapt: bool, args, model: Path, frames, intrinsics) -> dict:
    """One block: a fresh node (adapt_online ``adapt``), ``args.warmup`` frames, then the measured ones."""
    overrides = ["backend:=torch", f"threads:={args.threads}", f"adapt_online:={str(adapt).lower()}",
                 f"adapt_duty_cycle:={args.duty_cycle}",
                 f"diagnostics_period_s:={DIAGNOSTICS_PERIOD_S}", "input_qos:=sensor_data"]
    bench_node = _bench_node()
    node = node_cls(model, overrides, intrinsics, args.domain_id, str(bench_node.DDS_PROFILE), False)
    try:
        node.measure(frames[:args.warmup], args.rate)  # model load, first inferences, the adaptation buffer
        time.sleep(2 * DIAGNOSTICS_PERIOD_S)
        before, first_sample = node.adapt_counts(), len(node.stage_samples)
        block = node.measure(frames[args.warmup:], args.rate)
        time.sleep(3 * DIAGNOSTICS_PERIOD_S)  # a status covering the last frames
        after = node.adapt_counts()
        block["stage_samples"] = node.stage_samples[first_sample:]
        block["adapt_during"] = {k: after[k] - before[k] for k in after} if adapt else None
        block["adapt_status"] = dict(node.adapt_status) if adapt else None
        block["node_log_errors"] = [line for line in node.log().splitlines() if "Traceback" in line or "ERROR" in line]
    finally:
        node.close()
    return block


def _stage_summary(samples: list[dict[str, float]]) -> dict:
    bench_node = _bench_node()
    out = {"samples": len(samples)}
    for key, name in (("node_pipeline", "pipeline"), ("infer", "infer")):
        pct = bench_node._percentiles([s[key] for s in samples if key in s])
        out.update({f"{name}_p50_ms": pct["p50_ms"], f"{name}_p99_ms": pct["p99_ms"]})
    return out


def _side_summary(blocks: list[dict]) -> dict:
    bench_node = _bench_node()
    e2e = bench_node.summarize(blocks)
    return {"e2e_p50_ms": e2e["p50_ms"], "e2e_p99_ms": e2e["p99_ms"], "frames": e2e["frames"],
            "received": e2e["received"], **_stage_summary([s for b in blocks for s in b["stage_samples"]])}


def _node_main(args, frames, intrinsics) -> int:
    import yaml

    node_cls = _adapting_node_class()
    with open(_bench_node().PARAMS_FILE) as f:
        node_defaults = next(iter(yaml.safe_load(f).values()))["ros__parameters"]
    load_start = os.getloadavg()
    blocks = []
    for i in range(args.repeats):  # alternate, so that load changes on the machine hit both sides
        for adapt in (False, True):
            block = _node_block(node_cls, adapt, args, args.model, frames, intrinsics)
            row = {"block": len(blocks) + 1, "side": "on" if adapt else "off", **_side_summary([block]),
                   "adapt_during": block["adapt_during"],
                   "adapt_state": (block["adapt_status"] or {}).get("adapt_state"),
                   "node_log_errors": block["node_log_errors"][:5], "loadavg_1min": os.getloadavg()[0]}
            blocks.append((block, row))
            print(f"block {row['block']} ({row['side']}): e2e p50 {row['e2e_p50_ms']:.1f} ms, pipeline p50 "
                  f"{row['pipeline_p50_ms']:.1f} ms, steps {row['adapt_during']}", file=sys.stderr, flush=True)
    load_end = os.getloadavg()
    sides = {side: _side_summary([b for b, r in blocks if r["side"] == side]) for side in ("off", "on")}
    steps = sum(r["adapt_during"]["steps"] for _, r in blocks if r["side"] == "on")
    ratio = {k: sides["on"][f"{k}_p50_ms"] / sides["off"][f"{k}_p50_ms"] for k in ("e2e", "pipeline", "infer")}
    pairs = [(blocks[j][1], blocks[j + 1][1]) for j in range(0, len(blocks), 2)]
    result = {"benchmark": "bench_online_adapt --node", "model": str(args.model), "backend": "torch",
              "threads": args.threads, "rate_hz": args.rate, "camera": f"{frames[0].image_rgb.shape[1]}x"
              f"{frames[0].image_rgb.shape[0]}", "frames_per_block": args.frames, "warmup_frames": args.warmup,
              "repeats": args.repeats, "duty_cycle": args.duty_cycle,
              "duty_cycle_is_node_default": args.duty_cycle == node_defaults.get("adapt_duty_cycle"),
              "diagnostics_period_s": DIAGNOSTICS_PERIOD_S, "cpu_count": os.cpu_count(),
              "machine": platform.machine(), "loadavg_start": load_start, "loadavg_end": load_end,
              "blocks": [r for _, r in blocks], "off": sides["off"], "on": sides["on"],
              "adapt_steps_during_on_blocks": steps, "measured": steps > 0,
              "p50_ratio_on_over_off": ratio,
              "e2e_p50_ratio_per_pair": [on["e2e_p50_ms"] / off["e2e_p50_ms"] for off, on in pairs],
              "pipeline_p50_ratio_per_pair": [on["pipeline_p50_ms"] / off["pipeline_p50_ms"] for off, on in pairs]}
    print(f"depth_sfm_node over DDS, torch backend ({args.threads} thread), model {args.model.name}, camera "
          f"{result['camera']} at {args.rate} Hz, adapt_duty_cycle {args.duty_cycle}"
          f"{' (the node default)' if result['duty_cycle_is_node_default'] else ''}; "
          f"{args.repeats} x (off, on) blocks, each a fresh node: {args.warmup} warm-up + {args.frames} "
          f"measured frames")
    print(f"load average (1 min) {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end; "
          f"{os.cpu_count()} CPUs ({platform.machine()})")
    head = (f"{'block':>5s} {'adapt':>5s} {'recv':>8s} {'e2e p50':>8s} {'e2e p99':>8s} {'pipe p50':>8s} "
            f"{'pipe p99':>8s} {'infer p50':>9s} {'samples':>7s}  steps (accepted, rolled back, swaps) during block")
    print(head)

    def line(name, side, r, adapt):
        steps_text = ("-" if adapt is None else
                      f"{adapt['steps']} ({adapt['accepted']}, {adapt['rollbacks']}, {adapt['swaps']})")
        print(f"{name:>5s} {side:>5s} {r['received']:>4d}/{r['frames']:<3d} {r['e2e_p50_ms']:8.1f} "
              f"{r['e2e_p99_ms']:8.1f} {r['pipeline_p50_ms']:8.1f} {r['pipeline_p99_ms']:8.1f} "
              f"{r['infer_p50_ms']:9.1f} {r['samples']:7d}  {steps_text}")

    for _, r in blocks:
        line(str(r["block"]), r["side"], r, r["adapt_during"])
    total_on = {k: sum(r["adapt_during"][k] for _, r in blocks if r["side"] == "on")
                for k in ("steps", "accepted", "rollbacks", "swaps")}
    line("all", "off", sides["off"], None)
    line("all", "on", sides["on"], total_on)
    print("(ms; e2e = image stamp -> depth received here; pipe = the node's timing_ms.node_pipeline, infer = its "
          "timing_ms.infer, sampled from /diagnostics)")
    if not result["measured"]:
        print("NO adaptation step happened during the 'on' blocks: this run measures nothing about adaptation's "
              "cost (more --frames / --warmup, or a lower load)")
    else:
        for k, label in (("e2e", "end-to-end latency"), ("pipeline", "node Pipeline stage")):
            print(f"on / off p50, {label}: x{ratio[k]:.3f} (per pair: "
                  f"{', '.join(f'{x:.3f}' for x in result[f'{k}_p50_ratio_per_pair'])}): "
                  f"{'within' if ratio[k] <= 1.10 else 'OVER'} the +10 % target")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print("RESULT " + json.dumps(result))
    return 0 if result["measured"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rate", type=float, default=10.0, help="camera rate, Hz")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (shared by inference and adaptation)")
    parser.add_argument("--duty-cycle", type=float, default=0.2, help="the adapter's duty_cycle (default as the node)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--node", action="store_true",
                        help="measure depth_sfm_node over DDS (adapt_online false vs true), not the bare Pipeline")
    parser.add_argument("--warmup", type=int, default=30,
                        help="--node: frames sent after each node start before the measured ones (fill the buffer)")
    parser.add_argument("--repeats", type=int, default=4, help="--node: blocks per side, alternating off and on")
    parser.add_argument("--domain-id", type=int, default=1 + os.getpid() % 100, help="--node: ROS_DOMAIN_ID")
    args = parser.parse_args(argv)
    if args.model is None:
        from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR

        args.model = DEFAULT_MODEL_DIR
    if not (args.model / "weights.safetensors").is_file():
        parser.error(f"{args.model} has no weights.safetensors")
    from depth_sfm_ros.runtime.model_dir import read_model_card
    from depth_sfm_ros.synth import SynthConfig, render_sequence

    card = read_model_card(args.model)
    if args.node and (args.frames < 2 or args.warmup < 1 or args.repeats < 1 or args.rate <= 0):
        parser.error("--node needs --frames >= 2, --warmup >= 1, --repeats >= 1 and --rate > 0")
    seq = render_sequence(SynthConfig(seed=5, width=2 * card.input_width, height=2 * card.input_height,
                                      num_frames=args.frames + (args.warmup if args.node else 0)))
    frames = [seq[i] for i in range(len(seq))]
    if args.node:
        return _node_main(args, frames, seq.intrinsics)
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
