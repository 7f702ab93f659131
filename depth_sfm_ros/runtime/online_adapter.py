"""Online self-supervised adaptation inside the node (``adapt_online: true``; docs/adapt.md, "Online").

ROS-free and torch-free at module level. Three parts:

* :class:`FrameBuffer`: bounded buffers of training and held-out *triplets* (three consecutive moving frames
  at network size, target in the middle), fed from the Pipeline's frame observer (``Pipeline.frame_sink``).
  Still frames (the motion gate's decision, ``FrameResult.still``, and frames whose images alone show no motion:
  a frozen camera repeating one image, even where the pose net's motion overrides the gate) are skipped; a
  non-finite or flat (black /
  frozen-to-one-value) image, or non-finite / non-positive intrinsics, is skipped and breaks the run of
  consecutive frames; a reset (first frame, stamp jump, size change) breaks it too. Triplets do not share
  frames; every ``heldout_every``-th one goes to the held-out buffer, which no step ever trains on.
* :class:`OnlineAdapter`: a background worker thread that runs a *learner*'s self-supervised steps on
  the buffer, with the safeguards: a step whose held-out photometric loss is higher than before, or lower by
  more than ``max_heldout_drop`` (an implausible jump: a model that masks every pixel scores 0), is rolled
  back (weights and optimizer state); a non-finite or exploding loss, or any exception, restores the last
  accepted weights and stops adaptation in the ``error`` state (nothing raises into the caller); accepted
  weights are handed to ``swap(depth, pose, mask)`` (the torch backend's :meth:`swap_networks`, which takes
  them in at the start of its next inference, or :class:`~.online_swap.ExportSwap` for ONNX Runtime /
  TensorRT: an ONNX export in this thread, then new sessions / engines queued the same way); a failed swap
  is counted and reported, the backend keeps what it runs, and ``max_swap_failures`` failures in a row stop
  adaptation in the ``error`` state; :meth:`OnlineAdapter.save` writes the last accepted weights
  atomically (the weights-file code's temp file + fsync + ``os.replace``). With a *replay set* (anything
  with ``sample(n, rng) -> list[Triplet]`` and ``describe()``, e.g.
  ``depth_sfm_training.online_adapt.ReplaySet``), each batch of ``batch_size`` stream triplets gets
  ``replay_per_batch`` replay triplets (against forgetting); the held-out check uses stream triplets only.
* :func:`create_online_adapter`: the default learner (``depth_sfm_training.online_adapt.PhotometricLearner``:
  the training loss of the project through ``TrainingForward`` / ``build_loss_inputs`` / ``compute_losses``)
  on a model directory's ``weights.safetensors``, imported lazily (training code needs torch).

The learner interface (duck-typed): ``step(triplets) -> float`` (one optimizer step, the training loss),
``heldout_loss(triplets) -> float``, ``snapshot() -> state``, ``restore(state)``,
``runtime_networks() -> (depth, pose, mask | None)`` (copies, for the swap), ``save(path)``.
"""
from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["OnlineAdaptConfig", "Triplet", "FrameBuffer", "OnlineAdapter", "create_online_adapter",
           "ADAPT_STATES", "ReplaySetError"]

ADAPT_STATES = ("waiting", "adapting", "stopped", "error")


class ReplaySetError(ValueError):
    """A replay set that cannot be used (not a directory, an unknown layout, no sample)."""


