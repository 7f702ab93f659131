"""Self-supervised trainer: config -> models, losses, data -> optimiser steps, logs, checkpoints.

One process: ``Trainer(load_config(path), out_dir).fit()``. Several (GPUs, nodes, or CPU processes
with gloo): launch with ``torchrun``; every process runs the same code, DistributedDataParallel keeps
the weights identical and only rank 0 logs, validates and writes checkpoints.

Determinism and resume: the data order of epoch e comes from a DistributedSampler seeded with
``seed`` and ``set_epoch(e)``; the sampler hands each index to the dataset together with its epoch, so the
augmentation draws (``np.random.default_rng([seed, epoch, index])`` in the datasets) follow the epoch also
inside DataLoader workers, which stay alive across epochs (``persistent_workers``; their number is sized
from the machine, :func:`depth_sfm_training.distributed.dataloader_workers`). Every step re-seeds torch /
numpy / random from (seed, step, rank); the workers are seeded once, from (seed, rank, worker). A resumed
run restores the weights, optimiser, scheduler, GradScaler and step, replays the data loader to the same
position of the same epoch, and so continues the loss curve it would have followed without the interruption.

Networks that no loss trains (the motion net when only ``losses.auto_weight`` reads its dynamic mask) are
frozen: no gradient, not in the optimiser, not in DistributedDataParallel's reducer (which would otherwise
wait for their gradients and fail on the next step).

Output folder: ``config.yaml``, ``checkpoints/step_XXXXXXXX.pt`` + ``last.pt`` (format of
``depth_sfm_ros.models.checkpoint``), ``tb/`` (TensorBoard), ``metrics.jsonl`` (one JSON line per log).
"""
from __future__ import annotations

import copy
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from depth_sfm_training.config import dump_config, validate
from depth_sfm_training.depth_prior import DepthPrior
from depth_sfm_training.distributed import (DistInfo, all_reduce_mean, barrier, broadcast_object,
                                            dataloader_workers, dist_info_from_env, init_distributed,
                                            resolve_device)
from depth_sfm_training.forward import ForwardOutputs, TrainingForward
from depth_sfm_training.logging_utils import Progress, TrainLogger
from depth_sfm_training.loss_adapter import build_loss_config, build_loss_inputs
from depth_sfm_training.losses import FrameBatchOutputs, compute_losses
from depth_sfm_training.losses.normals import sampling_generator
from depth_sfm_training.validation import evaluate_depth, training_images

log = logging.getLogger(__name__)

__all__ = ["Trainer", "TrainResult", "seed_everything", "model_config_from", "git_commit", "load_init_weights"]


# ----------------------------------------------------------------------------------------- seeding
def _mix_seed(*parts: int) -> int:
    """A 31-bit seed from several integers (stable across runs and platforms)."""
    h = 0x345678
    for p in parts:
        h = (h * 1000003) ^ (int(p) & 0xFFFFFFFF)
        h &= 0xFFFFFFFFFFFF
    return h % (2 ** 31 - 1)


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _worker_init(worker_id: int) -> None:
    """DataLoader worker seeding: torch already gives each worker base_seed + id; numpy and random follow."""
    seed = torch.initial_seed() % (2 ** 31 - 1)
    np.random.seed(seed)
    random.seed(seed)


class EpochSampler(Sampler):
    """Wraps a sampler so that it yields ``(epoch, index)``: the epoch reaches the dataset with every index,
    also in DataLoader workers that live across epochs (their dataset copies never see ``set_epoch``)."""

    def __init__(self, sampler: DistributedSampler) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(self.epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(index)) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class EpochDataset(Dataset):
    """Reads ``(epoch, index)`` keys from :class:`EpochSampler`: calls ``dataset.set_epoch(epoch)`` when the
    epoch changes (in whichever process holds this copy), then returns ``dataset[index]``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if epoch != self.epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.epoch = epoch
        return self.dataset[index]


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the code being trained (with ``+dirty`` when the tree has changes), or None."""
    from depth_sfm_ros.models.checkpoint import git_commit as checkout_commit

    return checkout_commit(path or Path(__file__).resolve().parent, mark_dirty=True)


