"""Multi-process training helpers: torchrun / DistributedDataParallel set-up from environment variables.

``torchrun --nproc_per_node=G [--nnodes=N --node_rank=R --master_addr=A --master_port=P] -m
depth_sfm_ros.cli train --config X`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`init_distributed` reads them. Without them (plain ``depth-sfm train``) training runs
in one process and every helper here is a no-op. The backend is ``nccl`` on CUDA and ``gloo`` on CPU.
With several processes on CUDA each process takes the GPU ``cuda:LOCAL_RANK`` (:func:`resolve_device`), and
:func:`dataloader_workers` shares the node's CPU cores among the processes' data loader workers.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` of ``local_world_size``
    processes on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

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
    """Read RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE (torchrun's variables); defaults give a single
    process."""
    world_size = _env_int("WORLD_SIZE", 1)
    info = DistInfo(rank=_env_int("RANK", 0), world_size=world_size, local_rank=_env_int("LOCAL_RANK", 0),
                    local_world_size=_env_int("LOCAL_WORLD_SIZE", world_size))
    if info.world_size < 1 or not (0 <= info.rank < info.world_size) or info.local_rank < 0 or \
            not (0 <= info.local_rank < info.local_world_size <= info.world_size):
        raise ValueError(f"inconsistent distributed environment: RANK={info.rank} WORLD_SIZE={info.world_size} "
                         f"LOCAL_RANK={info.local_rank} LOCAL_WORLD_SIZE={info.local_world_size}")
    return info


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> device.

    With several processes on CUDA every process takes ``cuda:LOCAL_RANK``, also when the config names one
    GPU (``device: cuda:0`` copied from a single-GPU run would put every rank on GPU 0, which NCCL refuses);
    the remapping is logged. One process keeps ``cuda:N`` as given.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available (use device=cpu)")
        if info.enabled:
            count = torch.cuda.device_count()
            if info.local_rank >= count:
                raise RuntimeError(f"LOCAL_RANK {info.local_rank} needs cuda:{info.local_rank} but {count} CUDA "
                                   f"device(s) are visible: start at most {count} processes per node "
                                   f"(torchrun --nproc_per_node)")
            requested = torch.device(name).index
            if requested is not None and requested != info.local_rank:
                log.warning("device %s with %d processes on this node: rank %d (LOCAL_RANK %d) uses cuda:%d, one "
                            "GPU per process", name, info.local_world_size, info.rank, info.local_rank,
                            info.local_rank)
            name = f"cuda:{info.local_rank}"
        elif name == "cuda":
            name = f"cuda:{torch.cuda.current_device()}"
        device = torch.device(name)
        torch.cuda.set_device(device)
        return device
    if name != "cpu":
        raise ValueError(f"unknown device {name!r}")
    return torch.device("cpu")


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else os.cpu_count())."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def dataloader_workers(configured: int, info: DistInfo, cpus: int | None = None) -> int:
    """DataLoader worker processes for this process: ``train.num_workers``, at most the node's cores shared by
    its ``local_world_size`` training processes minus one core each for the training loop itself (4 workers
    on a 2-core machine only fight the training loop for the cores). Logged when reduced."""
    cpus = available_cpus() if cpus is None else int(cpus)
    share = cpus // max(1, info.local_world_size)
    workers = max(0, min(int(configured), share - 1))
    if workers < configured:
        log.info("data loader: %d worker process(es) instead of train.num_workers=%d (%d CPU core(s) for %d "
                 "training process(es) on this node, one core each kept for the training loop)", workers,
                 configured, cpus, max(1, info.local_world_size))
    return workers


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
