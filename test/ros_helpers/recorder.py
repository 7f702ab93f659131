"""Subscribe to every output of depth_sfm_node and save what arrives.

    python recorder.py --out rec --until-stamp-ns N [--timeout-s 60] [--outputs depth,colored,...]

Prints READY once the node's ~/depth publisher is discovered. Stops when a ~/depth message
stamped N has arrived and then a /diagnostics status whose frames_processed equals the number of
depth images received (the node counts a frame after publishing all its outputs), or at the timeout. Writes
``rec.npz`` (arrays: depth_<i>, colored_<i>, mask_<i>, points_<i> (xyz), points_rgb_<i>) and ``rec.json``
(per-message metadata: stamps, frame ids, encodings, sizes, odometry poses, CameraInfo (k, d, r, p, model),
diagnostics values).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from depth_sfm_ros import msgs
from depth_sfm_ros.ros import topics


# recorder name -> (node output, message type)
OUTPUTS = {"depth": ("~/depth", Image), "depth_info": ("~/depth/camera_info", CameraInfo),
           "colored": ("~/depth/colored", Image), "mask": ("~/dynamic_mask", Image),
           "odometry": ("~/odometry", Odometry), "points": ("~/points", PointCloud2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--until-stamp-ns", type=int, required=True)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument("--namespace", default="/")
    parser.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable")
    parser.add_argument("--outputs", default=",".join(OUTPUTS),
                        help="the node outputs to subscribe to (and /diagnostics always); default: all")
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node("output_recorder")
    qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE if args.reliability == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT)
    meta: dict = {"depth": [], "depth_info": [], "colored": [], "mask": [], "odometry": [], "points": [],
                  "diagnostics": []}
    arrays: dict[str, np.ndarray] = {}
    state = {"done_stamp_seen": False, "finished": False}

    def name(topic: str) -> str:
        return topics.resolve(topic, namespace=args.namespace)

    def image_cb(kind: str):
        def cb(msg: Image) -> None:
            stamp_ns = msgs.stamp_to_nanoseconds(msg.header.stamp)
            entry = {"stamp_ns": stamp_ns, "frame_id": msg.header.frame_id, "encoding": msg.encoding,
                     "width": msg.width, "height": msg.height, "step": msg.step, "is_bigendian": msg.is_bigendian}
            arrays[f"{kind}_{len(meta[kind])}"] = msgs.image_msg_to_numpy(msg, copy=True)
            meta[kind].append(entry)
            if kind == "depth" and stamp_ns == args.until_stamp_ns:
                state["done_stamp_seen"] = True
        return cb

    def info_cb(msg: CameraInfo) -> None:
        meta["depth_info"].append({"stamp_ns": msgs.stamp_to_nanoseconds(msg.header.stamp),
                                   "frame_id": msg.header.frame_id, "width": msg.width, "height": msg.height,
                                   "k": [float(v) for v in msg.k], "d": [float(v) for v in msg.d],
                                   "r": [float(v) for v in msg.r], "p": [float(v) for v in msg.p],
                                   "distortion_model": msg.distortion_model})

    def odom_cb(msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        meta["odometry"].append({"stamp_ns": msgs.stamp_to_nanoseconds(msg.header.stamp),
                                 "frame_id": msg.header.frame_id, "child_frame_id": msg.child_frame_id,
                                 "position": [p.x, p.y, p.z], "orientation_xyzw": [q.x, q.y, q.z, q.w],
                                 "covariance": [float(v) for v in msg.pose.covariance]})

    def points_cb(msg: PointCloud2) -> None:
        cloud = msgs.pointcloud2_to_numpy(msg)
        arrays[f"points_{len(meta['points'])}"] = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1)
        arrays[f"points_rgb_{len(meta['points'])}"] = msgs.unpack_rgb(cloud["rgb"])
        meta["points"].append({"stamp_ns": msgs.stamp_to_nanoseconds(msg.header.stamp),
                               "frame_id": msg.header.frame_id, "fields": [f.name for f in msg.fields],
                               "point_step": msg.point_step, "n": int(msg.width * msg.height)})

    def diag_cb(msg: DiagnosticArray) -> None:
        for status in msg.status:
            meta["diagnostics"].append({"name": status.name, "level": int.from_bytes(status.level, "little"),
                                        "message": status.message, "hardware_id": status.hardware_id,
                                        "values": {kv.key: kv.value for kv in status.values}})
        # the node counts a frame as processed after publishing all of its outputs: a status
        # counting every depth image received here means the last frame is complete
        ours = [st for st in msg.status if st.name.startswith(topics.NODE_NAME)]
        processed = {kv.key: kv.value for kv in ours[-1].values}.get("frames_processed") if ours else None
        if state["done_stamp_seen"] and processed == str(len(meta["depth"])):
            state["finished"] = True

    callbacks = {"depth": image_cb("depth"), "depth_info": info_cb, "colored": image_cb("colored"),
                 "mask": image_cb("mask"), "odometry": odom_cb, "points": points_cb}
    wanted = args.outputs.split(",")
    if "depth" not in wanted or not set(wanted) <= set(OUTPUTS):
        parser.error(f"--outputs must include depth (it ends the recording) and name only {sorted(OUTPUTS)}")
    for kind in wanted:
        topic, msg_type = OUTPUTS[kind]
        node.create_subscription(msg_type, name(topic), callbacks[kind], qos)
    node.create_subscription(DiagnosticArray, "/diagnostics", diag_cb, 50)

    deadline = time.monotonic() + args.timeout_s
    while node.count_publishers(name("~/depth")) == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    for _ in range(10):  # let the reliable subscriptions match before the player starts
        rclpy.spin_once(node, timeout_sec=0.05)
    print("READY", flush=True)
    while not state["finished"] and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    grace_end = time.monotonic() + 0.3  # outputs published before that status, on other topics
    while state["finished"] and time.monotonic() < grace_end:
        rclpy.spin_once(node, timeout_sec=0.05)
    meta["timed_out"] = not state["finished"]
    np.savez(args.out + ".npz", **arrays)
    with open(args.out + ".json", "w") as f:
        json.dump(meta, f)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
