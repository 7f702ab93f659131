"""``depth-sfm eval-bag``: the command line of the bag evaluator. It dispatches to the offline path
(:func:`depth_sfm_ros.bag.eval_bag.evaluate_bag`) or, with ``--realtime``, to the node over DDS
(:func:`depth_sfm_ros.bag.realtime.evaluate_bag_realtime`); neither of those imports this module."""
from __future__ import annotations

import argparse
import sys

from .defaults import (ALIGNMENTS, BACKENDS, DEFAULT_CAMERA_INFO_TOPIC, DEFAULT_GT_DEPTH_TOPIC, DEFAULT_GT_MASK_TOPIC,
                       DEFAULT_GT_ODOM_TOPIC, DEFAULT_IMAGE_TOPIC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 directory (mcap or sqlite3), .mcap file, or ROS 1 .bag")
    parser.add_argument("--out", required=True, help="output directory (metrics.json, report.md/html, PNGs)")
    parser.add_argument("--image-topic", default=DEFAULT_IMAGE_TOPIC,
                        help="sensor_msgs/Image or CompressedImage topic (default %(default)s)")
    parser.add_argument("--camera-info-topic", default=DEFAULT_CAMERA_INFO_TOPIC,
                        help="CameraInfo topic; '' to ignore (default %(default)s)")
    parser.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                        help="camera intrinsics in pixels of the bag's images (overrides CameraInfo; the images "
                             "are used as they are, no undistortion)")
    parser.add_argument("--camera-input", choices=("auto", "rectified", "raw"), default=None,
                        help="the node's camera_input parameter (default: the node's, auto): rectified = the image "
                             "topic is image_proc's image_rect* (CameraInfo P, no remap); raw = K, and lens "
                             "distortion (plumb_bob, rational_polynomial, equidistant) is undistorted first; auto = "
                             "rectified when the topic's name is image_rect*")
    parser.add_argument("--undistort-alpha", type=float, default=None,
                        help="the node's undistort_alpha parameter (raw distorted input without P; default 0: no "
                             "black border)")
    parser.add_argument("--gt-depth-topic", default=DEFAULT_GT_DEPTH_TOPIC,
                        help="ground-truth depth (32FC1 m or 16UC1 mm); '' to ignore (default %(default)s)")
    parser.add_argument("--gt-odom-topic", default=DEFAULT_GT_ODOM_TOPIC,
                        help="ground-truth pose: Odometry, PoseStamped, TransformStamped or TF (/tf with "
                             "--gt-tf-frames); '' to ignore (default %(default)s)")
    parser.add_argument("--gt-tf-frames", nargs=2, metavar=("PARENT", "CHILD"),
                        help="frames of the camera pose when --gt-odom-topic is a TF topic")
    parser.add_argument("--gt-mask-topic", default=DEFAULT_GT_MASK_TOPIC,
                        help="ground-truth dynamic mask (mono8, non-zero = dynamic); '' to ignore "
                             "(default %(default)s)")
    parser.add_argument("--gt-kitti", help="KITTI-format ground-truth folder (depth/, dynamic_mask/, poses.txt), "
                                           "frame i = i-th image of the bag")
    parser.add_argument("--model", help="exported model dir (default: the bundled model)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    from depth_sfm_ros.runtime.scale import SCALE_MODES
    parser.add_argument("--scale-mode", default=None, choices=SCALE_MODES,
                        help="metric scale recovery of the pipeline (default: the node's default; external: "
                             "speed from --speed-topic, else from the GT poses; offline only)")
    parser.add_argument("--speed-topic", default=None,
                        help="nav_msgs/Odometry (e.g. wheel odometry) whose twist speed gives the metric scale with "
                             "--scale-mode external, as the node's external_odometry input")
    parser.add_argument("--start", type=float, default=0.0, help="seconds after the first image to start")
    parser.add_argument("--duration", type=float, default=None, help="seconds to evaluate")
    parser.add_argument("--every", type=int, default=1, help="use every N-th image")
    parser.add_argument("--min-depth", type=float, default=1e-3, help="scored GT range, metres (default 1e-3)")
    parser.add_argument("--max-depth", type=float, default=80.0, help="scored GT range, metres (default 80)")
    parser.add_argument("--align", choices=ALIGNMENTS, default="auto",
                        help="trajectory alignment (auto: sim3 without metric scale, else se3)")
    parser.add_argument("--max-stamp-diff", type=float, default=0.02,
                        help="largest stamp difference for pairing GT with an image, seconds")
    parser.add_argument("--write-bag", action="store_true", help="also write OUT/output_bag (mcap) for rviz/Foxglove")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--realtime", action="store_true",
                        help="play the bag over DDS at recorded rate through a depth_sfm_node process and score "
                             "what it publishes (needs rclpy)")


