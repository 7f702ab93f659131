"""Transport floor: round trip of a camera image through rclpy + Fast DDS, with no processing.

    python bench/bench_dds_roundtrip.py [--sizes 192x64 640x192 640x480 1280x720] [--count 300]
        [--input-qos sensor_data|reliable] [--dds-profile config/fastdds_large_images.xml | '']

This process publishes an rgb8 sensor_msgs/Image stamped with the wall clock; an echo process (this
script with ``--echo``, started like depth_sfm_node: its own process, same DDS profile) answers each one
with a 192x64 32FC1 image carrying the same stamp, the size of the node's ~/depth. The next image goes
when the answer arrived. The round trip is what bench_node's node latency contains besides the node's own
work: Python -> message -> DDS -> message -> Python for the image, and back for the small answer.
Prints a table and one JSON line (prefix ``RESULT``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DDS_PROFILE = REPO / "config" / "fastdds_large_images.xml"
DDS_PROFILE_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
IMAGE_TOPIC, ANSWER_TOPIC = "/bench_roundtrip/image", "/bench_roundtrip/answer"
ANSWER_HW = (64, 192)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {text!r}") from None
    if not (1 <= w <= 8192 and 1 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"size out of range: {text!r}")
    return w, h


def _qos(name: str):
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    return qos_profile_sensor_data if name == "sensor_data" else QoSProfile(depth=5,
                                                                            reliability=ReliabilityPolicy.RELIABLE)


def echo(input_qos: str) -> int:
    """Answer every image with a depth-sized image carrying its stamp, until interrupted."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from depth_sfm_ros.msgs import rclpy_msgs

    rclpy.init()
    node = rclpy.create_node("bench_roundtrip_echo")
    answer = np.zeros(ANSWER_HW, np.float32)
    pub = node.create_publisher(Image, ANSWER_TOPIC, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(Image, IMAGE_TOPIC,
                             lambda msg: pub.publish(rclpy_msgs.numpy_to_image_msg(answer, "32FC1", msg.header)),
                             _qos(input_qos))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def measure(sizes: list[tuple[int, int]], count: int, input_qos: str) -> list[dict]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from depth_sfm_ros import msgs
    from depth_sfm_ros.msgs import rclpy_msgs

    rclpy.init()
    node = rclpy.create_node("bench_roundtrip_driver")
    pub = node.create_publisher(Image, IMAGE_TOPIC, _qos(input_qos))
    received: dict[int, int] = {}
    arrived = threading.Condition()

    def on_answer(msg) -> None:
        now_ns = time.time_ns()
        with arrived:
            received[msgs.stamp_to_nanoseconds(msg.header.stamp)] = now_ns
            arrived.notify_all()

    node.create_subscription(Image, ANSWER_TOPIC, on_answer, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    deadline = time.monotonic() + 30.0
    while pub.get_subscription_count() == 0 or node.count_publishers(ANSWER_TOPIC) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the echo process did not come up")
        time.sleep(0.05)
    time.sleep(0.5)
    rng = np.random.default_rng(0)
    rows = []
    try:
        for width, height in sizes:
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            latencies = []
            for i in range(count + 10):  # the first 10 warm up
                stamp_ns = time.time_ns()
                header = Header(frame_id="camera_optical")
                header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
                pub.publish(rclpy_msgs.numpy_to_image_msg(image, "rgb8", header))
                with arrived:
                    ok = arrived.wait_for(lambda: stamp_ns in received, timeout=2.0)
                if ok and i >= 10:
                    latencies.append((received[stamp_ns] - stamp_ns) * 1e-6)
            lat = np.asarray(latencies)
            rows.append({"size": f"{width}x{height}", "image_mb": width * height * 3 / 1e6, "sent": count,
                         "answered": int(lat.size),
                         "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
                         "p99_ms": float(np.percentile(lat, 99)) if lat.size else None})
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_parse_size, nargs="+",
                        default=[(192, 64), (640, 192), (640, 480), (1280, 720)], metavar="WxH")
    parser.add_argument("--count", type=int, default=300, help="timed round trips per size")
    parser.add_argument("--input-qos", default="sensor_data", choices=["sensor_data", "reliable"])
    parser.add_argument("--dds-profile", default=str(DDS_PROFILE), help="Fast DDS XML profile ('' = defaults)")
    parser.add_argument("--domain-id", type=int, default=1 + os.getpid() % 100)
    parser.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)  # the echo process
    args = parser.parse_args(argv)
    if args.echo:
        return echo(args.input_qos)
    if args.count < 1:
        parser.error("--count must be >= 1")

    os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    for name in DDS_PROFILE_ENV:
        if args.dds_profile:
            os.environ[name] = args.dds_profile
        else:
            os.environ.pop(name, None)
    echo_proc = subprocess.Popen([sys.executable, __file__, "--echo", "--input-qos", args.input_qos],
                                 env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        rows = measure(args.sizes, args.count, args.input_qos)
    finally:
        echo_proc.terminate()
        try:
            echo_proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            echo_proc.kill()
    profile = Path(args.dds_profile).name if args.dds_profile else "none (Fast DDS defaults)"
    print(f"bench_dds_roundtrip: rgb8 image -> echo process -> 192x64 32FC1 answer, closed loop, {args.count} per "
          f"size; input QoS {args.input_qos}; DDS profile {profile}; {platform.machine()} {os.cpu_count()} CPU cores")
    print(f"{'size':<11}{'MB':>6}{'answered':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for r in rows:
        p50 = f"{r['p50_ms']:.2f}" if r["p50_ms"] is not None else "-"
        p99 = f"{r['p99_ms']:.2f}" if r["p99_ms"] is not None else "-"
        print(f"{r['size']:<11}{r['image_mb']:>6.2f}{r['answered']:>7}/{r['sent']:<3}{p50:>8}{p99:>9}")
    print("RESULT " + json.dumps({"benchmark": "bench_dds_roundtrip", "input_qos": args.input_qos,
                                  "dds_profile": args.dds_profile or None, "cpu_count": os.cpu_count(),
                                  "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