@dataclass
class OnlineAdaptConfig:
    buffer_frames: int = 96          # frames kept for training (as triplets: buffer_frames // 3)
    heldout_triplets: int = 4        # held-out triplets scored after each step (the newest kept)
    heldout_every: int = 5           # every n-th completed triplet is held out
    min_train_triplets: int = 4      # steps start when this many training triplets are buffered
    batch_size: int = 2
    lr: float = 1e-5
    explode_factor: float = 10.0     # a training loss above this x the first one is "exploding"
    max_heldout_drop: float = 0.3    # a step that lowers the held-out loss by more than this fraction is implausible
                                     # (e.g. depth pushed out of range: every pixel masked, loss 0): rolled back
    min_flat_std: float = 1e-3       # an image with a smaller std (in [0, 1] units) is flat: skipped
    step_pause_s: float = 0.05       # the worker sleeps at least this long after each step (leaves CPU to inference)
    duty_cycle: float = 0.2          # ... and long enough that steps take at most this fraction of the wall time
    swap_every_s: float = 5.0        # at most one swap into the torch backend per this many seconds
    export_every_s: float = 30.0     # ONNX Runtime / TensorRT: at most one export + swap per this many seconds
    max_swap_failures: int = 3       # this many failed swaps (exports) in a row stop adaptation (error state)
    replay_per_batch: int = 1        # with a replay set: replay triplets added to each batch of stream triplets
    nice: int = 10                   # the worker thread's niceness increment (Linux), 0 = unchanged
    seed: int = 0

    def __post_init__(self) -> None:
        if self.buffer_frames < 9:
            raise ValueError(f"adapt buffer_frames must be >= 9 (three triplets), got {self.buffer_frames}")
        for name in ("heldout_triplets", "heldout_every", "min_train_triplets", "batch_size", "max_swap_failures"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"adapt {name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.duty_cycle <= 1.0:
            raise ValueError(f"adapt duty_cycle must be in (0, 1], got {self.duty_cycle}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"adapt lr must be a positive number, got {self.lr}")
        if int(self.replay_per_batch) < 0:
            raise ValueError(f"adapt replay_per_batch must be >= 0, got {self.replay_per_batch}")
        for name in ("swap_every_s", "export_every_s"):
            if not (getattr(self, name) >= 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"adapt {name} must be a number >= 0, got {getattr(self, name)}")


@dataclass
class Triplet:
    """images (3, 3, H, W) float32 RGB [0, 1]: target (the middle frame), previous, next; K (3, 3) at (H, W);
    source: "stream" (the live camera) or "replay" (the replay set)."""
    images: np.ndarray
    K: np.ndarray
    stamp_s: float
    source: str = "stream"


class FrameBuffer:
    """Bounded training / held-out triplet buffers fed frame by frame (thread-safe)."""

    def __init__(self, config: OnlineAdaptConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._run: list[tuple[np.ndarray, np.ndarray, float]] = []
        self.train: deque[Triplet] = deque(maxlen=max(1, config.buffer_frames // 3))
        self.heldout: deque[Triplet] = deque(maxlen=config.heldout_triplets)
        self.heldout_version = 0
        self.counts = {"offered": 0, "kept": 0, "still": 0, "invalid": 0, "flat": 0, "reset": 0}
        self._completed = 0

    def offer(self, image: np.ndarray, K: Any, still: bool = False, reset: bool = False,
              stamp_s: float = 0.0) -> str:
        """One frame: ``image`` (1, 3, H, W) or (3, H, W) float32 (copied when kept), ``K`` a 3x3 matrix or an
        object with ``.K``. Returns what happened: kept | still | invalid | flat."""
        with self._lock:
            self.counts["offered"] += 1
            if reset:
                self.counts["reset"] += 1
                self._run.clear()
            if still:
                self.counts["still"] += 1
                return "still"  # not a break: the next moving frame continues from the reference
            try:
                img = np.asarray(image, dtype=np.float32).reshape(3, *np.shape(image)[-2:])
                K_arr = np.asarray(getattr(K, "K", K), dtype=np.float64).reshape(3, 3)
            except (TypeError, ValueError):
                img, K_arr = None, None
            if (img is None or not np.isfinite(img).all() or not np.isfinite(K_arr).all()
                    or K_arr[0, 0] <= 0 or K_arr[1, 1] <= 0):
                self.counts["invalid"] += 1
                self._run.clear()
                return "invalid"
            if float(img.std()) < self.config.min_flat_std:
                self.counts["flat"] += 1
                self._run.clear()
                return "flat"
            self.counts["kept"] += 1
            self._run.append((img.copy(), K_arr.copy(), float(stamp_s)))
            if len(self._run) == 3:
                (prev, _, _), (mid, K_mid, stamp), (nxt, _, _) = self._run
                triplet = Triplet(np.stack([mid, prev, nxt]), K_mid.astype(np.float32), stamp)
                self._run.clear()
                self._completed += 1
                if self._completed % self.config.heldout_every == 0:
                    self.heldout.append(triplet)
                    self.heldout_version += 1
                else:
                    self.train.append(triplet)
            return "kept"

    def sample_train(self, n: int, rng: random.Random) -> list[Triplet]:
        with self._lock:
            items = list(self.train)
        return rng.sample(items, min(n, len(items)))

    def heldout_set(self) -> tuple[int, list[Triplet]]:
        with self._lock:
            return self.heldout_version, list(self.heldout)

    def sizes(self) -> tuple[int, int]:
        with self._lock:
            return len(self.train), len(self.heldout)


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


class OnlineAdapter:
    """The background worker and its safeguards; see the module docstring. Never raises from its public
    methods into the node (``save`` returns an error text instead)."""

    def __init__(self, learner: Any, config: OnlineAdaptConfig | None = None,
                 swap: Callable[..., Any] | None = None, save_dir: str | os.PathLike | None = None,
                 model_dir: str | os.PathLike | None = None, replay: Any = None,
                 backend_version: Callable[[], Any] | None = None) -> None:
        self.config = config or OnlineAdaptConfig()
        self.learner = learner
        self.buffer = FrameBuffer(self.config)
        self.swap = swap
        self.replay = replay
        self._backend_version = backend_version  # the weight set the backend runs (diagnostics)
        self.save_dir = Path(save_dir) if save_dir else None
        self.model_dir = Path(model_dir) if model_dir else None
        self._learner_lock = threading.Lock()  # a step and a save never overlap
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random(self.config.seed)
        self.state = "waiting"
        self.message = "waiting for moving frames"
        self.steps = self.accepted = self.rollbacks = self.swaps = self.implausible = 0
        self.first_loss: float | None = None
        self.last_loss: float | None = None
        self.heldout_start: float | None = None
        self.heldout_best: float | None = None   # the latest accepted held-out loss (the held-out set changes)
        self._heldout_ratio = 1.0  # product over accepted steps of after / before, each on one held-out set
        self.last_swap_time: float | None = None
        self.last_save: str = ""
        self.replay_used = 0
        self.swap_failures = self._swap_failures_in_a_row = 0
        self.last_swap_error = ""
        self._pending_swap = False
        self._heldout_cache: tuple[int, float] | None = None

    # ------------------------------------------------------------------ feeding (inference thread)
    def frame_sink(self, image: np.ndarray, K: Any, result: Any) -> None:
        """``Pipeline.frame_sink``: offer the frame (the FrameResult's still / reset decide); never raises.

        A frame whose images show no motion (``result.motion.image.moving`` false) counts as still here even
        when the gate calls it moving because the pose net's motion is above its caps (``pose_motion``): a
        frozen camera repeating one image gives the pose net an arbitrary motion, and a triplet without
        parallax teaches nothing but a wrong pose."""
        try:
            image_motion = getattr(getattr(result, "motion", None), "image", None)
            image_still = image_motion is not None and not bool(getattr(image_motion, "moving", True))
            self.buffer.offer(image, K, still=bool(getattr(result, "still", False)) or image_still,
                              reset=bool(getattr(result, "reset", False)),
                              stamp_s=float(getattr(result, "stamp_s", 0.0)))
        except Exception as exc:  # pragma: no cover - defensive: the inference path must not fail here
            log.warning("online adaptation: frame not buffered: %s", exc)

    # ------------------------------------------------------------------ worker
    def start(self) -> "OnlineAdapter":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="depth_sfm_adapt", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def close(self, save: bool = True) -> str:
        """Stop the worker and (``save`` and a save_dir) save the last accepted weights; returns save()'s text."""
        self.stop()
        return self.save() if save and self.save_dir is not None and self.accepted else ""

    def _run(self) -> None:
        if self.config.nice and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
            try:  # Linux: a thread is a task, its niceness is its own
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                               os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + self.config.nice)
            except OSError:
                pass
        while not self._stop.is_set():
            started = time.monotonic()
            did_step = False
            try:
                did_step = self.run_one_step()
            except Exception as exc:  # never into the node: the error state says it
                self._fail(f"{type(exc).__name__}: {exc}")
            if self.state == "error":
                return
            took = time.monotonic() - started
            self._stop.wait(max(self.config.step_pause_s, took * (1.0 / self.config.duty_cycle - 1.0))
                            if did_step else 0.2)
        if self.state != "error":
            self.state = "stopped"

    def _fail(self, message: str) -> None:
        self.state = "error"
        self.message = f"adaptation stopped: {message}; the last accepted weights stay in use"
        log.error("online adaptation: %s", self.message)

    def _heldout_before(self, version: int, heldout: list[Triplet]) -> float:
        if self._heldout_cache is None or self._heldout_cache[0] != version:
            self._heldout_cache = (version, float(self.learner.heldout_loss(heldout)))
        return self._heldout_cache[1]

    def run_one_step(self) -> bool:
        """One guarded step (the worker's loop body; tests call it directly). Returns whether a step ran."""
        if self.state == "error":
            return False
        n_train, n_held = self.buffer.sizes()
        if n_train < self.config.min_train_triplets or n_held < 1:
            self.state = "waiting"
            self.message = (f"waiting for moving frames: {n_train}/{self.config.min_train_triplets} training and "
                            f"{n_held}/1 held-out triplets")
            return False
        with self._learner_lock:
            version, heldout = self.buffer.heldout_set()
            before = self._heldout_before(version, heldout)
            if not _finite(before):
                self._fail(f"held-out loss is {before} before a step")
                return False
            if self.heldout_start is None:
                self.heldout_start = self.heldout_best = before
            batch = self._training_batch()
            snapshot = self.learner.snapshot()
            loss = self.learner.step(batch)
            self.steps += 1
            if not _finite(loss) or (self.first_loss is not None
                                     and float(loss) > self.config.explode_factor * self.first_loss):
                self.learner.restore(snapshot)
                self._fail(f"training loss {loss} at step {self.steps} (first {self.first_loss})")
                return True
            if self.first_loss is None:
                self.first_loss = float(loss)
            self.last_loss = float(loss)
            after = float(self.learner.heldout_loss(heldout))
            implausible = _finite(after) and after < before * (1.0 - self.config.max_heldout_drop)
            self.implausible += int(implausible)
            if not _finite(after) or after > before or implausible:
                self.learner.restore(snapshot)
                if not _finite(after):
                    self._fail(f"held-out loss {after} after step {self.steps}")
                    return True
                self.rollbacks += 1
            else:
                self.accepted += 1
                self._heldout_cache = (version, after)
                self.heldout_best = after
                self._heldout_ratio *= after / before if before > 0 else 1.0
                self._pending_swap = True
            self.state = "adapting"
            self.message = "adapting"
            networks = self.learner.runtime_networks() if self._swap_due() else None
        if networks is not None:  # outside the lock: an export takes seconds, a save need not wait for it
            self._swap_now(networks)
        return True

    def _training_batch(self) -> list[Triplet]:
        """``batch_size`` stream triplets + ``replay_per_batch`` replay triplets (with a replay set)."""
        batch = self.buffer.sample_train(self.config.batch_size, self._rng)
        if self.replay is not None and self.config.replay_per_batch > 0:
            extra = list(self.replay.sample(self.config.replay_per_batch, self._rng))
            self.replay_used += len(extra)
            batch += extra
        return batch

    def _swap_due(self) -> bool:
        last = self.last_swap_time
        return (self._pending_swap and self.swap is not None
                and (last is None or time.monotonic() - last >= self.config.swap_every_s))

    def _swap_now(self, networks: tuple[Any, ...]) -> None:
        """Hand ``networks`` to the backend. A failure is counted and reported; the backend keeps what it runs,
        the swap is retried after ``swap_every_s``, and ``max_swap_failures`` failures in a row stop adaptation."""
        self.last_swap_time = time.monotonic()
        try:
            version = self.swap(*networks)
        except Exception as exc:
            self.swap_failures += 1
            self._swap_failures_in_a_row += 1
            self.last_swap_error = f"{type(exc).__name__}: {exc}"
            log.warning("online adaptation: swap failed (%d in a row), the backend keeps its weights: %s",
                        self._swap_failures_in_a_row, self.last_swap_error)
            if self._swap_failures_in_a_row >= self.config.max_swap_failures:
                self._fail(f"{self._swap_failures_in_a_row} swaps failed in a row, the last: {self.last_swap_error}")
            return
        self._pending_swap = False
        self._swap_failures_in_a_row = 0
        if version is not None:  # None: unchanged weights, nothing swapped
            self.swaps += 1

    # ------------------------------------------------------------------ saving
    def save(self, directory: str | os.PathLike | None = None) -> str:
        """Write the last accepted weights to ``directory`` (default ``save_dir``) / weights.safetensors
        atomically (+ a copy of the start model's model_card.yaml, so the directory loads with the torch
        backend). Returns a one-line result; never raises."""
        target = Path(directory) if directory else self.save_dir
        if target is None:
            return "online adaptation: no save directory (adapt_save_dir is empty)"
        try:
            target.mkdir(parents=True, exist_ok=True)
            with self._learner_lock:
                path = self.learner.save(target / "weights.safetensors")
            card = self.model_dir / "model_card.yaml" if self.model_dir else None
            if card is not None and card.is_file() and not (target / "model_card.yaml").exists():
                from ..fileio import atomic_write

                with atomic_write(target / "model_card.yaml", "w", encoding="utf-8", file_mode=0o644) as handle:
                    handle.write(card.read_text(encoding="utf-8"))
            self.last_save = f"saved {path} after {self.accepted} accepted steps"
        except Exception as exc:
            self.last_save = f"save to {target} failed: {type(exc).__name__}: {exc}"
            log.error("online adaptation: %s", self.last_save)
        return self.last_save

    # ------------------------------------------------------------------ diagnostics
    def status(self) -> dict[str, Any]:
        n_train, n_held = self.buffer.sizes()
        # the held-out set is renewed as the stream goes on: the trend multiplies the per-step changes, each
        # measured before and after the step on the same held-out triplets
        trend = None if self.heldout_start is None else self._heldout_ratio - 1.0
        return {
            "state": self.state, "message": self.message, "steps": self.steps, "accepted": self.accepted,
            "rollbacks": self.rollbacks, "implausible": self.implausible, "swaps": self.swaps, "last_loss": self.last_loss,
            "heldout_start": self.heldout_start, "heldout_best": self.heldout_best, "heldout_change": trend,
            "last_swap_age_s": None if self.last_swap_time is None else time.monotonic() - self.last_swap_time,
            "train_triplets": n_train, "heldout_triplets": n_held, "frames": dict(self.buffer.counts),
            "last_save": self.last_save, "swap_failures": self.swap_failures,
            "swap_failing": self._swap_failures_in_a_row > 0, "last_swap_error": self.last_swap_error,
            "weights_in_use": self._backend_version() if self._backend_version is not None else None,
            "replay": self.replay.describe() if self.replay is not None else "off", "replay_used": self.replay_used,
        }


def create_online_adapter(model_dir: str | os.PathLike, backend: Any, config: OnlineAdaptConfig | None = None,
                          save_dir: str | os.PathLike | None = None,
                          replay_dir: str | os.PathLike | None = None) -> OnlineAdapter:
    """The node's adapter on the model directory's ``weights.safetensors``: for the torch backend the learner
    runs on the backend's device and accepted networks are swapped in directly (every ``swap_every_s``); for
    ONNX Runtime / TensorRT it runs on the CPU and accepted networks are re-exported (every ``export_every_s``,
    :class:`~.online_swap.ExportSwap`). ``replay_dir``: a replay set (``ReplaySet.from_folder``). ValueError
    with the reason when the backend cannot take new weights, the weights file is missing or the replay set
    is unusable."""
    name = getattr(backend, "name", "?")
    if not (name == "torch" and hasattr(backend, "swap_networks")) and not hasattr(backend, "swap_exported"):
        raise ValueError(f"adapt_online: the {name} backend cannot take new weights while running "
                         f"(backends that can: torch, onnxruntime, tensorrt)")
    weights = Path(model_dir) / "weights.safetensors"
    if not weights.is_file():
        raise ValueError(f"adapt_online needs {weights} (the model's PyTorch weights; re-export the model)")
    config = config or OnlineAdaptConfig()
    from depth_sfm_training.online_adapt import PhotometricLearner, ReplaySet  # lazy: training code needs torch

    replay = None
    if replay_dir:
        height, width = backend.input_hw
        replay = ReplaySet.from_folder(replay_dir, height, width, seed=config.seed)
    if name == "torch":
        learner = PhotometricLearner.from_weights(weights, lr=config.lr, device=getattr(backend, "device", "cpu"))
        swap: Callable[..., Any] = backend.swap_networks
    else:
        from dataclasses import replace

        from .online_swap import ExportSwap

        learner = PhotometricLearner.from_weights(weights, lr=config.lr, device="cpu")
        swap = ExportSwap(backend)
        config = replace(config, swap_every_s=config.export_every_s)
    return OnlineAdapter(learner, config, swap=swap, save_dir=save_dir, model_dir=model_dir, replay=replay,
                         backend_version=lambda: getattr(backend, "weights_version", None))
