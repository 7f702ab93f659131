"""Image / label transforms in numpy (resize, crop, flip, colour jitter) used by the base dataset.

Geometry of the intrinsics is never computed here: callers use ``Intrinsics.scaled`` /
``cropped`` / ``flipped_horizontally`` next to these array operations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np


def augmentation_options(key: str, config: Any, allowed: Sequence[str]) -> dict:
    """The mapping of an augmentation's dataset key (``paste_moving``, ``static_pairs``), checked: a dict whose keys
    are all in ``allowed`` (ValueError naming the key otherwise)."""
    if not isinstance(config, dict):
        raise ValueError(f"{key} must be a mapping of {list(allowed)} (or null = off), got {config!r}")
    unknown = set(config) - set(allowed)
    if unknown:
        raise ValueError(f"unknown {key} keys: {sorted(unknown)}; allowed: {list(allowed)}")
    return dict(config)


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an (H, W, C) image: area filter when shrinking, bilinear when enlarging."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    shrink = width < image.shape[1] and height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_nearest(label: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) label map (ids, masks); keeps the dtype."""
    if label.shape == (height, width):
        return label
    dtype = label.dtype
    work = label.astype(np.int32) if dtype in (np.int64, np.uint32, np.bool_) else label
    out = cv2.resize(work, (width, height), interpolation=cv2.INTER_NEAREST)
    return out.astype(dtype)


def resize_depth(depth_m: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an (H, W) depth map in metres (0 = invalid) without inventing depths.

    Each valid source pixel centre is mapped to the target pixel that contains it and the
    nearest depth wins, so sparse LiDAR depth keeps its points when shrinking; enlarging uses
    nearest neighbour.
    """
    h, w = depth_m.shape
    if (h, w) == (height, width):
        return depth_m.astype(np.float32, copy=False)
    if width > w or height > h:
        return cv2.resize(depth_m.astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST)
    v, u = np.nonzero(np.isfinite(depth_m) & (depth_m > 0))
    z = depth_m[v, u].astype(np.float32)
    tu = np.minimum(((u + 0.5) * (width / w)).astype(np.int64), width - 1)
    tv = np.minimum(((v + 0.5) * (height / h)).astype(np.int64), height - 1)
    out = np.full(height * width, np.inf, dtype=np.float32)
    np.minimum.at(out, tv * width + tu, z)
    out[np.isinf(out)] = 0.0
    return out.reshape(height, width)


LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601 luminance weights of R, G, B


@dataclass(frozen=True)
class ColorJitter:
    """One draw of photometric augmentation, applied identically to every frame of a sample.

    brightness / contrast / saturation are multiplicative factors (1 = unchanged), hue a shift
    in turns ([-0.5, 0.5], 0 = unchanged); ``grayscale`` replaces the result by its luminance in all three
    channels (what a mono camera such as EuRoC's gives the node).
    """

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    grayscale: bool = False

    @classmethod
    def sample(cls, rng: np.random.Generator, brightness: float = 0.2, contrast: float = 0.2,
               saturation: float = 0.2, hue: float = 0.1, grayscale_prob: float = 0.0) -> "ColorJitter":
        """Draw factors uniformly in [1 - x, 1 + x] (hue in [-hue, hue]), monodepth2's ranges by default, and
        grayscale with probability ``grayscale_prob`` (drawn last and only when > 0, so the other draws of a seed
        do not change with it)."""
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0 <= value < 1:
                raise ValueError(f"jitter {name} must be in [0, 1), got {value}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"jitter hue must be in [0, 0.5], got {hue}")
        if not 0 <= grayscale_prob <= 1:
            raise ValueError(f"grayscale_prob must be in [0, 1], got {grayscale_prob}")
        factors = dict(brightness=float(rng.uniform(1 - brightness, 1 + brightness)),
                       contrast=float(rng.uniform(1 - contrast, 1 + contrast)),
                       saturation=float(rng.uniform(1 - saturation, 1 + saturation)),
                       hue=float(rng.uniform(-hue, hue)))
        return cls(**factors, grayscale=bool(grayscale_prob > 0 and rng.random() < grayscale_prob))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Apply to float32 RGB (H, W, 3) in [0, 1]; returns a new array in [0, 1]."""
        out = np.clip(rgb * self.brightness, 0.0, 1.0)
        grey = out @ LUMA_RGB
        out = np.clip((out - grey.mean()) * self.contrast + grey.mean(), 0.0, 1.0)
        grey = (out @ LUMA_RGB)[..., None]
        out = np.clip((out - grey) * self.saturation + grey, 0.0, 1.0).astype(np.float32)
        if self.hue != 0.0:
            hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)  # float32: H in [0, 360)
            hsv[..., 0] = np.mod(hsv[..., 0] + self.hue * 360.0, 360.0)
            out = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0)
        if self.grayscale:
            out = np.repeat(out @ LUMA_RGB[:, None], 3, axis=-1)
        return out.astype(np.float32, copy=False)


FLIP_X = np.diag([-1.0, 1.0, 1.0, 1.0])


def flip_transform(T_a_b: np.ndarray) -> np.ndarray:
    """A relative pose (4, 4) expressed in horizontally mirrored camera frames (x -> -x)."""
    return FLIP_X @ T_a_b @ FLIP_X