# ------------------------------------------------------------------------------------------ config
def model_config_from(config: dict[str, Any]) -> dict[str, Any]:
    """The ``build_models`` config of a training config (the model section + the input size)."""
    m = config["model"]
    out = {
        "encoder": m["encoder"],
        "pose_encoder": m["pose_encoder"],
        "num_scales": m["num_scales"],
        "min_depth": m["min_depth"],
        "max_depth": m["max_depth"],
        "height": config["data"]["height"],
        "width": config["data"]["width"],
        "use_motion_net": m["use_motion_net"],
        "use_obj_pose": m["use_obj_pose"],
        "weights_path": m["weights_path"],
        "pose_weights_path": m["pose_weights_path"],
        "depth_flip_average": m["depth_flip_average"],
    }
    out.update(m["extra"])
    return out


def dataset_config_from(config: dict[str, Any], split: str) -> dict[str, Any] | None:
    """The ``build_dataset`` config for ``split`` = "train" or "val" (None: no validation set)."""
    d = config["data"]
    extra = d["extra"]
    if split == "train":
        kind, path, split_name, augment = d["dataset"], d["path"], d["split"], d["augment"]
    elif split == "val":
        if d["val_path"] is None:
            return None
        kind, path, split_name, augment = d["val_dataset"] or d["dataset"], d["val_path"], d["val_split"], False
        extra = d["val_extra"] or d["extra"]
    else:
        raise ValueError(f"split must be train or val, got {split!r}")
    out = {"type": kind, "path": path, "split": split_name, "height": d["height"], "width": d["width"],
           "frame_offsets": list(d["frame_offsets"]), "stride": d["stride"], "augment": augment,
           "seed": config["seed"]}
    out.update(extra)
    return out


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns: the step reached, per-step total losses of THIS run (a resumed
    run holds only the steps it ran), the last validation metrics, the last checkpoint path, and whether
    ``fit``'s ``on_step`` hook stopped the run before ``train.max_steps`` / ``train.epochs``."""

    step: int
    losses: list[float] = field(default_factory=list)
    val_metrics: dict[str, Any] = field(default_factory=dict)
    last_checkpoint: Path | None = None
    stopped_early: bool = False


