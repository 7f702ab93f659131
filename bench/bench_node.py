"""Latency and throughput of depth_sfm_node (a separate process, over DDS) vs the bare Pipeline.

    python bench/bench_node.py [--model DIR] [--frames 60] [--width 640 --height 192] [--rate 0]
        [--input-qos sensor_data|reliable] [--dds-profile config/fastdds_large_images.xml | '']

One run, the same synthetic frames both ways, in ``--repeats`` alternating blocks (bare, node, bare, ...)
so that a change of load on the machine hits both sides:
- node: this process publishes sensor_msgs/Image + CameraInfo stamped with the wall clock and
  subscribes to ~/depth; latency = depth received - image stamp. ``--rate 0`` (default) sends the
  next frame when the previous depth arrived (no drops, best-case latency); ``--rate R`` sends at
  R Hz and also reports dropped frames.
- bare: ``Pipeline.process`` on the same images, configured from the same parameters
  (config/depth_sfm.yaml + overrides, through ``pipeline_factory``).
Both processes load the same Fast DDS profile (default: config/fastdds_large_images.xml, what the launch
file gives the node; ``--dds-profile ''`` = Fast DDS defaults, whose 512 KiB shared-memory segment sends
larger images over loopback UDP). Prints a table, the node/bare ratios, the node's own stage times (from
its /diagnostics), the transport floor (``bench_dds_roundtrip.py`` at the camera size, after the blocks: what
moving the image costs with no node at all) and one JSON line (prefix ``RESULT``).
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
DDS_PROFILE = REPO / "config" / "fastdds_large_images.xml"
DDS_PROFILE_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


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


class BarePipeline:
    """``Pipeline.process`` on the frames, configured as the node configures itself."""

    def __init__(self, node_params, frames, intrinsics) -> None:
        from depth_sfm_ros.ros.pipeline_factory import create_pipeline

        self.pipeline = create_pipeline(node_params)
        self.intrinsics = intrinsics
        self.pipeline.process(frames[0].image_rgb, "rgb8", 0.0, intrinsics)  # warm-up, like the node's first frame
        self.backend = self.pipeline.backend.describe()
        self._stamp_s = 1.0

    def measure(self, frames) -> dict:
        """One block: per-frame latency (ms) and the block's wall time."""
        self.pipeline.reset("benchmark block")
        latencies = []
        start = time.perf_counter()
        for frame in frames:
            t0 = time.perf_counter()
            self.pipeline.process(frame.image_rgb, "rgb8", self._stamp_s, self.intrinsics)
            latencies.append((time.perf_counter() - t0) * 1e3)
            self._stamp_s += 0.1
        return {"latencies_ms": latencies, "elapsed_s": time.perf_counter() - start, "sent": len(frames)}

    def close(self) -> None:
        self.pipeline.close()


