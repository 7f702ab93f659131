#!/usr/bin/env python3
"""Ablation benchmark: train the baseline and each seed technique on synthetic streets, score them on a
held-out sequence (another seed) next to three trivial baselines, print a paper-style table + one JSON line.

    python bench/train_ablation.py --steps 2000 --height 128 --width 416 --device cuda
    python bench/train_ablation.py --steps 30 --height 64 --width 192 --rows baseline_monodepth2,pose_cycle
    python bench/train_ablation.py --steps 2000 --height 128 --width 416 --device cuda --seeds 0,1,2
        --rows baseline_monodepth2,flow3d --set data.use_dynamic_masks=false --train-randomize train
        --test-randomize heldout --davis --out bench/results      # issue 13's table (one command line)

Every row is an experiment file of depth_sfm_training/configs/ (name without .yaml) trained with the same
data, resolution, steps and batch size, once per training seed (``--seeds``, default 0). Columns: median-scaled
abs_rel / sq_rel / rmse / rmse_log / a1 over all pixels, and abs_rel / a1 over static and dynamic pixels (the
image's median scale applied to both regions), 5-frame snippet ATE (m, SfMLearner protocol), and the dynamic mask
of the motion net (dynamic_prob > 0.5) against the renderer's GT dynamic mask: IoU, precision and recall, pooled
over the held-out frames ("-" for rows without a motion net). Trivial baselines on the same frames: a constant
depth (median-scaled), the per-row median of the training GT depth, the per-pixel median of the training GT depth.

Seeds: with several ``--seeds`` a trained row shows the mean over the seeds and the spread as ``±`` half the
max-min range (over the seeds where the value is defined); the JSON line keeps every seed's numbers
(``results[row]["per_seed"]``). The trivial baselines are deterministic and shown once.

Randomisation: ``--train-randomize train`` renders the training sequences with the renderer's training
randomisation ranges, ``--test-randomize heldout`` the held-out sequence with its held-out ranges (``depth-sfm synth
--randomize train|heldout``, depth_sfm_ros/synth/randomization.py: fields of view, mounts, textures and photometric
chains training never sees), so the table measures generalisation to unseen randomisation; both keep the street
scene and the run's image size. The default ``none`` is the classic street for both.

Masks: the synthetic instance ids and dynamic masks stand in for an off-the-shelf segmenter's masks, so with the
default ``data.use_dynamic_masks: true`` the auto-weight rows weigh samples by the GT dynamic masks and the motion
net's dynamic probability is taught by them (the mask columns are then partly supervised); pass
``--set data.use_dynamic_masks=false`` for masks learned from the photometric / flow losses alone.

Teacher masks: ``--teacher-masks`` trains every row on label-free dynamic masks instead of the renderer's. After
the sequences are rendered, the motion teacher (training/motion_teacher.py: optical flow, a robust background-motion
fit and a depth-parallax test; written by training/pseudo_masks.py) computes one mask per training frame from the
training images and intrinsics alone, into ``<data-dir>/teacher_masks[_<train profile>]/<sequence>/<frame>.png``
(kept and reused with the data dir; a ``teacher.json`` there says what made them). The teacher's depth test uses
the depth net of the ``--init-weights`` checkpoint, else the bundled model. Every trained row then runs with
``data.use_dynamic_masks=true`` and ``data.extra.dynamic_mask_dir=<that folder>`` (a ``--set`` that contradicts
either is refused), and each row checks before training that its dataset reads every frame's mask from that
folder: no renderer label reaches training; the renderer's masks only score the mask columns (and, in the JSON
line's ``teacher_masks``, the teacher itself on the training frames). The header and the JSON line's
``mask_source`` say where the training masks came from (teacher / renderer GT / none).

Real video: ``--davis`` also scores every row with a motion net on the DAVIS clips with an annotated moving
object (``--real-root``/davis_moving_camera, default ../shared/real, or ``--davis-root DIR`` in DAVIS layout;
``--davis-max-frames N`` keeps the first N frames of each clip): the row's networks are exported to ONNX
(depth_sfm_ros.runtime.export.export_bundle) and run through the node's Pipeline by
depth_sfm_training.real_benchmark.davis_scores, mask = dynamic_prob >= 0.5 (bench/real_eval.py uses the node's
0.15). Column "DAVIS IoU": the mean over clips of each clip's IoU pooled over its frames; per-clip IoU /
precision / recall are in the JSON line. No DAVIS folder: the header says so and the column shows "-".

Self-supervised training from scratch needs a GPU and thousands of steps to beat those baselines; on a
CPU the numbers of a short run test the mechanics, not the methods. ``--init-weights CKPT`` starts every row
from one checkpoint (fine-tuning, like the papers' ImageNet start) and adds that checkpoint's own row:

    python bench/train_ablation.py --steps 300 --init-weights runs/default/checkpoints/last.pt --out bench/results

The normal / ranking losses (rows normal_losses, full) need a trained depth prior (``depth_prior.checkpoint``):
``--set depth_prior.checkpoint=PATH``, else the ``--init-weights`` checkpoint (frozen) serves as the prior; without
either those rows are refused before anything is trained.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_ROWS = ["baseline_monodepth2", "sfmlearner_explainability", "explainability_automask",
                "multiple_masks_overlap_blank", "object_boundary",
                "instance_aware", "sc_depth_geometric", "pose_cycle", "auto_weight_less_dynamic",
                "auto_weight_more_dynamic", "normal_losses", "flow3d", "full"]
COLUMNS = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "abs_rel_static", "a1_static", "abs_rel_dynamic",
           "a1_dynamic", "ate_m", "mask_iou", "mask_precision", "mask_recall"]
DAVIS_COLUMN = "davis_iou"  # only with --davis
COLUMN_TITLES = {DAVIS_COLUMN: "DAVIS IoU"}
MASK_THRESHOLD = 0.5  # dynamic_prob above it = dynamic (synthetic mask columns and the DAVIS pipeline alike)
DAVIS_FOLDER = "davis_moving_camera"  # under --real-root (see ../shared/real/README.md)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200, help="optimiser steps per row")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--rows", default=",".join(DEFAULT_ROWS), help="comma-separated config names")
    p.add_argument("--train-seeds", default="1,2", help="comma-separated synth seeds of the training sequences")
    p.add_argument("--train-frames", type=int, default=60, help="frames per training sequence")
    p.add_argument("--test-seed", type=int, default=100, help="synth seed of the held-out sequence")
    p.add_argument("--test-frames", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--encoder", default="lite", help="depth and pose encoder (lite | resnet18)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--device", default="auto")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--seeds", default=None,
                   help="comma-separated training seeds (default 0): every row is trained once per seed; the table "
                        "shows the mean and ± half the max-min range, the JSON every seed")
    p.add_argument("--seed", type=int, default=None, help="one training seed (the same as --seeds N)")
    p.add_argument("--train-randomize", choices=("none", "train"), default="none",
                   help="randomisation profile of the training sequences (depth-sfm synth --randomize)")
    p.add_argument("--test-randomize", choices=("none", "heldout"), default="none",
                   help="randomisation profile of the held-out sequence: heldout = the renderer's held-out ranges, "
                        "never used in training (generalisation to unseen randomisation)")
    p.add_argument("--davis", action="store_true",
                   help="also score every row with a motion net on the DAVIS clips (column DAVIS IoU)")
    p.add_argument("--real-root", default=None,
                   help=f"folder of the real development sequences (default ../shared/real); DAVIS is its "
                        f"{DAVIS_FOLDER}/")
    p.add_argument("--davis-root", default=None, help="a DAVIS folder (JPEGImages/, Annotations/) instead of "
                                                      f"REAL_ROOT/{DAVIS_FOLDER}")
    p.add_argument("--davis-max-frames", type=int, default=None, metavar="N",
                   help="score only the first N frames of each DAVIS clip (default: all)")
    p.add_argument("--init-weights", default=None, metavar="CKPT",
                   help="start every row from this checkpoint's weights (model.init_weights: fine-tuning from a "
                        "common pretraining, as the papers start from ImageNet); adds a row for the checkpoint "
                        "as it is")
    p.add_argument("--set", action="append", default=[], metavar="key.sub=value",
                   help="extra config override for every row (repeatable)")
    p.add_argument("--teacher-masks", action="store_true",
                   help="train every row on the label-free motion teacher's dynamic masks (computed from the "
                        "training frames, depth test with the --init-weights / bundled model), written under "
                        "--data-dir; the renderer's masks only score")
    p.add_argument("--data-dir", default=None, help="where to render the sequences (default: a temp folder)")
    p.add_argument("--out", default=None, help="folder for the .md table and .json results (e.g. bench/results)")
    args = p.parse_args(argv)
    if args.seed is not None and args.seeds is not None:
        p.error("give --seeds or --seed, not both")
    seeds_text = args.seeds if args.seeds is not None else str(0 if args.seed is None else args.seed)
    try:
        args.seeds = [int(v) for v in seeds_text.split(",") if v.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {seeds_text!r}")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds needs at least one seed and no repeats, got {seeds_text!r}")
    args.seed = args.seeds[0]
    if args.davis_max_frames is not None and args.davis_max_frames < 2:
        p.error("--davis-max-frames must be >= 2 (the first frame of a clip has no pair, so no mask)")
    if args.steps < 1 or args.batch_size < 1 or args.train_frames < 3 or args.test_frames < 6:
        p.error("need --steps >= 1, --batch-size >= 1, --train-frames >= 3, --test-frames >= 6")
    if args.height % 32 or args.width % 32:
        p.error(f"--height/--width must be multiples of 32, got {args.height}x{args.width}")
    if args.teacher_masks:
        conflict = teacher_mask_conflicts(args.set)
        if conflict:
            p.error(f"--teacher-masks sets data.use_dynamic_masks=true and data.extra.dynamic_mask_dir to the "
                    f"teacher's folder for every row; --set {conflict} contradicts it (drop one of them)")
    return args


def teacher_mask_conflicts(overrides: list[str]) -> str | None:
    """The first ``--set`` that would contradict ``--teacher-masks`` (data.use_dynamic_masks other than true, or its
    own data.extra.dynamic_mask_dir), or None."""
    import yaml

    for text in overrides:
        key, _, raw = text.partition("=")
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if key == "data" and isinstance(value, dict):  # --set data={...}: look inside
            if value.get("use_dynamic_masks", True) is not True or "dynamic_mask_dir" in (value.get("extra") or {}):
                return text
            continue
        if key == "data.use_dynamic_masks" and value is not True:
            return text
        if key == "data.extra.dynamic_mask_dir" or (key == "data.extra" and "dynamic_mask_dir" in str(value)):
            return text
    return None


# ------------------------------------------------------------------------------------------- data
def _profile_folder(name: str, profile: str) -> str:
    """``name`` for the classic street (the folders of earlier runs), ``name_<profile>`` for a randomised one, so a
    reused ``--data-dir`` never mixes profiles."""
    return name if profile == "none" else f"{name}_{profile}"


def render_data(root: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """Render the training sequences (one folder each under train/) and the held-out one (test/), with the
    ``--train-randomize`` / ``--test-randomize`` profiles of the renderer (street scene, the run's image size)."""
    from depth_sfm_ros.synth import SynthConfig, render_sequence
    from depth_sfm_ros.synth.kitti import write_kitti_folder

    seeds = [int(s) for s in args.train_seeds.split(",") if s.strip()]
    if args.test_seed in seeds:
        raise SystemExit(f"--test-seed {args.test_seed} is also a training seed")
    train = root / _profile_folder("train", args.train_randomize)
    for seed in seeds:
        if not (train / f"seed{seed}" / "poses.txt").is_file():
            seq = render_sequence(SynthConfig(seed=seed, width=args.width, height=args.height,
                                              num_frames=args.train_frames, randomize=args.train_randomize))
            write_kitti_folder(seq.frames, seq.intrinsics, train / f"seed{seed}")
    test = root / _profile_folder("test", args.test_randomize)
    if not (test / "poses.txt").is_file():
        seq = render_sequence(SynthConfig(seed=args.test_seed, width=args.width, height=args.height,
                                          num_frames=args.test_frames, randomize=args.test_randomize))
        write_kitti_folder(seq.frames, seq.intrinsics, test)
    return train, test


def heldout_randomization_record(args: argparse.Namespace) -> dict | None:
    """What the held-out sequence drew from its randomisation profile (camera, lighting, photometric chain,
    layout; None for the classic street), for the JSON line."""
    if args.test_randomize == "none":
        return None
    from depth_sfm_ros.synth import SynthConfig
    from depth_sfm_ros.synth.render import SyntheticScene

    return SyntheticScene(SynthConfig(seed=args.test_seed, width=args.width, height=args.height,
                                      num_frames=args.test_frames, randomize=args.test_randomize)
                          ).randomization_record()


def test_dataset(test_dir: Path, args: argparse.Namespace):
    """Consecutive pairs (target = frame i, source = frame i-1) of the held-out sequence, no augmentation."""
    from depth_sfm_training.datasets import build_dataset

    return build_dataset({"type": "synthetic", "path": str(test_dir), "frame_offsets": [0, -1],
                          "height": args.height, "width": args.width, "augment": False})


def training_depths(train_dir: Path, args: argparse.Namespace) -> np.ndarray:
    """All training GT depths (N, H, W), NaN where invalid: the statistics of the trivial baselines."""
    from depth_sfm_training.datasets import build_dataset

    ds = build_dataset({"type": "synthetic", "path": str(train_dir), "frame_offsets": [0, -1],
                        "height": args.height, "width": args.width, "augment": False})
    depths = np.stack([ds[i]["depth_gt"][0].numpy() for i in range(len(ds))]).astype(np.float64)
    depths[depths <= 0] = np.nan
    return depths


# ---------------------------------------------------------------------------------- teacher masks
TEACHER_META = "teacher.json"  # in the teacher folder: what made its masks (a reused --data-dir must match)


def teacher_mask_dir(root: Path, args: argparse.Namespace) -> Path:
    """Where ``--teacher-masks`` writes the teacher's masks of the training sequences (one folder per profile, like
    the training sequences themselves)."""
    return root / _profile_folder("teacher_masks", args.train_randomize)


def teacher_depth_model(args: argparse.Namespace) -> Path:
    """The depth net of the teacher's depth test: the ``--init-weights`` checkpoint, else the bundled model."""
    if args.init_weights:
        return Path(args.init_weights).resolve()
    from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR

    return Path(DEFAULT_MODEL_DIR).resolve()


def write_teacher_masks(train_dir: Path, out: Path, args: argparse.Namespace, rows: list[str]) -> dict[str, Any]:
    """The motion teacher's mask of every training frame, ``out/<sequence name>/<frame id>.png``, for the sequences
    the rows' training set holds (built from the first row's config, so the names are the dataset's); frames
    whose file exists are kept (a reused ``--data-dir``). No label is read. Then, for the record only, the
    teacher's masks are scored against the renderer's masks of the same frames (pooled IoU / precision / recall).
    Returns the record for the JSON line."""
    from depth_sfm_ros.metrics import mask_metrics, mask_scores
    from depth_sfm_training.config import CONFIG_DIR, load_config
    from depth_sfm_training.datasets import DynamicMaskFolder
    from depth_sfm_training.pseudo_masks import TeacherDepth, training_sequences, write_pseudo_masks

    config = load_config(CONFIG_DIR / f"{rows[0]}.yaml", _data_overrides(train_dir, args, args.seed))
    sequences = training_sequences(config)
    stride = int(config["data"]["stride"])
    model = teacher_depth_model(args)
    meta = {"teacher_depth": str(model), "stride": stride, "image_size": [args.height, args.width],
            "label_free": True}
    meta_path = out / TEACHER_META
    if meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in meta} != meta:
            raise SystemExit(f"{out} holds teacher masks made with {old}, this run's teacher is {meta}: delete the "
                             f"folder or use another --data-dir")
    out.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta) + "\n", encoding="utf-8")
    folder = DynamicMaskFolder(out)
    missing = sum(not folder.path(seq, i).is_file() for seq in sequences for i in range(len(seq)))
    t0 = time.perf_counter()
    written: dict[str, int] = {}
    if missing:
        print(f"teacher masks: {missing} frames to write to {out} (depth test with {model})", file=sys.stderr,
              flush=True)
        written = write_pseudo_masks(sequences, out, stride=stride, inv_depth=TeacherDepth(model), resume=True)
    seconds = time.perf_counter() - t0
    tp = fp = fn = 0
    marked = pixels = 0
    for seq in sequences:  # evaluation only: the renderer's masks never go further than these counts
        for i in range(len(seq)):
            mask = folder.load(seq, i)
            gt = seq.dynamic_mask(i)
            marked, pixels = marked + int(mask.sum()), pixels + mask.size
            if gt is not None:
                counts = mask_metrics(mask, np.asarray(gt) > 0)
                tp, fp, fn = tp + counts["tp"], fp + counts["fp"], fn + counts["fn"]
    scores = mask_scores(tp, fp, fn)
    return {**meta, "dir": str(out), "sequences": {seq.name: len(seq) for seq in sequences},
            "frames": sum(len(seq) for seq in sequences), "written_now": sum(written.values()),
            "teacher_s": round(seconds, 1), "marked": marked / pixels if pixels else math.nan,
            "vs_renderer_gt": {k: scores[k] for k in ("iou", "precision", "recall")}}


