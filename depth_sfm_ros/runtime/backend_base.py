"""The backend interface: :class:`Backend` (what the Pipeline calls) and :class:`BackendOutput`.

The backends (``onnxruntime_backend``, ``torch_backend``, ``tensorrt_backend``) are siblings that
subclass :class:`Backend`; the factory that picks one is :mod:`.backends`. Nothing here imports
torch, onnxruntime or tensorrt.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .model_dir import ModelCard, ModelDirError, card_input_hw

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


@dataclass
class BackendOutput:
    """One inference result at the network resolution (H, W) of the model card.

    disparity: (H, W) float32 sigmoid disparity in (0, 1).
    depth: (H, W) float32 depth in network units (metres up to the monocular scale).
    pose_vec: (6,) float64 ``T_prev_cur`` as [t, axis-angle], or None without a previous frame.
    dynamic_prob: (H, W) float32 in [0, 1], or None without a previous frame / mask model.
    """

    disparity: np.ndarray
    depth: np.ndarray
    pose_vec: np.ndarray | None
    dynamic_prob: np.ndarray | None


class Backend:
    """Common interface. Subclasses set ``name``, ``card`` and ``device`` and implement ``_infer``."""

    name: str = "base"
    device: str = "cpu"
    card: ModelCard
    has_mask: bool = False

    @property
    def input_hw(self) -> tuple[int, int]:
        """(H, W) the networks take."""
        return card_input_hw(self.card)

    def check_input(self, image: np.ndarray, what: str) -> None:
        shape = (1, 3, *self.input_hw)
        if not isinstance(image, np.ndarray) or image.dtype != np.float32 or image.shape != shape:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"{self.name} backend: {what} must be float32 {shape}, got {got}")

    def infer(self, image_cur: np.ndarray, image_prev: np.ndarray | None = None) -> BackendOutput:
        """Run the networks. Images: (1, 3, H, W) float32 RGB in [0, 1]."""
        self.check_input(image_cur, "image_cur")
        if image_prev is not None:
            self.check_input(image_prev, "image_prev")
        return self._infer(image_cur, image_prev)

    def _infer(self, image_cur: np.ndarray, image_prev: np.ndarray | None) -> BackendOutput:
        raise NotImplementedError

    def close(self) -> None:
        """Release sessions / GPU memory. The backend is unusable afterwards."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.input_hw[1]}x{self.input_hw[0]})"


class SwapSlot:
    """A one-item mailbox for a complete new set of networks (sessions, engines ...) between inferences.

    The producer (online adaptation's worker) queues a set with :meth:`put`, replacing one not taken in yet; the
    inference thread calls :meth:`take` at the start of an inference, so an inference never mixes two sets.
    Thread-safe. Versions count the sets put, from 1 (0 = the loaded model)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: tuple[int, Any] | None = None
        self._queued = 0

    def put(self, item: Any, version: int | None = None) -> int:
        """Queue ``item``; returns its version (``version``, or the next count)."""
        with self._lock:
            self._queued += 1
            version = self._queued if version is None else int(version)
            self._pending = (version, item)
        return version

    def take(self) -> tuple[int, Any] | None:
        """The queued (version, item), once; None when nothing is queued."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending


def find_checkpoint(model: Path) -> Path | None:
    """The checkpoint for the torch backend: ``model`` itself if it is a file, else the one ``*.pt``/``*.pth``
    in the model dir (None when there is none; ModelDirError when there are several)."""
    if model.is_file():
        return model if model.suffix in CHECKPOINT_SUFFIXES else None
    if not model.is_dir():
        return None
    found = sorted(p for p in model.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
    if len(found) > 1:
        raise ModelDirError(f"{model}: several checkpoints {[p.name for p in found]}; pass one file explicitly")
    return found[0] if found else None
