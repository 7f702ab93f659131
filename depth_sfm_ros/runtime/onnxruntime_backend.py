"""ONNX Runtime backend: one session per exported ONNX file, IO binding into preallocated numpy outputs.

``onnxruntime`` is imported when the backend is created (not at module import). Online adaptation swaps in
sessions of re-exported networks between inferences (:meth:`OnnxRuntimeBackend.swap_exported`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from .backend_base import Backend, BackendOutput, SwapSlot
from .model_dir import ModelCard, ModelDirError, card_input_hw, check_io, onnx_files, read_model_card

log = logging.getLogger(__name__)


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
        self._ort, self._options = ort, options
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
        self._swap = SwapSlot()
        self.weights_version = 0  # of the sessions in use; 0 = the loaded model

    def swap_exported(self, files: Mapping[str, Path], version: int | None = None) -> int:
        """Create sessions for re-exported ONNX files (file name -> path, the same set of files as the loaded
        model) in the calling thread and queue them; they replace the running sessions at the start of the
        next inference, never during one. Raises (ModelDirError, ValueError) and leaves the running sessions
        as they are when a file is missing, cannot be loaded or has the wrong I/O. Returns the version the
        backend reports once the set is in use. The files may be deleted once this returns."""
        if set(files) != set(self._runners):
            raise ValueError(f"onnxruntime backend: a swap needs {sorted(self._runners)}, got {sorted(files)}")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device == "cuda" else \
            ["CPUExecutionProvider"]
        runners = {name: _OrtRunner(self._ort, Path(path), name, self.card, providers, self._options)
                   for name, path in files.items()}
        return self._swap.put(runners, version)

    def _take_swapped(self) -> None:
        pending = self._swap.take()
        if pending is not None:
            self.weights_version, self._runners = pending

    def _infer(self, image_cur: np.ndarray, image_prev: np.ndarray | None) -> BackendOutput:
        self._take_swapped()  # between frames: sessions of adapted weights come in here
        runners = self._runners  # read once: one set of sessions for the whole inference
        depth_out = runners["depth.onnx"].run({"image": image_cur})
        pose_vec = dynamic_prob = None
        if image_prev is not None:
            pair = {"image_prev": image_prev, "image_cur": image_cur}
            pose_vec = runners["pose.onnx"].run(pair)["pose"][0].astype(np.float64)
            if self.has_mask:
                dynamic_prob = runners["mask.onnx"].run(pair)["dynamic_prob"][0, 0]
        return BackendOutput(disparity=depth_out["disparity"][0, 0], depth=depth_out["depth"][0, 0],
                             pose_vec=pose_vec, dynamic_prob=dynamic_prob)

    def close(self) -> None:
        self._runners = {}
