"""Label-free static samples for the dynamic-object mask: a frame paired with itself seen from a rotated camera.

The mask net is distilled from a motion teacher on the few real clips with moving objects, so it can learn how
those objects LOOK (a dog, a camel, a car) rather than that they MOVE relative to the scene, and then fires on a
dog that stands still. :class:`StaticPairs` makes samples whose answer is known without any label: every source
frame is the sample's own target image re-projected through a pure camera rotation (a homography ``K R K^-1``;
with probability ``still_fraction`` no rotation: a still camera), plus independent sensor noise. Whatever the
image shows, nothing in it moves independently of the camera, so the ``dynamic_mask`` is zero on every frame.
The student must compare the two images to tell such a pair from one with a moving object.

Per sample, drawn from a NumPy Generator seeded by ``(seed, epoch, index)`` (:func:`static_pair_rng`, a stream
apart from the dataset's flip / jitter draws and from the paste draws):

1. whether the sample becomes static (``prob``);
2. a rotation: none (all sources still) with probability ``still_fraction``, else an axis-angle vector with pitch
   and yaw components uniform in ``[-max_rotation_deg, max_rotation_deg]`` and roll in half that range; the
   source of frame offset ``o`` turns by ``o`` times it (offsets -1 and +1 exactly opposite, as a turning camera);
3. per source, Gaussian noise of standard deviation uniform in ``[0, noise_std]`` (the same noise on the network
   input and the loss image).

The source of offset ``o`` is ``warpPerspective(target, K R_o K^-1)``: a target pixel ``p`` is seen at
``K R_o K^-1 p`` in the source, i.e. ``T_src_tgt = [R_o | 0]``, which replaces ``T_src_tgt_gt`` when the sample has
poses. Pixels the rotation brings in from outside the target are filled by reflecting the border (they carry no
motion either; the warp's own validity mask keeps them out of the photometric loss only to the extent the pose
net sees the rotation). ``instance_ids`` of the sources are warped the same way (nearest); ``depth_gt`` belongs to
the target and is kept.

Dataset config key (every dataset type and mixture component, :mod:`depth_sfm_training.datasets`):
``static_pairs: {prob, max_rotation_deg, still_fraction, noise_std}`` (missing keys take the defaults below),
applied to training samples only (``augment: true``) and drawn before ``paste_moving`` (a static sample is not
pasted into: its mask is all zero by construction).
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from .transforms import augmentation_options

__all__ = ["StaticPairs", "rotation_homography", "static_pair_rng"]

STATIC_STREAM = 0x73746174  # "stat": the fourth seed word of these draws, apart from the dataset's and the paste's


def static_pair_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The static-pair draws of sample ``index`` in ``epoch`` (deterministic; an own stream)."""
    return np.random.default_rng([int(seed), int(epoch), int(index), STATIC_STREAM])


def rotation_matrix(axis_angle_rad: np.ndarray) -> np.ndarray:
    """(3, 3) float64 rotation of the axis-angle vector (3,) in radians (camera frame: x right, y down, z
    forward; so x turns the pitch, y the yaw, z the roll). ``rotation_matrix(-w)`` is the inverse of
    ``rotation_matrix(w)``.

    >>> np.allclose(rotation_matrix(np.array([0.1, -0.2, 0.05])) @ rotation_matrix(np.array([-0.1, 0.2, -0.05])),
    ...             np.eye(3))
    True
    """
    R, _ = cv2.Rodrigues(np.asarray(axis_angle_rad, np.float64).reshape(3, 1))
    return R


def rotation_homography(K: np.ndarray, R_src_tgt: np.ndarray) -> np.ndarray:
    """(3, 3) homography taking target pixels to source pixels for a camera that only rotates:
    ``p_src ~ K R_src_tgt K^-1 p_tgt`` (K (3, 3) at the image's size, pixel centres at integers).

    >>> K = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    >>> np.allclose(rotation_homography(K, np.eye(3)), np.eye(3))
    True
    """
    K = np.asarray(K, np.float64)
    return K @ np.asarray(R_src_tgt, np.float64) @ np.linalg.inv(K)


