"""The common sample contract of all datasets and the base dataset that builds it.

A loader only describes its frames as :class:`FrameSequence` objects (one continuous run of
one camera). :class:`SequenceDataset` turns sequences into training samples:

    images          float32 (S, 3, H, W) RGB in [0, 1]; index 0 = target, 1.. = sources in the
                    order of ``frame_offsets[1:]`` (default offsets [0, -1, 1]); colour-jittered
                    when augmenting
    images_raw      float32 (S, 3, H, W): the same frames before colour jitter (geometric
                    augmentation applied), for photometric losses
    K               float32 (3, 3) intrinsics at (H, W) after crop / resize / flip
    instance_ids    int64 (S, 1, H, W), 0 = background (zeros when none); has_instances bool
    dynamic_mask    float32 (S, 1, H, W), 1 = moving (zeros when none); has_dynamic_mask bool (True when every
                    frame has one); from the ``dynamic_mask_dir`` folder instead of the sequence when given
    depth_gt        float32 (1, H, W) metres, 0 = invalid, target frame only   (datasets with depth)
    has_depth_gt    bool: False when this sample's depth file is missing        (datasets with depth)
    T_src_tgt_gt    float32 (S-1, 4, 4) ground-truth T_src_tgt per source       (datasets with poses)
    index           int; sequence (str) and frame (int, target position in the sequence)

Order of geometric operations: crop (in original pixels) -> resize to (H, W) -> horizontal flip.
Augmentation is deterministic: sample ``i`` in epoch ``e`` draws from
``np.random.default_rng([seed, e, i])`` (call :meth:`SequenceDataset.set_epoch`). With ``paste_moving``
(:mod:`.paste`), training samples that have a dynamic mask then get independently moving pasted objects, drawn
from their own stream :func:`.paste.paste_rng`; with ``static_pairs`` (:mod:`.static_pairs`), before that, some
become samples in which nothing moves (sources = the target seen through a rotated camera, mask all zero), drawn
from :func:`.static_pairs.static_pair_rng`.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from depth_sfm_ros.geometry import Intrinsics
from depth_sfm_ros.geometry.camera_model import Undistorter

from .io import read_png_uint16, read_rgb
from .paste import PasteMovingObjects, paste_rng
from .static_pairs import StaticPairs, static_pair_rng
from .transforms import ColorJitter, flip_transform, resize_depth, resize_image, resize_nearest

LOG = logging.getLogger(__name__)


class FrameSequence:
    """One continuous sequence of frames from one camera. Loaders subclass it.

    Must implement ``__len__``, :meth:`image_rgb` and :meth:`intrinsics`; the rest return None
    when the data has no such ground truth. ``has_depth`` / ``has_poses`` tell the dataset
    whether to emit ``depth_gt`` / ``T_src_tgt_gt`` keys at all.
    """

    name: str = "sequence"
    has_depth: bool = False
    has_poses: bool = False
    nominal_fps: float | None = None  # frame rate of the recording, Hz, when known (stamps for a bag without any)

    def __len__(self) -> int:
        raise NotImplementedError

    def image_rgb(self, i: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) of frame ``i`` (0-based position in the sequence)."""
        raise NotImplementedError

    def intrinsics(self, i: int) -> Intrinsics:
        """Intrinsics of the image :meth:`image_rgb` returns."""
        raise NotImplementedError

    def depth_m(self, i: int) -> np.ndarray | None:
        """(H, W) float32 metres, 0 = invalid, or None when unknown."""
        return None

    def T_world_cam(self, i: int) -> np.ndarray | None:
        """(4, 4) camera pose in a fixed world frame, or None."""
        return None

    def instance_ids(self, i: int) -> np.ndarray | None:
        """(H, W) integer ids (0 = background), or None."""
        return None

    def dynamic_mask(self, i: int) -> np.ndarray | None:
        """(H, W) bool, True on moving objects, or None."""
        return None

    def frame_id(self, i: int) -> str:
        """File stem of frame ``i`` (used to find per-frame masks in a mask folder)."""
        return f"{i:06d}"

    def stamp_ns(self, i: int) -> int | None:
        """Capture time of frame ``i`` in integer nanoseconds, or None when the dataset has no time stamps."""
        return None


