"""Datasets in their real on-disk formats, all producing the sample contract of :mod:`.base`.

``build_dataset(config)`` is the one entry point the trainer and the evaluator use::

    build_dataset({"type": "kitti_raw", "data_path": "/data/kitti_raw", "split_file": "train_files.txt",
                   "frame_offsets": [0, -1, 1], "height": 192, "width": 640, "augment": True})

``path`` is accepted for ``data_path`` and ``split`` (what the trainer passes) means: kitti_raw
a split file (a path, or relative to training/splits/, e.g. ``eigen_zhou/train_files.txt``),
cityscapes the split name, kitti_odom the sequences (list or "09,10"); other types need None.
Common keys (all optional except type/data_path): frame_offsets, stride, height, width, crop
(x0, y0, w, h), augment, flip_prob, jitter, grayscale_prob, seed, boundary ("skip"|"clamp"), mask_dir, load_depth,
dynamic_mask_dir, paste_moving, static_pairs.
``mask_dir``: per-frame instance-id PNGs ``<mask_dir>/<sequence>/<frame_id>.png`` that replace the sequence's own
instance masks. ``dynamic_mask_dir``: per-frame binary dynamic-object PNGs in the same layout (single-channel 8/16-bit,
> 0 = moving; e.g. a label-free motion teacher's or a segmenter's) that replace the sequence's own dynamic masks
(e.g. a synthetic renderer's ground truth) on every frame; a frame without a file has no mask (the sample's
``has_dynamic_mask`` is False, as for a dataset without masks). Training uses dynamic masks only with
``data.use_dynamic_masks: true``. Both folders must exist; their paths are taken as given (not under data_path).
``paste_moving``: ``{prob, max_objects, area_range, speed_px_range, scale_change}`` (defaults 0.5, 3, [0.01, 0.08],
[2, 12] px per frame offset, 0.05; null = off): label-free moving objects for the dynamic-mask net (issue 13,
:mod:`.paste`): with probability ``prob`` a training sample that has a dynamic mask gets 1..max_objects patches of
its own target image pasted at another place, each moving on a random 2-D path of its own through the source
frames, and its ``dynamic_mask`` gains their shapes on every frame. Only with ``augment: true`` (training set);
samples without a dynamic mask are left as they are; the draws are seeded by (seed, epoch, index).
``static_pairs``: ``{prob, max_rotation_deg, still_fraction, noise_std}`` (defaults 0.2, 2.0, 0.3, 0.02; null =
off): samples in which nothing moves, known without a label (:mod:`.static_pairs`): with probability ``prob`` a
training sample's sources become its own target seen through a small pure camera rotation (or none), its
``dynamic_mask`` all zero; so the mask net must compare the frames, not recognise objects. Training only.
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
    rosbag         image_topic, camera_info_topic, cache_dir, intrinsics ({fx, fy, cx, cy, width, height}),
                   camera_input (auto|rectified|raw: CameraInfo policy of geometry.camera_model, as the node)
    seven_scenes   one Microsoft 7-Scenes sequence folder (frame-NNNNNN.color.jpg / depth.png / pose.txt)
    kitti_odom_folder  one KITTI odometry sequence in one folder (image_l/, calib.txt, poses.txt)
    davis          clips (list; default all), hfov_deg (assumed field of view, DAVIS has no calibration)
    tum_rgbd       one TUM RGB-D sequence folder (rgb.txt, depth.txt, groundtruth.txt); camera (fr1|fr2|fr3|
                   ros_default; default from the folder name), undistort (false), max_difference_s (0.02)
    euroc          one EuRoC MAV sequence (<seq>/mav0/cam0 ...; images undistorted); camera (cam0|cam1),
                   alpha (0: only valid pixels after undistortion), max_difference_s (0.01)
    mixture        components: a list of dataset configs (their own type / path, relative paths under
                   data_path; each may set ``repeat`` = copies per epoch); the common keys above are
                   inherited unless a component sets them
``frames: [start, stop]`` keeps only frames start..stop-1 of every sequence, re-numbered from 0 (e.g. a
held-out part of a recording; a stop past the end means the end); source frames never come from outside
the range. On a mixture, set it per component.
"""
from __future__ import annotations

from pathlib import Path

from .base import DynamicMaskFolder, FrameRange, FrameSequence, MaskFolder, MixtureDataset, SequenceDataset
from .paste import PasteMovingObjects

SPLITS_DIR = Path(__file__).resolve().parent.parent / "splits"
COMMON_KEYS = {"frame_offsets", "stride", "height", "width", "crop", "augment", "flip_prob", "jitter",
               "grayscale_prob", "seed", "boundary", "mask_dir", "dynamic_mask_dir", "load_depth", "frames",
               "paste_moving", "static_pairs"}