# ----------------------------------------------------------------------------------------- trainer
class Trainer:
    """Builds everything from a validated config (see ``configs/defaults.yaml``) and trains.

    Args:
        config: a config from :func:`depth_sfm_training.config.load_config` (validated again here).
        out_dir: output folder (created); None = no files at all (tests, benchmarks).
        resume: checkpoint to continue from (weights, optimiser, scheduler, step).
        dist_info: rank/world size; default from torchrun's environment variables.
        train_set, val_set: datasets built by the caller (sample contract of ``depth_sfm_training.datasets``)
            instead of ``build_dataset(data...)``; ``val_set`` is used only when ``train_set`` is given.
    """

    def __init__(self, config: dict[str, Any], out_dir: str | Path | None = None, resume: str | Path | None = None,
                 dist_info: DistInfo | None = None, train_set: Dataset | None = None,
                 val_set: Dataset | None = None) -> None:
        self.config = validate(copy.deepcopy(config))
        self.dist = dist_info or dist_info_from_env()
        self.device = resolve_device(self.config["device"], self.dist)
        init_distributed(self.dist, self.device)
        self.seed = int(self.config["seed"])
        seed_everything(_mix_seed(self.seed, self.dist.rank))
        if self.config["deterministic"]:
            torch.use_deterministic_algorithms(True, warn_only=True)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.is_main = self.dist.is_main
        self._resuming = resume is not None
        self._build_models()
        self._build_optimizer()
        self._build_data(train_set, val_set)
        t = self.config["train"]
        self.total_steps = t["max_steps"] if t["max_steps"] > 0 else t["epochs"] * self.steps_per_epoch
        self.step = 0
        self.history: list[float] = []
        if resume is not None:
            self._load_resume(Path(resume))
        self.commit = git_commit()
        self.logger: TrainLogger | None = None

    def _build_models(self) -> None:
        """Networks, the DDP-wrapped forward pass, the loss config and the normal-loss depth prior."""
        from depth_sfm_ros.models import build_models, validate_model_config

        torch.manual_seed(self.seed)  # every rank builds the same weights; DDP also broadcasts rank 0's
        self.model_config = validate_model_config(model_config_from(self.config))
        self.bundle = build_models(self.model_config).to(self.device)
        self.init_report: dict[str, str] = {}
        if self.config["model"]["init_weights"] and not self._resuming:  # a resume brings its own weights
            self.init_report = load_init_weights(self.bundle, self.model_config, Path(self.config["model"]["init_weights"]))
        if self.config["model"]["motion_encoder_init"] == "pose" and not self._resuming:
            self.init_report["motion.encoder"] = init_motion_encoder_from_pose(self.bundle)
        losses = self.config["losses"]
        self.loss_config = build_loss_config(self.config)
        # run the motion net only when a loss consumes it; freeze it when no loss trains it (auto-weight only
        # reads its detached mask): its outputs reach DDP but no gradient would, and DDP's reducer would wait
        # for them ("Expected to have finished reduction in the prior iteration" on the next step)
        self.frozen_nets = self._freeze_listed(self.config["train"]["freeze"])
        has_motion = self.bundle.motion is not None
        uses_motion = has_motion and bool(losses["flow3d"] or losses["explainability"] or losses["auto_weight"] != "none")
        trains_motion = has_motion and bool(losses["flow3d"] or losses["explainability"])
        if has_motion and not trains_motion:
            self.bundle.motion.requires_grad_(False)
            log.info("motion net frozen: no loss trains it (%s)", "auto_weight reads its dynamic mask"
                     if uses_motion else "no loss uses it")
        find_unused = bool(self.config["train"]["find_unused_parameters"]
                           or (self.bundle.obj_pose is not None and not losses["instance"]))
        self.forward_module = TrainingForward(
            self.bundle, self.model_config["min_depth"], self.model_config["max_depth"],
            need_reverse_pose=bool(losses["cycle"] or losses["blank_mask"]),
            need_source_depth=bool(losses["geometric"] or losses["blank_mask"] or losses["instance"]),
            use_motion=uses_motion,
            train_motion=trains_motion,
            explainability=bool(losses["explainability"]),
            instance=bool(losses["instance"]),
            forward_upsample=int(losses["forward_upsample"]),
            max_objects=int(self.config["data"]["max_instances"]))
        self.model: nn.Module = self.forward_module
        if self.dist.enabled:
            self.model = DistributedDataParallel(
                self.forward_module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=find_unused)
        self.prior = DepthPrior(self.config, self.bundle, self.device)

    def _freeze_listed(self, names: list[str]) -> tuple[str, ...]:
        """``train.freeze``: networks that keep their (initial) weights, e.g. ``[depth, pose]`` to train only the
        motion net's mask on top of a trained depth / pose model. A frozen net has no gradient, is not in the
        optimiser and always runs in eval mode (its BatchNorm statistics stay those it was trained with)."""
        for name in names:
            net = getattr(self.bundle, name)
            if net is None:
                raise ValueError(f"train.freeze lists {name!r}, but this model has no {name} net")
            net.requires_grad_(False)
        if names and not any(p.requires_grad for p in self.bundle.parameters()):
            raise ValueError(f"train.freeze={list(names)} leaves no network to train")
        if names:
            log.info("frozen (train.freeze): %s", ", ".join(names))
        return tuple(names)

    def _set_train_mode(self) -> None:
        """Training mode for the nets being trained, eval mode for the frozen ones."""
        self.model.train()
        for name in self.frozen_nets:
            getattr(self.bundle, name).eval()

    def _build_optimizer(self) -> None:
        """Adam(W), the step schedule and the AMP GradScaler (active on CUDA only; CPU autocast uses bf16)."""
        o = self.config["optim"]
        params = [p for p in self.bundle.parameters() if p.requires_grad]
        opt_cls = torch.optim.Adam if o["name"] == "adam" else torch.optim.AdamW
        self.optimizer = opt_cls(params, lr=o["lr"], betas=tuple(o["betas"]), weight_decay=o["weight_decay"])
        self.scheduler = (torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=o["step_size"], gamma=o["gamma"])
                          if o["scheduler"] == "step" else None)
        amp = bool(self.config["train"]["amp"])
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.amp = amp
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and self.device.type == "cuda")

    def _build_data(self, train_set: Dataset | None, val_set: Dataset | None) -> None:
        """Training set + DistributedSampler (also for one process: one shuffling rule), validation set."""
        if train_set is None:
            from depth_sfm_training.datasets import build_dataset

            train_set = build_dataset(dataset_config_from(self.config, "train"))
            val_cfg = dataset_config_from(self.config, "val")
            val_set = build_dataset(val_cfg) if (val_cfg is not None and self.is_main) else None
        self.train_set = train_set
        self.intrinsics_normalized = _normalized_intrinsics(train_set)
        self.val_set = val_set if self.is_main else None
        if len(self.train_set) == 0:
            raise ValueError(f"training dataset {self.config['data']['path']} has no samples")
        self.sampler = DistributedSampler(self.train_set, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                          shuffle=True, seed=self.seed, drop_last=True)
        batch = self.config["train"]["batch_size"]
        if len(self.sampler) < batch:
            raise ValueError(f"batch_size {batch} is larger than the {len(self.sampler)} training samples per process")
        self.epoch_sampler = EpochSampler(self.sampler)
        workers = dataloader_workers(self.config["train"]["num_workers"], self.dist)
        # one loader for the whole run: its workers persist across epochs (no respawn and dataset reload per
        # epoch); EpochSampler carries the epoch to their dataset copies
        self.loader = DataLoader(EpochDataset(self.train_set), batch_size=batch, sampler=self.epoch_sampler,
                                 drop_last=True, num_workers=workers, worker_init_fn=_worker_init,
                                 pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                                 generator=torch.Generator().manual_seed(_mix_seed(self.seed, self.dist.rank)))

        self.steps_per_epoch = len(self.loader)

    # ------------------------------------------------------------------------------ checkpoints
    def _load_resume(self, path: Path) -> None:
        from depth_sfm_ros.models import load_checkpoint

        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt["model_config"] != self.model_config:
            raise ValueError(f"{path}: model config {ckpt['model_config']} does not match this run's "
                             f"{self.model_config}")
        _load_bundle_state(self.bundle, ckpt["state_dict"])
        if ckpt.get("optimizer") is None:
            raise ValueError(f"{path}: checkpoint has no optimizer state; it cannot be resumed (use it as weights)")
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as exc:
            raise ValueError(f"{path}: its optimiser state does not fit this run's trainable parameters ({exc}). "
                             f"A run saved before an untrained motion net was frozen (auto_weight without "
                             f"flow3d / explainability) cannot be resumed; start from its weights with "
                             f"model.init_weights={path}") from exc
        extra = ckpt.get("extra") or {}
        if self.scheduler is not None and extra.get("scheduler") is not None:
            self.scheduler.load_state_dict(extra["scheduler"])
        if extra.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(extra["scaler"])
        self._apply_configured_lr(path)
        if extra.get("prior_taken_at") is not None:
            self.prior.load_state(_prior_path(path), int(extra["prior_taken_at"]), self.device)
        self.step = int(ckpt["step"])
        if extra.get("world_size") not in (None, self.dist.world_size) or \
                extra.get("steps_per_epoch") not in (None, self.steps_per_epoch):
            log.warning("resuming %s with %d processes / %d steps per epoch (saved: %s / %s): training continues "
                        "but the data order differs from an uninterrupted run", path, self.dist.world_size,
                        self.steps_per_epoch, extra.get("world_size"), extra.get("steps_per_epoch"))
        log.info("resumed %s at step %d", path, self.step)

    def _apply_configured_lr(self, path: Path) -> None:
        """Make ``optim.lr`` of this run's config the base learning rate after a resume.

        The optimiser state of a checkpoint carries its own rate, so without this a resume with another
        ``optim.lr`` (the usual way to start a lower-rate last stage) would silently keep the old one. The decay a
        scheduler applied so far is kept: lr = new base x (saved lr / saved base).
        """
        new_base = float(self.config["optim"]["lr"])
        for group in self.optimizer.param_groups:
            old_base = float(group.get("initial_lr", group["lr"]))
            if math.isclose(old_base, new_base, rel_tol=1e-9):
                continue
            group["lr"] = new_base * float(group["lr"]) / old_base
            if "initial_lr" in group:
                group["initial_lr"] = new_base
            log.info("resuming %s: learning rate base %.3g -> %.3g (optim.lr), now %.3g", path, old_base, new_base,
                     group["lr"])
        if self.scheduler is not None:
            self.scheduler.base_lrs = [new_base for _ in self.optimizer.param_groups]

    def save_checkpoint(self, path: Path) -> Path:
        """Write a resumable checkpoint (rank 0 only; other ranks return without writing)."""
        from depth_sfm_ros.models import save_checkpoint

        if not self.is_main:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = {"scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                 "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                 "prior_taken_at": self.prior.save_state(_prior_path(path)),
                 "steps_per_epoch": self.steps_per_epoch,
                 "world_size": self.dist.world_size,
                 "trainer_git_commit": self.commit,
                 "intrinsics_normalized": self.intrinsics_normalized}
        save_checkpoint(path, self.bundle, self.model_config, self.config, step=self.step,
                        epoch=self.step // self.steps_per_epoch, optimizer_state=self.optimizer.state_dict(),
                        extra=extra)
        return path

    def _rotate_checkpoints(self, ckpt_dir: Path) -> None:
        keep = self.config["log"]["keep_last"]
        if keep <= 0:
            return
        for old in sorted(p for p in ckpt_dir.glob("step_*.pt") if not p.name.endswith(".prior.pt"))[:-keep]:
            old.unlink()
            _prior_path(old).unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------- data
    def _batches(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """Yield (epoch, batch) from the current step on, replaying the epoch's order after a resume.

        One iteration at a time: the loader's persistent workers serve a single live iterator."""
        epoch, skip = divmod(self.step, self.steps_per_epoch)
        while True:
            self.epoch_sampler.set_epoch(epoch)  # the order (DistributedSampler) and the augmentation draws
            for i, batch in enumerate(self.loader):
                if i < skip:
                    continue  # replay: loading (not training on) the batches already seen keeps worker RNGs in step
                yield epoch, batch
            skip = 0
            epoch += 1

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # ------------------------------------------------------------------------------------- steps
    def train_step(self, batch: dict[str, Any]) -> tuple[dict[str, float], ForwardOutputs, FrameBatchOutputs]:
        """One optimiser step on a batch already on the device; returns the scalar terms (mean over ranks)."""
        self._set_train_mode()
        images = batch["images"]
        with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            outputs = self.model(images, batch["K"], batch.get("instance_ids"))
        prior = self.prior.depth(images[:, 0], self.step)
        loss_inputs = build_loss_inputs(outputs, batch, prior, self.loss_config,
                                        use_dataset_dynamic_masks=self.config["data"]["use_dynamic_masks"])
        # the ranking loss samples on the loss tensors' device: its generator must live there (sampling_generator)
        generator = sampling_generator(self.device, _mix_seed(self.seed, self.step, self.dist.rank))
        total, terms = compute_losses(loss_inputs, self.loss_config, generator=generator)
        if not torch.isfinite(total):
            raise FloatingPointError(f"step {self.step}: loss is {float(total)}; terms "
                                     f"{ {k: float(v) for k, v in terms.items()} }")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        grad_clip = self.config["optim"]["grad_clip"]
        if grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.bundle.parameters(), grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        values = {"total": float(all_reduce_mean(total.float(), self.dist))}
        for name, value in terms.items():
            v = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
            values[name] = float(all_reduce_mean(v.detach().float().to(self.device), self.dist))
        return values, outputs, loss_inputs

    def _scheduler_step(self, epoch_done: bool) -> None:
        if self.scheduler is None:
            return
        unit = self.config["optim"]["scheduler_unit"]
        if unit == "step" or (unit == "epoch" and epoch_done):
            self.scheduler.step()

    def fit(self, on_step: Callable[[int, dict[str, float]], bool] | None = None) -> TrainResult:
        """Train until ``train.max_steps`` (or ``train.epochs``); returns a :class:`TrainResult`.

        ``on_step(step, losses)`` (optional) is called on the main process after every optimiser step; returning
        True stops the run cleanly after that step, which is then handled as the last one (validation and final
        checkpoint as at ``max_steps``). ``depth-sfm adapt`` uses it for its time budget and progress line. With
        several processes rank 0's answer is broadcast, so every rank stops at the same step.
        """
        cfg_log = self.config["log"]
        out_dir = broadcast_object(str(self.out_dir) if self.out_dir else None, self.dist)
        ckpt_dir = Path(out_dir) / "checkpoints" if out_dir else None
        if self.is_main and out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / "config.yaml").write_text(dump_config(self.config), encoding="utf-8")
        self.logger = TrainLogger(Path(out_dir) / "tb" if out_dir else None,
                                  enabled=self.is_main and bool(out_dir) and cfg_log["tensorboard"])
        progress = Progress(self.total_steps, self.step, enabled=self.is_main and cfg_log["progress_bar"])
        metrics_file = open(Path(out_dir) / "metrics.jsonl", "a", encoding="utf-8") if (self.is_main and out_dir) else None
        result = TrainResult(step=self.step)
        try:
            if self.is_main and self.logger.writer is not None:
                self.logger.text("config", "```\n" + dump_config(self.config) + "\n```")
            batches = self._batches()
            while self.step < self.total_steps:
                epoch, batch = next(batches)
                # reseeding per step makes random choices inside the losses reproducible after a resume
                seed_everything(_mix_seed(self.seed, self.step, self.dist.rank))
                batch = self._to_device(batch)
                t0 = time.perf_counter()
                values, outputs, loss_inputs = self.train_step(batch)
                self.step += 1
                self.history.append(values["total"])
                result.losses.append(values["total"])
                epoch_done = self.step % self.steps_per_epoch == 0
                self._scheduler_step(epoch_done)
                rate = progress.update(self.step, values)
                if self.is_main and cfg_log["log_every"] and self.step % cfg_log["log_every"] == 0:
                    values_out = dict(values, lr=self.optimizer.param_groups[0]["lr"], steps_per_s=rate,
                                      step_time_s=time.perf_counter() - t0)
                    self.logger.scalars(values_out, self.step)
                    if metrics_file is not None:
                        metrics_file.write(json.dumps({"step": self.step, "epoch": epoch, **values_out}) + "\n")
                        metrics_file.flush()
                if self.is_main and cfg_log["image_log_every"] and self.step % cfg_log["image_log_every"] == 0:
                    self.logger.images(training_images(outputs, loss_inputs), self.step)
                stop = False
                if on_step is not None:
                    stop = bool(on_step(self.step, values)) if self.is_main else False
                    if self.dist.enabled:
                        stop = bool(broadcast_object(stop, self.dist))
                result.stopped_early = stop and self.step < self.total_steps
                final = self.step >= self.total_steps or stop
                if (cfg_log["val_every"] and self.step % cfg_log["val_every"] == 0) or \
                        (not cfg_log["val_every"] and epoch_done) or final:
                    metrics = self.validate()
                    if metrics:
                        result.val_metrics = metrics
                        self.logger.scalars({k: v for k, v in metrics.get("all", {}).items()
                                             if isinstance(v, (int, float))}, self.step, prefix="val")
                        if metrics_file is not None:
                            metrics_file.write(json.dumps({"step": self.step, "val": metrics}) + "\n")
                            metrics_file.flush()
                if ckpt_dir is not None and ((cfg_log["checkpoint_every"] and self.step % cfg_log["checkpoint_every"] == 0)
                                             or epoch_done or final):
                    if self.is_main:
                        path = self.save_checkpoint(ckpt_dir / f"step_{self.step:08d}.pt")
                        self._rotate_checkpoints(ckpt_dir)
                        self.save_checkpoint(ckpt_dir / "last.pt")
                        result.last_checkpoint = ckpt_dir / "last.pt"
                        log.debug("checkpoint %s", path)
                    barrier(self.dist)
                if stop:
                    break
            self._sync_buffers()
        finally:
            progress.close()
            self.logger.close()
            if metrics_file is not None:
                metrics_file.close()
        result.step = self.step
        return result

    def _sync_buffers(self) -> None:
        """DDP broadcasts BatchNorm statistics from rank 0 at the START of each forward, so after the last
        step each rank holds its own; copy rank 0's so every process ends with the checkpointed model."""
        if self.dist.enabled and torch.distributed.is_initialized():
            for buffer in self.bundle.buffers():
                torch.distributed.broadcast(buffer.data, src=0)

    # ------------------------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Median-scaled depth metrics (all / static / dynamic) on the held-out set (rank 0; {} without GT)."""
        if self.val_set is None or not self.is_main:
            return {}
        return evaluate_depth(self.bundle, self.val_set, self.model_config, self.device,
                              max_frames=self.config["log"]["val_max_frames"],
                              min_depth=self.config["log"]["val_min_depth"],
                              max_depth=self.config["log"]["val_max_depth"])