class ImageFileSequence(FrameSequence):
    """A sequence stored as one image file per frame with one camera: subclasses set ``images`` (sorted
    paths) and ``_K`` (the intrinsics of the images this class returns) in their constructor, and optionally
    ``stamps_ns`` (capture times, one per image) and ``undistorter`` (a
    :class:`depth_sfm_ros.geometry.camera_model.Undistorter`, e.g. ``real.Undistorter``, whose ``image(rgb)`` maps
    a raw image into the geometry of ``_K``: the one camera-model module of the node, bag tools and training)."""

    images: list[Path]
    _K: Intrinsics
    stamps_ns: Sequence[int] | None = None
    undistorter: Undistorter | None = None

    def __len__(self) -> int:
        return len(self.images)

    def frame_id(self, i: int) -> str:
        return self.images[i].stem

    def stamp_ns(self, i: int) -> int | None:
        return None if self.stamps_ns is None else int(self.stamps_ns[i])

    def image_rgb(self, i: int) -> np.ndarray:
        image = read_rgb(self.images[i])
        return image if self.undistorter is None else self.undistorter.image(image)

    def intrinsics(self, i: int) -> Intrinsics:
        return self._K


class MaskFolder:
    """Per-frame instance masks from any segmenter: ``<root>/<sequence.name>/<frame_id>.png``,
    single-channel uint8/uint16 ids, 0 = background. Missing files give None (no masks)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"mask folder {self.root} does not exist")

    def load(self, sequence: FrameSequence, i: int) -> np.ndarray | None:
        path = self.root / sequence.name / f"{sequence.frame_id(i)}.png"
        if not path.is_file():
            return None
        return read_png_uint16(path).astype(np.int64)


class DynamicMaskFolder:
    """Per-frame binary dynamic-object masks from a folder (a label-free motion teacher's, a segmenter's):
    ``<root>/<sequence.name>/<frame_id>.png``, single-channel 8- or 16-bit, pixel > 0 = moving, at the size of the
    images the sequence returns. A missing file gives None (no mask for that frame)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dynamic mask folder {self.root} does not exist")

    def path(self, sequence: FrameSequence, i: int) -> Path:
        """The file that holds the mask of frame ``i`` of ``sequence`` (whether or not it exists)."""
        return self.root / sequence.name / f"{sequence.frame_id(i)}.png"

    def load(self, sequence: FrameSequence, i: int) -> np.ndarray | None:
        """(H, W) bool, True on moving pixels, or None when the file is missing; ValueError naming the file for a
        PNG that is not single-channel."""
        path = self.path(sequence, i)
        if not path.is_file():
            return None
        return read_png_uint16(path) > 0


def check_frame_offsets(frame_offsets: Sequence[int]) -> tuple[int, ...]:
    offsets = tuple(int(o) for o in frame_offsets)
    if not offsets or offsets[0] != 0:
        raise ValueError(f"frame_offsets must start with 0 (the target frame), got {list(frame_offsets)}")
    if len(set(offsets)) != len(offsets) or any(o != f for o, f in zip(offsets, frame_offsets)):
        raise ValueError(f"frame_offsets must be distinct integers, got {list(frame_offsets)}")
    return offsets


