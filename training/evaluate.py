"""``depth-sfm evaluate``: KITTI Eigen / Eigen benchmark / Cityscapes / KITTI odometry / synthetic
evaluation of a checkpoint.

The protocol logic is in pure numpy functions (:func:`resize_depth_prediction`,
:func:`evaluate_depth_frames`, :func:`odometry_report`) so it is tested without a trained model;
:func:`run` is the glue: load the checkpoint, run the nets over the dataset, write
``results.json`` (strict JSON: undefined metrics are null) and ``results.md``.

Depth protocols (all with per-image median scaling and caps 1e-3 < gt < 80 m, see
:mod:`depth_sfm_ros.metrics`): ``kitti_eigen`` (velodyne GT, Garg crop), ``kitti_eigen_benchmark``
(annotated GT, Garg crop), ``cityscapes`` (hood-cropped frame, ManyDepth crop), ``synthetic``
(whole frame, static / dynamic regions from the GT masks). Odometry: ``kitti_odom`` and
``synthetic`` chain ``T_prev_cur`` from PoseNet(image_cur, image_prev) and report the
5-frame snippet ATE, full-trajectory ATE (Sim(3)), RPE and KITTI t_err / r_err (Sim(3)-aligned).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from depth_sfm_ros import metrics as M

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepthProtocol:
    """How a benchmark scores depth: crop name, GT caps (m) and scaling."""

    crop: str | None
    min_depth: float = 1e-3
    max_depth: float = 80.0
    median_scaling: bool = True


DEPTH_PROTOCOLS = {
    "kitti_eigen": DepthProtocol(crop="garg"),
    "kitti_eigen_benchmark": DepthProtocol(crop="garg"),
    "cityscapes": DepthProtocol(crop="cityscapes"),
    "synthetic": DepthProtocol(crop=None),
}
ODOMETRY_DATASETS = ("kitti_odom", "synthetic")
DATASET_TYPES = {"kitti_eigen": "kitti_eigen", "kitti_eigen_benchmark": "kitti_eigen_benchmark",
                 "cityscapes": "cityscapes", "kitti_odom": "kitti_odom", "synthetic": "synthetic"}


# ------------------------------------------------------------------------------ pure protocol logic
def resize_depth_prediction(pred_depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a (h, w) predicted depth to the ground truth's (height, width) the monodepth2 way:
    bilinear on the disparity 1 / depth, then back to depth."""
    pred_depth = np.asarray(pred_depth, dtype=np.float32)
    if pred_depth.ndim != 2:
        raise ValueError(f"predicted depth must be (h, w), got {pred_depth.shape}")
    if pred_depth.shape == (height, width):
        return pred_depth
    if np.any(~np.isfinite(pred_depth)) or np.any(pred_depth <= 0):
        raise ValueError("predicted depth must be finite and > 0 everywhere")
    disp = cv2.resize(1.0 / pred_depth, (width, height), interpolation=cv2.INTER_LINEAR)
    return (1.0 / disp).astype(np.float32)


def evaluate_depth_frames(frames: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                          protocol: DepthProtocol) -> dict:
    """Score (pred_depth (h, w), gt_m (H, W), dynamic_mask (H, W) bool or None) frames.

    Predictions are resized to the GT resolution, then :func:`compute_depth_metrics_by_region`
    with the protocol's crop / caps / median scaling; returns the per-region means
    (``{"all": {...}, "static": ..., "dynamic": ...}``; regions only when masks were given).
    """
    acc = M.DepthMetricsAccumulator()
    n = 0
    for pred, gt, dyn in frames:
        gt = np.asarray(gt, dtype=np.float32)
        pred = resize_depth_prediction(pred, *gt.shape)
        acc.add_regions(M.compute_depth_metrics_by_region(pred, gt, dyn, protocol.min_depth, protocol.max_depth,
                                                          protocol.median_scaling, protocol.crop))
        n += 1
    if n == 0:
        raise ValueError("no frame to evaluate")
    return acc.result()


