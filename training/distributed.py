"""Multi-process training helpers: torchrun / DistributedDataParallel set-up from environment variables.

``torchrun --nproc_per_node=G [--nnodes=N --node_rank=R --master_addr=A --master_port=P] -m
depth_sfm_ros.cli train --config X`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_distributed` reads them. Without them (plain ``depth-sfm train``) training runs
in one process and every helper here is a no-op. The backend is ``nccl`` on CUDA and ``gloo`` on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) logs, validates and writes checkpoints."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def dist_info_from_env() -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (torchrun's variables); defaults give a single process."""
    info = DistInfo(rank=_env_int("RANK", 0), world_size=_env_int("WORLD_SIZE", 1),
                    local_rank=_env_int("LOCAL_RANK", 0))
    if info.world_size < 1 or not (0 <= info.rank < info.world_size) or info.local_rank < 0:
        raise ValueError(f"inconsistent distributed environment: RANK={info.rank} WORLD_SIZE={info.world_size} "
                         f"LOCAL_RANK={info.local_rank}")
    return info


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> device; with several processes on CUDA each takes
    ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available (use device=cpu)")
        if name == "cuda":
            index = info.local_rank if info.enabled else torch.cuda.current_device()
            name = f"cuda:{index}"
        device = torch.device(name)
        torch.cuda.set_device(device)
        return device
    if name != "cpu":
        raise ValueError(f"unknown device {name!r}")
    return torch.device("cpu")


def init_distributed(info: DistInfo, device: torch.device) -> None:
    """Create the default process group when ``info.world_size > 1`` (idempotent)."""
    if not info.enabled or (dist.is_available() and dist.is_initialized()):
        return
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build")
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise RuntimeError(f"WORLD_SIZE={info.world_size} but {var} is not set; launch with torchrun")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)


def cleanup_distributed() -> None:
    """Destroy the process group if this process created one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over all processes (a detached copy; unchanged for one process)."""
    value = value.detach().clone()
    if info.enabled and dist.is_initialized():
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= info.world_size
    return value


def broadcast_object(obj, info: DistInfo, src: int = 0):
    """Send a picklable object from ``src`` to all processes (e.g. the output folder chosen by rank 0)."""
    if not (info.enabled and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