class SequenceDataset(Dataset):
    """Samples of target + source frames drawn from :class:`FrameSequence` objects.

    Args:
        sequences: the sequences.
        frame_offsets: target first (0), then the source offsets in output order.
        stride: frames between offsets (offset -1 with stride 2 = two frames back).
        height, width: output size (None = keep the (cropped) size; then all frames must match).
        crop: ``(x0, y0, w, h)`` box in original pixels applied before resizing, or None.
        augment: random horizontal flip (``flip_prob``) and colour jitter (``jitter`` =
            brightness, contrast, saturation, hue ranges; None = no jitter, and no grayscale either), with
            probability ``grayscale_prob`` a grayscale network input (the loss images stay in colour).
        targets: explicit ``(sequence_index, frame_index)`` targets (e.g. from a split file);
            default: every frame.
        boundary: ``"skip"`` drops targets whose sources fall outside the sequence;
            ``"clamp"`` replaces them by the nearest frame inside.
        mask_dir: a :class:`MaskFolder` root whose instance masks replace the sequence's own.
        dynamic_mask_dir: a :class:`DynamicMaskFolder` root whose binary masks replace the sequence's own
            ``dynamic_mask`` on every frame (a frame without a file has no mask: ``has_dynamic_mask`` is False
            for the samples that use it, as for a sequence without masks).
        load_depth: emit ``depth_gt`` when the sequences have depth.
        paste_moving: options of :class:`.paste.PasteMovingObjects` (a dict; None = off): when augmenting, pastes
            label-free moving objects into the samples that have a dynamic mask, at the end of ``__getitem__``.
        static_pairs: options of :class:`.static_pairs.StaticPairs` (a dict; None = off): when augmenting, turns
            some samples into static ones (nothing moves; dynamic mask zero), before pasting.
    """

    def __init__(self, sequences: Sequence[FrameSequence], frame_offsets: Sequence[int] = (0, -1, 1),
                 stride: int = 1, height: int | None = None, width: int | None = None,
                 crop: Sequence[int] | None = None, augment: bool = False, flip_prob: float = 0.5,
                 jitter: Sequence[float] | None = (0.2, 0.2, 0.2, 0.1), seed: int = 0,
                 targets: Sequence[tuple[int, int]] | None = None, boundary: str = "skip",
                 mask_dir: str | Path | None = None, load_depth: bool = True, grayscale_prob: float = 0.0,
                 dynamic_mask_dir: str | Path | None = None, paste_moving: dict | None = None,
                 static_pairs: dict | None = None) -> None:
        if not sequences:
            raise ValueError("no sequences: the dataset is empty (check data_path / split)")
        self.sequences = list(sequences)
        self.frame_offsets = check_frame_offsets(frame_offsets)
        if int(stride) < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.stride = int(stride)
        if (height is None) != (width is None) or (height is not None and (height <= 0 or width <= 0)):
            raise ValueError(f"height and width must both be positive or both None, got {height}, {width}")
        self.height, self.width = height, width
        if crop is not None and (len(crop) != 4 or min(crop[2], crop[3]) <= 0 or min(crop[0], crop[1]) < 0):
            raise ValueError(f"crop must be (x0, y0, w, h) with w, h > 0, got {crop}")
        self.crop = None if crop is None else tuple(int(c) for c in crop)
        if not 0 <= flip_prob <= 1:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        self.augment, self.flip_prob = bool(augment), float(flip_prob)
        if jitter is not None and len(jitter) != 4:
            raise ValueError(f"jitter must be (brightness, contrast, saturation, hue), got {jitter}")
        self.jitter = None if jitter is None else tuple(float(j) for j in jitter)
        if not 0 <= grayscale_prob <= 1:
            raise ValueError(f"grayscale_prob must be in [0, 1], got {grayscale_prob}")
        self.grayscale_prob = float(grayscale_prob)
        self.seed, self.epoch = int(seed), 0
        if boundary not in ("skip", "clamp"):
            raise ValueError(f"boundary must be 'skip' or 'clamp', got {boundary!r}")
        self.boundary = boundary
        self.masks = MaskFolder(mask_dir) if mask_dir is not None else None
        self.dynamic_masks = DynamicMaskFolder(dynamic_mask_dir) if dynamic_mask_dir is not None else None
        self.paste = (PasteMovingObjects.from_config(paste_moving, self.frame_offsets) if paste_moving is not None
                      else None)
        self.static_pairs = (StaticPairs.from_config(static_pairs, self.frame_offsets) if static_pairs is not None
                             else None)
        self.load_depth = bool(load_depth)
        self.with_depth = self.load_depth and all(s.has_depth for s in self.sequences)
        self.with_poses = len(self.frame_offsets) > 1 and all(s.has_poses for s in self.sequences)
        explicit_targets = targets is not None
        if targets is None:
            targets = [(s, f) for s, seq in enumerate(self.sequences) for f in range(len(seq))]
        self.targets: list[tuple[int, int]] = []
        self.n_dropped = 0
        for s, f in targets:
            if not (0 <= s < len(self.sequences) and 0 <= f < len(self.sequences[s])):
                raise IndexError(f"target ({s}, {f}) is outside the sequences")
            if self.boundary == "skip" and not all(0 <= i < len(self.sequences[s]) for i in self._raw_frames(f)):
                self.n_dropped += 1
                continue
            self.targets.append((int(s), int(f)))
        if self.n_dropped and explicit_targets:
            LOG.warning("%d of %d listed targets dropped: their sources (offsets %s, stride %d) fall outside the "
                        "sequence (use boundary='clamp' to keep them)", self.n_dropped,
                        self.n_dropped + len(self.targets), list(self.frame_offsets), self.stride)
        if not self.targets:
            raise ValueError(f"no target frame has all its sources (offsets {list(self.frame_offsets)}, "
                             f"stride {self.stride}) inside its sequence")

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws (call once per epoch, also in each worker's copy)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.targets)

    def _raw_frames(self, f: int) -> list[int]:
        return [f + o * self.stride for o in self.frame_offsets]

    def frames_of(self, index: int) -> tuple[FrameSequence, list[int]]:
        """The sequence and the frame positions (target first) of sample ``index``."""
        s, f = self.targets[index]
        seq = self.sequences[s]
        return seq, [min(max(i, 0), len(seq) - 1) for i in self._raw_frames(f)]

    # -------------------------------------------------------------------------------- geometry
    def _intrinsics_after(self, K: Intrinsics, flip: bool) -> Intrinsics:
        """Intrinsics of the image after crop -> resize -> flip (the order of :meth:`_apply`)."""
        if self.crop is not None:
            x0, y0, w, h = self.crop
            K = K.cropped(x0, y0, w, h)  # raises when the box is outside the image
        if self.height is not None:
            K = K.scaled(self.width, self.height)
        return K.flipped_horizontally() if flip else K

    def _apply(self, array: np.ndarray, kind: str, flip: bool) -> np.ndarray:
        if self.crop is not None:
            x0, y0, w, h = self.crop
            array = array[y0:y0 + h, x0:x0 + w]
        if self.height is not None:
            if kind == "image":
                array = resize_image(array, self.width, self.height)
            elif kind == "depth":
                array = resize_depth(array, self.width, self.height)
            else:
                array = resize_nearest(array, self.width, self.height)
        if flip:
            array = array[:, ::-1]
        return np.ascontiguousarray(array)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.targets):
            raise IndexError(f"index {index} out of range for {len(self.targets)} samples")
        seq, frames = self.frames_of(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        flip = self.augment and rng.random() < self.flip_prob
        jitter = (ColorJitter.sample(rng, *self.jitter, grayscale_prob=self.grayscale_prob)
                  if self.augment and self.jitter is not None else None)

        K_raw = seq.intrinsics(frames[0])
        K = self._intrinsics_after(K_raw, flip)
        images, images_raw, ids, dyn = [], [], [], []
        for i in frames:
            rgb = seq.image_rgb(i)
            if rgb.shape[:2] != (K_raw.height, K_raw.width):
                raise ValueError(f"{seq.name} frame {i}: image {rgb.shape[1]}x{rgb.shape[0]} does not match its "
                                 f"intrinsics {K_raw.width}x{K_raw.height}")
            rgb = self._apply(rgb, "image", flip).astype(np.float32) / 255.0
            images_raw.append(rgb)
            images.append(jitter(rgb) if jitter is not None else rgb)
            inst = self.masks.load(seq, i) if self.masks is not None else seq.instance_ids(i)
            ids.append(None if inst is None else self._apply(self._check_label(inst, seq, i, K_raw), "label", flip))
            if self.dynamic_masks is not None:
                mask, source = self.dynamic_masks.load(seq, i), self.dynamic_masks.path(seq, i)
            else:
                mask, source = seq.dynamic_mask(i), None
            dyn.append(None if mask is None else self._apply(
                self._check_label(mask.astype(np.uint8), seq, i, K_raw, source), "label", flip))
        h, w = images[0].shape[:2]
        if any(im.shape[:2] != (h, w) for im in images):
            raise ValueError(f"{seq.name}: frames {frames} have different sizes; set height/width to resize them")
        sample = {
            "images": torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()),
            "images_raw": torch.from_numpy(np.stack(images_raw).transpose(0, 3, 1, 2).copy()),
            "K": torch.from_numpy(K.K.astype(np.float32)),
            "has_instances": all(x is not None for x in ids),
            "has_dynamic_mask": all(x is not None for x in dyn),
            "index": index,
            "sequence": seq.name,
            "frame": frames[0],
        }
        sample["instance_ids"] = (torch.from_numpy(np.stack(ids).astype(np.int64)[:, None]) if sample["has_instances"]
                                  else torch.zeros(len(frames), 1, h, w, dtype=torch.int64))
        sample["dynamic_mask"] = (torch.from_numpy((np.stack(dyn) > 0).astype(np.float32)[:, None])
                                  if sample["has_dynamic_mask"] else torch.zeros(len(frames), 1, h, w))
        if self.with_depth:
            depth = seq.depth_m(frames[0])
            sample["has_depth_gt"] = depth is not None
            if depth is None:
                depth = np.zeros((h, w), np.float32)
            else:
                depth = self._apply(np.nan_to_num(self._check_label(depth, seq, frames[0], K_raw),
                                                  nan=0.0).astype(np.float32), "depth", flip)
            sample["depth_gt"] = torch.from_numpy(depth[None].astype(np.float32))
        if self.with_poses:
            sample["T_src_tgt_gt"] = torch.from_numpy(self._relative_poses(seq, frames, flip))
        if self.augment and self.static_pairs is not None:
            static = self.static_pairs(sample, static_pair_rng(self.seed, self.epoch, index))
            if static is not sample:
                return static
        if self.augment and self.paste is not None:
            sample = self.paste(sample, paste_rng(self.seed, self.epoch, index))
        return sample

    @staticmethod
    def _check_label(label: np.ndarray, seq: FrameSequence, i: int, K_raw: Intrinsics,
                     source: str | Path | None = None) -> np.ndarray:
        label = np.asarray(label)
        if label.shape != (K_raw.height, K_raw.width):
            raise ValueError(f"{seq.name} frame {i}: mask/depth shape {label.shape} does not match the image "
                             f"({K_raw.height}, {K_raw.width})" + (f" ({source})" if source is not None else ""))
        return label

    @staticmethod
    def _relative_poses(seq: FrameSequence, frames: list[int], flip: bool) -> np.ndarray:
        T_w_tgt = seq.T_world_cam(frames[0])
        out = []
        for i in frames[1:]:
            T_w_src = seq.T_world_cam(i)
            if T_w_tgt is None or T_w_src is None:
                raise ValueError(f"{seq.name}: pose of frame {i} or {frames[0]} missing")
            T = np.linalg.inv(T_w_src) @ T_w_tgt
            out.append(flip_transform(T) if flip else T)
        return np.asarray(out, dtype=np.float32)