def _load_bundle_state(bundle: nn.Module, state: dict[str, Any], ignore_extra: bool = False) -> list[str]:
    """Load the checkpoint's per-network state dicts ({depth, pose, motion, obj_pose}) into the bundle,
    strictly; returns the names loaded. A network the bundle lacks is an error, or skipped with
    ``ignore_extra``."""
    loaded = []
    for name, sub_state in state.items():
        net = getattr(bundle, name, None)
        if sub_state is None or (net is None and ignore_extra):
            continue
        if net is None:
            raise ValueError(f"checkpoint has weights for {name!r} but the model bundle has no such network")
        net.load_state_dict(sub_state)
        loaded.append(name)
    return loaded


# Model-config keys that decide the networks' shapes; a fine-tuning start must match them.
_ARCHITECTURE_KEYS = ("encoder", "pose_encoder", "num_scales")


def load_init_weights(bundle: nn.Module, model_config: dict[str, Any], path: Path) -> dict[str, str]:
    """Start a run from a checkpoint's network weights (``model.init_weights``): fine-tuning.

    ``path`` is a training checkpoint (.pt), an exported model directory with ``weights.safetensors``
    (e.g. the bundled default model), or such a weights file.

    Every network present in both the bundle and the checkpoint is loaded strictly; a network only the
    bundle has (e.g. Obj-PoseNet when the checkpoint was trained without it) keeps its fresh weights, one
    only the checkpoint has is ignored. Input size and depth range may differ (the nets are fully
    convolutional); the encoders and the number of scales must match.

    Returns:
        {network name: "loaded" | "fresh (not in checkpoint)" | "ignored (not in this model)"}, also logged.

    Raises:
        ValueError: architecture mismatch (naming the key) or a state dict that does not fit.
    """
    from depth_sfm_ros.models import ModelBundle, load_checkpoint
    from depth_sfm_ros.models.weights_file import load_bundle_weights, weights_path_of

    if Path(path).is_dir() or Path(path).suffix == ".safetensors":  # an exported model dir, or its weights file
        state, saved_config = load_bundle_weights(path)
        ckpt = {"model_config": saved_config, "state_dict": state, "step": 0}
        path = weights_path_of(path)
    else:
        ckpt = load_checkpoint(path)
    saved = ckpt["model_config"]
    for key in _ARCHITECTURE_KEYS:
        if saved.get(key) != model_config.get(key):
            raise ValueError(f"model.init_weights {path}: checkpoint has model.{key}={saved.get(key)!r}, this run "
                             f"{model_config.get(key)!r}; fine-tuning needs the same architecture")
    try:
        loaded = _load_bundle_state(bundle, ckpt["state_dict"], ignore_extra=True)
    except RuntimeError as exc:
        raise ValueError(f"model.init_weights {path}: the weights do not fit this model: {exc}") from exc
    report: dict[str, str] = {}
    for name in ModelBundle.SUBNETS:
        in_model, in_checkpoint = getattr(bundle, name) is not None, ckpt["state_dict"].get(name) is not None
        if in_model or in_checkpoint:
            report[name] = ("loaded" if name in loaded else
                            "fresh (not in checkpoint)" if in_model else "ignored (not in this model)")
    log.info("init weights from %s (step %d): %s", path, int(ckpt["step"]),
             ", ".join(f"{k} {v}" for k, v in sorted(report.items())))
    return report


