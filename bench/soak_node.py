"""Soak test of depth_sfm_node: a synthetic camera at 30 Hz for 10,000+ frames, over real DDS.

    python bench/soak_node.py [--frames 10000] [--rate 30] [--width 320 --height 96]
                              [--fault-every 1000] [--model DIR] [--out bench/results/soak_node_cpu.txt]

The node runs as its own process, started as the launch file starts it (config/depth_sfm.yaml +
overrides). This process is the camera and the consumer: it publishes sensor_msgs/Image +
CameraInfo at ``--rate`` (synthetic frames, cycled), subscribes to ``~/depth``, ``~/odometry``
and ``/diagnostics``, and samples the node's resident memory (VmRSS from /proc) once a second.

With ``--fault-every N`` the model is the tiny model with a real fault built into depth.onnx:
an all-white frame (mean > 0.98) makes ONNX Runtime fail inside a Reshape, and every N-th frame
is white, so the node must log, count (``bad_input.pipeline_error``) and recover each time.

Reported: frames published / received / processed / dropped (latest-frame policy) / failed,
outputs received, RSS after warm-up and at the end, latency (image publish -> depth received)
per tenth of the run, and pass/fail against the bounds below. Prints a table and one JSON line
prefixed ``RESULT``. Without --model: the bundled default model if installed, else the tiny
untrained model from runtime/tiny_model.py exported at the input size (speed only).

``Driver`` is also used by the tests (test/test_reliability_node.py) with short runs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR as DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO / "config" / "depth_sfm.yaml"
NODE_NAME = "depth_sfm_node"
WHITE_MEAN_THRESHOLD = 0.98
RECEIVED_SETTLE_S = 3.0  # "frames_received" unchanged this long after the last publish: no more frames coming
# pass bounds of the soak (bench); the short test uses its own
RSS_GROWTH_BOUND_MB = 20.0
LATENCY_GROWTH_BOUND = 1.5  # median of the last tenth / median of the second tenth


# --- models -------------------------------------------------------------------------------------

def export_fault_model(out_dir: str | Path, height: int, width: int, seed: int = 0) -> Path:
    """The tiny exported model whose depth.onnx fails at run time on an all-white frame.

    A real fault, not a mock: ``mean(image) > 0.98`` turns the target shape of a Reshape from [1]
    into [3], which ONNX Runtime refuses while running the graph ("cannot reshape"). On any other
    frame the added nodes add 0 to the depth. The model card is rewritten with the new sha256.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from depth_sfm_ros.runtime.tiny_model import export_tiny_model_dir, write_card

    out_dir = export_tiny_model_dir(out_dir, height=height, width=width, net_width=8, seed=seed)
    path = out_dir / "depth.onnx"
    model = onnx.load(str(path))
    graph = model.graph
    producer = next(n for n in graph.node if "depth" in n.output)
    producer.output[list(producer.output).index("depth")] = "depth_unfaulted"
    consts = {"fault_threshold": np.array([WHITE_MEAN_THRESHOLD], np.float32), "fault_two": np.array([2], np.int64),
              "fault_one_i": np.array([1], np.int64), "fault_one_f": np.array([1.0], np.float32),
              "fault_zero_f": np.array(0.0, np.float32), "fault_flat": np.array([1], np.int64)}
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    graph.node.extend([
        helper.make_node("ReduceMean", ["image"], ["fault_mean4"], keepdims=1),
        helper.make_node("Reshape", ["fault_mean4", "fault_flat"], ["fault_mean"]),
        helper.make_node("Greater", ["fault_mean", "fault_threshold"], ["fault_white"]),
        helper.make_node("Cast", ["fault_white"], ["fault_k"], to=TensorProto.INT64),
        helper.make_node("Mul", ["fault_k", "fault_two"], ["fault_k2"]),
        helper.make_node("Add", ["fault_k2", "fault_one_i"], ["fault_shape"]),  # [1], or [3] on a white frame
        helper.make_node("Reshape", ["fault_one_f", "fault_shape"], ["fault_reshaped"]),
        helper.make_node("ReduceSum", ["fault_reshaped"], ["fault_sum"], keepdims=0),
        helper.make_node("Mul", ["fault_sum", "fault_zero_f"], ["fault_zero"]),
        helper.make_node("Add", ["depth_unfaulted", "fault_zero"], ["depth"]),
    ])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    write_card(out_dir, height, width, 0.1, 100.0, "tiny8-fault-on-white-frames")
    return out_dir


