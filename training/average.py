"""``depth-sfm average``: average the weights of several checkpoints of one training run (stochastic weight
averaging, Izmailov et al. 2018, applied after the fact).

Self-supervised depth training on a small budget wanders around a level rather than converging: single
checkpoints a few hundred steps apart score differently on held-out frames. The mean of the weights of
checkpoints from the same run (same architecture, one trajectory at a constant learning rate) lies in the
middle of that region and usually generalises better than any one of them. Floating-point tensors are averaged,
including BatchNorm running statistics (the average of the running means, not re-estimated on data); integer
tensors (BatchNorm's ``num_batches_tracked``) come from the last checkpoint. The result is an ordinary
checkpoint: step and training config of the last input, no optimiser state (resume from it starts a fresh
optimiser), and ``extra.averaged_from`` naming every input with its step.

    depth-sfm average --out runs/x/swa.pt runs/x/checkpoints/step_00005250.pt runs/x/checkpoints/step_00006000.pt ...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import torch

from depth_sfm_ros.models.checkpoint import (CheckpointError, bundle_from_checkpoint_data, load_checkpoint,
                                             save_checkpoint)

__all__ = ["average_checkpoints", "add_arguments", "run"]


def average_checkpoints(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write the weight average of ``paths`` (>= 2 checkpoints with one model_config) to ``out``; returns it.

    Raises ValueError for fewer than two inputs, a repeated input or differing model configs, and
    CheckpointError / FileNotFoundError for unreadable inputs.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError("a checkpoint is listed twice (it would count double in the average)")
    datas = [load_checkpoint(p) for p in paths]
    last = datas[-1]
    for path, data in zip(paths, datas):
        if data["model_config"] != last["model_config"]:
            raise ValueError(f"{path}: model_config differs from {paths[-1]}'s; only checkpoints of one "
                             f"architecture can be averaged")
    state: dict[str, dict[str, torch.Tensor] | None] = {}
    for net, last_sd in last["state_dict"].items():
        if last_sd is None:
            state[net] = None
            continue
        state[net] = {}
        for key, value in last_sd.items():
            tensors = [data["state_dict"][net][key] for data in datas]
            if any(t.shape != value.shape for t in tensors):
                raise ValueError(f"{net}.{key}: shapes differ between the checkpoints")
            state[net][key] = (torch.stack([t.double() for t in tensors]).mean(0).to(value.dtype)
                               if value.is_floating_point() else value.clone())
    averaged = dict(last, state_dict=state)
    bundle, model_config = bundle_from_checkpoint_data(averaged, source=" + ".join(str(p) for p in paths))
    extra = dict(last.get("extra") or {})
    extra["averaged_from"] = [{"path": str(p), "step": int(d["step"])} for p, d in zip(paths, datas)]
    extra.pop("metrics", None)  # the inputs' validation metrics do not describe the average
    return save_checkpoint(out, bundle, model_config, last.get("train_config"), step=int(last["step"]),
                           epoch=int(last["epoch"]), optimizer_state=None, extra=extra)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="+", help="checkpoints of one run (.pt), at least two")
    parser.add_argument("--out", required=True, help="the averaged checkpoint to write (.pt)")


def run(args: argparse.Namespace) -> int:
    try:
        out = average_checkpoints(args.checkpoints, args.out)
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        print(f"depth-sfm average: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: the weight average of {len(args.checkpoints)} checkpoints")
    return 0
