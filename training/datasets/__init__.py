"""Datasets in their real on-disk formats, all producing the sample contract of :mod:`.base`.

``build_dataset(config)`` is the one entry point the trainer and the evaluator use::

    build_dataset({"type": "kitti_raw", "data_path": "/data/kitti_raw", "split_file": "train_files.txt",
                   "frame_offsets": [0, -1, 1], "height": 192, "width": 640, "augment": True})

``path`` is accepted for ``data_path`` and ``split`` (what the trainer passes) means: kitti_raw
a split file (a path, or relative to training/splits/, e.g. ``eigen_zhou/train_files.txt``),
cityscapes the split name, kitti_odom the sequences (list or "09,10"); other types need None.
Common keys (all optional except type/data_path): frame_offsets, stride, height, width, crop
(x0, y0, w, h), augment, flip_prob, jitter, seed, boundary ("skip"|"clamp"), mask_dir, load_depth.
Per type:
    kitti_raw      split_file, depth_source ("velodyne"|"velodyne_eigen"|"annotated"|None; default None: projecting a
                   LiDAR scan per sample costs time training does not need), annotated_root
    kitti_eigen    kitti_raw on the Eigen test split (default split "eigen" = eigen/test_files.txt),
                   velodyne GT with LiDAR-forward depth like monodepth2's export_gt_depth; boundary defaults to "clamp" so no test frame is dropped
    kitti_eigen_benchmark   the same with the annotated depth (default split "eigen_benchmark")
    kitti_odom     sequences (list of "09" ...), camera (2|3)
    cityscapes     split ("train"|"val"|"test"), keep_fraction (0.75)
    folder         calib (YAML path; default <data_path>/calib.yaml)
    synthetic      (data_path is one synthetic folder, or a folder of them)
    rosbag         image_topic, camera_info_topic, cache_dir, intrinsics ({fx, fy, cx, cy, width, height})
"""
from __future__ import annotations

from pathlib import Path

from .base import FrameSequence, MaskFolder, SequenceDataset

SPLITS_DIR = Path(__file__).resolve().parent.parent / "splits"
COMMON_KEYS = {"frame_offsets", "stride", "height", "width", "crop", "augment", "flip_prob", "jitter", "seed",
               "boundary", "mask_dir", "load_depth"}
TYPE_KEYS = {
    "kitti_raw": {"split_file", "depth_source", "annotated_root"},
    "kitti_eigen": {"split_file", "annotated_root"},
    "kitti_eigen_benchmark": {"split_file", "annotated_root"},
    "kitti_odom": {"sequences", "camera"},
    "cityscapes": {"keep_fraction"},
    "folder": {"calib"},
    "synthetic": set(),
    "rosbag": {"image_topic", "camera_info_topic", "cache_dir", "intrinsics"},
}


def resolve_split_file(split: str | Path, data_path: Path | None = None, default_file: str = "train_files.txt"
                       ) -> Path:
    """A split file: a path, or a name relative to ``training/splits/`` or ``<data_path>/splits/``
    (monodepth2's layout). A folder name (``eigen_zhou``) means its ``default_file``."""
    path = Path(split)
    if path.is_file():
        return path
    for base in [SPLITS_DIR] + ([data_path / "splits"] if data_path is not None else []):
        for candidate in (base / path, base / path / default_file):
            if candidate.is_file():
                return candidate
    shipped = sorted(str(p.relative_to(SPLITS_DIR)) for p in SPLITS_DIR.glob("*/*.txt")) if SPLITS_DIR.is_dir() else []
    raise FileNotFoundError(f"split file {split} not found (shipped splits: {shipped or 'none'}; see "
                            f"training/splits/README.md for how to get the KITTI split files)")


