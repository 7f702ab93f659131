"""PyTorch backend: eager FP32 on CPU / CUDA, FP16 autocast and CUDA graphs on CUDA.

The networks are called as in the exported-model contract:
``depth_net(image) -> disparity`` (a tensor, or a tuple whose first element is the full-resolution
disparity), ``pose_net(image_prev, image_cur) -> pose (1, 6)`` (T_prev_cur), ``mask_net(image_prev,
image_cur) -> dynamic_prob (1, 1, H, W)`` (a tensor or a tuple whose first element is it).
Depth is computed from disparity with ``models.layers.disp_to_depth`` and the card's min/max depth,
exactly as the export does.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models.layers import disp_to_depth
from .backend_base import Backend, BackendOutput, SwapSlot, find_checkpoint
from .model_dir import ModelCard, ModelDirError, card_input_hw, read_model_card

log = logging.getLogger(__name__)


def _first(output: Any) -> torch.Tensor:
    """The full-resolution tensor of a network output (tensor, tuple/list, or dict with scale 0)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output:
        return _first(output[0])
    if isinstance(output, dict) and output:
        return _first(output[sorted(output, key=str)[0]])
    raise TypeError(f"cannot read a tensor from a network output of type {type(output).__name__}")


def load_checkpoint_modules(checkpoint: Path) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module | None]:
    """(depth, pose, mask | None) runtime-signature modules from a training checkpoint, through
    ``depth_sfm_ros.models.load_runtime_modules`` (the same wrappers the ONNX export uses)."""
    from ..models import load_runtime_modules

    modules = load_runtime_modules(str(checkpoint))
    return modules.depth, modules.pose, modules.mask


def load_weights_file_modules(path: Path) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module | None]:
    """(depth, pose, mask | None) runtime-signature modules from an exported model's ``weights.safetensors``."""
    from ..models import runtime_modules
    from ..models.weights_file import bundle_from_weights

    bundle, _ = bundle_from_weights(path)
    modules = runtime_modules(bundle)
    return modules.depth, modules.pose, modules.mask