class NodeUnderTest:
    """depth_sfm_node in its own process (started as the launch file starts it) and a driver node here
    that plays the camera: Image + CameraInfo stamped with the wall clock, ~/depth and /diagnostics back."""

    def __init__(self, model_dir: Path, overrides: list[str], intrinsics, domain_id: int, dds_profile: str,
                 reliable_input: bool) -> None:
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        for name in DDS_PROFILE_ENV:  # both sides, as the launch file (node) and the README (camera driver) say
            if dds_profile:
                os.environ[name] = dds_profile
            else:
                os.environ.pop(name, None)
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import Header

        from depth_sfm_ros import msgs
        from depth_sfm_ros.msgs import rclpy_msgs

        self._msgs, self._rclpy_msgs, self._header_cls, self._rclpy = msgs, rclpy_msgs, Header, rclpy
        self.intrinsics = intrinsics
        cmd = [str(Path(sys.executable).parent / "depth_sfm_node"), "--ros-args", "--params-file", str(PARAMS_FILE),
               "-p", f"model:={model_dir}", "-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info",
               *[a for o in overrides for a in ("-p", o)]]
        self._log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ))
        rclpy.init()
        self.node = rclpy.create_node("bench_node_driver")
        # the node's input_qos: best effort (sensor data, its default) or reliable
        in_qos = (QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE) if reliable_input
                  else qos_profile_sensor_data)
        self.pub_image = self.node.create_publisher(Image, "/camera/image_raw", in_qos)
        self.pub_info = self.node.create_publisher(CameraInfo, "/camera/camera_info", in_qos)
        self.received: dict[int, int] = {}
        self.arrived = threading.Condition()
        self.diagnostics: dict[str, str] = {}  # the node's last /diagnostics: its own latency and stage times
        self.node.create_subscription(Image, "/depth_sfm_node/depth", self._on_depth,
                                      QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()
        deadline = time.monotonic() + 60.0
        while (self.pub_image.get_subscription_count() == 0
               or self.node.count_publishers("/depth_sfm_node/depth") == 0):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError(f"depth_sfm_node did not come up:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        time.sleep(0.5)

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def _on_depth(self, msg) -> None:
        now_ns = time.time_ns()
        with self.arrived:
            self.received[self._msgs.stamp_to_nanoseconds(msg.header.stamp)] = now_ns
            self.arrived.notify_all()

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.endswith(": depth_sfm"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def send(self, image: np.ndarray) -> int:
        stamp_ns = time.time_ns()
        header = self._header_cls(frame_id="camera_optical")
        header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        self.pub_info.publish(self._rclpy_msgs.intrinsics_to_camera_info(self.intrinsics, header))
        self.pub_image.publish(self._rclpy_msgs.numpy_to_image_msg(image, "rgb8", header))
        return stamp_ns

    def wait_for(self, stamp_ns: int, timeout_s: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: stamp_ns in self.received, timeout=timeout_s)

    def measure(self, frames, rate_hz: float, lost_wait_s: float = 2.0) -> dict:
        """One block. Closed loop (rate 0): the next frame goes when the previous depth arrived, or after
        ``lost_wait_s`` (counted lost); at ``rate_hz`` it sends on a clock and counts what came back."""
        sent: list[int] = []
        start = time.perf_counter()
        for frame in frames:
            stamp_ns = self.send(frame.image_rgb)
            sent.append(stamp_ns)
            if rate_hz > 0:
                time.sleep(max(0.0, 1.0 / rate_hz - (time.time_ns() - stamp_ns) * 1e-9))
            else:
                self.wait_for(stamp_ns, lost_wait_s)
        self.wait_for(sent[-1], lost_wait_s)
        elapsed = time.perf_counter() - start
        latencies = [(self.received[s] - s) * 1e-6 for s in sent if s in self.received]
        return {"latencies_ms": latencies, "elapsed_s": elapsed, "sent": len(sent)}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def summarize(blocks: list[dict]) -> dict:
    """All blocks of one side: latency percentiles over every frame, throughput = frames back / time."""
    latencies = [v for b in blocks for v in b["latencies_ms"]]
    sent = sum(b["sent"] for b in blocks)
    return {**_percentiles(latencies), "throughput_hz": len(latencies) / sum(b["elapsed_s"] for b in blocks),
            "frames": sent, "received": len(latencies), "dropped_or_lost": sent - len(latencies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="", help="exported model dir (default: bundled, else untrained lite)")
    parser.add_argument("--frames", type=int, default=60, help="frames per block")
    parser.add_argument("--repeats", type=int, default=3, help="blocks per side, alternating bare and node")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--rate", type=float, default=0.0, help="publish rate, Hz; 0 = next frame after each depth")
    parser.add_argument("--threads", type=int, default=0, help="backend threads (0 = library default)")
    parser.add_argument("--domain-id", type=int, default=1 + os.getpid() % 100)
    parser.add_argument("--input-qos", default="sensor_data", choices=["sensor_data", "reliable"],
                        help="QoS of the camera topics (the node's input_qos)")
    parser.add_argument("--dds-profile", default=str(DDS_PROFILE),
                        help="Fast DDS XML profile for the driver and the node ('' = Fast DDS defaults)")
    parser.add_argument("--floor-count", type=int, default=200,
                        help="round trips for the transport floor (bench_dds_roundtrip at the camera size, run after "
                             "the blocks); 0 = skip it")
    args = parser.parse_args()
    if args.frames < 2 or args.repeats < 1:
        parser.error("--frames must be >= 2 and --repeats >= 1")

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
        bare_runner = BarePipeline(node_params, frames, seq.intrinsics)
        node_runner = NodeUnderTest(model_dir, [f"threads:={args.threads}", f"input_qos:={args.input_qos}"],
                                    seq.intrinsics, args.domain_id, args.dds_profile, args.input_qos == "reliable")
        try:
            node_runner.send(frames[0].image_rgb)  # model load / first-inference costs stay out of the numbers
            time.sleep(2.0)
            bare_blocks, node_blocks = [], []
            for _ in range(args.repeats):  # alternate, so that load changes on the machine hit both sides
                bare_blocks.append(bare_runner.measure(frames))
                node_blocks.append(node_runner.measure(frames, args.rate))
            time.sleep(1.5)  # one more /diagnostics period, covering the last frames
            diag = {k: v for k, v in node_runner.diagnostics.items() if k.startswith(("latency_ms", "timing_ms", "frames_"))}
        finally:
            node_runner.close()
            bare_runner.close()
        bare = {**summarize(bare_blocks), "backend": bare_runner.backend}
        node = {**summarize(node_blocks), "node_diagnostics": diag}
        per_block = [summarize([n])["throughput_hz"] / summarize([b])["throughput_hz"]
                     for b, n in zip(bare_blocks, node_blocks)]

    floor = _transport_floor(args) if args.floor_count > 0 else None
    result = {"benchmark": "bench_node", "model": model_kind, "backend": bare["backend"],
              "input_qos": args.input_qos, "dds_profile": Path(args.dds_profile).name if args.dds_profile else None,
              "camera": f"{args.width}x{args.height}", "frames": args.frames, "rate_hz": args.rate,
              "cpu_count": os.cpu_count(), "node": node, "bare": {k: v for k, v in bare.items() if k != "backend"},
              "throughput_ratio_node_over_bare": node["throughput_hz"] / bare["throughput_hz"],
              "latency_p50_ratio_node_over_bare": node["p50_ms"] / bare["p50_ms"],
              "added_latency_p50_ms": node["p50_ms"] - bare["p50_ms"], "repeats": args.repeats,
              "throughput_ratio_per_block": per_block, "transport_floor_p50_ms": floor}
    print(f"model: {model_kind} ({model_dir.name}), backend {bare['backend']}, camera {args.width}x{args.height}, "
          f"{args.frames} frames, {'closed loop' if args.rate <= 0 else f'{args.rate} Hz'}, input QoS {args.input_qos}, "
          f"DDS profile {result['dds_profile'] or 'none (Fast DDS defaults)'}")
    print(f"{'':8s} {'p50 ms':>8s} {'p99 ms':>8s} {'Hz':>8s}")
    for name, r in (("node", node), ("bare", bare)):
        print(f"{name:8s} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['throughput_hz']:8.2f}")
    print(f"node / bare: throughput x{result['throughput_ratio_node_over_bare']:.2f} "
          f"(per block: {', '.join(f'{r:.2f}' for r in per_block)}), "
          f"p50 latency x{result['latency_p50_ratio_node_over_bare']:.2f} ({result['added_latency_p50_ms']:+.1f} ms); "
          f"node frames lost or dropped: {node['dropped_or_lost']} of {node['frames']}")
    diag = node["node_diagnostics"]
    if diag:  # split the node's latency: arrival -> published (inside the node) vs transport and executor
        stages = ", ".join(f"{k.split('.', 1)[1]} {v}" for k, v in sorted(diag.items()) if k.startswith("timing_ms."))
        print(f"inside the node (its /diagnostics): message arrival -> outputs published p50 "
              f"{diag.get('latency_ms_p50')} ms; last frame's stages (ms): {stages}")
    if floor is not None:
        print(f"transport floor (bench_dds_roundtrip, {args.width}x{args.height} image out, depth-sized answer back, "
              f"nothing computed): p50 {floor:.1f} ms; node's added latency beyond it: "
              f"{result['added_latency_p50_ms'] - floor:+.1f} ms")
    print("RESULT " + json.dumps(result))
    return 0


def _transport_floor(args: argparse.Namespace) -> float | None:
    """p50 round trip (ms) of an image of the camera's size through rclpy + Fast DDS with no processing, from
    bench_dds_roundtrip.py in its own processes (same QoS and DDS profile); None if it failed."""
    cmd = [sys.executable, str(REPO / "bench" / "bench_dds_roundtrip.py"), "--sizes", f"{args.width}x{args.height}",
           "--count", str(args.floor_count), "--input-qos", args.input_qos, "--dds-profile", args.dds_profile,
           "--domain-id", str(args.domain_id)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        print(f"transport floor: bench_dds_roundtrip failed ({out.returncode}): {out.stderr[-500:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1][len("RESULT "):])["rows"][0]["p50_ms"]


if __name__ == "__main__":
    sys.exit(main())
