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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .model_card import ModelCardError
from .model_dir import ModelCard, ModelDirError, card_input_hw, check_io, onnx_files, read_model_card

log = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "tensorrt", "onnxruntime", "torch")
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


# --------------------------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------------------------
class _OrtRunner:
    """One ONNX Runtime session with IO binding into preallocated numpy outputs."""

    def __init__(self, ort, path: Path, file_name: str, card: ModelCard, providers: list, options) -> None:
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelDirError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc
        inputs = [(i.name, list(i.shape)) for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        check_io(file_name, path, inputs, outputs, card)
        h, w = card_input_hw(card)
        shapes = {"disparity": (1, 1, h, w), "depth": (1, 1, h, w), "pose": (1, 6), "dynamic_prob": (1, 1, h, w)}
        self.outputs = {name: np.zeros(shapes[name], np.float32) for name in outputs if name in shapes}
        self.binding = self.session.io_binding()
        for name, array in self.outputs.items():
            self.binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(array))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, array in feeds.items():
            self.binding.bind_cpu_input(name, array)
        self.session.run_with_iobinding(self.binding)
        return self.outputs


class OrtCudaUnavailable(RuntimeError):
    """onnxruntime lists the CUDA execution provider but a session cannot use it (CUDA / cuDNN libraries that
    do not match the onnxruntime-gpu build): the session would silently run on the CPU."""


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on the CUDA execution provider when it works (``device`` "cuda"/"auto"), else CPU.

    The device reported is the one the sessions really use (``session.get_providers()``), not what
    ``get_available_providers()`` lists: onnxruntime-gpu falls back to the CPU provider, with only a log
    line of its own, when the CUDA or cuDNN libraries do not match. ``device="cuda"`` then raises
    :class:`OrtCudaUnavailable`; ``device="auto"`` warns and runs on the CPU.
    """

    name = "onnxruntime"

    def __init__(self, model_dir: str | Path, device: str = "auto", threads: int | None = None) -> None:
        import onnxruntime as ort

        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"onnxruntime backend: device must be auto, cpu or cuda, got {device!r}")
        if threads is not None and (int(threads) != threads or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self.card = read_model_card(model_dir)
        files = onnx_files(model_dir, self.card)
        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise RuntimeError(f"onnxruntime backend: device='cuda' but this onnxruntime has only {available} "
                               f"(install onnxruntime-gpu)")
        use_cuda = device != "cpu" and "CUDAExecutionProvider" in available
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"])
        self.device = "cuda" if use_cuda else "cpu"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # The three sessions run one after another, each with its own intra-op thread pool. With spinning
        # on (onnxruntime's default), a finished session's threads keep spinning on the cores the next one
        # needs: on the 2-core development machine depth+pose+mask took 27-39 ms p50 with it, 18-20 ms without.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self.threads = threads
        self._runners: dict[str, _OrtRunner] = {}
        for name, path in files.items():
            if use_cuda and self._runners:  # the first session told whether CUDA works
                providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device == "cuda"
                             else ["CPUExecutionProvider"])
            runner = _OrtRunner(ort, path, name, self.card, providers, options)
            used = runner.session.get_providers()
            if use_cuda and self.device == "cuda" and "CUDAExecutionProvider" not in used:
                message = (f"onnxruntime lists CUDAExecutionProvider but the session for {name} runs on {used}: "
                           f"the CUDA / cuDNN libraries do not match this onnxruntime-gpu build (onnxruntime logs "
                           f"which library failed when the session is created)")
                if device == "cuda":
                    raise OrtCudaUnavailable(message + "; install the matching CUDA / cuDNN or use another backend")
                log.warning("%s; running on the CPU", message)
                self.device = "cpu"
            self._runners[name] = runner
        self.has_mask = "mask.onnx" in self._runners

    def _infer(self, image_cur: np.ndarray, image_prev: np.ndarray | None) -> BackendOutput:
        depth_out = self._runners["depth.onnx"].run({"image": image_cur})
        pose_vec = dynamic_prob = None
        if image_prev is not None:
            pair = {"image_prev": image_prev, "image_cur": image_cur}
            pose_vec = self._runners["pose.onnx"].run(pair)["pose"][0].astype(np.float64)
            if self.has_mask:
                dynamic_prob = self._runners["mask.onnx"].run(pair)["dynamic_prob"][0, 0]
        return BackendOutput(disparity=depth_out["disparity"][0, 0], depth=depth_out["depth"][0, 0],
                             pose_vec=pose_vec, dynamic_prob=dynamic_prob)

    def close(self) -> None:
        self._runners = {}


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------
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