@dataclass(frozen=True)
class StaticPairs:
    """Turns a training sample, with probability ``prob``, into one in which nothing moves (module docstring)."""

    frame_offsets: tuple[int, ...]
    prob: float = 0.2
    max_rotation_deg: float = 2.0
    still_fraction: float = 0.3
    noise_std: float = 0.02

    KEYS = ("prob", "max_rotation_deg", "still_fraction", "noise_std")

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame_offsets", tuple(int(o) for o in self.frame_offsets))
        for name in self.KEYS:
            value = getattr(self, name)
            if not isinstance(value, Real) or isinstance(value, bool) or not np.isfinite(value):
                raise ValueError(f"static_pairs.{name} must be a finite number, got {value!r}")
        if not 0.0 <= self.prob <= 1.0 or not 0.0 <= self.still_fraction <= 1.0:
            raise ValueError(f"static_pairs.prob and still_fraction must be in [0, 1], got {self.prob}, "
                             f"{self.still_fraction}")
        if not 0.0 <= self.max_rotation_deg <= 15.0:
            raise ValueError(f"static_pairs.max_rotation_deg must be in [0, 15], got {self.max_rotation_deg}")
        if not 0.0 <= self.noise_std <= 0.2:
            raise ValueError(f"static_pairs.noise_std must be in [0, 0.2], got {self.noise_std}")
        if len(self.frame_offsets) < 2 or self.frame_offsets[0] != 0:
            raise ValueError(f"static_pairs needs frame_offsets with the target (0) first and sources after, got "
                             f"{list(self.frame_offsets)}")

    @classmethod
    def from_config(cls, config: Any, frame_offsets: Sequence[int]) -> "StaticPairs":
        """From the dataset key ``static_pairs`` (a mapping of :attr:`KEYS`; missing keys take the defaults)."""
        return cls(tuple(frame_offsets), **augmentation_options("static_pairs", config, cls.KEYS))

    def draw_rotations(self, rng: np.random.Generator) -> list[np.ndarray]:
        """One (3, 3) ``R_src_tgt`` per source (identity for a still source)."""
        rotations = []
        axis_angle = np.deg2rad(rng.uniform(-1.0, 1.0, 3) * self.max_rotation_deg * np.array([1.0, 1.0, 0.5]))
        still = rng.random() < self.still_fraction
        for offset in self.frame_offsets[1:]:
            rotations.append(np.eye(3) if still else rotation_matrix(axis_angle * offset))
        return rotations

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        """A new static sample, or ``sample`` itself when the ``prob`` draw says no."""
        if self.prob == 0.0 or rng.random() >= self.prob:
            return sample
        n = len(self.frame_offsets)
        images, images_raw = sample["images"], sample["images_raw"]
        if images.dim() != 4 or images.shape[:2] != (n, 3) or images_raw.shape != images.shape:
            raise ValueError(f"static_pairs: expected images / images_raw ({n}, 3, H, W) for frame_offsets "
                             f"{list(self.frame_offsets)}, got {tuple(images.shape)}, {tuple(images_raw.shape)}")
        height, width = images.shape[2:]
        K = sample["K"].numpy().astype(np.float64)
        target, target_raw = images[0].numpy().transpose(1, 2, 0), images_raw[0].numpy().transpose(1, 2, 0)
        ids = sample.get("instance_ids")
        out = dict(sample)
        new_images, new_raw, new_ids, poses = [images[0]], [images_raw[0]], [] if ids is None else [ids[0]], []
        for R in self.draw_rotations(rng):
            H = rotation_homography(K, R)
            warp = lambda a, interp: cv2.warpPerspective(a, H, (width, height), flags=interp,  # noqa: E731
                                                          borderMode=cv2.BORDER_REFLECT)
            noise = rng.normal(0.0, rng.uniform(0.0, self.noise_std), (height, width, 3)).astype(np.float32)
            new_images.append(torch.from_numpy(np.clip(warp(target, cv2.INTER_LINEAR) + noise, 0, 1)
                                               .transpose(2, 0, 1).copy()))
            new_raw.append(torch.from_numpy(np.clip(warp(target_raw, cv2.INTER_LINEAR) + noise, 0, 1)
                                            .transpose(2, 0, 1).copy()))
            if ids is not None:
                warped = warp(ids[0, 0].numpy().astype(np.float32), cv2.INTER_NEAREST)
                new_ids.append(torch.from_numpy(np.rint(warped).astype(np.int64))[None])
            T = np.eye(4, dtype=np.float32)
            T[:3, :3] = R
            poses.append(torch.from_numpy(T))
        out["images"], out["images_raw"] = torch.stack(new_images), torch.stack(new_raw)
        if ids is not None:
            out["instance_ids"] = torch.stack(new_ids)
        if "T_src_tgt_gt" in sample:
            out["T_src_tgt_gt"] = torch.stack(poses)
        out["dynamic_mask"] = torch.zeros(n, 1, height, width)
        out["has_dynamic_mask"] = True
        return out