def init_motion_encoder_from_pose(bundle: nn.Module) -> str:
    """Copy the pose net's encoder weights into the motion net's encoder (``model.motion_encoder_init: pose``).

    Both take the current and the previous image stacked on the channel axis in that order, normalised alike, so
    a trained pose encoder's two-frame motion features are a start for the mask / 3-D flow net (which otherwise
    learns them from the few clips with moving objects). Raises ValueError when the encoders differ in shape.
    """
    if bundle.motion is None:
        raise ValueError("model.motion_encoder_init: pose needs a motion net (model.use_motion_net: true)")
    source, target = bundle.pose.encoder.state_dict(), bundle.motion.encoder.state_dict()
    if set(source) != set(target) or any(source[k].shape != target[k].shape for k in source):
        raise ValueError(f"model.motion_encoder_init: pose needs the motion net's encoder to be the pose net's "
                         f"({bundle.pose.encoder_name!r}): set model.extra.motion_encoder to it (motion net has "
                         f"{bundle.motion.encoder_name!r})")
    bundle.motion.encoder.load_state_dict(source)
    log.info("motion net encoder initialised from the pose net's (%s)", bundle.pose.encoder_name)
    return "from the pose encoder"


def _normalized_intrinsics(dataset) -> list[float] | None:
    """[fx/W, fy/H, cx/W, cy/H] of the first training sample (pixel-centre convention of
    ``Intrinsics.from_normalized``), saved in checkpoints so that an export knows the camera it was
    trained with; None for an empty dataset."""
    if len(dataset) == 0:
        return None
    sample = dataset[0]
    K = sample["K"]
    height, width = sample["images"].shape[-2:]
    return [float(K[0, 0]) / width, float(K[1, 1]) / height, (float(K[0, 2]) + 0.5) / width,
            (float(K[1, 2]) + 0.5) / height]


def _prior_path(checkpoint: Path) -> Path:
    """Where the normal-loss prior snapshot of a checkpoint lives (``X.pt`` -> ``X.prior.pt``)."""
    return checkpoint.with_name(checkpoint.stem + ".prior.pt")
