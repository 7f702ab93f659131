"""Pinhole camera intrinsics that follow the image through resizing and cropping.

Pixel convention used everywhere in this project: the centre of pixel (column u, row v) has
coordinates (u, v), so the image spans [-0.5, W - 0.5] x [-0.5, H - 0.5]. This is the
convention of ROS CameraInfo and OpenCV. Scaling an image by s maps the centre u to
(u + 0.5) * s - 0.5, so cx' = (cx + 0.5) * s - 0.5 and fx' = fx * s.

numpy only: the runtime and the ROS node use this without torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels (focal lengths in pixels).

    >>> K = Intrinsics(fx=500.0, fy=500.0, cx=319.5, cy=95.5, width=640, height=192)
    >>> K.scaled(320, 96).fx
    250.0
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(float(value)):
                raise ValueError(f"Intrinsics.{name} must be a finite number, got {value!r}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"Intrinsics focal lengths must be > 0, got fx={self.fx}, fy={self.fy}")
        if int(self.width) != self.width or int(self.height) != self.height or self.width <= 0 or self.height <= 0:
            raise ValueError(f"Intrinsics image size must be positive integers, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        for name in ("fx", "fy", "cx", "cy"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def from_matrix(cls, K: np.ndarray, width: int, height: int) -> "Intrinsics":
        """From a 3x3 (or the top-left of a 3x4 / 4x4) camera matrix."""
        K = np.asarray(K, dtype=np.float64)
        if K.ndim != 2 or K.shape[0] < 3 or K.shape[1] < 3:
            raise ValueError(f"camera matrix must be at least 3x3, got shape {K.shape}")
        if not np.all(np.isfinite(K[:3, :3])):
            raise ValueError(f"camera matrix must be finite, got {K[:3, :3].tolist()}")
        if not np.allclose(K[2, :3], [0.0, 0.0, 1.0]):
            raise ValueError(f"camera matrix bottom row must be [0, 0, 1], got {K[2, :3].tolist()}")
        if abs(K[0, 1]) > 1e-6 * max(abs(K[0, 0]), 1.0):
            raise ValueError(f"camera matrix has skew {K[0, 1]}; only zero-skew pinhole cameras are supported")
        return cls(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], width=width, height=height)

    @classmethod
    def from_normalized(cls, fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> "Intrinsics":
        """From intrinsics given as fractions of the image size (monodepth2/KITTI training style),
        where (cx, cy) = (0.5, 0.5) is the image centre."""
        return cls(fx=fx * width, fy=fy * height, cx=cx * width - 0.5, cy=cy * height - 0.5,
                   width=width, height=height)

    @property
    def K(self) -> np.ndarray:
        """The 3x3 camera matrix, float64."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def K_inv(self) -> np.ndarray:
        return np.linalg.inv(self.K)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics of the same image resized to ``width`` x ``height``."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(fx=self.fx * sx, fy=self.fy * sy, cx=(self.cx + 0.5) * sx - 0.5,
                          cy=(self.cy + 0.5) * sy - 0.5, width=width, height=height)

    def cropped(self, x0: int, y0: int, width: int, height: int) -> "Intrinsics":
        """Intrinsics of the crop whose top-left pixel is (x0, y0) in this image."""
        if x0 < 0 or y0 < 0 or x0 + width > self.width or y0 + height > self.height:
            raise ValueError(f"crop ({x0}, {y0}, {width}x{height}) outside the {self.width}x{self.height} image")
        return Intrinsics(fx=self.fx, fy=self.fy, cx=self.cx - x0, cy=self.cy - y0, width=width, height=height)

    def flipped_horizontally(self) -> "Intrinsics":
        """Intrinsics of the mirrored image (u -> W - 1 - u)."""
        return Intrinsics(fx=self.fx, fy=self.fy, cx=self.width - 1 - self.cx, cy=self.cy,
                          width=self.width, height=self.height)

    def to_dict(self) -> dict:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width": self.width, "height": self.height}


def backproject_np(depth_m: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Back-project a depth image (H, W) in metres to camera-frame points (H, W, 3).

    Points follow the optical frame: x right, y down, z forward (z equals the depth).
    """
    depth_m = np.asarray(depth_m)
    if depth_m.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(f"depth shape {depth_m.shape} does not match intrinsics "
                         f"{intrinsics.height}x{intrinsics.width}")
    v, u = np.mgrid[0:intrinsics.height, 0:intrinsics.width].astype(np.float32)
    x = (u - intrinsics.cx) / intrinsics.fx * depth_m
    y = (v - intrinsics.cy) / intrinsics.fy * depth_m
    return np.stack([x, y, depth_m.astype(np.float32, copy=False)], axis=-1)