class FrameRange(FrameSequence):
    """Frames ``[start, stop)`` of another sequence (a held-out or training part of one recording).

    Positions are re-based (frame 0 here is ``start`` there); sources never cross the range, so a
    training range cannot read a held-out frame as a source. A ``stop`` past the end means the end.
    """

    def __init__(self, sequence: FrameSequence, start: int, stop: int) -> None:
        n = len(sequence)
        start, stop = int(start), min(int(stop), n)
        if not 0 <= start < stop:
            raise ValueError(f"{sequence.name}: frame range [{start}, {stop}) is empty or outside its {n} frames")
        self.sequence, self.start, self.stop = sequence, start, stop
        self.has_depth, self.has_poses = sequence.has_depth, sequence.has_poses
        known = getattr(sequence, "pose_known", None)  # per-frame flags of sequences with partial ground truth
        if not self.has_poses and known is not None:
            self.has_poses = bool(all(known[start:stop]))
        self.name = sequence.name
        self.nominal_fps = sequence.nominal_fps

    def __len__(self) -> int:
        return self.stop - self.start

    def _at(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} outside the range of {len(self)} frames")
        return self.start + i

    def image_rgb(self, i: int) -> np.ndarray:
        return self.sequence.image_rgb(self._at(i))

    def intrinsics(self, i: int) -> Intrinsics:
        return self.sequence.intrinsics(self._at(i))

    def depth_m(self, i: int) -> np.ndarray | None:
        return self.sequence.depth_m(self._at(i))

    def T_world_cam(self, i: int) -> np.ndarray | None:
        return self.sequence.T_world_cam(self._at(i))

    def instance_ids(self, i: int) -> np.ndarray | None:
        return self.sequence.instance_ids(self._at(i))

    def dynamic_mask(self, i: int) -> np.ndarray | None:
        return self.sequence.dynamic_mask(self._at(i))

    def frame_id(self, i: int) -> str:
        return self.sequence.frame_id(self._at(i))

    def stamp_ns(self, i: int) -> int | None:
        return self.sequence.stamp_ns(self._at(i))


