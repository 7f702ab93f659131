#!/usr/bin/env python3
"""How good is the label-free motion teacher (``training/motion_teacher.py``) that the mask head is distilled from?

Scores the teacher's masks (no network is trained here; the depth test uses ``--depth-model``'s depth) on:

* DAVIS (``../shared/real/davis_moving_camera``): IoU / precision / recall against the annotated moving object,
  micro over the scored frames of each clip; the clips held out of training (REAL_DEV_SPLITS) are marked;
* synthetic drives rendered here from the renderer's **held-out** randomisation (street, intersection, indoor):
  IoU / precision / recall against the renderer's masks, and the share of static pixels marked;
* 7-Scenes kitchen (a static room, handheld camera): the share of pixels marked (every one is a false positive),
  over all scored frames and over the still start (frames 0-9);
* KITTI odometry (51 frames, parked cars, maybe a moving one): the share of pixels marked, for information.

Every ``--every``-th frame is scored, sources at +-``--stride``. Prints a table and one JSON line.

``--student MODEL`` scores a trained mask net (a checkpoint or a model dir) on the same frames instead of the
teacher, as the node runs it: the previous frame (``--stride`` back) and the frame, resized to the model's input
size, the probability upsampled to the image and thresholded at ``--threshold`` (default: the node's
``mask_threshold``).

    python bench/motion_teacher_eval.py                       # bundled depth model, every 3rd frame
    python bench/motion_teacher_eval.py --depth-model none    # epipolar / homography test only
    python bench/motion_teacher_eval.py --student runs/mask/checkpoints/last.pt   # the distilled mask net
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYNTH_SCENES = (("street", 100), ("intersection", 101), ("indoor", 102))


class Counts:
    """Micro-averaged mask scores: add (pred, gt) pairs, read IoU / precision / recall / marked share."""

    def __init__(self) -> None:
        self.inter = self.union = self.pred = self.gt = self.pixels = self.static_marked = self.static = 0
        self.frames = 0

    def add(self, pred: np.ndarray, gt: np.ndarray | None) -> None:
        self.frames += 1
        self.pixels += pred.size
        self.pred += int(pred.sum())
        if gt is None:
            return
        self.inter += int((pred & gt).sum())
        self.union += int((pred | gt).sum())
        self.gt += int(gt.sum())
        self.static += int((~gt).sum())
        self.static_marked += int((pred & ~gt).sum())

    def row(self) -> dict:
        out = {"frames": self.frames, "marked": self.pred / max(self.pixels, 1)}
        if self.gt or self.static:
            out.update(iou=self.inter / max(self.union, 1), precision=self.inter / max(self.pred, 1),
                       recall=self.inter / max(self.gt, 1), static_marked=self.static_marked / max(self.static, 1))
        return out


class StudentMask:
    """The mask net of a checkpoint / model dir as the node runs it: ``(sequence, i, stride) -> (H, W) bool``."""

    def __init__(self, model: Path, threshold: float = 0.5) -> None:
        from depth_sfm_ros.runtime.torch_backend import load_checkpoint_modules, load_weights_file_modules
        from depth_sfm_ros.models.weights_file import load_bundle_weights, weights_path_of
        from depth_sfm_ros.models.checkpoint import load_checkpoint

        if model.is_dir() or model.suffix == ".safetensors":
            _, _, self.net = load_weights_file_modules(weights_path_of(model))
            config = load_bundle_weights(weights_path_of(model))[1]
        else:
            _, _, self.net = load_checkpoint_modules(model)
            config = load_checkpoint(model)["model_config"]
        if self.net is None:
            raise SystemExit(f"{model} has no mask net")
        self.net.eval()
        self.size = (int(config["width"]), int(config["height"]))
        self.threshold = threshold

    def __call__(self, seq, i: int, stride: int) -> np.ndarray:
        import cv2
        import torch

        cur = seq.image_rgb(i)
        prev = seq.image_rgb(i - stride if i >= stride else min(i + stride, len(seq) - 1))  # the start: look ahead
        tensor = [torch.from_numpy(cv2.resize(im, self.size, interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None]
                  .float() / 255.0 for im in (prev, cur)]
        with torch.no_grad():
            prob = self.net(*tensor)
        prob = prob[0] if isinstance(prob, (tuple, list)) else prob
        prob = cv2.resize(prob[0, 0].numpy(), (cur.shape[1], cur.shape[0]), interpolation=cv2.INTER_LINEAR)
        return prob >= self.threshold


def score_sequence(seq, frames, stride, depth, config, gt_of=None, student: StudentMask | None = None) -> dict:
    from depth_sfm_training.pseudo_masks import sequence_motion_mask

    counts = Counts()
    start = time.monotonic()
    for i in frames:
        gt = gt_of(i) if gt_of is not None else None
        mask = student(seq, i, stride) if student is not None else sequence_motion_mask(seq, i, stride, depth, config)
        counts.add(mask, gt)
    row = counts.row()
    row["ms_per_frame"] = 1000.0 * (time.monotonic() - start) / max(len(frames), 1)
    return row


def render_synthetic(out: Path, frames: int, width: int) -> list[Path]:
    from depth_sfm_ros.synth import SynthConfig, render_sequence
    from depth_sfm_ros.synth.kitti import write_kitti_folder

    folders = []
    for scene, seed in SYNTH_SCENES:
        folder = out / f"{scene}_{seed}"
        if not (folder / "poses.txt").is_file():
            seq = render_sequence(SynthConfig(seed=seed, width=width, num_frames=frames, randomize="heldout",
                                              scene=scene))
            write_kitti_folder(seq.frames, seq.intrinsics, folder)
        folders.append(folder)
    return folders


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--real-root", default=str(ROOT.parent / "shared" / "real"))
    p.add_argument("--depth-model", default=None, help="model dir / weights / checkpoint ('none': no depth test)")
    p.add_argument("--every", type=int, default=3)
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--synth-dir", default=None, help="where the held-out synthetic drives are (rendered if absent)")
    p.add_argument("--synth-frames", type=int, default=24)
    p.add_argument("--synth-width", type=int, default=480)
    p.add_argument("--set", action="append", default=None, choices=("davis", "synthetic", "7scenes", "kitti"),
                   help="score only these sets (repeatable; default all)")
    p.add_argument("--student", default=None, help="score this checkpoint's / model dir's mask net instead")
    p.add_argument("--threshold", type=float, default=None,
                   help="the student's dynamic-probability threshold (default: the node's mask_threshold)")
    p.add_argument("--teacher", default="{}", help="TeacherConfig overrides as JSON, e.g. '{\"min_residual_px\": 2}'")
    args = p.parse_args(argv)
    if args.every < 1 or args.stride < 1:
        p.error("--every and --stride must be >= 1")

    from depth_sfm_training.datasets.folder import SyntheticFolderSequence
    from depth_sfm_training.datasets.real import (REAL_DEV_SPLITS, KittiOdometryFolderSequence, SevenScenesSequence,
                                                  davis_sequences)
    from depth_sfm_training.motion_teacher import TeacherConfig
    from depth_sfm_training.pseudo_masks import TeacherDepth
    from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR

    config = TeacherConfig(**json.loads(args.teacher))
    from depth_sfm_training.real_benchmark import NODE_MASK_THRESHOLD

    threshold = NODE_MASK_THRESHOLD if args.threshold is None else args.threshold
    student = StudentMask(Path(args.student), threshold) if args.student else None
    depth = None if student is not None or (args.depth_model or "").lower() == "none" \
        else TeacherDepth(args.depth_model or DEFAULT_MODEL_DIR)
    sets = set(args.set or ("davis", "synthetic", "7scenes", "kitti"))
    real = Path(args.real_root)
    rows: dict[str, dict] = {}

    if "davis" in sets and (real / "davis_moving_camera").is_dir():
        heldout = set(REAL_DEV_SPLITS["davis_moving_camera"]["heldout_clips"])
        for seq in davis_sequences(real / "davis_moving_camera"):
            row = score_sequence(seq, range(0, len(seq), args.every), args.stride, depth, config,
                                 lambda i, s=seq: s.dynamic_mask(i) > 0, student=student)
            rows[f"davis/{seq.name}"] = dict(row, held_out=seq.name in heldout)
    if "synthetic" in sets:
        with tempfile.TemporaryDirectory() as tmp:
            folders = render_synthetic(Path(args.synth_dir or tmp), args.synth_frames, args.synth_width)
            for folder in folders:
                seq = SyntheticFolderSequence(folder)
                rows[f"synthetic/{folder.name}"] = score_sequence(
                    seq, range(0, len(seq), args.every), args.stride, depth, config,
                    lambda i, s=seq: s.dynamic_mask(i) > 0, student=student)
    if "7scenes" in sets and (real / "7scenes_redkitchen").is_dir():
        seq = SevenScenesSequence(real / "7scenes_redkitchen")
        still = range(*REAL_DEV_SPLITS["7scenes_redkitchen"]["still"])
        rows["7scenes/still"] = score_sequence(seq, still, args.stride, depth, config, student=student)
        rows["7scenes/all"] = score_sequence(seq, range(0, len(seq), args.every * 3), args.stride, depth, config,
                                              student=student)
    if "kitti" in sets and (real / "kitti_odometry_51").is_dir():
        seq = KittiOdometryFolderSequence(real / "kitti_odometry_51")
        rows["kitti/all"] = score_sequence(seq, range(0, len(seq), args.every), args.stride, depth, config,
                                           student=student)

    def fmt(row: dict, key: str) -> str:
        return f"{row[key]:.3f}" if key in row else "-"

    what = (f"student mask net {args.student}, threshold {threshold}" if student is not None else
            f"motion teacher, depth test: {'off' if depth is None else args.depth_model or 'bundled model'}")
    print(f"{what}; stride {args.stride}, every {args.every}; machine {platform.machine()} {platform.node()}")
    print("| set | frames | IoU | precision | recall | static marked | marked | ms/frame |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        tag = " (held out)" if row.get("held_out") else ""
        print(f"| {name}{tag} | {row['frames']} | {fmt(row, 'iou')} | {fmt(row, 'precision')} | "
              f"{fmt(row, 'recall')} | {fmt(row, 'static_marked')} | {row['marked']:.4f} | {row['ms_per_frame']:.0f} |")
    davis = [r["iou"] for k, r in rows.items() if k.startswith("davis/")]
    summary = {"davis_mean_iou": float(np.mean(davis)) if davis else None,
               "synthetic_mean_iou": float(np.mean([r["iou"] for k, r in rows.items() if k.startswith("synthetic/")]))
               if any(k.startswith("synthetic/") for k in rows) else None}
    print(f"DAVIS mean IoU {summary['davis_mean_iou']}, synthetic held-out mean IoU {summary['synthetic_mean_iou']}")
    print(json.dumps({"bench": "motion_teacher_eval", "student": args.student,
                      "threshold": threshold if student is not None else None,
                      "teacher": None if student is not None else config.__dict__, "stride": args.stride,
                      "every": args.every, "depth_model": None if depth is None else str(args.depth_model or "bundled"),
                      "rows": rows, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
