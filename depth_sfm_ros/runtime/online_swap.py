"""Online adaptation for backends that run exported files (ONNX Runtime, TensorRT): export, then swap.

:class:`ExportSwap` is the ``swap(depth, pose, mask)`` callable that :class:`~.online_adapter.OnlineAdapter`
calls with copies of the accepted networks (runtime signature, ``models.runtime_modules``). In the calling
thread (the adaptation worker, never the inference thread) it

1. hashes the networks' weights (sha256 over the state dicts) and does nothing when they equal the last
   exported ones;
2. exports them to ONNX with the export code of ``depth-sfm export`` (:func:`.export.export_runtime_onnx`:
   atomic file writes, ``onnx.checker``, the I/O check and, by default, the ONNX Runtime vs torch parity check)
   into a fresh temporary directory, so a half-written or failed export never reaches a backend;
3. hands the files to the backend's ``swap_exported(files)``, which creates ONNX Runtime sessions (or builds
   TensorRT engines) in this thread and queues them; the backend takes the set at the start of its next
   inference, never during one;
4. removes the temporary directory.

Any failure raises (the adapter counts it, reports it in the diagnostics and keeps the running sessions).
torch is imported inside the functions (this module must import without torch).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .model_dir import card_input_hw

log = logging.getLogger(__name__)

__all__ = ["ExportSwap", "weights_digest"]


def weights_digest(*networks: Any) -> str:
    """sha256 (hex) over the parameters and buffers of ``networks`` (torch modules or None), in order."""
    digest = hashlib.sha256()
    for index, net in enumerate(networks):
        digest.update(f"net{index}:{'none' if net is None else type(net).__name__}".encode())
        if net is None:
            continue
        for name, tensor in sorted(net.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class ExportSwap:
    """``swap(depth, pose, mask)`` for a backend with ``swap_exported`` (see the module docstring).

    Args:
        backend: an :class:`~.onnxruntime_backend.OnnxRuntimeBackend` or :class:`~.tensorrt_backend.TensorRTBackend`
            (anything with ``card`` and ``swap_exported(files) -> version``).
        opset: the ONNX opset (the loaded model card's, at least 17).
        verify: compare ONNX Runtime with torch on random input before the swap (about one extra inference per
            network; an export that does not match is refused).
        temp_root: where the temporary export directories are made (default: the system's temp directory).
    """

    def __init__(self, backend: Any, opset: int | None = None, verify: bool = True,
                 temp_root: str | os.PathLike | None = None) -> None:
        if not hasattr(backend, "swap_exported"):
            raise ValueError(f"the {getattr(backend, 'name', '?')} backend cannot swap exported networks")
        self.backend = backend
        self.height, self.width = card_input_hw(backend.card)
        self.opset = max(17, int(opset or getattr(backend.card, "opset", None) or 17))
        self.verify = bool(verify)
        self.temp_root = str(temp_root) if temp_root is not None else None
        self.last_digest: str | None = None
        self.exports = 0
        self.skipped = 0
        self.last_seconds: float | None = None  # export + session creation (or engine build) of the last swap

    def __call__(self, depth: Any, pose: Any, mask: Any = None) -> int | None:
        """Export ``depth``, ``pose`` [, ``mask``] and queue them in the backend; returns the queued version, or
        None when the weights are unchanged since the last export (nothing done). Raises on any failure."""
        if mask is None and getattr(self.backend, "has_mask", False):
            raise ValueError("this model has a mask net; a swap must bring one")
        digest = weights_digest(depth, pose, mask)
        if digest == self.last_digest:
            self.skipped += 1
            return None
        from .export import export_runtime_onnx

        started = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix="depth_sfm_adapt_onnx_", dir=self.temp_root))
        try:
            nets = [net.cpu().eval() for net in (depth, pose, mask) if net is not None]
            files, _ = export_runtime_onnx(nets[0], nets[1], nets[2] if len(nets) > 2 else None, work, self.height,
                                           self.width, opset=self.opset, verify=self.verify)
            version = self.backend.swap_exported(files)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.last_digest = digest
        self.exports += 1
        self.last_seconds = time.perf_counter() - started
        log.info("online adaptation: exported the adapted networks (weights %s) and queued them in the %s backend "
                 "as version %d in %.1f s", digest[:12], getattr(self.backend, "name", "?"), version,
                 self.last_seconds)
        return version