class MixtureDataset(Dataset):
    """Several datasets drawn as one, each repeated ``repeats[k]`` times per epoch.

    Samples keep only the keys every component emits (e.g. ``depth_gt`` is dropped when one
    component has no depth), so one batch can mix them; all components must share the output size.
    """

    def __init__(self, datasets: Sequence[Dataset], repeats: Sequence[int] | None = None) -> None:
        if not datasets:
            raise ValueError("a mixture needs at least one dataset")
        repeats = [1] * len(datasets) if repeats is None else [int(r) for r in repeats]
        if len(repeats) != len(datasets) or min(repeats) < 1:
            raise ValueError(f"repeats must be one integer >= 1 per dataset, got {repeats}")
        sizes = {(getattr(d, "height", None), getattr(d, "width", None)) for d in datasets}
        if len(sizes) != 1 or None in next(iter(sizes)):
            raise ValueError(f"every dataset of a mixture needs the same height and width, got "
                             f"{sorted(sizes, key=str)}")
        frames = {len(getattr(d, "frame_offsets", ())) for d in datasets}
        if len(frames) != 1:
            raise ValueError(f"every dataset of a mixture needs the same number of frames per sample "
                             f"(frame_offsets), got {sorted(frames)}")
        self.datasets, self.repeats = list(datasets), repeats
        self.with_depth = all(getattr(d, "with_depth", False) for d in self.datasets)
        self.with_poses = all(getattr(d, "with_poses", False) for d in self.datasets)
        self._index = [(k, i) for k, d in enumerate(self.datasets) for _ in range(repeats[k]) for i in range(len(d))]

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict:
        k, i = self._index[index]
        sample = self.datasets[k][i]
        if not self.with_depth:
            sample.pop("depth_gt", None)
            sample.pop("has_depth_gt", None)
        if not self.with_poses:
            sample.pop("T_src_tgt_gt", None)
        sample["index"] = index
        return sample
