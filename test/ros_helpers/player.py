"""Publish a synthetic sequence (and deliberate bad inputs) as a camera driver would.

    python player.py --plan good:5,truncated,good:3 --log plan.json [--gt gt.npz]

Plan steps (``name`` or ``name:count``), each one message ``1/rate`` seconds apart:
  good          next synthetic frame as rgb8 + a CameraInfo with the same stamp
  good_noinfo   next frame, no CameraInfo
  bgr8 / mono8  next frame in that encoding (+ CameraInfo)
  padded        next frame rgb8 with 8 bytes of row padding (+ CameraInfo)
  compressed    next frame as a PNG sensor_msgs/CompressedImage on image/compressed (+ CameraInfo)
  bad_encoding  a well-formed 32FC1 image (not a camera encoding)
  truncated     rgb8 with half of its data
  empty         0 x 0, no data
  bad_step      step smaller than one row
  resize        next frame at twice the size (+ matching CameraInfo)
  backwards     next frame stamped 10 s before the previous one
  bad_info      a CameraInfo with K all zeros, then the next frame without its CameraInfo
  no_frame_id   next frame with an empty header.frame_id (+ CameraInfo)
  bad_compressed  garbage bytes on image/compressed
  black         next frame's stamp, an all-black rgb8 image (+ CameraInfo): a covered lens
  nan_info      next frame with a CameraInfo whose K and P are NaN
  frozen        next frame's stamp (+ CameraInfo), the image last published again: a frozen camera driver
Writes the published steps (kind, stamp, size) as JSON to --log and the ground truth of the
synthetic frames to --gt (npz). Waits for a subscriber on the image topic first.
With ``--odom-topic`` it also publishes, before each frame, a nav_msgs/Odometry stamped like the frame
whose twist is the camera's true speed (as wheel odometry would give it; the first frame's is the second's).
With ``--distorted`` every frame's image is instead the raw image of a camera with strong lens distortion
looking at a marker plane (ros_helpers/distorted_scene.py, 384 x 128), and its CameraInfo is that camera's
calibration as a driver sends it (K, D, P); the stamps stay those of the synthetic sequence.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import cv2
import numpy as np
import rclpy
from nav_msgs.msg import Odometry
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from depth_sfm_ros.msgs import rclpy_msgs
from depth_sfm_ros.synth.render import SynthConfig, render_sequence

try:
    from ros_helpers import distorted_scene
except ImportError:  # run as a script: this folder is on sys.path, not test/
    import distorted_scene

# steps that consume no synthetic frame (and must produce no output)
BAD_KINDS = {"bad_encoding", "truncated", "empty", "bad_step", "bad_compressed"}


def parse_plan(text: str) -> list[str]:
    steps = []
    for item in text.split(","):
        name, _, count = item.strip().partition(":")
        steps += [name] * (int(count) if count else 1)
    return steps


def _speed_odometry(seq, i: int, header: Header) -> Odometry:
    """Odometry at frame ``i``'s stamp whose twist.linear.x is the camera's true speed, m/s."""
    j = max(i, 1)
    a, b = seq[j - 1], seq[j]
    speed = float(np.linalg.norm(b.T_world_cam.t - a.T_world_cam.t)) / (b.stamp_s - a.stamp_s)
    msg = Odometry(header=Header(stamp=header.stamp, frame_id="odom"), child_frame_id="base_link")
    msg.twist.twist.linear.x = speed
    return msg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--gt", default="")
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--width", type=int, default=192)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frame-id", default="camera_optical")
    parser.add_argument("--image-topic", default="/camera/image_raw")
    parser.add_argument("--info-topic", default="/camera/camera_info")
    parser.add_argument("--wait-s", type=float, default=30.0)
    parser.add_argument("--odom-topic", default="", help="also publish the true speed as nav_msgs/Odometry here")
    parser.add_argument("--distorted", action="store_true",
                        help="publish the distorted camera's marker scene (distorted_scene.py) and its raw CameraInfo")
    args = parser.parse_args()
    distorted = distorted_scene.raw_image() if args.distorted else None

    plan = parse_plan(args.plan)
    frames_needed = sum(1 for s in plan if s not in BAD_KINDS)
    seq = render_sequence(SynthConfig(seed=args.seed, width=args.width, height=args.height,
                                      num_frames=max(frames_needed, 1)))
    rclpy.init()
    node = rclpy.create_node("synthetic_player")
    pub_image = node.create_publisher(Image, args.image_topic, qos_profile_sensor_data)
    pub_compressed = node.create_publisher(CompressedImage, args.image_topic + "/compressed", qos_profile_sensor_data)
    pub_info = node.create_publisher(CameraInfo, args.info_topic, qos_profile_sensor_data)
    pub_odom = node.create_publisher(Odometry, args.odom_topic, 10) if args.odom_topic else None
    wants_compressed = "compressed" in plan or "bad_compressed" in plan
    deadline = time.monotonic() + args.wait_s
    while (pub_compressed if wants_compressed else pub_image).get_subscription_count() == 0:
        if time.monotonic() > deadline:
            print("player: no subscriber on the image topic", file=sys.stderr)
            return 1
        time.sleep(0.05)
    time.sleep(0.3)  # let the subscription finish matching

    log, gt_index = [], []
    frame_i = 0
    last_image = None  # the image of the last frame step (what a frozen driver repeats)
    last_stamp_ns = seq[0].stamp_ns - 100_000_000
    for step in plan:
        header = Header(frame_id=args.frame_id)
        entry: dict = {"kind": step}
        if step in BAD_KINDS:
            stamp_ns = last_stamp_ns + 1_000_000
            header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            msg = Image(header=header, height=args.height, width=args.width, encoding="rgb8", step=args.width * 3)
            rgb = np.zeros((args.height, args.width, 3), np.uint8)
            if step == "bad_encoding":
                msg = rclpy_msgs.numpy_to_image_msg(np.ones((args.height, args.width), np.float32), "32FC1", header)
            elif step == "truncated":
                msg.data = rgb.tobytes()[: rgb.size // 2]
            elif step == "empty":
                msg.height = msg.width = msg.step = 0
            elif step == "bad_step":
                msg.step = args.width * 2
                msg.data = rgb.tobytes()[: msg.step * args.height]
            if step == "bad_compressed":
                pub_compressed.publish(CompressedImage(header=header, format="jpeg", data=b"\xff\xd8 not a jpeg"))
            else:
                pub_image.publish(msg)
            entry.update(stamp_ns=stamp_ns, good=False)
        else:
            frame = seq[frame_i]
            stamp_ns = frame.stamp_ns if step != "backwards" else last_stamp_ns - 10_000_000_000
            header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            image, K = frame.image_rgb, seq.intrinsics
            if distorted is not None:
                image = distorted
            if step == "no_frame_id":
                header.frame_id = ""
            if step == "resize":
                image = cv2.resize(image, (2 * args.width, 2 * args.height), interpolation=cv2.INTER_LINEAR)
                K = K.scaled(2 * args.width, 2 * args.height)
            if step == "black":
                image = np.zeros_like(image)
            if step == "frozen" and last_image is not None:
                image = last_image
            last_image = image
            if step == "nan_info":
                nan_info = rclpy_msgs.intrinsics_to_camera_info(K, header)
                nan_info.k = [float("nan")] * 9
                nan_info.p = [float("nan")] * 12
                pub_info.publish(nan_info)
            elif step == "bad_info":
                bad = rclpy_msgs.intrinsics_to_camera_info(K, header)
                bad.k = [0.0] * 9
                pub_info.publish(bad)
            elif distorted is not None:
                pub_info.publish(rclpy_msgs.camera_model_to_camera_info(distorted_scene.CAMERA, header))
            elif step != "good_noinfo":
                pub_info.publish(rclpy_msgs.intrinsics_to_camera_info(K, header))
            if pub_odom is not None:
                pub_odom.publish(_speed_odometry(seq, frame_i, header))
            if step == "bgr8":
                msg = rclpy_msgs.numpy_to_image_msg(np.ascontiguousarray(image[:, :, ::-1]), "bgr8", header)
            elif step == "mono8":
                msg = rclpy_msgs.numpy_to_image_msg(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), "mono8", header)
            elif step == "padded":
                padded = np.zeros((image.shape[0], image.shape[1] * 3 + 8), np.uint8)
                padded[:, : image.shape[1] * 3] = image.reshape(image.shape[0], -1)
                msg = Image(header=header, height=image.shape[0], width=image.shape[1], encoding="rgb8",
                            step=padded.shape[1], data=padded.tobytes())
            else:
                msg = rclpy_msgs.numpy_to_image_msg(image, "rgb8", header)
            if step == "compressed":
                ok, png = cv2.imencode(".png", image[:, :, ::-1])
                assert ok
                pub_compressed.publish(CompressedImage(header=header, format="png", data=png.tobytes()))
            else:
                pub_image.publish(msg)
            entry.update(stamp_ns=stamp_ns, good=True, frame=frame_i, width=image.shape[1], height=image.shape[0])
            gt_index.append(frame_i)
            frame_i += 1
        last_stamp_ns = stamp_ns
        log.append(entry)
        time.sleep(1.0 / args.rate)

    with open(args.log, "w") as f:
        json.dump({"steps": log, "intrinsics": seq.intrinsics.to_dict(), "frame_id": args.frame_id}, f)
    if args.gt:
        frames = [seq[i] for i in range(frame_i)]
        np.savez(args.gt, stamps_ns=np.array([f.stamp_ns for f in frames], np.int64),
                 depth_m=np.stack([f.depth_m for f in frames]), dynamic_mask=np.stack([f.dynamic_mask for f in frames]),
                 T_world_cam=np.stack([f.T_world_cam.matrix for f in frames]))
    node.destroy_node()
    rclpy.try_shutdown()
    print("player: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
