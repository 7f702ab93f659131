"""Inference backends behind one interface: TensorRT, ONNX Runtime, PyTorch.

``create_backend(model, name="auto", ...)`` returns a :class:`Backend`; ``Backend.infer(image_cur,
image_prev)`` runs depth (+ pose and dynamic mask when a previous frame is given) and returns a
:class:`BackendOutput`. Outputs may be views into buffers reused by the next call.

``auto`` prefers tensorrt > onnxruntime (CUDA) > torch (CUDA) > onnxruntime (CPU) > torch (CPU)
among what is installed for the given model, creates the first that works and logs the choice and the
reason; a candidate that fails (TensorRT unusable or its engine cannot be built, an onnxruntime CUDA
session that would run on the CPU, ...) gets one warning line and the next one is tried.

No torch / tensorrt import at module level: each backend imports its library when created.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from .backend_base import CHECKPOINT_SUFFIXES, Backend, BackendOutput, find_checkpoint
from .model_card import ModelCardError
from .model_dir import ModelDirError, onnx_files
from .onnxruntime_backend import OnnxRuntimeBackend, OrtCudaUnavailable

log = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "tensorrt", "onnxruntime", "torch")
# the interface and the ONNX Runtime backend, importable from here as before
__all__ = ["BACKEND_NAMES", "CHECKPOINT_SUFFIXES", "Backend", "BackendOutput", "OnnxRuntimeBackend",
           "OrtCudaUnavailable", "auto_backend_order", "create_backend", "find_checkpoint"]


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _ort_has_cuda() -> bool:
    if not _installed("onnxruntime"):
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _torch_has_cuda() -> bool:
    if not _installed("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def auto_backend_order(model: Path, device: str) -> list[tuple[str, str, str]]:
    """Candidates (backend, device, reason) in preference order for this machine and model."""
    has_onnx = model.is_dir() and (model / "depth.onnx").is_file()
    has_ckpt = find_checkpoint(model) is not None
    want_gpu, want_cpu = device in ("auto", "cuda"), device in ("auto", "cpu")
    order: list[tuple[str, str, str]] = []
    if want_gpu and has_onnx and _installed("tensorrt") and _torch_has_cuda():
        order.append(("tensorrt", "cuda", "TensorRT and a CUDA GPU are available"))
    if want_gpu and has_onnx and _ort_has_cuda():
        order.append(("onnxruntime", "cuda", "onnxruntime has the CUDA execution provider"))
    if want_gpu and has_ckpt and _torch_has_cuda():
        order.append(("torch", "cuda", "torch sees a CUDA GPU and the model has a checkpoint"))
    if want_cpu and has_onnx and _installed("onnxruntime"):
        order.append(("onnxruntime", "cpu", "no GPU backend usable; onnxruntime CPU is the fastest CPU path"))
    if want_cpu and has_ckpt and _installed("torch"):
        order.append(("torch", "cpu", "no ONNX/onnxruntime usable; torch CPU with the checkpoint"))
    return order


def create_backend(model: str | Path, name: str = "auto", device: str = "auto", fp16: bool = False,
                   threads: int | None = None, cuda_graphs: bool = True,
                   engine_cache_dir: str | Path | None = None, engine_policy: str = "rebuild") -> Backend:
    """Create a backend for an exported model dir (or, for torch, a checkpoint file).

    ``name="auto"`` creates the first candidate of :func:`auto_backend_order` that works; each one that
    fails (TensorRT unusable or no engine, onnxruntime's CUDA provider not really usable, ...) is logged with
    one warning line, naming the next one tried. A broken model dir (ModelCardError) is raised at once;
    RuntimeError, listing every failure, when no candidate works.

    Args:
        model: exported model dir (model_card.yaml, depth.onnx, pose.onnx[, mask.onnx][, a checkpoint])
            or a checkpoint file (torch only).
        name: "auto" | "tensorrt" | "onnxruntime" | "torch".
        device: "auto" | "cpu" | "cuda".
        fp16: half precision (TensorRT engine precision, torch autocast on CUDA; ignored by onnxruntime).
        threads: intra-op CPU threads (onnxruntime, torch CPU); None = library default.
        cuda_graphs: capture CUDA graphs in the torch CUDA backend.
        engine_cache_dir: TensorRT engine cache (default $XDG_CACHE_HOME/depth_sfm/engines).
        engine_policy: "rebuild" or "refuse" a cached engine that does not match (TensorRT).
    """
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {BACKEND_NAMES}, got {name!r}")
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    model = Path(os.path.expanduser(str(model)))
    if not model.exists():
        raise ModelDirError(f"{model}: model path does not exist (expected an exported model dir or a checkpoint)")
    if name != "auto":
        return _create_named(model, name, device, fp16, threads, cuda_graphs, engine_cache_dir, engine_policy)
    order = auto_backend_order(model, device)
    if not order:
        if model.is_dir() and (model / "model_card.yaml").is_file() and find_checkpoint(model) is None:
            onnx_files(model)  # an exported dir with a file missing: ModelDirError names it and its expected IO
        raise RuntimeError(f"no usable backend for {model} on device={device!r}: need onnxruntime + depth.onnx, "
                           f"or torch + a checkpoint, or TensorRT + a CUDA GPU")
    failures: list[str] = []
    for index, (candidate, candidate_device, reason) in enumerate(order):
        try:
            backend = _create_named(model, candidate, candidate_device, fp16, threads, cuda_graphs,
                                    engine_cache_dir, engine_policy)
        except ModelCardError:
            raise  # the model itself is broken (card, files, I/O): every backend would fail the same way
        except Exception as exc:  # ImportError, RuntimeError, EngineCacheError, AttributeError of a TensorRT API...
            failures.append(f"{candidate} on {candidate_device}: {type(exc).__name__}: {exc}")
            following = (f"falling back to {order[index + 1][0]} on {order[index + 1][1]}"
                         if index + 1 < len(order) else "no backend left")
            log.warning("backend auto-selection: %s on %s failed (%s: %s); %s", candidate, candidate_device,
                        type(exc).__name__, exc, following)
            continue
        log.info("backend auto-selection: %s on %s (%s)%s", backend.name, backend.device, reason,
                 f"; after {len(failures)} failed candidate(s)" if failures else "")
        return backend
    raise RuntimeError(f"no backend could be created for {model} on device={device!r}: " + "; ".join(failures))


def _create_named(model: Path, name: str, device: str, fp16: bool, threads: int | None, cuda_graphs: bool,
                  engine_cache_dir: str | Path | None, engine_policy: str) -> Backend:
    """One named backend (no fallback); arguments as :func:`create_backend`."""
    if name == "onnxruntime":
        if fp16:
            log.warning("onnxruntime backend runs the FP32 ONNX graph; fp16 is ignored")
        return OnnxRuntimeBackend(model, device=device, threads=threads)
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend.from_model(model, device=device, fp16=fp16, threads=threads, cuda_graphs=cuda_graphs)
    from .tensorrt_backend import TensorRTBackend

    if device == "cpu":
        raise ValueError("the tensorrt backend needs device 'cuda' or 'auto'")
    return TensorRTBackend(model, fp16=fp16, cache_dir=engine_cache_dir, policy=engine_policy)
