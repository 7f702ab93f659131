"""Label-free moving objects for the dynamic-object mask: paste textured shapes that move on their own (issue 13).

The mask net learns "moving" from a label-free motion teacher's masks, but the real training video has only four
clips with moving objects, so it learns how those objects look (a camel, a dog, a car, a runner) instead of how
they move, and misses the objects of held-out clips. :class:`PasteMovingObjects` makes unlimited moving objects
whose look carries no information: each is a patch of the sample's own target image, cut at one place and pasted
at another, that moves through the source frames on a random 2-D path of its own. Its label is known because the
augmentation made it: the sample's ``dynamic_mask`` gains the pasted shape on every frame. No label is read.

Per object, drawn from a NumPy Generator seeded by ``(seed, epoch, index)`` (:func:`paste_rng`, a stream apart from
the dataset's flip / jitter draws, so switching pasting on or off changes no other augmentation):

1. a binary shape (hard edge, no blending: the label is exact) covering ``area_range`` of the image: an ellipse
   of random aspect (1:2 .. 2:1) roughened by smooth noise and thresholded to the drawn area;
2. its texture: the target frame's pixels under the shape at a random other place (the donor box, not
   overlapping the placement where the image allows). The same object so appears twice in the target, once
   static at the donor place (background, label 0) and once moving (label 1): only the motion tells them apart;
3. a random placement in the target (the whole shape inside), a velocity of ``speed_px_range`` px per frame
   offset in a random direction and a scale rate in ``[-scale_change, scale_change]``: in a source with frame
   offset ``o`` (the entries of ``frame_offsets``, not multiplied by the stride) the shape is displaced by
   ``o * velocity`` and scaled by ``(1 + rate) ** o`` about its centre (nearest-neighbour resampling, so
   offsets -1 and +1 see opposite displacements), and may leave the image partly.

Pasted after geometric augmentation and colour jitter: ``images_raw`` (what the losses compare) gets the donor's
``images_raw`` pixels and ``images`` (the network input) the donor's ``images`` pixels at the same place, so the
network input stays the jittered loss image (the jitter draw is shared by all frames; it differs only by the
contrast pivot, each frame's mean grey) and a grayscale sample gets a grey object.

Only samples WITH a dynamic mask (``has_dynamic_mask`` True) are changed: on a frame whose own moving objects are
unknown, the pasted object's label would come with an implied "static" everywhere else. Where an object covers
the target, ``depth_gt`` becomes 0 (invalid: the depth under the patch is no longer what is seen) and, when the
sample has instance masks, each object gets a new instance id (above the sample's largest) on every frame.
No key is added or removed (a batch may mix pasted and untouched samples).

Known limit: an object whose drawn velocity happens to equal the camera's own image motion where it sits looks
attached to the background, yet is labelled moving (rare: the speed is at least ``speed_px_range[0]`` px).

Dataset config key (every dataset type and mixture component, :mod:`depth_sfm_training.datasets`): ``paste_moving:
{prob, max_objects, area_range, speed_px_range, scale_change}`` (missing keys take the defaults below; the seed is
the dataset's), applied to training samples only (``augment: true``).
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from .transforms import augmentation_options

__all__ = ["MovingObject", "PasteMovingObjects", "draw_shape", "footprint", "paste_objects", "paste_rng"]

PASTE_STREAM = 0x70617374  # "past": the fourth seed word of the paste draws, apart from the dataset's own stream
SHAPE_FILL = 0.7           # share of its bounding box a drawn shape covers
SHAPE_ROUGHNESS = 0.35     # amplitude of the smooth noise added to the ellipse (0 = a clean ellipse)
NOISE_GRID = 4             # the noise is drawn on a NOISE_GRID x NOISE_GRID grid and upsampled (bicubic)
DONOR_TRIES = 8            # draws of a donor box that does not overlap the placement before taking the last one


def paste_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The paste draws of sample ``index`` in ``epoch``: deterministic, and independent of the dataset's
    flip / jitter stream ``np.random.default_rng([seed, epoch, index])``."""
    return np.random.default_rng([int(seed), int(epoch), int(index), PASTE_STREAM])


@dataclass(frozen=True)
class MovingObject:
    """One pasted object: its shape and texture, where it sits in the target and how it moves.

    Attributes:
        shape: (h, w) bool silhouette, True = object.
        texture: (3, h, w) float32 network-input pixels (cut from ``images``).
        texture_raw: (3, h, w) float32 loss pixels (cut from ``images_raw`` at the same place).
        top_left: (row, col) of the shape's box in the target frame.
        velocity: (rows, cols) px per frame offset.
        scale_rate: the size at frame offset ``o`` is ``(1 + scale_rate) ** o`` times the target's.
    """

    shape: np.ndarray
    texture: np.ndarray
    texture_raw: np.ndarray
    top_left: tuple[int, int]
    velocity: tuple[float, float]
    scale_rate: float = 0.0