def build_sequences(config: dict) -> tuple[list[FrameSequence], list[tuple[int, int]] | None]:
    """The sequences (and split targets, if any) a config describes; validates the keys."""
    if not isinstance(config, dict):
        raise TypeError(f"dataset config must be a dict, got {type(config).__name__}")
    kind = config.get("type")
    if kind not in TYPE_KEYS:
        raise ValueError(f"dataset type must be one of {sorted(TYPE_KEYS)}, got {kind!r}")
    base_keys = {"type", "data_path", "path", "split"}
    unknown = set(config) - COMMON_KEYS - TYPE_KEYS[kind] - base_keys
    if unknown:
        raise ValueError(f"unknown keys for a {kind} dataset: {sorted(unknown)}; allowed: "
                         f"{sorted(COMMON_KEYS | TYPE_KEYS[kind] | base_keys)}")
    if config.get("data_path", config.get("path")) is None:
        raise ValueError(f"{kind} dataset config needs data_path (or path)")
    root = Path(config.get("data_path", config.get("path")))
    split = config.get("split")
    if split is not None and kind not in ("kitti_raw", "kitti_eigen", "kitti_eigen_benchmark", "cityscapes",
                                          "kitti_odom"):
        raise ValueError(f"a {kind} dataset has no splits; got split={split!r}")
    if kind.startswith("kitti_eigen"):
        from .kitti import kitti_raw_sequences
        benchmark = kind == "kitti_eigen_benchmark"
        split_file = config.get("split_file") or split or ("eigen_benchmark" if benchmark else "eigen")
        return kitti_raw_sequences(root, resolve_split_file(split_file, root, "test_files.txt"),
                                   "annotated" if benchmark else "velodyne_eigen", config.get("annotated_root"))
    if kind == "kitti_raw":
        from .kitti import kitti_raw_sequences
        split_file = config.get("split_file") or split
        return kitti_raw_sequences(root, resolve_split_file(split_file, root) if split_file else None,
                                   config.get("depth_source"), config.get("annotated_root"))
    if kind == "kitti_odom":
        from .kitti import KittiOdometrySequence
        names = config.get("sequences") or split
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        names = names or sorted(p.name for p in (root / "sequences").glob("*") if p.is_dir())
        if not names:
            raise FileNotFoundError(f"no sequences under {root / 'sequences'}")
        return [KittiOdometrySequence(root, str(n), int(config.get("camera", 2))) for n in names], None
    if kind == "cityscapes":
        from .cityscapes import cityscapes_sequences
        return cityscapes_sequences(root, split or "train", float(config.get("keep_fraction", 0.75))), None
    if kind == "folder":
        from .folder import ImageFolderSequence
        return [ImageFolderSequence(root, config.get("calib"))], None
    if kind == "synthetic":
        from .folder import SyntheticFolderSequence
        if (root / "image_2").is_dir():
            return [SyntheticFolderSequence(root)], None
        folders = sorted(p for p in root.iterdir() if (p / "image_2").is_dir()) if root.is_dir() else []
        if not folders:
            raise FileNotFoundError(f"{root} is neither a synthetic folder (image_2/) nor a folder of them")
        return [SyntheticFolderSequence(p) for p in folders], None
    from depth_sfm_ros.geometry import Intrinsics

    from .rosbag import RosbagSequence
    if "image_topic" not in config:
        raise ValueError("rosbag dataset config needs image_topic")
    intrinsics = Intrinsics(**config["intrinsics"]) if config.get("intrinsics") else None
    return [RosbagSequence(root, config["image_topic"], config.get("camera_info_topic"), intrinsics,
                           config.get("cache_dir"))], None


def build_dataset(config: dict) -> SequenceDataset:
    """A :class:`SequenceDataset` from a config dict (see the module docstring for the keys)."""
    sequences, targets = build_sequences(config)
    options = {k: config[k] for k in COMMON_KEYS if k in config}
    if config["type"].startswith("kitti_eigen"):
        options.setdefault("boundary", "clamp")
    return SequenceDataset(sequences, targets=targets, **options)


__all__ = ["FrameSequence", "MaskFolder", "SequenceDataset", "build_dataset", "build_sequences"]