def odometry_report(pred_T_prev_cur: np.ndarray, gt_T_world_cam: np.ndarray, snippet_length: int = 5) -> dict:
    """Odometry metrics of predicted relative poses (N-1, 4, 4) ``T_{i-1}_{i}`` against the GT
    trajectory (N, 4, 4) ``T_world_cam``.

    Returns snippet ATE (SfMLearner, per-snippet scale), ATE after Sim(3) alignment of the chained
    trajectory, RPE over one frame (after the same alignment) and KITTI t_err / r_err (Sim(3)).
    """
    pred = np.asarray(pred_T_prev_cur, dtype=np.float64)
    gt = np.asarray(gt_T_world_cam, dtype=np.float64)
    if pred.ndim != 3 or gt.ndim != 3 or len(pred) != len(gt) - 1:
        raise ValueError(f"need N-1 relative poses for N GT poses, got {pred.shape} and {gt.shape}")
    gt_rel = np.linalg.inv(gt[:-1]) @ gt[1:]
    est = gt[0] @ M.chain_relative_poses(pred)
    out = {"n_frames": len(gt)}
    if len(pred) >= snippet_length - 1:
        out["snippet_ate"] = M.snippet_ate(pred, gt_rel, snippet_length)
    if len(gt) >= 3:
        out["ate"] = M.ate(est, gt, align="sim3")
        out["rpe"] = M.rpe(est, gt, delta=1, align="sim3")
    out["kitti"] = M.kitti_odometry_errors(est, gt, align="sim3")
    return out