def draw_shape(rng: np.random.Generator, area_px: float, max_height: int, max_width: int) -> np.ndarray:
    """(h, w) bool irregular blob of ``round(area_px)`` pixels (at least 1, at most h * w) with h <= max_height,
    w <= max_width: an ellipse of random aspect roughened by smooth noise, thresholded at the drawn area."""
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # width / height
    box_px = area_px / SHAPE_FILL
    h = int(np.clip(round(np.sqrt(box_px / aspect)), 1, max_height))
    w = int(np.clip(round(np.sqrt(box_px * aspect)), 1, max_width))
    noise = cv2.resize(rng.standard_normal((NOISE_GRID, NOISE_GRID)).astype(np.float32), (w, h),
                       interpolation=cv2.INTER_CUBIC)
    yy = ((np.arange(h) + 0.5) / h * 2.0 - 1.0)[:, None]
    xx = ((np.arange(w) + 0.5) / w * 2.0 - 1.0)[None, :]
    field = (1.0 - yy ** 2 - xx ** 2) + SHAPE_ROUGHNESS * noise
    n = int(np.clip(round(area_px), 1, h * w))
    threshold = np.partition(field.ravel(), h * w - n)[h * w - n]
    return field >= threshold


def footprint(obj: MovingObject, offset: int, height: int, width: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where ``obj`` covers a (height, width) frame at frame offset ``offset``.

    Returns ``mask`` (height, width) bool and, for its True pixels in row-major order, the (row, col) of the
    object pixel each one shows, both (N,) int64 (index ``obj.shape`` / ``obj.texture[:, rows, cols]``). At offset
    0 the mask is the shape at ``top_left``, exactly; elsewhere it is displaced by ``offset * velocity`` and
    scaled about the shape's centre (nearest neighbour)."""
    h, w = obj.shape.shape
    scale = (1.0 + obj.scale_rate) ** offset
    centre_r = obj.top_left[0] + h / 2.0 + offset * obj.velocity[0]
    centre_c = obj.top_left[1] + w / 2.0 + offset * obj.velocity[1]
    rows = np.floor((np.arange(height) + 0.5 - centre_r) / scale + h / 2.0).astype(np.int64)
    cols = np.floor((np.arange(width) + 0.5 - centre_c) / scale + w / 2.0).astype(np.int64)
    inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
    mask = np.zeros((height, width), bool)
    mask[inside] = obj.shape[np.broadcast_to(rows[:, None], inside.shape)[inside],
                             np.broadcast_to(cols[None, :], inside.shape)[inside]]
    yy, xx = np.nonzero(mask)
    return mask, rows[yy], cols[xx]


def paste_objects(sample: dict, objects: Sequence[MovingObject], frame_offsets: Sequence[int]) -> dict:
    """A copy of ``sample`` with ``objects`` pasted (later ones over earlier ones) into every frame.

    ``images`` / ``images_raw`` (S, 3, H, W) take the objects' textures, ``dynamic_mask`` (S, 1, H, W) becomes
    (its mask OR the objects' footprints); ``depth_gt`` (1, H, W), when present, is 0 under the target's objects;
    ``instance_ids`` (S, 1, H, W), when ``has_instances``, gets one new id per object. Frame ``s`` has offset
    ``frame_offsets[s]``. The input sample's tensors are not modified."""
    out = dict(sample)
    images, images_raw = sample["images"].clone(), sample["images_raw"].clone()
    dynamic = sample["dynamic_mask"].clone()
    depth = sample["depth_gt"].clone() if "depth_gt" in sample else None
    ids = sample["instance_ids"].clone() if sample.get("has_instances", False) else None
    first_id = int(ids.max()) + 1 if ids is not None else 0
    _, _, height, width = images.shape
    for s, offset in enumerate(frame_offsets):
        for k, obj in enumerate(objects):
            mask, rows, cols = footprint(obj, int(offset), height, width)
            where = torch.from_numpy(mask)
            images[s][:, where] = torch.from_numpy(obj.texture[:, rows, cols]).to(images.dtype)
            images_raw[s][:, where] = torch.from_numpy(obj.texture_raw[:, rows, cols]).to(images_raw.dtype)
            dynamic[s, 0][where] = 1.0
            if ids is not None:
                ids[s, 0][where] = first_id + k
            if depth is not None and s == 0:
                depth[0][where] = 0.0
    out.update(images=images, images_raw=images_raw, dynamic_mask=dynamic)
    if depth is not None:
        out["depth_gt"] = depth
    if ids is not None:
        out["instance_ids"] = ids
    return out


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(float(value)):
        raise ValueError(f"paste_moving {name} must be a finite number, got {value!r}")
    return float(value)


def _range(name: str, value: Any, low: float, high: float, low_open: bool = True) -> tuple[float, float]:
    """(a, b) with low < a (low <= a when not ``low_open``) and a <= b <= high, else a ValueError."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"paste_moving {name} must be [min, max], got {value!r}")
    a, b = (_number(name, v) for v in value)
    if not ((low < a if low_open else low <= a) and a <= b <= high):
        raise ValueError(f"paste_moving {name} must be [min, max] with {low} {'<' if low_open else '<='} min <= max "
                         f"<= {high}, got {list(value)}")
    return a, b


class PasteMovingObjects:
    """Pastes 1..``max_objects`` independently moving objects into a sample with probability ``prob`` (see the
    module docstring).

    Args:
        frame_offsets: the dataset's offsets, target (0) first, in the order of the sample's frames.
        prob: chance that a sample with a dynamic mask gets objects (0 = never: the sample is returned as is).
        max_objects: the number of objects is uniform in 1..max_objects.
        area_range: [min, max] area of one object as a fraction of the image, 0 < min <= max <= 0.5.
        speed_px_range: [min, max] speed in px (of the sample's size) per frame offset, 0 < min <= max.
        scale_change: the object's size changes by a factor (1 + r) per frame offset, r uniform in
            [-scale_change, scale_change], 0 <= scale_change < 0.5 (0 = rigid translation).
    """

    KEYS = ("prob", "max_objects", "area_range", "speed_px_range", "scale_change")

    def __init__(self, frame_offsets: Sequence[int], prob: float = 0.5, max_objects: int = 3,
                 area_range: Sequence[float] = (0.01, 0.08), speed_px_range: Sequence[float] = (2.0, 12.0),
                 scale_change: float = 0.05) -> None:
        offsets = tuple(frame_offsets)
        if not offsets or offsets[0] != 0 or not all(isinstance(o, (int, np.integer)) for o in offsets):
            raise ValueError(f"paste_moving needs integer frame_offsets with the target (0) first, got "
                             f"{list(frame_offsets)}")
        self.frame_offsets = tuple(int(o) for o in offsets)
        self.prob = _number("prob", prob)
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"paste_moving prob must be in [0, 1], got {prob!r}")
        if isinstance(max_objects, bool) or not isinstance(max_objects, (int, np.integer)) or max_objects < 1:
            raise ValueError(f"paste_moving max_objects must be an integer >= 1, got {max_objects!r}")
        self.max_objects = int(max_objects)
        self.area_range = _range("area_range", area_range, 0.0, 0.5)
        self.speed_px_range = _range("speed_px_range", speed_px_range, 0.0, np.inf)
        self.scale_change = _number("scale_change", scale_change)
        if not 0.0 <= self.scale_change < 0.5:
            raise ValueError(f"paste_moving scale_change must be in [0, 0.5), got {scale_change!r}")

    @classmethod
    def from_config(cls, config: Any, frame_offsets: Sequence[int]) -> "PasteMovingObjects":
        """From the dataset key ``paste_moving`` (a mapping of :attr:`KEYS`; missing keys take the defaults)."""
        return cls(frame_offsets, **augmentation_options("paste_moving", config, cls.KEYS))

    def draw(self, rng: np.random.Generator, image: np.ndarray, image_raw: np.ndarray) -> list[MovingObject]:
        """1..max_objects objects for a target frame: ``image`` / ``image_raw`` (3, H, W) float32, the target's
        network input and loss image (textures are cut from both at the same place)."""
        _, height, width = image.shape
        objects = []
        for _ in range(int(rng.integers(1, self.max_objects + 1))):
            area_px = rng.uniform(*self.area_range) * height * width
            shape = draw_shape(rng, area_px, height, width)
            h, w = shape.shape
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            for _ in range(DONOR_TRIES):
                d_top, d_left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
                if abs(d_top - top) >= h or abs(d_left - left) >= w:
                    break
            speed, angle = rng.uniform(*self.speed_px_range), rng.uniform(0.0, 2.0 * np.pi)
            rate = rng.uniform(-self.scale_change, self.scale_change) if self.scale_change > 0 else 0.0
            donor = (slice(None), slice(d_top, d_top + h), slice(d_left, d_left + w))
            objects.append(MovingObject(shape=shape, texture=np.array(image[donor], np.float32),
                                        texture_raw=np.array(image_raw[donor], np.float32), top_left=(top, left),
                                        velocity=(float(speed * np.sin(angle)), float(speed * np.cos(angle))),
                                        scale_rate=float(rate)))
        return objects

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        """``sample`` with objects pasted (a new dict), or ``sample`` itself when it has no dynamic mask or the
        ``prob`` draw says no. ValueError when its frames do not match the frame offsets."""
        if not bool(sample.get("has_dynamic_mask", False)) or self.prob == 0.0 or rng.random() >= self.prob:
            return sample
        images, images_raw, dynamic = sample["images"], sample["images_raw"], sample["dynamic_mask"]
        n = len(self.frame_offsets)
        if images.dim() != 4 or images.shape[:2] != (n, 3) or images_raw.shape != images.shape \
                or dynamic.shape != (n, 1, *images.shape[2:]):
            raise ValueError(f"paste_moving: expected images / images_raw ({n}, 3, H, W) and dynamic_mask "
                             f"({n}, 1, H, W) for frame_offsets {list(self.frame_offsets)}, got "
                             f"{tuple(images.shape)}, {tuple(images_raw.shape)}, {tuple(dynamic.shape)}")
        objects = self.draw(rng, images[0].numpy(), images_raw[0].numpy())
        return paste_objects(sample, objects, self.frame_offsets)
