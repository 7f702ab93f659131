"""TensorRT backend: cached engines (see tensorrt_engine.py) run with torch CUDA tensors as buffers.

Which execution API each supported TensorRT uses (the runner picks by what the engine object has):

* tensor names: ``num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode`` / ``set_tensor_address`` +
  ``execute_async_v3(stream)``. Added in TensorRT 8.5, the only API of 10.x and 11; used on 8.6, 10.x and 11.
* binding indices: ``num_bindings`` / ``get_binding_name`` / ``binding_is_input`` + ``execute_async_v2(bindings,
  stream)``. Deprecated in 8.5/8.6 and removed in 10.0; used only for an engine object without the
  tensor-name API (a TensorRT older than 8.5, which is not supported for building).

The engines keep the exported float32 inputs and outputs at every precision (TensorRT 11's FP16 / INT8
graphs cast inside, see onnx_precision.py), so the buffers are always float32. No pycuda: device memory
and the stream come from torch. The real engine build/run needs a GPU and TensorRT; the tests run this
code against fakes shaped like each version's bindings (test/fakes/tensorrt_*.py).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np

from .backend_base import Backend, BackendOutput, SwapSlot
from .model_dir import card_input_hw, check_io, onnx_files, read_model_card
from .tensorrt_engine import build_engine, default_cache_dir, strongly_typed

ADAPTED_ENGINES_SUBDIR = "adapted"  # online adaptation's engines, beside (not over) the loaded model's

log = logging.getLogger(__name__)


class _TrtRunner:
    """One deserialized engine + execution context with static torch buffers (float32) per I/O tensor.

    ``tensor_api`` is True when the engine has the tensor-name API (TensorRT >= 8.5: 8.6, 10.x, 11), False
    for the binding-index API (see the module docstring). ``device`` is where the buffers live ("cuda"; the
    tests use "cpu" with a fake TensorRT).
    """

    def __init__(self, trt, torch, runtime, engine_bytes: bytes, name: str, device: str = "cuda") -> None:
        self.torch = torch
        self.engine = runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize the engine for {name} (version/GPU mismatch?)")
        self.context = self.engine.create_execution_context()
        self.tensor_api = hasattr(self.engine, "num_io_tensors")
        self.buffers: dict[str, object] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        names = ([self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)] if self.tensor_api
                 else [self.engine.get_binding_name(i) for i in range(self.engine.num_bindings)])
        for index, tensor in enumerate(names):
            if self.tensor_api:
                shape = tuple(self.engine.get_tensor_shape(tensor))
                is_input = self.engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT
                dtype = self.engine.get_tensor_dtype(tensor)
            else:
                shape = tuple(self.engine.get_binding_shape(index))
                is_input = self.engine.binding_is_input(index)
                dtype = self.engine.get_binding_dtype(index)
            if dtype != trt.DataType.FLOAT:
                raise RuntimeError(f"{name}: tensor {tensor!r} is {dtype}, expected float32 I/O")
            self.buffers[tensor] = torch.empty(shape, dtype=torch.float32, device=device)
            (self.inputs if is_input else self.outputs).append(tensor)
            if self.tensor_api:
                self.context.set_tensor_address(tensor, int(self.buffers[tensor].data_ptr()))
        self.bindings = [int(self.buffers[t].data_ptr()) for t in names]  # binding-index API only

    def run(self, feeds: dict[str, np.ndarray], stream) -> dict[str, object]:
        for tensor, array in feeds.items():
            self.buffers[tensor].copy_(self.torch.from_numpy(array), non_blocking=False)
        ok = (self.context.execute_async_v3(stream.cuda_stream) if self.tensor_api
              else self.context.execute_async_v2(self.bindings, stream.cuda_stream))
        if not ok:
            raise RuntimeError("TensorRT execution failed")
        return {t: self.buffers[t] for t in self.outputs}


class TensorRTBackend(Backend):
    """The exported ONNX files as cached TensorRT engines (built on first use, see ``build_engine``).

    ``fp16`` / ``precision`` ("fp32" | "fp16" | "int8"; int8 needs ``calibration_images``) choose the engine
    precision, realised per TensorRT version as tensorrt_engine.py describes. Raises (ImportError,
    RuntimeError, EngineCacheError ...) when TensorRT, the GPU or the engine is unusable; ``create_backend``
    with ``name="auto"`` then falls back to the next backend.
    """

    name = "tensorrt"
    device = "cuda"
    buffer_device = "cuda"  # where the I/O buffers live (the tests use "cpu" with a fake TensorRT)

    def __init__(self, model_dir: str | Path, fp16: bool = False, cache_dir: str | Path | None = None,
                 policy: str = "rebuild", calibration_images: np.ndarray | None = None,
                 precision: str | None = None) -> None:
        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("tensorrt backend: torch sees no CUDA GPU (torch CUDA tensors hold the buffers)")
        strongly_typed(trt.__version__)  # RuntimeError for an unsupported TensorRT version
        self.card = read_model_card(model_dir)
        precision = precision or ("fp16" if fp16 else "fp32")
        files = onnx_files(model_dir, self.card)
        h, w = card_input_hw(self.card)
        self._torch = torch
        self._stream = torch.cuda.Stream()
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._trt = trt
        self.precision = precision
        self._build = {"precision": precision, "input_shape": (1, 3, h, w), "calibration_images": calibration_images}
        self._cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._runners = self._engines(files, self._cache_dir, policy)
        self.has_mask = "mask.onnx" in self._runners
        self._swap = SwapSlot()
        self.weights_version = 0  # of the engines in use; 0 = the loaded model

    def _engines(self, files: Mapping[str, Path], cache_dir: Path, policy: str) -> dict[str, _TrtRunner]:
        """One runner per ONNX file, its engine from the cache or built (``build_engine``)."""
        runners = {}
        for file_name, path in files.items():
            engine_bytes, engine_file = build_engine(path, cache_dir=cache_dir, policy=policy, **self._build)
            runner = _TrtRunner(self._trt, self._torch, self._runtime, engine_bytes, file_name,
                                device=self.buffer_device)
            check_io(file_name, engine_file, [(n, list(runner.buffers[n].shape)) for n in runner.inputs],
                     runner.outputs, self.card)
            runners[file_name] = runner
        return runners

    def swap_exported(self, files: Mapping[str, Path], version: int | None = None) -> int:
        """Build engines for re-exported ONNX files (file name -> path, the loaded model's set of files) in the
        calling thread, at the loaded engines' precision, into ``<cache_dir>/adapted`` (the cache key holds the
        ONNX file's sha256, so the weights: an unchanged file is not rebuilt, a changed one replaces the engine
        there atomically; the loaded model's engines stay cached), and queue them: they replace the running
        engines at the start of the next inference, never during one. A failed build raises and leaves the
        running engines as they are. Returns the version the backend reports once the set is in use."""
        if set(files) != set(self._runners):
            raise ValueError(f"tensorrt backend: a swap needs {sorted(self._runners)}, got {sorted(files)}")
        runners = self._engines({k: Path(v) for k, v in files.items()}, self._cache_dir / ADAPTED_ENGINES_SUBDIR,
                                "rebuild")
        return self._swap.put(runners, version)

    def _infer(self, image_cur: np.ndarray, image_prev: np.ndarray | None) -> BackendOutput:
        torch = self._torch
        pending = self._swap.take()  # between frames: engines of adapted weights come in here
        if pending is not None:
            self.weights_version, self._runners = pending
        runners = self._runners  # read once: one set of engines for the whole inference
        with torch.cuda.stream(self._stream):
            out = dict(runners["depth.onnx"].run({"image": image_cur}, self._stream))
            if image_prev is not None:
                pair = {"image_prev": image_prev, "image_cur": image_cur}
                out.update(runners["pose.onnx"].run(pair, self._stream))
                if self.has_mask:
                    out.update(runners["mask.onnx"].run(pair, self._stream))
        self._stream.synchronize()
        host = {k: v.cpu().numpy() for k, v in out.items()}
        return BackendOutput(disparity=host["disparity"][0, 0], depth=host["depth"][0, 0],
                             pose_vec=host["pose"].reshape(6).astype(np.float64) if "pose" in host else None,
                             dynamic_prob=host["dynamic_prob"][0, 0] if "dynamic_prob" in host else None)

    def close(self) -> None:
        self._runners.clear()