def soak_model_dir(arg: str, tmp: Path, height: int, width: int, with_fault: bool) -> tuple[Path, str]:
    """(model dir, description) for the soak."""
    if with_fault:
        return export_fault_model(tmp / "fault_model", height, width), \
            "tiny untrained model with a white-frame fault in depth.onnx (exported for this run)"
    if arg:
        return Path(arg), f"given: {arg}"
    if (DEFAULT_MODEL / "model_card.yaml").is_file():
        return DEFAULT_MODEL, "bundled default"
    from depth_sfm_ros.runtime.tiny_model import export_tiny_model_dir

    return export_tiny_model_dir(tmp / "tiny", height=height, width=width, net_width=16), \
        "tiny untrained model (exported for this run)"


def node_command(model_dir: Path, overrides: dict[str, Any], image_topic: str = "/camera/image_raw",
                 info_topic: str = "/camera/camera_info") -> list[str]:
    """What launch/depth_sfm.launch.py runs, with ``-p name:=value`` overrides."""
    exe = Path(sys.executable).parent / "depth_sfm_node"
    args = [str(exe), "--ros-args", "--params-file", str(PARAMS_FILE), "-p", f"model:={model_dir}",
            "-r", f"image:={image_topic}", "-r", f"camera_info:={info_topic}"]
    for name, value in overrides.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ["-p", f"{name}:={text}"]
    return args