def check_teacher_training_set(train_set, teacher_dir: Path) -> int:
    """Raise unless every part of the training set reads its dynamic masks from ``teacher_dir`` and every training
    frame has its teacher file there (a missing file would be "no mask", never the renderer's, but it is a bug
    here). Returns the number of frames checked."""
    from depth_sfm_training.datasets import DynamicMaskFolder

    frames = 0
    for part in getattr(train_set, "datasets", [train_set]):
        folder = getattr(part, "dynamic_masks", None)
        if not isinstance(folder, DynamicMaskFolder) or folder.root.resolve() != teacher_dir.resolve():
            raise RuntimeError(f"--teacher-masks: the training set reads its dynamic masks from "
                               f"{getattr(folder, 'root', 'the sequences themselves (renderer GT)')}, not from "
                               f"{teacher_dir}")
        for seq in part.sequences:
            for i in range(len(seq)):
                if not folder.path(seq, i).is_file():
                    raise RuntimeError(f"--teacher-masks: no teacher mask {folder.path(seq, i)}")
                frames += 1
    return frames


# ------------------------------------------------------------------------------------- evaluation
class RowScores:
    """Accumulates depth metrics per region, relative poses and mask counts of one method."""

    def __init__(self) -> None:
        from depth_sfm_ros.metrics import DepthMetricsAccumulator

        self.depth = DepthMetricsAccumulator()
        self.pred_T: list[np.ndarray] = []
        self.gt_T: list[np.ndarray] = []
        self.tp = self.fp = self.fn = 0
        self.has_mask = False

    def add_depth(self, pred: np.ndarray, gt: np.ndarray, dynamic: np.ndarray) -> None:
        from depth_sfm_ros.metrics import compute_depth_metrics_by_region

        self.depth.add_regions(compute_depth_metrics_by_region(pred, gt, dynamic, max_depth=80.0))

    def add_mask(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Pool one frame's mask counts (pred, gt: (H, W) bool)."""
        from depth_sfm_ros.metrics import mask_metrics

        counts = mask_metrics(pred, gt)
        self.has_mask = True
        self.tp += counts["tp"]
        self.fp += counts["fp"]
        self.fn += counts["fn"]

    def summary(self) -> dict[str, float]:
        from depth_sfm_ros.metrics import mask_scores, snippet_ate

        res = self.depth.result()
        out = {k: res.get("all", {}).get(k, math.nan) for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1")}
        for region in ("static", "dynamic"):
            for k in ("abs_rel", "a1"):
                out[f"{k}_{region}"] = res.get(region, {}).get(k, math.nan)
        out["ate_m"] = (snippet_ate(np.array(self.pred_T), np.array(self.gt_T))["mean_m"]
                        if len(self.pred_T) >= 4 else math.nan)
        masks = mask_scores(self.tp, self.fp, self.fn) if self.has_mask else {}
        for k in ("iou", "precision", "recall"):
            out[f"mask_{k}"] = masks.get(k, math.nan)
        return out


def evaluate_model(bundle, model_config: dict, dataset, device) -> dict[str, float]:
    """Score a trained bundle on the held-out pairs (depth by region, snippet ATE, mask IoU / precision / recall
    of dynamic_prob > 0.5 pooled over the frames)."""
    import torch

    from depth_sfm_ros.geometry.ops import pose_vec_to_matrix
    from depth_sfm_training.validation import predict_depth

    scores = RowScores()
    bundle.eval()
    with torch.no_grad():
        for i in range(len(dataset)):
            s = dataset[i]
            cur, prev = s["images"][0:1].to(device), s["images"][1:2].to(device)
            depth = predict_depth(bundle, cur, model_config)[0, 0].float().cpu().numpy()
            gt = s["depth_gt"][0].numpy()
            dynamic = s["dynamic_mask"][0, 0].numpy() > 0.5
            scores.add_depth(depth, gt, dynamic)
            scores.pred_T.append(pose_vec_to_matrix(bundle.pose(cur, prev).float())[0].cpu().numpy().astype(np.float64))
            scores.gt_T.append(s["T_src_tgt_gt"][0].numpy().astype(np.float64))
            if bundle.motion is not None:
                _, prob = bundle.motion(prev, cur)
                scores.add_mask(prob[0, 0].float().cpu().numpy() > MASK_THRESHOLD, dynamic)
    return scores.summary()


def trivial_baselines(dataset, train_depths: np.ndarray) -> dict[str, dict[str, float]]:
    """Constant depth, per-row and per-pixel median training depth, median-scaled on the same frames."""
    global_median = float(np.nanmedian(train_depths))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows / pixels (sky) fall back below
            per_row = np.nanmedian(train_depths, axis=(0, 2))                 # (H,)
            per_pixel = np.nanmedian(train_depths, axis=0)                    # (H, W)
    h, w = per_pixel.shape
    per_row = np.where(np.isfinite(per_row), per_row, global_median)
    per_pixel = np.where(np.isfinite(per_pixel), per_pixel, np.broadcast_to(per_row[:, None], (h, w)))
    preds = {"trivial: constant depth": np.full((h, w), global_median),
             "trivial: per-row median": np.broadcast_to(per_row[:, None], (h, w)).copy(),
             "trivial: per-pixel median": per_pixel}
    out = {}
    for name, pred in preds.items():
        scores = RowScores()
        for i in range(len(dataset)):
            s = dataset[i]
            scores.add_depth(pred, s["depth_gt"][0].numpy(), s["dynamic_mask"][0, 0].numpy() > 0.5)
        out[name] = scores.summary()
    return out


# -------------------------------------------------------------------------------------------- DAVIS
def davis_root_of(args: argparse.Namespace) -> tuple[Path | None, str]:
    """The DAVIS folder ``--davis`` scores on, or None, and a line for the header saying which / why none."""
    if args.davis_root is not None:
        root = Path(args.davis_root)
    else:
        if args.real_root is not None:
            real_root = Path(args.real_root)
        else:
            from depth_sfm_training.real_benchmark import DEFAULT_REAL_ROOT as real_root
        root = real_root / DAVIS_FOLDER
    from depth_sfm_training.datasets.real import davis_folders

    if not davis_folders(root)[0].is_dir():
        return None, f"DAVIS IoU not measured: no DAVIS clips at {root} (column shows -)"
    limit = f", first {args.davis_max_frames} frames of each" if args.davis_max_frames else ""
    return root, (f"DAVIS IoU: each clip's IoU pooled over its frames, mean over the clips of {root}{limit} "
                  f"(node Pipeline on the row's ONNX export, dynamic_prob >= {MASK_THRESHOLD})")


def davis_subset(root: Path, max_frames: int, dest: Path) -> Path:
    """A DAVIS folder under ``dest`` holding the first ``max_frames`` frames of every clip of ``root`` and their
    annotations (symbolic links, copies where links fail), for a quick ``--davis-max-frames`` run."""
    import shutil

    from depth_sfm_training.datasets.real import davis_sequences

    for clip in davis_sequences(root):
        for image in clip.images[:max_frames]:
            pairs = [(image, dest / "JPEGImages" / clip.name / image.name)]
            annotation = clip.annotations / f"{image.stem}.png"
            if annotation.is_file():
                pairs.append((annotation, dest / "Annotations" / clip.name / annotation.name))
            for src, dst in pairs:
                if dst.is_symlink() or dst.exists():  # a reused --data-dir
                    continue
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    dst.symlink_to(Path(src).resolve())
                except OSError:
                    shutil.copyfile(src, dst)
    return dest


def davis_row_scores(bundle, model_config: dict, davis_root: Path, train_config: dict | None = None) -> dict:
    """Mask scores of a bundle with a motion net on DAVIS: the bundle exported (ONNX + card, temporary folder), run
    clip by clip through the node's Pipeline by :func:`depth_sfm_training.real_benchmark.davis_scores`.

    Returns ``davis_iou`` (mean over the clips of each clip's pooled IoU; NaN when no clip had a scored frame) and
    ``davis_clips`` (per clip: frames, scored frames, IoU, precision, recall, whether REAL_DEV_SPLITS holds it out).
    The export's warning about unknown intrinsics is silenced: davis_scores gives the pipeline each clip's assumed
    intrinsics frame by frame.
    """
    import logging

    import torch

    from depth_sfm_ros.runtime.export import export_bundle
    from depth_sfm_ros.runtime.pipeline import Pipeline, PipelineConfig
    from depth_sfm_training.datasets.real import DAVIS_FPS
    from depth_sfm_training.real_benchmark import davis_scores

    with tempfile.TemporaryDirectory(prefix="train_ablation_model_") as tmp:
        export_log = logging.getLogger("depth_sfm_ros.runtime.export")
        level = export_log.level
        export_log.setLevel(logging.ERROR)
        try:
            export_bundle(bundle, model_config, tmp, train_config=train_config)
        finally:
            export_log.setLevel(level)
        pipeline = Pipeline(PipelineConfig(model=tmp, backend="onnxruntime", device="cpu",
                                           threads=torch.get_num_threads(), min_depth_m=1e-3, max_depth_m=1e4,
                                           mask_threshold=MASK_THRESHOLD))
        try:
            clips = davis_scores(pipeline, davis_root, DAVIS_FPS)
        finally:
            pipeline.close()
    ious = [c["iou"] for c in clips.values() if c["iou"] is not None and math.isfinite(c["iou"])]
    return {DAVIS_COLUMN: float(np.mean(ious)) if ious else math.nan, "davis_clips": clips}


# ------------------------------------------------------------------------------------------- seeds
def aggregate_seeds(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One row from its per-seed scores: every numeric metric's mean over the seeds where it is defined (finite),
    ``spread`` = half its max-min range there, and ``per_seed`` (every seed's numbers, as given)."""
    keys = [k for k in next(iter(per_seed.values())) if all(isinstance(m.get(k), (int, float)) or m.get(k) is None
                                                            for m in per_seed.values())]
    out: dict[str, Any] = {}
    spread: dict[str, float] = {}
    for k in keys:
        values = [float(m[k]) for m in per_seed.values() if m.get(k) is not None and math.isfinite(float(m[k]))]
        out[k] = float(np.mean(values)) if values else math.nan
        spread[k] = (max(values) - min(values)) / 2.0 if values else math.nan
    out["spread"] = spread
    out["per_seed"] = per_seed
    return out


# ------------------------------------------------------------------------------------------- main
def _needs_prior(name: str, args: argparse.Namespace) -> bool:
    """Whether row ``name`` (with the --set overrides) runs the normal / ranking losses with a checkpoint prior."""
    from depth_sfm_training.config import CONFIG_DIR, load_config

    config = load_config(CONFIG_DIR / f"{name}.yaml", list(args.set))
    return bool((config["losses"]["normal"] or config["losses"]["ranking"])
                and config["depth_prior"]["source"] == "checkpoint" and not config["depth_prior"]["checkpoint"])


def _prior_overrides(name: str, args: argparse.Namespace) -> list[str]:
    """``depth_prior.checkpoint`` for a row that needs a prior and has none: the --init-weights checkpoint."""
    if not _needs_prior(name, args):
        return []
    if not args.init_weights:
        raise SystemExit(f"row {name} needs a trained depth prior for its normal / ranking losses: pass "
                         f"--set depth_prior.checkpoint=PATH or --init-weights CKPT (used as the prior)")
    return [f"depth_prior.checkpoint={args.init_weights}"]


def _data_overrides(train_dir: Path, args: argparse.Namespace, seed: int) -> list[str]:
    """The overrides every row trains with (data, size, steps, seed, then the user's ``--set``), before the
    teacher's and the prior's."""
    return [f"model.encoder={args.encoder}", f"model.pose_encoder={args.encoder}",
            f"data.height={args.height}", f"data.width={args.width}", "data.dataset=synthetic",
            f"data.path={train_dir}", "data.split=null", "data.val_path=null", "data.extra={}",
            f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}",
            f"train.num_workers={args.num_workers}", f"optim.lr={args.lr}", f"device={args.device}",
            f"seed={seed}", "log.progress_bar=false", "log.tensorboard=false"] + list(args.set)


def teacher_overrides(teacher_dir: Path | None) -> list[str]:
    """``--teacher-masks``: the teacher's folder as every row's dynamic masks (applied after ``--set``, whose
    contradicting keys parse_args refuses)."""
    if teacher_dir is None:
        return []
    return ["data.use_dynamic_masks=true", f"data.extra.dynamic_mask_dir={teacher_dir}"]


def mask_source_of(config: dict, teacher_dir: Path | None = None) -> str:
    """Where a row's training dynamic masks come from: "teacher", "renderer GT", "folder DIR" (a user's
    ``--set data.extra.dynamic_mask_dir``) or "none (use_dynamic_masks false)"."""
    if not config["data"]["use_dynamic_masks"]:
        return "none (use_dynamic_masks false)"
    folder = (config["data"]["extra"] or {}).get("dynamic_mask_dir")
    if folder is None:
        return "renderer GT"
    if teacher_dir is not None and Path(folder).resolve() == teacher_dir.resolve():
        return "teacher"
    return f"folder {folder}"


def row_config(name: str, train_dir: Path, args: argparse.Namespace, seed: int,
               teacher_dir: Path | None = None) -> dict:
    """The validated training config of row ``name`` with training seed ``seed``."""
    from depth_sfm_training.config import CONFIG_DIR, load_config

    overrides = _data_overrides(train_dir, args, seed) + teacher_overrides(teacher_dir)
    if args.init_weights:
        overrides.append(f"model.init_weights={args.init_weights}")
    overrides += _prior_overrides(name, args)
    return load_config(CONFIG_DIR / f"{name}.yaml", overrides)


def train_row(name: str, train_dir: Path, args: argparse.Namespace, seed: int, teacher_dir: Path | None = None):
    """Train one experiment config with training seed ``seed`` (from ``--init-weights`` when given; with
    ``teacher_dir`` on the teacher's masks, checked to be what the training set reads)."""
    from depth_sfm_training.trainer import Trainer
    from depth_sfm_training.validation import mean_window_drop

    config = row_config(name, train_dir, args, seed, teacher_dir)
    t0 = time.perf_counter()
    trainer = Trainer(config, None)
    checked = None
    if teacher_dir is not None:
        if mask_source_of(trainer.config, teacher_dir) != "teacher":
            raise RuntimeError(f"--teacher-masks: row {name} would train on {mask_source_of(trainer.config)}")
        checked = check_teacher_training_set(trainer.train_set, teacher_dir)
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    window = max(1, min(20, len(result.losses) // 4))
    info = {"train_s": round(seconds, 1), "steps": result.step, "steps_per_s": round(result.step / seconds, 3),
            "loss_first": float(np.mean(result.losses[:window])), "loss_last": float(np.mean(result.losses[-window:])),
            "loss_drop": mean_window_drop(result.losses, window) if len(result.losses) >= 2 * window else math.nan,
            "use_dynamic_masks": bool(config["data"]["use_dynamic_masks"]),
            "mask_source": mask_source_of(trainer.config, teacher_dir)}
    if checked is not None:
        info["teacher_mask_frames_checked"] = checked
    if args.init_weights:
        info["init"] = trainer.init_report
    return trainer, info


def mask_source_text(mask_source: str | dict[str, str], teacher: dict | None) -> str:
    """The header's words for where the trained rows' dynamic masks came from."""
    if isinstance(mask_source, dict):
        return "per row: " + ", ".join(f"{name} {source}" for name, source in mask_source.items())
    if mask_source == "teacher" and teacher is not None:
        gt = teacher["vs_renderer_gt"]
        return (f"teacher (label-free motion teacher, {teacher['frames']} frames in {teacher['dir']}, depth test "
                f"with {teacher['teacher_depth']}; vs the renderer's masks of the training frames, for the record: "
                f"IoU {_fmt(gt['iou'])}, precision {_fmt(gt['precision'])}, recall {_fmt(gt['recall'])}; the "
                f"renderer's masks never reach training)")
    if mask_source == "renderer GT":
        return "renderer GT (the auto-weight rows and the motion net's mask are partly supervised)"
    return mask_source


def _finite(value: Any) -> Any:
    """NaN / inf -> None, recursively (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _fmt(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def _cell(m: dict[str, Any], column: str) -> str:
    """A table cell: the value, with `` ±spread`` for a row scored over several seeds."""
    text = _fmt(m.get(column))
    spread = m.get("spread", {}).get(column)
    if len(m.get("per_seed", {})) > 1 and text != "-" and spread is not None and math.isfinite(spread):
        text += f" ±{spread:.3f}"
    return text


def table_columns(args: argparse.Namespace) -> list[str]:
    """The table's columns (+ DAVIS IoU with ``--davis``)."""
    return COLUMNS + ([DAVIS_COLUMN] if args.davis else [])


def format_table(rows: dict[str, dict[str, Any]], columns: list[str] = COLUMNS) -> str:
    head = "| method | " + " | ".join(COLUMN_TITLES.get(c, c) for c in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    for name, m in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(m, c) for c in columns) + " |")
    return "\n".join(lines)


def payload(results: dict, training: dict, args: argparse.Namespace, machine: dict, extra: dict | None = None) -> dict:
    """The JSON line: arguments, machine, results (per row; trained rows with ``spread`` and ``per_seed``), training
    info (trained rows: ``per_seed``) and ``extra`` (the held-out randomisation drawn, the DAVIS folder)."""
    return {"bench": "train_ablation", "args": vars(args), "machine": machine, "results": results,
            "training": training, **(extra or {})}


def write_results(out: Path, stamp: str, header: str, results: dict, training: dict, args: argparse.Namespace,
                  machine: dict, extra: dict | None = None) -> None:
    """``train_ablation_<stamp>.md`` (table + training info) and ``.json`` (one strict-JSON line)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"train_ablation_{stamp}.md").write_text(
        header + "\n\n" + format_table(results, table_columns(args)) + "\n\ntraining:\n```\n"
        + json.dumps(_finite(training), indent=1) + "\n```\n", encoding="utf-8")
    (out / f"train_ablation_{stamp}.json").write_text(
        json.dumps(_finite(payload(results, training, args, machine, extra)), allow_nan=False) + "\n",
        encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from depth_sfm_training.config import CONFIG_DIR

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    missing = [r for r in rows if not (CONFIG_DIR / f"{r}.yaml").is_file()]
    if missing:
        raise SystemExit(f"unknown rows {missing}; configs: {sorted(p.stem for p in CONFIG_DIR.glob('*.yaml'))}")
    for name in rows:  # refuse a row that cannot run before training the others
        _prior_overrides(name, args)
    machine = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
               "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="train_ablation_")
        data_root = Path(tmp.name)
    else:
        data_root = Path(args.data_dir)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    davis_root, davis_note = davis_root_of(args) if args.davis else (None, "")
    if args.davis and davis_root is None:
        print(davis_note, file=sys.stderr, flush=True)
    seed_keys = [str(seed) for seed in args.seeds]
    try:
        if davis_root is not None and args.davis_max_frames:
            davis_root = davis_subset(davis_root, args.davis_max_frames,
                                      data_root / f"davis_first{args.davis_max_frames}")
        train_dir, test_dir = render_data(data_root, args)
        teacher_dir = teacher_mask_dir(data_root, args) if args.teacher_masks else None
        teacher = write_teacher_masks(train_dir, teacher_dir, args, rows) if teacher_dir is not None else None
        sources = {name: mask_source_of(row_config(name, train_dir, args, args.seed, teacher_dir), teacher_dir)
                   for name in rows}
        mask_source = next(iter(sources.values())) if len(set(sources.values())) == 1 else sources
        test_set = test_dataset(test_dir, args)
        results: dict[str, dict[str, Any]] = dict(trivial_baselines(test_set, training_depths(train_dir, args)))
        training: dict[str, dict[str, Any]] = {}
        extra = {"test_randomization": heldout_randomization_record(args),
                 "davis": {"root": str(davis_root) if davis_root is not None else None, "note": davis_note}
                 if args.davis else None,
                 "mask_source": mask_source, "teacher_masks": teacher}
        header = (f"train_ablation: {args.steps} steps x batch {args.batch_size} at {args.height}x{args.width}, "
                  f"{args.encoder} encoders, train seeds {args.train_seeds} ({args.train_frames} frames each, "
                  f"randomisation {args.train_randomize}), test seed {args.test_seed} ({len(test_set)} frames, "
                  f"randomisation {args.test_randomize}"
                  + (": the renderer's held-out ranges, unseen in training" if args.test_randomize == "heldout"
                     else "") + ")"
                  + (f", every row starting from the weights of {args.init_weights}" if args.init_weights else "")
                  + (f"; trained rows: mean over training seeds {','.join(seed_keys)} ± half the max-min range "
                     f"(every seed in the JSON line)" if len(seed_keys) > 1 else f"; training seed {seed_keys[0]}")
                  + f"; training dynamic masks: {mask_source_text(mask_source, teacher)}"
                  + f"; mask columns: dynamic_prob > {MASK_THRESHOLD} vs the renderer's dynamic mask, pooled over "
                    f"the held-out frames"
                  + (f"; {davis_note}" if args.davis else "") + f"; machine: {machine}")
        if args.init_weights:  # the common starting point, scored as it is
            from depth_sfm_ros.models import build_from_checkpoint, load_checkpoint

            bundle, model_config = build_from_checkpoint(args.init_weights)
            name = "init weights (no further training)"
            results[name] = evaluate_model(bundle, model_config, test_set, torch.device("cpu"))
            if davis_root is not None and bundle.motion is not None:
                results[name].update(davis_row_scores(bundle, model_config, davis_root))
            training[name] = {"train_s": 0.0, "steps": 0,
                              "checkpoint_step": int(load_checkpoint(args.init_weights)["step"])}
        for name in rows:
            per_seed: dict[str, dict[str, Any]] = {}
            infos: dict[str, dict[str, Any]] = {}
            for seed in args.seeds:
                trainer, info = train_row(name, train_dir, args, seed, teacher_dir)
                scores = evaluate_model(trainer.bundle, trainer.model_config, test_set, trainer.device)
                if davis_root is not None and trainer.bundle.motion is not None:
                    scores.update(davis_row_scores(trainer.bundle, trainer.model_config, davis_root, trainer.config))
                per_seed[str(seed)], infos[str(seed)] = scores, info
                del trainer
                shown = {k: v for k, v in scores.items() if k != "davis_clips"}
                print(f"{name} seed {seed}: {info} {shown}", file=sys.stderr, flush=True)
            results[name] = aggregate_seeds(per_seed)
            training[name] = {"per_seed": infos}
            if args.out:  # rewritten after every row, so a long run that is cut short keeps what it finished
                write_results(Path(args.out), stamp, header, results, training, args, machine, extra)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(header)
    print(format_table(results, table_columns(args)))
    print(json.dumps(_finite(payload(results, training, args, machine, extra)), allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
