"""Latency and throughput of depth_sfm_node (a separate process, over DDS) vs the bare Pipeline.

    python bench/bench_node.py [--model DIR] [--frames 60] [--width 640 --height 192] [--rate 0]

One run, the same synthetic frames both ways:
- node: this process publishes sensor_msgs/Image + CameraInfo stamped with the wall clock and
  subscribes to ~/depth; latency = depth received - image stamp. ``--rate 0`` (default) sends the
  next frame when the previous depth arrived (no drops, best-case latency); ``--rate R`` sends at
  R Hz and also reports dropped frames.
- bare: ``Pipeline.process`` on the same images, configured from the same parameters
  (config/depth_sfm.yaml + overrides, through ``pipeline_factory``).
Prints a table, the node/bare ratios and one JSON line (prefix ``RESULT``).
Without --model it uses the bundled default model, or exports an untrained lite model (torch)
to a temporary directory (speed only: its outputs are meaningless).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO / "config" / "depth_sfm.yaml"


def _model_dir(arg: str, tmp: Path) -> tuple[Path, str]:
    if arg:
        return Path(arg), "given"
    from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR

    if (DEFAULT_MODEL_DIR / "model_card.yaml").is_file():
        return DEFAULT_MODEL_DIR, "bundled default"
    import torch

    from depth_sfm_ros.models import build_models
    from depth_sfm_ros.runtime.export import export_bundle

    torch.manual_seed(0)
    config = {"encoder": "lite", "pose_encoder": "lite", "height": 192, "width": 640}
    export_bundle(build_models(config).eval(), config, tmp / "lite", intrinsics_normalized=[0.58, 1.92, 0.5, 0.5],
                  verify=False)
    return tmp / "lite", "untrained lite (exported for this run)"


def _percentiles(values_ms: list[float]) -> dict:
    a = np.asarray(values_ms, dtype=np.float64)
    if a.size == 0:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def bench_bare(node_params, frames, intrinsics) -> dict:
    from depth_sfm_ros.ros.pipeline_factory import create_pipeline

    pipeline = create_pipeline(node_params)
    pipeline.process(frames[0].image_rgb, "rgb8", 0.0, intrinsics)  # warm-up, like the node's first frame
    pipeline.reset("benchmark start")
    latencies = []
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        t0 = time.perf_counter()
        pipeline.process(frame.image_rgb, "rgb8", 1.0 + 0.1 * i, intrinsics)
        latencies.append((time.perf_counter() - t0) * 1e3)
    elapsed = time.perf_counter() - start
    backend = pipeline.backend.describe()
    pipeline.close()
    return {**_percentiles(latencies), "throughput_hz": len(frames) / elapsed, "frames": len(frames),
            "backend": backend}


def bench_node(model_dir: Path, overrides: list[str], frames, intrinsics, rate_hz: float, domain_id: int) -> dict:
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    from depth_sfm_ros.ros import conversions

    cmd = [str(Path(sys.executable).parent / "depth_sfm_node"), "--ros-args", "--params-file", str(PARAMS_FILE),
           "-p", f"model:={model_dir}", "-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info",
           *[a for o in overrides for a in ("-p", o)]]
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    rclpy.init()
    node = rclpy.create_node("bench_node_driver")
    # input QoS as the node's input_qos override says (default sensor data = best effort). Large images
    # (640x480 rgb8 = 0.9 MB) sent best effort over UDP lose fragments; --input-qos reliable avoids that.
    in_qos = qos_profile_sensor_data
    if "input_qos:=reliable" in overrides:
        in_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub_image = node.create_publisher(Image, "/camera/image_raw", in_qos)
    pub_info = node.create_publisher(CameraInfo, "/camera/camera_info", in_qos)
    received: dict[int, float] = {}
    arrived = threading.Condition()

    def on_depth(msg: Image) -> None:
        now_ns = time.time_ns()
        with arrived:
            received[conversions.stamp_to_nanoseconds(msg.header.stamp)] = now_ns
            arrived.notify_all()

    node.create_subscription(Image, "/depth_sfm_node/depth", on_depth,
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        deadline = time.monotonic() + 60.0
        while (pub_image.get_subscription_count() == 0 or node.count_publishers("/depth_sfm_node/depth") == 0):
            if time.monotonic() > deadline or proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"depth_sfm_node did not come up:\n{log.read()[-3000:]}")
            time.sleep(0.05)
        time.sleep(0.5)

        def send(image: np.ndarray) -> int:
            stamp_ns = time.time_ns()
            header = Header(frame_id="camera_optical")
            header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            pub_info.publish(conversions.intrinsics_to_camera_info(intrinsics, header))
            pub_image.publish(conversions.numpy_to_image_msg(image, "rgb8", header))
            return stamp_ns

        def wait_for(stamp_ns: int, timeout_s: float) -> bool:
            with arrived:
                return arrived.wait_for(lambda: stamp_ns in received, timeout=timeout_s)

        warm = send(frames[0].image_rgb)  # model load / first-inference costs stay out of the numbers
        wait_for(warm, 30.0)
        sent: list[int] = []
        start = time.perf_counter()
        for frame in frames:
            stamp_ns = send(frame.image_rgb)
            sent.append(stamp_ns)
            if rate_hz > 0:
                time.sleep(max(0.0, 1.0 / rate_hz - (time.time_ns() - stamp_ns) * 1e-9))
            elif not wait_for(stamp_ns, 10.0):
                print(f"frame {len(sent)}: no depth within 10 s (lost over best-effort DDS?)", file=sys.stderr)
        wait_for(sent[-1], 10.0)
        elapsed = time.perf_counter() - start
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    latencies = [(received[s] - s) * 1e-6 for s in sent if s in received]
    return {**_percentiles(latencies), "throughput_hz": len(latencies) / elapsed, "frames": len(sent),
            "received": len(latencies), "dropped_or_lost": len(sent) - len(latencies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="exported model dir (default: bundled, else untrained lite)")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--rate", type=float, default=0.0, help="publish rate, Hz; 0 = next frame after each depth")
    parser.add_argument("--threads", type=int, default=0, help="backend threads (0 = library default)")
    parser.add_argument("--domain-id", type=int, default=1 + os.getpid() % 100)
    parser.add_argument("--input-qos", default="sensor_data", choices=["sensor_data", "reliable"],
                        help="QoS of the camera topics (the node's input_qos)")
    args = parser.parse_args()
    if args.frames < 2:
        parser.error("--frames must be >= 2")

    from depth_sfm_ros.ros import params
    from depth_sfm_ros.synth.render import SynthConfig, render_sequence

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, model_kind = _model_dir(args.model, Path(tmp))
        seq = render_sequence(SynthConfig(width=args.width, height=args.height, num_frames=args.frames))
        frames = list(seq)
        with open(PARAMS_FILE) as f:
            values = next(iter(yaml.safe_load(f).values()))["ros__parameters"]
        values.update(model=str(model_dir), threads=args.threads)
        node_params = params.validate(values)
        bare = bench_bare(node_params, frames, seq.intrinsics)
        node = bench_node(model_dir, [f"threads:={args.threads}", f"input_qos:={args.input_qos}"], frames, seq.intrinsics, args.rate,
                          args.domain_id)

    result = {"benchmark": "bench_node", "model": model_kind, "backend": bare["backend"],
              "camera": f"{args.width}x{args.height}", "frames": args.frames, "rate_hz": args.rate,
              "cpu_count": os.cpu_count(), "node": node, "bare": {k: v for k, v in bare.items() if k != "backend"},
              "throughput_ratio_node_over_bare": node["throughput_hz"] / bare["throughput_hz"],
              "latency_p50_ratio_node_over_bare": node["p50_ms"] / bare["p50_ms"]}
    print(f"model: {model_kind} ({model_dir.name}), backend {bare['backend']}, camera {args.width}x{args.height}, "
          f"{args.frames} frames, {'closed loop' if args.rate <= 0 else f'{args.rate} Hz'}")
    print(f"{'':8s} {'p50 ms':>8s} {'p99 ms':>8s} {'Hz':>8s}")
    for name, r in (("node", node), ("bare", bare)):
        print(f"{name:8s} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['throughput_hz']:8.2f}")
    print(f"node / bare: throughput x{result['throughput_ratio_node_over_bare']:.2f}, "
          f"p50 latency x{result['latency_p50_ratio_node_over_bare']:.2f}; "
          f"node frames lost or dropped: {node['dropped_or_lost']}")
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
