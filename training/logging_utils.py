"""Training logs: TensorBoard scalars and images (rank 0 only), image helpers, and a tqdm progress bar.

Images are written as uint8 (3, H, W) RGB: depth / disparity through a colormap, masks in grey,
warped views as they are.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

log = logging.getLogger(__name__)


def colorize(values: torch.Tensor | np.ndarray, vmin: float | None = None, vmax: float | None = None,
             colormap: str = "magma") -> np.ndarray:
    """(H, W) or (1, H, W) values -> (3, H, W) uint8 RGB through a colormap (NaN/inf -> black).

    ``vmin``/``vmax`` default to the 2nd / 98th percentile of the finite values. Disparity looks best
    (near = bright); pass ``1 / depth`` for depth maps.
    """
    import cv2  # opencv-headless is a base dependency

    array = values.detach().float().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values, np.float32)
    array = np.squeeze(array)
    if array.ndim != 2:
        raise ValueError(f"colorize expects (H, W) or (1, H, W), got shape {np.shape(values)}")
    finite = np.isfinite(array)
    if not finite.any():
        return np.zeros((3,) + array.shape, dtype=np.uint8)
    lo = float(np.percentile(array[finite], 2)) if vmin is None else float(vmin)
    hi = float(np.percentile(array[finite], 98)) if vmax is None else float(vmax)
    scaled = np.clip((array - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    scaled = np.where(finite, scaled, 0.0)
    maps = {"magma": cv2.COLORMAP_MAGMA, "viridis": cv2.COLORMAP_VIRIDIS, "jet": cv2.COLORMAP_JET}
    if colormap not in maps:
        raise ValueError(f"unknown colormap {colormap!r}; use one of {sorted(maps)}")
    bgr = cv2.applyColorMap((scaled * 255.0).astype(np.uint8), maps[colormap])
    rgb = bgr[..., ::-1].transpose(2, 0, 1)
    rgb = np.where(finite[None], rgb, 0)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def to_uint8_image(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) RGB in [0, 1] or (1, H, W) mask in [0, 1] -> (3, H, W) uint8."""
    array = image.detach().float().cpu().clamp(0.0, 1.0).numpy()
    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ValueError(f"expected (3, H, W) or (1, H, W), got {tuple(image.shape)}")
    if array.shape[0] == 1:
        array = np.repeat(array, 3, axis=0)
    return (array * 255.0 + 0.5).astype(np.uint8)


class TrainLogger:
    """TensorBoard writer that exists only on the main process; the other ranks get no-op calls."""

    def __init__(self, log_dir: Path | None, enabled: bool) -> None:
        self.writer = None
        if enabled and log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: Mapping[str, float], step: int, prefix: str = "train") -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", float(value), step)

    def images(self, images: Mapping[str, np.ndarray], step: int, prefix: str = "images") -> None:
        """``images``: name -> (3, H, W) uint8."""
        if self.writer is None:
            return
        for name, image in images.items():
            self.writer.add_image(f"{prefix}/{name}", image, step, dataformats="CHW")

    def text(self, name: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            self.writer.add_text(name, text, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


class Progress:
    """A tqdm bar over optimiser steps showing the losses and steps/s (main process only)."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        self._last_time = time.perf_counter()
        self._last_step = initial
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=True)

    def update(self, step: int, losses: Mapping[str, float]) -> float:
        """Advance to ``step``; returns the steps/s since the previous call."""
        now = time.perf_counter()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        if self.bar is not None:
            self.bar.update(step - self._last_step)
            shown = {k: f"{v:.4f}" for k, v in list(losses.items())[:4]}
            shown["it/s"] = f"{rate:.2f}"
            self.bar.set_postfix(shown, refresh=False)
        self._last_time, self._last_step = now, step
        return rate

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