def markdown_table(results: dict) -> str:
    """A markdown summary of :func:`run`'s results dict."""
    lines = [f"# Evaluation: {results['dataset']}", "", f"checkpoint: `{results['checkpoint']}`", ""]
    depth = results.get("depth")
    if depth:
        names = list(M.DEPTH_METRIC_NAMES)
        lines += ["| region | " + " | ".join(names) + " | images |", "|---" * (len(names) + 2) + "|"]
        for region, row in depth.items():
            cells = [("nan" if math.isnan(row[n]) else f"{row[n]:.3f}") for n in names]
            lines.append(f"| {region} | " + " | ".join(cells) + f" | {row['n_images']} |")
        lines.append("")
    odom = results.get("odometry")
    if odom:
        lines += ["| sequence | snippet ATE (m) | ATE (m) | RPE t (m) | RPE r (deg) | t_err (%) | r_err (deg/100m) |",
                  "|---|---|---|---|---|---|---|"]
        for name, rep in odom.items():
            sn = rep.get("snippet_ate", {})
            cells = [f"{sn['mean_m']:.4f} ± {sn['std_m']:.4f}" if sn else "-",
                     f"{rep['ate']['rmse_m']:.3f}" if "ate" in rep else "-",
                     f"{rep['rpe']['trans_rmse_m']:.3f}" if "rpe" in rep else "-",
                     f"{rep['rpe']['rot_rmse_deg']:.3f}" if "rpe" in rep else "-",
                     f"{rep['kitti']['t_err_pct']:.2f}", f"{rep['kitti']['r_err_deg_per_100m']:.2f}"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- CLI glue
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint file written by depth-sfm train")
    parser.add_argument("--dataset", required=True, choices=sorted(DATASET_TYPES), help="evaluation protocol")
    parser.add_argument("--data-path", required=True, help="dataset root (KITTI raw / odometry, Cityscapes, synthetic)")
    parser.add_argument("--split", default=None,
                        help="kitti_eigen*: split file or name (default eigen / eigen_benchmark); cityscapes: "
                             "train|val|test (default test); kitti_odom: sequences, e.g. 09,10 (default 09,10)")
    parser.add_argument("--out", default="eval_out", help="output folder for results.json and results.md")
    parser.add_argument("--height", type=int, default=None, help="network input height (default: the model's)")
    parser.add_argument("--width", type=int, default=None, help="network input width (default: the model's)")
    parser.add_argument("--max-frames", type=int, default=0, help="evaluate at most this many frames (0 = all)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--depth-flip-average", action=argparse.BooleanOptionalAction, default=None,
                        help="depth with (or without) the test-time flip (monodepth's post-processing, 'pp' rows); "
                             "default: the checkpoint's model.depth_flip_average")


def _dataset_config(args: argparse.Namespace, frame_offsets: list[int]) -> dict:
    split = args.split
    if args.dataset == "cityscapes" and split is None:
        split = "test"
    if args.dataset == "kitti_odom" and split is None:
        split = "09,10"
    cfg = {"type": DATASET_TYPES[args.dataset], "data_path": args.data_path, "frame_offsets": frame_offsets}
    if split is not None:
        cfg["split"] = split
    return cfg


def run(args: argparse.Namespace) -> int:
    import torch

    from depth_sfm_ros.models import build_from_checkpoint, disp_to_depth
    from depth_sfm_training.datasets import build_dataset, build_sequences

    if args.max_frames < 0:
        raise SystemExit("--max-frames must be >= 0")
    device = torch.device(args.device)
    bundle, model_config = build_from_checkpoint(args.checkpoint, map_location=device)
    if args.depth_flip_average is not None:
        bundle.depth.flip_average = model_config["depth_flip_average"] = args.depth_flip_average
    height = args.height or int(model_config["height"])
    width = args.width or int(model_config["width"])
    if height % 32 or width % 32:
        raise SystemExit(f"network input {width}x{height} must be multiples of 32")

    def to_net(image_chw: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(image_chw[None].to(device), size=(height, width), mode="bilinear",
                                               align_corners=False)

    def depth_of(image_chw: torch.Tensor) -> np.ndarray:
        disp = bundle.depth.predict(to_net(image_chw))
        depth = disp_to_depth(disp, float(model_config["min_depth"]), float(model_config["max_depth"]))[1]
        return depth[0, 0].float().cpu().numpy()

    results: dict = {"dataset": args.dataset, "checkpoint": str(args.checkpoint), "input_size": [width, height],
                     "depth_flip_average": bool(model_config["depth_flip_average"])}
    with torch.no_grad():
        if args.dataset in DEPTH_PROTOCOLS:
            protocol = DEPTH_PROTOCOLS[args.dataset]
            dataset = build_dataset(_dataset_config(args, [0]))
            if not dataset.with_depth:
                raise SystemExit(f"{args.dataset} at {args.data_path} has no ground-truth depth")
            indices = range(len(dataset)) if not args.max_frames else range(min(args.max_frames, len(dataset)))
            missing = []

            def frames():
                for i in indices:
                    sample = dataset[i]
                    if not sample["has_depth_gt"]:
                        missing.append(i)
                        continue
                    dyn = sample["dynamic_mask"][0, 0].numpy() > 0.5 if sample["has_dynamic_mask"] else None
                    yield depth_of(sample["images"][0]), sample["depth_gt"][0].numpy(), dyn

            results["depth"] = evaluate_depth_frames(frames(), protocol)
            results["depth_protocol"] = asdict(protocol)
            results["frames_without_gt"] = len(missing)
            if missing:
                LOG.warning("%d frames had no ground-truth depth and were skipped", len(missing))
        if args.dataset in ODOMETRY_DATASETS:
            sequences, _ = build_sequences(_dataset_config(args, [0]))
            results["odometry"] = {}
            for seq in sequences:
                if not seq.has_poses:
                    LOG.warning("%s has no ground-truth poses; skipped for odometry", seq.name)
                    continue
                n = len(seq) if not args.max_frames else min(args.max_frames, len(seq))
                rel = []
                prev = to_net(_rgb_to_tensor(seq.image_rgb(0)))
                for k in range(1, n):
                    cur = to_net(_rgb_to_tensor(seq.image_rgb(k)))
                    vec = bundle.pose(cur, prev)  # PoseNet(tgt=cur, src=prev) -> T_prev_cur
                    rel.append(_pose_vec_to_matrix_np(vec[0].double().cpu()))
                    prev = cur
                gt = np.asarray([seq.T_world_cam(k) for k in range(n)])
                results["odometry"][seq.name] = odometry_report(np.asarray(rel), gt)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(_strict_json(results), indent=2, allow_nan=False))
    table = markdown_table(results)
    (out / "results.md").write_text(table + "\n")
    print(table)
    return 0


def _rgb_to_tensor(rgb: np.ndarray):
    """RGB uint8 (H, W, 3) -> float32 tensor (3, H, W) in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / 255.0


def _pose_vec_to_matrix_np(vec) -> np.ndarray:
    from depth_sfm_ros.geometry.ops import pose_vec_to_matrix

    return pose_vec_to_matrix(vec[None])[0].numpy()


def _strict_json(value):
    """numpy scalars -> Python, NaN / inf -> None (null), recursively: results.json is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