def run(args: argparse.Namespace) -> int:
    from .reader import BagError
    try:
        if args.realtime:
            ignored = [flag for flag, used in (("--every", args.every != 1), ("--intrinsics", args.intrinsics),
                                               ("--write-bag", args.write_bag), ("--speed-topic", args.speed_topic))
                       if used]
            if ignored:
                raise ValueError(f"{', '.join(ignored)} cannot be used with --realtime (the node sees every frame and "
                                 f"its CameraInfo; the recorded outputs are written to OUT/realtime_bag)")
            from .realtime import evaluate_bag_realtime
            metrics = evaluate_bag_realtime(
                args.bag, args.out, image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                gt_depth_topic=args.gt_depth_topic, gt_odom_topic=args.gt_odom_topic,
                gt_mask_topic=args.gt_mask_topic, gt_tf_frames=args.gt_tf_frames, gt_kitti=args.gt_kitti,
                model=args.model, backend=args.backend, device=args.device, scale_mode=args.scale_mode,
                camera_input=args.camera_input, undistort_alpha=args.undistort_alpha,
                start_s=args.start, duration_s=args.duration, min_depth_m=args.min_depth, max_depth_m=args.max_depth,
                alignment=args.align)
        else:
            from .eval_bag import evaluate_bag
            metrics = evaluate_bag(
                args.bag, args.out, image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                gt_depth_topic=args.gt_depth_topic, gt_odom_topic=args.gt_odom_topic,
                gt_mask_topic=args.gt_mask_topic, gt_tf_frames=args.gt_tf_frames, gt_kitti=args.gt_kitti,
                model=args.model, backend=args.backend, device=args.device, scale_mode=args.scale_mode,
                intrinsics=args.intrinsics, camera_input=args.camera_input, undistort_alpha=args.undistort_alpha,
                start_s=args.start, duration_s=args.duration, every=args.every,
                write_bag=args.write_bag, progress=not args.no_progress, min_depth_m=args.min_depth,
                max_depth_m=args.max_depth, alignment=args.align, max_stamp_diff_s=args.max_stamp_diff,
                speed_topic=args.speed_topic)
    except (BagError, ValueError, OSError, RuntimeError, ImportError) as exc:  # OSError: disk full, permissions
        print(f"depth-sfm eval-bag: {exc}", file=sys.stderr)
        return 2
    summary = [f"{metrics['frames']} frames"]
    if "depth" in metrics:
        summary.append(f"abs_rel {metrics['depth']['abs_rel']:.3f}")
    if "odometry" in metrics:
        summary.append(f"ATE {metrics['odometry']['ate_m']:.3f} m")
    if "mask" in metrics and metrics["mask"]["iou"] is not None:
        summary.append(f"mask IoU {metrics['mask']['iou']:.3f}")
    if metrics["speed"]["fps"] is not None:
        summary.append(f"{metrics['speed']['fps']:.1f} fps")
    print(f"eval-bag: {', '.join(summary)}; results in {args.out}")
    return 1 if "bag_error" in metrics else 0