TYPE_KEYS = {
    "kitti_raw": {"split_file", "depth_source", "annotated_root"},
    "kitti_eigen": {"split_file", "annotated_root"},
    "kitti_eigen_benchmark": {"split_file", "annotated_root"},
    "kitti_odom": {"sequences", "camera"},
    "cityscapes": {"keep_fraction"},
    "folder": {"calib"},
    "synthetic": set(),
    "rosbag": {"image_topic", "camera_info_topic", "cache_dir", "intrinsics", "camera_input"},
    "seven_scenes": set(),
    "kitti_odom_folder": set(),
    "davis": {"clips", "hfov_deg"},
    "tum_rgbd": {"camera", "undistort", "max_difference_s"},
    "euroc": {"camera", "alpha", "max_difference_s"},
    "mixture": {"components"},
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
    sequences, targets = _build_sequences(config)
    if config.get("frames") is None:
        return sequences, targets
    start, stop = check_frames(config["frames"])
    if targets is not None:
        raise ValueError("frames cannot be combined with a split file (the split already lists the frames)")
    return [FrameRange(s, start, stop) for s in sequences], None


def check_frames(frames: object) -> tuple[int, int]:
    """``frames: [start, stop]`` as two integers with 0 <= start < stop, else a ValueError saying so."""
    if (not isinstance(frames, (list, tuple)) or len(frames) != 2
            or not all(isinstance(f, int) and not isinstance(f, bool) for f in frames)
            or not 0 <= frames[0] < frames[1]):
        raise ValueError(f"frames must be [start, stop] with integers 0 <= start < stop, got {frames!r}")
    return int(frames[0]), int(frames[1])


def _build_sequences(config: dict) -> tuple[list[FrameSequence], list[tuple[int, int]] | None]:
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
    if kind == "seven_scenes":
        from .real import SevenScenesSequence
        return [SevenScenesSequence(root)], None
    if kind == "kitti_odom_folder":
        from .real import KittiOdometryFolderSequence
        return [KittiOdometryFolderSequence(root)], None
    if kind == "davis":
        from .real import DAVIS_ASSUMED_HFOV_DEG, davis_sequences
        return davis_sequences(root, config.get("clips"), float(config.get("hfov_deg", DAVIS_ASSUMED_HFOV_DEG))), None
    if kind == "tum_rgbd":
        from .real import TUM_MAX_DIFFERENCE_S, TumRgbdSequence
        return [TumRgbdSequence(root, config.get("camera"), bool(config.get("undistort", False)),
                                float(config.get("max_difference_s", TUM_MAX_DIFFERENCE_S)))], None
    if kind == "euroc":
        from .real import EUROC_MAX_DIFFERENCE_S, EurocSequence
        return [EurocSequence(root, config.get("camera") or "cam0", float(config.get("alpha", 0.0)),
                              float(config.get("max_difference_s", EUROC_MAX_DIFFERENCE_S)))], None
    if kind == "mixture":
        raise ValueError("a mixture has no sequences of its own: use build_dataset")
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
                           config.get("cache_dir"), config.get("camera_input", "auto"))], None


def build_dataset(config: dict) -> SequenceDataset | MixtureDataset:
    """A :class:`SequenceDataset` (or a :class:`MixtureDataset`) from a config dict (see the module docstring)."""
    if isinstance(config, dict) and config.get("type") == "mixture":
        return _build_mixture(config)
    sequences, targets = build_sequences(config)
    options = {k: config[k] for k in COMMON_KEYS - {"frames"} if k in config}
    if config["type"].startswith("kitti_eigen"):
        options.setdefault("boundary", "clamp")
    return SequenceDataset(sequences, targets=targets, **options)


def _build_mixture(config: dict) -> MixtureDataset:
    unknown = set(config) - COMMON_KEYS - TYPE_KEYS["mixture"] - {"type", "data_path", "path", "split"}
    if unknown:
        raise ValueError(f"unknown keys for a mixture dataset: {sorted(unknown)}")
    if config.get("frames") is not None:
        raise ValueError("frames on a mixture is ambiguous (its components differ in length): set frames "
                         "on each component")
    if config.get("split") is not None:
        raise ValueError(f"a mixture has no splits; got split={config['split']!r} (set split per component)")
    components = config.get("components")
    if not isinstance(components, list) or not components:
        raise ValueError("a mixture dataset needs components: a non-empty list of dataset configs")
    root = config.get("data_path", config.get("path"))
    inherited = {k: config[k] for k in COMMON_KEYS - {"frames"} if k in config}
    datasets, repeats = [], []
    for n, component in enumerate(components):
        if not isinstance(component, dict) or component.get("type") in (None, "mixture"):
            raise ValueError(f"mixture component {n} must be a dataset config with a type (not a mixture)")
        component = dict(component)
        repeat = component.pop("repeat", 1)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            raise ValueError(f"mixture component {n} ({component['type']}): repeat must be an integer >= 1, "
                             f"got {repeat!r}")
        repeats.append(repeat)
        path = Path(component.pop("data_path", component.pop("path", "")) or ".")
        if not path.is_absolute() and root is not None:
            path = Path(root) / path
        datasets.append(build_dataset({**inherited, **component, "data_path": str(path)}))
    return MixtureDataset(datasets, repeats)


__all__ = ["DynamicMaskFolder", "FrameRange", "FrameSequence", "MaskFolder", "MixtureDataset", "PasteMovingObjects",
           "SequenceDataset", "build_dataset", "build_sequences", "check_frames"]