class TorchBackend(Backend):
    """Eager PyTorch. On CUDA: optional FP16 autocast and CUDA graph replay of depth+pose+mask."""

    name = "torch"

    def __init__(self, card: ModelCard, depth_net: torch.nn.Module, pose_net: torch.nn.Module,
                 mask_net: torch.nn.Module | None = None, device: str = "auto", fp16: bool = False,
                 threads: int | None = None, cuda_graphs: bool = True) -> None:
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"torch backend: device must be auto, cpu or cuda, got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch backend: device='cuda' but torch sees no CUDA GPU")
        if threads is not None:
            if int(threads) != threads or threads < 1:
                raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
            torch.set_num_threads(int(threads))
        self.card = card
        self.device = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
        self._torch_device = torch.device(self.device)
        self.fp16 = bool(fp16) and self.device == "cuda"
        if fp16 and not self.fp16:
            log.warning("torch backend: fp16 autocast needs CUDA; running FP32 on CPU")
        self.nets = {"depth": depth_net, "pose": pose_net}
        if mask_net is not None:
            self.nets["mask"] = mask_net
        for net in self.nets.values():
            net.eval().to(self._torch_device)
        self.has_mask = mask_net is not None
        h, w = card_input_hw(card)
        self._static = {k: torch.zeros((1, 3, h, w), device=self._torch_device) for k in ("cur", "prev")}
        self._graphs: dict[bool, tuple[Any, dict[str, torch.Tensor]]] = {}
        self.use_cuda_graphs = bool(cuda_graphs) and self.device == "cuda"
        # online adaptation: a complete new weight set waits here until the next infer() picks it up
        self._swap = SwapSlot()
        self.weights_version = 0  # of the set in use; 0 = the loaded model

    def swap_networks(self, depth_net: torch.nn.Module, pose_net: torch.nn.Module,
                      mask_net: torch.nn.Module | None = None, version: int | None = None) -> int:
        """Queue a complete set of runtime-signature networks (e.g. adapted weights); thread-safe.

        The set replaces the running one at the start of the next :meth:`infer`, never during one, so
        every inference sees one whole weight set. The modules must not be trained further by the caller
        (pass copies). Returns the version number the backend reports once it is in use."""
        nets = {"depth": depth_net, "pose": pose_net}
        if self.has_mask:
            if mask_net is None:
                raise ValueError("torch backend: this model has a mask net; a swap must bring one")
            nets["mask"] = mask_net
        for net in nets.values():
            net.eval().to(self._torch_device)
        return self._swap.put(nets, version)  # a set queued earlier and not taken in yet is replaced

    def _take_pending(self) -> None:
        pending = self._swap.take()
        if pending is not None:
            self.weights_version, self.nets = pending[0], pending[1]
            self._graphs.clear()  # captured graphs hold the old parameters' addresses

    @classmethod
    def from_model(cls, model: Path, device: str = "auto", fp16: bool = False, threads: int | None = None,
                   cuda_graphs: bool = True) -> "TorchBackend":
        """From a model dir (its model_card.yaml + checkpoint) or a checkpoint file beside a model card."""
        checkpoint = find_checkpoint(model)
        card = read_model_card(model if model.is_dir() else model.parent)
        if checkpoint is None:
            from ..models.weights_file import WEIGHTS_FILE
            if not (model.is_dir() and (model / WEIGHTS_FILE).is_file()):
                raise ModelDirError(f"{model}: no checkpoint (*.pt, *.pth, *.ckpt) or {WEIGHTS_FILE} "
                                    f"for the torch backend")
            depth, pose, mask = load_weights_file_modules(model / WEIGHTS_FILE)
        else:
            depth, pose, mask = load_checkpoint_modules(checkpoint)
        return cls(card, depth, pose, mask, device=device, fp16=fp16, threads=threads, cuda_graphs=cuda_graphs)

    # ------------------------------------------------------------------------------------------
    def _forward(self, with_pair: bool) -> dict[str, torch.Tensor]:
        """Run the nets on the static input tensors; returns float32 outputs on the device."""
        cur, prev = self._static["cur"], self._static["prev"]
        nets = self.nets  # read once: one weight set for the whole forward pass
        # no autocast weight cache under CUDA graphs (cached casts would be captured stale)
        autocast = torch.autocast("cuda", dtype=torch.float16, enabled=self.fp16,
                                  cache_enabled=not self.use_cuda_graphs)
        with autocast:
            disparity = _first(nets["depth"](cur)).float()
            out = {"disparity": disparity}
            if with_pair:
                out["pose"] = _first(nets["pose"](prev, cur)).float().reshape(1, 6)
                if self.has_mask:
                    out["dynamic_prob"] = _first(nets["mask"](prev, cur)).float()
        out["depth"] = disp_to_depth(out["disparity"], self.card.min_depth, self.card.max_depth)[1]
        return out

    def _graph_outputs(self, with_pair: bool) -> dict[str, torch.Tensor]:
        """Replay (capturing on first use, after warm-up on a side stream) the CUDA graph for this input set."""
        if with_pair not in self._graphs:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self._forward(with_pair)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = self._forward(with_pair)
            self._graphs[with_pair] = (graph, outputs)
            log.info("torch backend: captured a CUDA graph (%s)", "depth+pose+mask" if with_pair else "depth")
        graph, outputs = self._graphs[with_pair]
        graph.replay()
        return outputs

    def _infer(self, image_cur: np.ndarray, image_prev: np.ndarray | None) -> BackendOutput:
        self._take_pending()  # between frames: a queued weight set (online adaptation) comes in here
        with torch.no_grad():
            self._static["cur"].copy_(torch.from_numpy(image_cur))
            if image_prev is not None:
                self._static["prev"].copy_(torch.from_numpy(image_prev))
            with_pair = image_prev is not None
            out = self._graph_outputs(with_pair) if self.use_cuda_graphs else self._forward(with_pair)
            h, w = self.input_hw
            for name in ("disparity", "depth", "dynamic_prob"):
                if name in out and tuple(out[name].shape) != (1, 1, h, w):
                    raise ValueError(f"torch backend: {name} has shape {tuple(out[name].shape)}, "
                                     f"expected (1, 1, {h}, {w})")
            host = {k: v.detach().cpu().numpy() for k, v in out.items()}
        return BackendOutput(disparity=host["disparity"][0, 0], depth=host["depth"][0, 0],
                             pose_vec=host["pose"][0].astype(np.float64) if "pose" in host else None,
                             dynamic_prob=host["dynamic_prob"][0, 0] if "dynamic_prob" in host else None)

    def close(self) -> None:
        self._graphs.clear()
        self.nets.clear()
        if self.device == "cuda":
            torch.cuda.empty_cache()