def rss_kb(pid: int) -> int | None:
    """Resident memory of a process in KiB (VmRSS), None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# --- the driver: camera + consumer in one rclpy node -------------------------------------------

@dataclass
class DriveResult:
    """What the driver saw. Lists are in receive order; stamps are integer ns."""

    published: list[dict] = field(default_factory=list)      # {"stamp_ns", "kind", "t"}
    depth: list[dict] = field(default_factory=list)          # {"stamp_ns", "t", "latency_ms", "nan_fraction"}
    odometry: list[dict] = field(default_factory=list)       # {"stamp_ns", "position", "orientation_xyzw", "t"}
    diagnostics: list[dict] = field(default_factory=list)    # key -> value of the node's status
    rss_kb: list[tuple[float, int]] = field(default_factory=list)  # (t since start, KiB)
    depth_arrays: dict[int, np.ndarray] = field(default_factory=dict)  # stamp_ns -> depth (kept ones)
    complete: bool = False

    def last_diagnostics(self) -> dict:
        if not self.diagnostics:
            raise AssertionError("no /diagnostics status from depth_sfm_node received")
        return self.diagnostics[-1]


class Driver:
    """Publishes a synthetic camera (Image + CameraInfo, optionally /clock) and records the node's
    outputs, in one rclpy node on its own context (so it can run inside pytest).

    Args:
        domain_id: DDS domain shared with the node process.
        frames: list of (H, W, 3) uint8 RGB images, cycled.
        intrinsics: Intrinsics of those images (CameraInfo).
        node_pid: the node process, for RSS sampling (None: no sampling).
        keep_depth: keep the depth arrays of up to this many frames.
    """

    def __init__(self, domain_id: int, frames: list[np.ndarray], intrinsics: Any, node_pid: int | None = None,
                 frame_id: str = "camera_optical", keep_depth: int = 0) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

        from depth_sfm_ros import msgs
        from depth_sfm_ros.msgs import rclpy_msgs

        if not frames:
            raise ValueError("the driver needs at least one frame")
        self._msgs, self._rclpy_msgs = msgs, rclpy_msgs
        self.frames, self.intrinsics, self.node_pid = frames, intrinsics, node_pid
        self.frame_id, self.keep_depth = frame_id, keep_depth
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("soak_driver", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        from rosgraph_msgs.msg import Clock
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import CameraInfo, Image

        self._Clock = Clock
        self.pub_image = self.node.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        self.pub_info = self.node.create_publisher(CameraInfo, "/camera/camera_info", qos_profile_sensor_data)
        self.pub_clock = self.node.create_publisher(Clock, "/clock", 10)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, f"/{NODE_NAME}/depth", self._on_depth, reliable)
        self.node.create_subscription(Odometry, f"/{NODE_NAME}/odometry", self._on_odom, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.result = DriveResult()
        self._publish_time: dict[int, float] = {}
        self._t0 = time.monotonic()

    # callbacks
    def _on_depth(self, msg: Any) -> None:
        now = time.monotonic()
        stamp_ns = self._msgs.stamp_to_nanoseconds(msg.header.stamp)
        sent = self._publish_time.get(stamp_ns)
        depth = self._msgs.image_msg_to_numpy(msg)
        self.result.depth.append({"stamp_ns": stamp_ns, "t": now - self._t0, "frame_id": msg.header.frame_id,
                                  "latency_ms": (now - sent) * 1e3 if sent is not None else float("nan"),
                                  "nan_fraction": float(np.isnan(depth).mean())})
        if len(self.result.depth_arrays) < self.keep_depth:
            self.result.depth_arrays.setdefault(stamp_ns, depth.copy())

    def _on_odom(self, msg: Any) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        self.result.odometry.append({"stamp_ns": self._msgs.stamp_to_nanoseconds(msg.header.stamp),
                                     "position": [p.x, p.y, p.z], "orientation_xyzw": [q.x, q.y, q.z, q.w],
                                     "t": time.monotonic() - self._t0})

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith(NODE_NAME):
                values = {kv.key: kv.value for kv in status.values}
                values["_t"] = time.monotonic() - self._t0
                values["_message"] = status.message
                self.result.diagnostics.append(values)

    # helpers
    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.executor.spin_once(timeout_sec=min(left, 0.01))

    def wait_for_node(self, timeout_s: float = 60.0) -> None:
        """Until the node subscribes to the image topic and publishes depth (it is up)."""
        deadline = time.monotonic() + timeout_s
        while self.pub_image.get_subscription_count() == 0 or self.node.count_publishers(f"/{NODE_NAME}/depth") == 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"depth_sfm_node did not come up within {timeout_s} s")
            self.spin_for(0.05)
        self.spin_for(0.5)  # let the reliable subscriptions match

    def _sample_rss(self, last: list[float]) -> None:
        now = time.monotonic()
        if self.node_pid is not None and now - last[0] >= 1.0:
            kb = rss_kb(self.node_pid)
            if kb is not None:
                self.result.rss_kb.append((now - self._t0, kb))
            last[0] = now

    def publish_clock(self, stamp_ns: int) -> None:
        from builtin_interfaces.msg import Time

        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        self.pub_clock.publish(self._Clock(clock=Time(sec=sec, nanosec=nanosec)))

    def publish_frame(self, index: int, stamp_ns: int, white: bool = False, with_clock: bool = False) -> None:
        from std_msgs.msg import Header

        if with_clock:
            self.publish_clock(stamp_ns)
        header = Header(frame_id=self.frame_id)
        header.stamp.sec, header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        image = self.frames[index % len(self.frames)]
        if white:
            image = np.full_like(image, 255)
        self.pub_info.publish(self._rclpy_msgs.intrinsics_to_camera_info(self.intrinsics, header))
        self.pub_image.publish(self._rclpy_msgs.numpy_to_image_msg(image, "rgb8", header))
        now = time.monotonic()
        self._publish_time[int(stamp_ns)] = now
        self.result.published.append({"stamp_ns": int(stamp_ns), "kind": "white" if white else "frame",
                                      "t": now - self._t0})

    def run(self, stamps_ns: list[int], rate_hz: float, white: set[int] = frozenset(), with_clock: bool = False,
            settle_timeout_s: float = 20.0, progress_every: int = 0,
            image_indices: list[int] | None = None) -> DriveResult:
        """Publish one frame per stamp at ``rate_hz`` (frame i shows image ``image_indices[i]``,
        default i (cycled), or white when i is in ``white``), then wait until the node has processed
        the last one and reported counters that account for every frame (or ``settle_timeout_s``)."""
        if rate_hz <= 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        if image_indices is not None and len(image_indices) != len(stamps_ns):
            raise ValueError(f"image_indices has {len(image_indices)} entries for {len(stamps_ns)} stamps")
        period = 1.0 / rate_hz
        start = time.monotonic()
        last_rss = [0.0]
        for i, stamp_ns in enumerate(stamps_ns):
            due = start + i * period
            while True:
                self._sample_rss(last_rss)
                left = due - time.monotonic()
                if left <= 0:
                    break
                self.executor.spin_once(timeout_sec=min(left, 0.005))
            self.publish_frame(i if image_indices is None else image_indices[i], stamp_ns, white=i in white,
                               with_clock=with_clock)
            if progress_every and (i + 1) % progress_every == 0:
                print(f"  {i + 1} frames published, {len(self.result.depth)} depth received, "
                      f"rss {self.result.rss_kb[-1][1] / 1024 if self.result.rss_kb else float('nan'):.1f} MiB",
                      flush=True)
        # settle: keep the clock moving (sim time), wait for counters covering every frame
        # (best-effort input may lose a frame in transport: then "received" settles below n)
        deadline = time.monotonic() + settle_timeout_s
        clock_ns = max(stamps_ns) if stamps_ns else 0
        n = len(stamps_ns)
        received_seen, received_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if with_clock:
                clock_ns += int(period * 1e9)
                self.publish_clock(clock_ns)
            self.spin_for(period)
            self._sample_rss(last_rss)
            if self.result.diagnostics:
                d = self.result.diagnostics[-1]
                received = int(d["frames_received"])
                if received != received_seen:
                    received_seen, received_since = received, time.monotonic()
                settled = received >= n or time.monotonic() - received_since > RECEIVED_SETTLE_S
                accounted = int(d["frames_processed"]) + int(d["frames_dropped"]) + int(d["bad_input.pipeline_error"])
                if settled and accounted >= received and len(self.result.depth) >= int(d["frames_processed"]):
                    self.result.complete = True
                    break
        return self.result

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


# --- analysis -----------------------------------------------------------------------------------

def analyse(result: DriveResult, warmup_fraction: float = 0.1) -> dict:
    """Figures of a run: counts, RSS growth after warm-up, latency per tenth."""
    diag = result.last_diagnostics()
    n_pub = len(result.published)
    received, processed = int(diag["frames_received"]), int(diag["frames_processed"])
    dropped, failed = int(diag["frames_dropped"]), int(diag["bad_input.pipeline_error"])
    t_first = result.published[0]["t"] if result.published else 0.0
    t_end = result.published[-1]["t"] if result.published else 0.0
    t_warm = result.published[int(n_pub * warmup_fraction)]["t"] if n_pub else 0.0
    span_s = t_end - t_first
    rss = np.array([kb for t, kb in result.rss_kb if t >= t_warm], dtype=np.float64) / 1024.0
    rss_all = np.array([kb for _, kb in result.rss_kb], dtype=np.float64) / 1024.0
    latencies = np.array([d["latency_ms"] for d in result.depth], dtype=np.float64)
    tenths = [float(np.nanmedian(chunk)) if chunk.size else float("nan")
              for chunk in np.array_split(latencies, 10)] if latencies.size >= 10 else []
    figures = {
        "frames_published": n_pub, "frames_received_by_node": received, "frames_processed": processed,
        "frames_dropped_latest_frame_policy": dropped, "frames_failed_pipeline_error": failed,
        "depth_outputs_received": len(result.depth), "odometry_outputs_received": len(result.odometry),
        "frames_unaccounted": received - processed - dropped - failed,
        "outputs_lost": processed - len(result.depth),
        "transport_lost": n_pub - received,
        "duration_s": round(span_s, 1),
        "publish_rate_hz": round((n_pub - 1) / span_s, 2) if span_s > 0 else float("nan"),
        "processing_rate_hz": round(len(result.depth) / span_s, 2) if span_s > 0 else float("nan"),
        "rss_mb_start": round(float(rss_all[0]), 1) if rss_all.size else float("nan"),
        "rss_mb_after_warmup": round(float(np.median(rss[: max(1, rss.size // 10)])), 1) if rss.size else float("nan"),
        "rss_mb_end": round(float(np.median(rss[-max(1, rss.size // 10):])), 1) if rss.size else float("nan"),
        "rss_mb_max": round(float(rss_all.max()), 1) if rss_all.size else float("nan"),
        "latency_ms_p50": round(float(np.nanpercentile(latencies, 50)), 1) if latencies.size else float("nan"),
        "latency_ms_p99": round(float(np.nanpercentile(latencies, 99)), 1) if latencies.size else float("nan"),
        "latency_ms_median_per_tenth": [round(v, 1) for v in tenths],
        "odometry_resets": int(diag["odometry_resets"]),
        "complete": result.complete,
    }
    figures["rss_growth_mb"] = round(figures["rss_mb_end"] - figures["rss_mb_after_warmup"], 1)
    figures["latency_growth"] = round(tenths[-1] / tenths[1], 2) if len(tenths) == 10 and tenths[1] > 0 else None
    return figures


# --- the bench ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--distinct-frames", type=int, default=40, help="synthetic frames rendered, then cycled")
    parser.add_argument("--fault-every", type=int, default=0, help="every N-th frame white + the fault model (0: off)")
    parser.add_argument("--model", default="")
    parser.add_argument("--out", default="", help="also write the report here")
    parser.add_argument("--domain-id", type=int, default=1 + os.getpid() % 100)
    args = parser.parse_args(argv)
    if args.frames < 20 or args.rate <= 0 or args.width % 32 or args.height % 32:
        parser.error("need --frames >= 20, --rate > 0, and --width/--height multiples of 32")

    import subprocess

    from depth_sfm_ros.synth.render import SynthConfig, render_sequence

    env = dict(os.environ, ROS_DOMAIN_ID=str(args.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    os.environ.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    with tempfile.TemporaryDirectory(prefix="soak_") as tmp_name:
        tmp = Path(tmp_name)
        model_dir, model_desc = soak_model_dir(args.model, tmp, args.height, args.width, args.fault_every > 0)
        seq = render_sequence(SynthConfig(width=args.width, height=args.height, num_frames=args.distinct_frames))
        frames = [f.image_rgb for f in seq]
        overrides = {"scale_mode": "fixed", "fixed_scale": 50.0, "diagnostics_period_s": 1.0, "threads": 1}
        log_path = tmp / "node.log"
        with open(log_path, "w") as log:
            node = subprocess.Popen(node_command(model_dir, overrides), env=env, stdout=log, stderr=subprocess.STDOUT)
        driver = Driver(args.domain_id, frames, seq.intrinsics, node_pid=node.pid)
        try:
            driver.wait_for_node()
            period_ns = int(round(1e9 / args.rate))
            stamps = [seq[0].stamp_ns + i * period_ns for i in range(args.frames)]
            white = set(range(args.fault_every - 1, args.frames - 1, args.fault_every)) if args.fault_every else set()
            print(f"soak: {args.frames} frames at {args.rate} Hz ({args.width}x{args.height}), model: {model_desc}, "
                  f"{len(white)} white (fault) frames", flush=True)
            result = driver.run(stamps, args.rate, white=white, settle_timeout_s=30.0,
                                progress_every=max(1, args.frames // 10))
        finally:
            driver.close()
            node.send_signal(2)
            try:
                rc = node.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.kill()
                rc = node.wait()
        node_log = log_path.read_text(errors="replace")

    figures = analyse(result)
    figures.update(white_frames_injected=len(white), node_exit_code=rc,
                   node_tracebacks=node_log.count("Traceback"),
                   node_log_lines_pipeline_error=sum("[pipeline_error" in line for line in node_log.splitlines()),
                   node_log_lines_total=len(node_log.splitlines()))
    checks = {
        "rss_growth_mb <= %.0f" % RSS_GROWTH_BOUND_MB: figures["rss_growth_mb"] <= RSS_GROWTH_BOUND_MB,
        "latency_growth <= %.1f" % LATENCY_GROWTH_BOUND: (figures["latency_growth"] or 0) <= LATENCY_GROWTH_BOUND,
        "every received frame processed, dropped (latest-frame) or failed": figures["frames_unaccounted"] == 0,
        "every processed frame's depth arrived": figures["outputs_lost"] == 0,
        "failed frames == white frames": figures["frames_failed_pipeline_error"] == len(white)
        or figures["frames_dropped_latest_frame_policy"] > 0,
        "node exited cleanly (0)": rc == 0,
        "counters settled": figures["complete"],
    }
    lines = [f"soak_node: {args.frames} frames at {args.rate} Hz, input {args.width}x{args.height} rgb8, "
             f"model: {model_desc}",
             f"machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), python {platform.python_version()}, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
    lines += [f"{k:<40} {v}" for k, v in figures.items()]
    lines += ["", "checks:"] + [f"  [{'PASS' if ok else 'FAIL'}] {name}" for name, ok in checks.items()]
    lines.append("RESULT " + json.dumps({"bench": "soak_node", "frames": args.frames, "rate_hz": args.rate,
                                         "size": [args.width, args.height], "model": model_desc,
                                         "figures": figures, "checks": checks}))
    report = "\n".join(lines)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
