"""``depth-sfm adapt``: fine-tune an exported model on one unlabelled recording, before a mission.

    depth-sfm adapt RECORDING --out MODEL_DIR [--model MODEL_DIR] [--minutes M] [--steps N]
                    [--replay synthetic|none|DATASET_YAML|FOLDER] [--holdout-fraction F] ...

RECORDING is a rosbag2 (mcap / sqlite3 folder or file; ROS 1 .bag too) read by the ``rosbag`` dataset
(``--image-topic``, ``--camera-info-topic``), or a folder of images sorted by name with a calibration YAML
(the ``folder`` dataset: ``calib.yaml`` in the folder or ``--calib``; ``fx, fy, cx, cy[, width, height]`` or a
ROS camera_info YAML).

What it does (docs/adapt.md):

1. Reads ``--model`` (default: the bundled model): its card's ``model_config`` (architecture, input size) and
   its PyTorch weights ``weights.safetensors`` (a clear error when the directory has none).
2. Splits the recording's frames in time: the last ``--holdout-fraction`` (default 15 %) is held out and never
   trained on (the dataset's ``frames: [start, stop]`` ranges: a training sample's source frames cannot reach
   into the held-out part either).
3. Builds a training config in code: ``training/configs/adapt.yaml`` (or ``--config``) <- the card's model
   section and input size <- ``model.init_weights = MODEL_DIR`` <- a ``mixture`` of the recording's training
   frames and a replay set (``--replay``; default: a small seeded synthetic set rendered once into a cache,
   like the data the bundled model was trained on), repeated so that about ``--replay-fraction`` of the
   samples are replay <- ``--set key=value`` overrides. The project's :class:`~depth_sfm_training.trainer.Trainer`
   trains it until ``--steps`` or ``--minutes`` (checked after every step through ``Trainer.fit(on_step=...)``),
   printing a progress line with the loss and the estimated time left.
4. Scores the starting and the adapted networks on the held-out frames with the training loss's photometric
   term (monodepth2: 0.85 SSIM + 0.15 L1, per-pixel minimum over the source frames, identity auto-mask, warp
   validity mask; full resolution, eval mode, no augmentation) and reports both and the relative change.
5. Exports the adapted networks (ONNX + ``weights.safetensors`` + ``model_card.yaml``, :func:`export_bundle`)
   with ``metrics.adaptation`` in the card: the start model, the recording, the frame split, the replay set,
   steps, minutes, device, machine and the held-out losses. A held-out loss that got worse is printed loudly,
   marked in the card (``verdict: worse``) and gives exit code 3; the directory is kept.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import numpy as np

from depth_sfm_training.config import CONFIG_DIR, ConfigError, apply_overrides, load_config, validate

log = logging.getLogger(__name__)

__all__ = ["AdaptError", "AdaptOptions", "AdaptResult", "BudgetProgress", "RecordingSplit", "adapt_recording",
           "auto_threads", "bundled_model_dir", "default_replay_set", "heldout_photometric_losses", "mixture_repeats",
           "recording_dataset_config", "split_recording", "add_arguments", "run"]

ADAPT_CONFIG = CONFIG_DIR / "adapt.yaml"
WEIGHTS_FILE = "weights.safetensors"
DEFAULT_HOLDOUT_FRACTION = 0.15
DEFAULT_MINUTES = 10.0  # when neither --minutes nor --steps is given
DEFAULT_REPLAY_FRACTION = 0.25
DEFAULT_REPLAY_FRAMES = 60
EXIT_WORSE = 3
UNBOUNDED_STEPS = 1_000_000_000  # train.max_steps when only the time budget ends the run
BAG_SUFFIXES = (".mcap", ".db3", ".bag")

# The default replay set: the kinds of frames the project's models are trained on (docs/default_model.md),
# rendered by depth_sfm_ros.synth (seeded, deterministic): two classic streets at the bundled model's
# 640x192 and two randomised scenes (streets / intersections, rooms / corridors) at width 320.
# (seed, randomize, scene, width, height); height None: the profile's aspect ratio.
DEFAULT_REPLAY_SEQUENCES = (
    (11, "none", "street", 640, 192),
    (12, "none", "street", 640, 192),
    (101, "train", "mixed", 320, None),
    (201, "train", "indoor", 320, None),
)
REPLAY_CACHE_VERSION = 1

PHOTOMETRIC_PROTOCOL = ("photometric term of the training loss (monodepth2: 0.85 SSIM + 0.15 L1), per-pixel minimum "
                        "over the source frames, identity auto-mask, warp validity mask; full resolution, eval mode, "
                        "no augmentation; mean over the held-out target frames")


class AdaptError(ValueError):
    """A problem with the inputs of ``depth-sfm adapt`` (model, recording, options); the message says what to do."""


# ------------------------------------------------------------------------------------------- inputs
def bundled_model_dir() -> Path:
    """The model the node uses without a ``model`` parameter (``depth_sfm_ros/data/default_model``)."""
    import depth_sfm_ros

    return Path(depth_sfm_ros.__file__).resolve().parent / "data" / "default_model"


def _no_weights_message(model_dir: Path, bundled: bool) -> str:
    what = "the bundled default model" if bundled else "this model directory"
    text = (f"{model_dir} has no {WEIGHTS_FILE}: {what} ships only its ONNX files, and adapt fine-tunes the "
            f"PyTorch weights that every export now writes beside them.")
    if bundled:
        text += (" The bundled model was exported before models carried their weights and its training checkpoint "
                 "was not kept; its successor (docs/default_model.md) ships with weights.safetensors soon.")
    return text + (" Until then pass --model DIR with a model exported by 'depth-sfm export' (every export writes "
                   f"{WEIGHTS_FILE}), e.g. from a training checkpoint: depth-sfm export --checkpoint "
                   "runs/NAME/checkpoints/last.pt --out DIR; or re-export this model from its checkpoint the same "
                   "way.")


def check_start_model(model_dir: str | os.PathLike, bundled: bool = False) -> tuple[Any, dict[str, Any]]:
    """The start model's card and model config (architecture + input size); AdaptError when it cannot be adapted
    (no directory, no card, no ``weights.safetensors``, weights that are not the card's)."""
    from depth_sfm_ros.models import validate_model_config
    from depth_sfm_ros.runtime.model_card import ModelCardError, read_model_card, sha256_file

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise AdaptError(f"--model {model_dir}: not a directory (an exported model directory with model_card.yaml, "
                         f"the ONNX files and {WEIGHTS_FILE})")
    try:
        card = read_model_card(model_dir)
    except ModelCardError as exc:
        raise AdaptError(f"--model {model_dir}: {exc}") from exc
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise AdaptError(_no_weights_message(model_dir, bundled))
    digest = card.files.get(WEIGHTS_FILE)
    if digest is not None and sha256_file(weights) != digest:
        raise AdaptError(f"{weights}: its sha256 does not match {model_dir / 'model_card.yaml'}: the weights belong to "
                         f"another export than the ONNX files; re-export the model")
    try:
        model_config = validate_model_config({**(card.model_config or {}), "height": card.input_height,
                                              "width": card.input_width, "weights_path": None,
                                              "pose_weights_path": None})
    except ValueError as exc:
        raise AdaptError(f"{model_dir}: the card's model_config cannot be built: {exc}") from exc
    return card, model_config


def _is_bag(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in BAG_SUFFIXES
    return path.is_dir() and ((path / "metadata.yaml").is_file() or
                              any(p.suffix.lower() in (".mcap", ".db3") for p in path.iterdir()))


def recording_dataset_config(recording: str | os.PathLike, image_topic: str = "/camera/image_raw",
                             camera_info_topic: str | None = None, calib: str | os.PathLike | None = None,
                             cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The ``build_dataset`` config (type and type options, no size / frames) of a recording: a bag (``rosbag``)
    or a folder of images with a calibration YAML (``folder``)."""
    path = Path(recording).resolve()
    if not path.exists():
        raise AdaptError(f"recording {recording} does not exist")
    if _is_bag(path):
        config: dict[str, Any] = {"type": "rosbag", "path": str(path), "image_topic": image_topic}
        if camera_info_topic:
            config["camera_info_topic"] = camera_info_topic
        if cache_dir is not None:
            config["cache_dir"] = str(Path(cache_dir).resolve())
        return config
    if path.is_dir():
        calib_path = Path(calib).resolve() if calib is not None else path / "calib.yaml"
        if not calib_path.is_file():
            raise AdaptError(f"recording {path} is a folder (not a rosbag2: no metadata.yaml / .mcap / .db3), so it "
                             f"must hold images sorted by name and a calibration YAML; {calib_path} does not exist "
                             f"(pass --calib FILE: fx, fy, cx, cy[, width, height] or a ROS camera_info YAML)")
        return {"type": "folder", "path": str(path), "calib": str(calib_path)}
    raise AdaptError(f"recording {recording}: expected a rosbag2 (folder, {', '.join(BAG_SUFFIXES)} file) or a folder "
                     f"of images with a calibration YAML")


@dataclass(frozen=True)
class RecordingSplit:
    """Half-open frame ranges of one recording: ``train`` = [0, a), ``heldout`` = [a, n_frames)."""

    n_frames: int
    train: tuple[int, int]
    heldout: tuple[int, int]


def split_recording(n_frames: int, fraction: float, frame_offsets: Sequence[int] = (0, -1, 1),
                    stride: int = 1) -> RecordingSplit:
    """Hold out the last ``fraction`` of the frames (at least one sample's worth), train on the rest.

    A sample needs ``span + 1`` consecutive frames (span = offset range x stride); each part must hold at least
    one sample. Sources never cross the boundary (the dataset's ``frames`` ranges), so no training sample
    reads a held-out frame."""
    if not 0.0 < fraction < 1.0:
        raise AdaptError(f"--holdout-fraction must be in (0, 1), got {fraction}")
    span = (max(frame_offsets) - min(frame_offsets)) * int(stride)
    need = span + 1
    n_hold = max(int(math.ceil(fraction * n_frames)), need)
    n_train = n_frames - n_hold
    if n_train < need:
        raise AdaptError(f"the recording has {n_frames} frames: too few to hold out {n_hold} (at least {need} for one "
                         f"sample of frame offsets {list(frame_offsets)} x stride {stride}) and train on at least "
                         f"{need}; record longer or lower --stride / --holdout-fraction")
    return RecordingSplit(n_frames, (0, n_train), (n_train, n_frames))


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "depth_sfm_ros" / "adapt_replay"


def default_replay_set(frames: int = DEFAULT_REPLAY_FRAMES, cache_root: str | os.PathLike | None = None) -> Path:
    """Render :data:`DEFAULT_REPLAY_SEQUENCES` (``frames`` each) into the cache once; returns the folder of
    synthetic KITTI-like folders (dataset type ``synthetic``). Each sequence is written to a temporary folder and
    renamed when complete, so an interrupted render is redone, never half-read."""
    from depth_sfm_ros.synth import SynthConfig, render_sequence
    from depth_sfm_ros.synth.kitti import write_kitti_folder

    if frames < 3:
        raise AdaptError(f"--replay-frames must be >= 3 (one sample of three frames), got {frames}")
    root = Path(cache_root) if cache_root is not None else _cache_root()
    folder = root / f"v{REPLAY_CACHE_VERSION}_{frames}frames"
    for seed, randomize, scene, width, height in DEFAULT_REPLAY_SEQUENCES:
        target = folder / f"seq_{seed}_{randomize}_{scene}_{width}"
        if (target / "image_2").is_dir() and (target / "poses.txt").is_file():
            continue
        started = time.perf_counter()
        seq = render_sequence(SynthConfig(seed=seed, width=width, height=height, num_frames=frames,
                                          randomize=randomize, scene=scene))
        staging = folder / f".{target.name}.tmp{os.getpid()}"
        write_kitti_folder(seq.frames, seq.intrinsics, staging)
        if target.exists():  # incomplete leftovers
            import shutil

            shutil.rmtree(target)
        os.replace(staging, target)
        log.info("replay set: rendered %s (%d frames) in %.1f s", target, frames, time.perf_counter() - started)
    return folder


def _replay_components(replay: str, frames: int, cache_root: str | os.PathLike | None
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``--replay`` -> (mixture components, description for the card)."""
    import yaml

    if replay == "none":
        return [], {"kind": "none"}
    if replay == "synthetic":
        folder = default_replay_set(frames, cache_root)
        return [{"type": "synthetic", "path": str(folder), "stride": 1}], {
            "kind": "synthetic (default)", "path": str(folder),
            "sequences": [f"seed {s} randomize={r} scene={sc} width {w}"
                          for s, r, sc, w, _ in DEFAULT_REPLAY_SEQUENCES],
            "frames_per_sequence": frames}
    path = Path(replay).resolve()
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "type" not in data:
            raise AdaptError(f"--replay {path}: expected a dataset config (a YAML mapping with type and path, as "
                             f"build_dataset takes, e.g. type: synthetic, path: data/synth_train)")
        base = path.parent

        def absolute(component: dict[str, Any], root: Path) -> dict[str, Any]:
            component = dict(component)
            key = "data_path" if "data_path" in component else "path"
            if component.get(key) is not None and not Path(component[key]).is_absolute():
                component[key] = str((root / component[key]).resolve())
            component.setdefault("stride", 1)
            return component

        if data["type"] == "mixture":
            root = Path(data.get("data_path", data.get("path")) or ".")
            root = root if root.is_absolute() else base / root
            inherited = {k: v for k, v in data.items() if k not in ("type", "path", "data_path", "components")}
            components = [absolute({**inherited, **c}, root) for c in data.get("components") or []]
            if not components:
                raise AdaptError(f"--replay {path}: a mixture needs components")
        else:
            components = [absolute(data, base)]
        # the model decides the size and the frames per sample; a replay set keeps its own stride (default 1)
        components = [{k: v for k, v in c.items() if k not in ("height", "width", "frame_offsets", "repeat")}
                      for c in components]
        return components, {"kind": "dataset config", "path": str(path)}
    if path.is_dir():
        if (path / "image_2").is_dir() or any((p / "image_2").is_dir() for p in path.iterdir() if p.is_dir()):
            return [{"type": "synthetic", "path": str(path), "stride": 1}], {"kind": "synthetic folder",
                                                                            "path": str(path)}
        return [{"type": "folder", "path": str(path), "stride": 1}], {"kind": "image folder", "path": str(path)}
    raise AdaptError(f"--replay {replay}: expected 'synthetic' (default), 'none', a dataset config YAML, or a folder "
                     f"(synthetic KITTI-like folders, or images with calib.yaml)")


def mixture_repeats(n_recording: int, n_replay: int, fraction: float) -> tuple[int, int]:
    """Integer ``repeat`` of the recording and of the replay set so that about ``fraction`` of an epoch's
    samples are replay (repeats only add copies, so the larger side keeps 1)."""
    if n_replay == 0 or fraction <= 0:
        return 1, 1
    if not fraction < 1:
        raise AdaptError(f"--replay-fraction must be in [0, 1), got {fraction}")
    natural = n_replay / (n_replay + n_recording)
    if natural > fraction:
        return max(1, round(n_replay * (1 - fraction) / (fraction * n_recording))), 1
    return 1, max(1, round(fraction * n_recording / ((1 - fraction) * n_replay)))


# ------------------------------------------------------------------------------------------- scoring
def heldout_photometric_losses(bundle: Any, dataset: Any, model_config: dict[str, Any], device: Any,
                               ssim_weight: float = 0.85, indices: Sequence[int] | None = None) -> list[float]:
    """Per-sample photometric loss (see :data:`PHOTOMETRIC_PROTOCOL`) of ``bundle`` on ``dataset``.

    The same functions as training: :class:`TrainingForward` (depth + pose nets), :func:`build_loss_inputs`,
    :func:`compute_losses` with min reprojection, auto-mask and the validity mask on. The networks run in eval
    mode (as exported); their previous mode is restored."""
    import torch

    from depth_sfm_training.forward import TrainingForward
    from depth_sfm_training.loss_adapter import build_loss_inputs
    from depth_sfm_training.losses import LossConfig, compute_losses

    loss_config = LossConfig(ssim_weight=ssim_weight, min_reprojection=True, automask=True, valid_mask=True)
    forward = TrainingForward(bundle, model_config["min_depth"], model_config["max_depth"])
    was_training = bundle.training
    bundle.eval()
    losses = []
    try:
        with torch.no_grad():
            for i in (range(len(dataset)) if indices is None else indices):
                sample = dataset[int(i)]
                batch = {key: sample[key][None].to(device) for key in ("images", "images_raw", "K")}
                outputs = forward(batch["images"], batch["K"])
                inputs = build_loss_inputs(outputs, batch, None, loss_config, use_dataset_dynamic_masks=False)
                _, terms = compute_losses(inputs, loss_config)
                losses.append(float(terms["photometric"]))
    finally:
        bundle.train(was_training)
    return losses


def _evenly_spaced(n: int, at_most: int) -> list[int]:
    if n <= at_most:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, at_most)})


# ------------------------------------------------------------------------------------------- progress
def auto_threads(cpus: int | None = None, load: float | None = None) -> int:
    """torch CPU threads for a machine that may be busy: the cores not already taken by other work (the 1-minute
    load average), at least 1. torch's intra-op threads wait for each other, so a thread that shares its core
    with another busy process slows every operation down: on the 2-core development machine with a training run
    beside it, one thread trained 6x faster and scored 19x faster than two (docs/adapt.md)."""
    from depth_sfm_training.distributed import available_cpus

    cpus = available_cpus() if cpus is None else int(cpus)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average (Windows): use every core
            load = 0.0
    threads = max(1, min(cpus, cpus - int(load + 0.5)))
    if threads < cpus:
        log.info("torch CPU threads: %d of %d cores (1-minute load average %.1f: the machine is busy; --threads N "
                 "overrides)", threads, cpus, load)
    return threads


def _clock_text(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class BudgetProgress:
    """``Trainer.fit(on_step=...)`` hook: a progress line (step, loss, steps/s, time left) and the time budget.

    The clock starts at construction (just before ``fit``: the data loader's start counts). After each step it
    returns True once ``time_limit_s`` has passed, so the trainer stops after that step. Time left is the
    smaller of the steps left at the measured rate (from the second step on: the first includes the loader's
    start) and the time budget left. On a terminal the line is rewritten in place every step; otherwise one
    line every ``every_s`` seconds (and the first and last)."""

    def __init__(self, max_steps: int | None, time_limit_s: float | None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, every_s: float = 10.0, enabled: bool = True) -> None:
        self.max_steps, self.time_limit_s = max_steps, time_limit_s
        self.stream = stream if stream is not None else sys.stderr
        self.clock, self.every_s, self.enabled = clock, float(every_s), enabled
        self.start = clock()
        self.recent: deque[float] = deque(maxlen=20)
        self._t1: float | None = None
        self._last_print: float | None = None
        self.stopped_by_time = False
        self.last_step = 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def elapsed_s(self) -> float:
        return self.clock() - self.start

    def __call__(self, step: int, values: dict[str, float]) -> bool:
        now = self.clock()
        elapsed = now - self.start
        self.last_step = step
        self.recent.append(float(values["total"]))
        if self._t1 is None:
            self._t1, rate = now, None
            self._first_step = step
        else:
            rate = (step - self._first_step) / max(now - self._t1, 1e-9)
        stop = self.time_limit_s is not None and elapsed >= self.time_limit_s
        self.stopped_by_time = stop
        left = []
        if self.max_steps is not None and rate:
            left.append((self.max_steps - step) / rate)
        if self.time_limit_s is not None:
            left.append(max(self.time_limit_s - elapsed, 0.0))
        final = stop or (self.max_steps is not None and step >= self.max_steps)
        if self.enabled:
            steps = f"{step}/{self.max_steps}" if self.max_steps is not None else str(step)
            line = (f"adapt: step {steps}  loss {values['total']:.4f} (mean of last {len(self.recent)}: "
                    f"{sum(self.recent) / len(self.recent):.4f})  "
                    f"{f'{rate:.2f} step/s' if rate else '-- step/s'}  elapsed {_clock_text(elapsed)}  "
                    f"left ~{_clock_text(min(left)) if left else '?'}"
                    + ("  (time budget reached)" if stop else ""))
            if self.tty:
                self.stream.write("\r" + line + ("\n" if final else ""))
                self.stream.flush()
            elif final or self._last_print is None or now - self._last_print >= self.every_s:
                self.stream.write(line + "\n")
                self.stream.flush()
                self._last_print = now
        return stop

    def finish(self) -> None:
        """End an in-place line (a run that ended on the step budget already ended it)."""
        if self.enabled and self.tty and self.last_step and not self.stopped_by_time and \
                not (self.max_steps is not None and self.last_step >= self.max_steps):
            self.stream.write("\n")
            self.stream.flush()


# ------------------------------------------------------------------------------------------- main API
@dataclass
class AdaptOptions:
    """The arguments of ``depth-sfm adapt`` (see :func:`add_arguments` for their meaning)."""

    recording: str
    out: str
    model: str | None = None
    minutes: float | None = None
    steps: int | None = None
    replay: str = "synthetic"
    replay_frames: int = DEFAULT_REPLAY_FRAMES
    replay_fraction: float = DEFAULT_REPLAY_FRACTION
    replay_cache: str | None = None
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION
    holdout_max_frames: int = 200
    image_topic: str = "/camera/image_raw"
    camera_info_topic: str | None = None
    calib: str | None = None
    cache_dir: str | None = None
    stride: int = 1
    batch_size: int | None = None
    lr: float | None = None
    device: str = "auto"
    threads: int | None = None
    workers: int | None = None
    seed: int = 0
    config: str | None = None
    run_dir: str | None = None
    overrides: Sequence[str] = ()
    progress: bool = True


@dataclass
class AdaptResult:
    """What :func:`adapt_recording` did. ``trainer`` holds the run's datasets (``trainer.train_set``: the mixture,
    recording first) and the adapted networks; ``heldout_set`` the held-out samples scored."""

    out_dir: Path
    adaptation: dict[str, Any]
    before: float
    after: float
    helped: bool
    steps: int
    stopped_by: str
    split: RecordingSplit
    trainer: Any = None
    heldout_set: Any = None
    heldout_indices: list[int] = field(default_factory=list)


def _machine(device: Any) -> str:
    from depth_sfm_training.distributed import available_cpus

    text = f"{platform.machine()} CPU, {available_cpus()} core(s) available"
    if hasattr(os, "getloadavg"):
        text += f", load average {os.getloadavg()[0]:.1f} at the end of training"
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        text += f", GPU {torch.cuda.get_device_name(device)}"
    return text


def _check_out_dir(out: Path, model_dir: Path) -> None:
    if out.resolve() == model_dir.resolve():
        raise AdaptError(f"--out {out} is the start model's directory: write the adapted model elsewhere (the start "
                         f"model stays the reference of the held-out comparison)")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "model_card.yaml").is_file())):
        raise AdaptError(f"--out {out} exists and is not an exported model directory (or empty): refusing to write "
                         f"into it")


def build_adapt_config(options: AdaptOptions, model_dir: Path, model_config: dict[str, Any],
                       components: list[dict[str, Any]], max_steps: int) -> dict[str, Any]:
    """The training config of the run: base config <- model card <- data mixture <- options <- --set."""
    config = load_config(options.config or ADAPT_CONFIG)
    model = config["model"]
    for key in ("encoder", "pose_encoder", "num_scales", "min_depth", "max_depth", "use_motion_net", "use_obj_pose",
                "depth_flip_average"):  # the adapted model infers like the start model
        model[key] = model_config[key]
    model.update(weights_path=None, pose_weights_path=None, init_weights=str(model_dir.resolve()))
    model["extra"] = {**model["extra"], "motion_encoder": model_config["motion_encoder"]}  # the mask net's shape
    data = config["data"]
    data.update(dataset="mixture", path=components[0]["path"], split=None, val_path=None, val_dataset=None,
                height=model_config["height"], width=model_config["width"], stride=int(options.stride),
                extra={"components": components}, val_extra={})
    config["train"]["max_steps"] = int(max_steps)
    config["device"], config["seed"] = options.device, int(options.seed)
    if options.batch_size is not None:
        config["train"]["batch_size"] = int(options.batch_size)
    if options.lr is not None:
        config["optim"]["lr"] = float(options.lr)
    if options.workers is not None:
        config["train"]["num_workers"] = int(options.workers)
    return validate(apply_overrides(config, options.overrides))


def adapt_recording(options: AdaptOptions, stream: TextIO | None = None) -> AdaptResult:
    """Run ``depth-sfm adapt`` (module docstring); raises :class:`AdaptError` on bad inputs."""
    import torch

    out = sys.stdout if stream is None else stream
    bundled = options.model is None
    model_dir = bundled_model_dir() if bundled else Path(options.model)
    card, model_config = check_start_model(model_dir, bundled)
    out_dir = Path(options.out)
    _check_out_dir(out_dir, model_dir)
    if options.steps is not None and options.steps < 1:
        raise AdaptError(f"--steps must be >= 1, got {options.steps}")
    if options.minutes is not None and not options.minutes > 0:
        raise AdaptError(f"--minutes must be > 0, got {options.minutes}")
    if options.stride < 1:
        raise AdaptError(f"--stride must be >= 1, got {options.stride}")
    if options.threads is not None and options.threads < 1:
        raise AdaptError(f"--threads must be >= 1, got {options.threads}")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(int(options.threads if options.threads is not None else auto_threads()))
    try:
        return _adapt(options, out, model_dir, bundled, card, model_config, out_dir)
    finally:
        torch.set_num_threads(threads_before)  # a process-wide setting: leave the caller's as it was


def _adapt(options: AdaptOptions, out: TextIO, model_dir: Path, bundled: bool, card: Any,
           model_config: dict[str, Any], out_dir: Path) -> AdaptResult:
    import torch

    from depth_sfm_ros.runtime.export import export_bundle
    from depth_sfm_ros.runtime.model_card import sha256_file
    from depth_sfm_training.datasets import build_dataset, build_sequences
    from depth_sfm_training.trainer import Trainer, _normalized_intrinsics

    minutes = options.minutes if (options.minutes is not None or options.steps is not None) else DEFAULT_MINUTES
    max_steps = options.steps if options.steps is not None else UNBOUNDED_STEPS

    # the recording and its split in time
    rec_type_config = recording_dataset_config(options.recording, options.image_topic, options.camera_info_topic,
                                               options.calib, options.cache_dir)
    started = time.perf_counter()
    try:
        sequences, _ = build_sequences(rec_type_config)
    except (FileNotFoundError, ValueError) as exc:
        raise AdaptError(f"recording {options.recording}: {exc}") from exc
    n_frames = len(sequences[0])
    log.info("recording %s: %d frames (read in %.1f s)", options.recording, n_frames, time.perf_counter() - started)
    base = load_config(options.config or ADAPT_CONFIG)
    offsets = list(base["data"]["frame_offsets"])
    split = split_recording(n_frames, options.holdout_fraction, offsets, options.stride)
    common = {"height": model_config["height"], "width": model_config["width"], "frame_offsets": offsets,
              "seed": int(options.seed)}
    rec_component = {**rec_type_config, "frames": list(split.train), "stride": int(options.stride)}
    heldout_set = build_dataset({**common, **rec_type_config, "frames": list(split.heldout),
                                 "stride": int(options.stride), "augment": False})

    # the replay set and the mixture
    replay_components, replay_info = _replay_components(options.replay, options.replay_frames, options.replay_cache)
    n_rec = len(build_dataset({**common, **rec_component}))
    n_replay = sum(len(build_dataset({**common, **c})) for c in replay_components)
    rep_rec, rep_replay = mixture_repeats(n_rec, n_replay, options.replay_fraction if replay_components else 0.0)
    components = [dict(rec_component, repeat=rep_rec)] + [dict(c, repeat=rep_replay) for c in replay_components]
    replay_info.update(samples=n_replay, repeat=rep_replay, recording_samples=n_rec, recording_repeat=rep_rec,
                       fraction=round(n_replay * rep_replay / (n_replay * rep_replay + n_rec * rep_rec), 4))

    try:
        config = build_adapt_config(options, model_dir, model_config, components, max_steps)
    except ConfigError as exc:
        raise AdaptError(str(exc)) from exc
    trainer = Trainer(config, options.run_dir)
    if not any(p.requires_grad for p in trainer.bundle.depth.parameters()):
        log.warning("the depth net is frozen (train.freeze): the held-out comparison measures the pose net only")
    heldout_indices = _evenly_spaced(len(heldout_set), options.holdout_max_frames)
    ssim = float(config["losses"]["ssim_weight"])
    out.write(f"adapt: start model {model_dir} ({model_config['encoder']} / {model_config['pose_encoder']}, "
              f"{model_config['width']}x{model_config['height']}); recording {options.recording}: {n_frames} frames, "
              f"training on [{split.train[0]}, {split.train[1]}), held out [{split.heldout[0]}, {split.heldout[1]}) "
              f"({len(heldout_indices)} samples scored); replay: {replay_info['kind']} ({n_replay} samples, "
              f"{replay_info['fraction']:.0%} of an epoch); device {trainer.device}\n")
    out.flush()
    t0 = time.perf_counter()
    before_frames = heldout_photometric_losses(trainer.bundle, heldout_set, trainer.model_config, trainer.device,
                                               ssim, heldout_indices)
    eval_s = time.perf_counter() - t0

    progress = BudgetProgress(None if options.steps is None else options.steps,
                              None if minutes is None else minutes * 60.0, enabled=options.progress)
    fit = trainer.fit(on_step=progress)
    progress.finish()
    train_s = progress.elapsed_s()
    stopped_by = "time" if fit.stopped_early else "steps"
    after_frames = heldout_photometric_losses(trainer.bundle, heldout_set, trainer.model_config, trainer.device,
                                              ssim, heldout_indices)
    before, after = float(np.mean(before_frames)), float(np.mean(after_frames))
    change = (after - before) / before if before > 0 else float("nan")
    helped = bool(after < before)
    improved = int(sum(a < b for a, b in zip(after_frames, before_frames)))

    adaptation: dict[str, Any] = {
        "tool": "depth-sfm adapt",
        "start_model": {"path": str(model_dir.resolve()), "bundled": bundled, "git_commit": card.git_commit,
                        "export_time": card.export_time, "weights_sha256": sha256_file(model_dir / WEIGHTS_FILE),
                        "was_adapted": isinstance(card.metrics.get("adaptation"), dict)},
        "recording": {"path": str(Path(options.recording).resolve()), "dataset": rec_type_config["type"],
                      **({"image_topic": options.image_topic, "camera_info_topic": options.camera_info_topic}
                         if rec_type_config["type"] == "rosbag" else {"calib": rec_type_config.get("calib")}),
                      "frames": n_frames, "stride": int(options.stride)},
        "train_frames": list(split.train),
        "heldout_frames": list(split.heldout),
        "replay": replay_info,
        "steps": int(fit.step),
        "minutes": round(train_s / 60.0, 3),
        "budget": {"steps": options.steps, "minutes": minutes},
        "stopped_by": stopped_by,
        "batch_size": int(config["train"]["batch_size"]),
        "lr": float(config["optim"]["lr"]),
        "device": str(trainer.device),
        "torch_threads": int(torch.get_num_threads()),
        "machine": _machine(trainer.device),
        "heldout_photometric": {"before": before, "after": after,
                                "relative_change": None if math.isnan(change) else change,
                                "samples": len(heldout_indices), "samples_improved": improved,
                                "protocol": PHOTOMETRIC_PROTOCOL},
        "verdict": "helped" if helped else "worse",
    }
    if not helped:
        adaptation["warning"] = ("the held-out photometric loss did NOT fall: the adapted model fits the held-out part "
                                 "of the recording worse than the model it started from; keep using the start model "
                                 "(see docs/adapt.md, 'What can go wrong')")
    t1 = time.perf_counter()
    export_bundle(trainer.bundle, trainer.model_config, out_dir, train_config=trainer.config,
                  intrinsics_normalized=_normalized_intrinsics(heldout_set),  # the recording's camera, unflipped
                  scale_convention=card.scale_convention, metrics={"adaptation": adaptation})
    export_s = time.perf_counter() - t1

    budget = "time budget" if stopped_by == "time" else "step budget"
    out.write(f"adapt: {fit.step} steps in {_clock_text(train_s)} ({budget} reached); held-out scoring {eval_s:.1f} s "
              f"per model, export {export_s:.1f} s\n")
    out.write(f"adapt: held-out photometric loss ({len(heldout_indices)} samples, frames "
              f"[{split.heldout[0]}, {split.heldout[1]})): before {before:.5f}, after {after:.5f}, "
              f"change {change:+.1%} ({improved} of {len(heldout_indices)} samples improved)\n")
    out.write(f"adapt: wrote {out_dir} (ONNX + {WEIGHTS_FILE} + model_card.yaml); run it with depth_sfm_node "
              f"model:={out_dir} or depth-sfm eval-bag --model {out_dir}\n")
    out.flush()
    if not helped:
        bar = "!" * 100
        sys.stderr.write(f"{bar}\nWARNING: ADAPTATION MADE THE MODEL WORSE on the held-out frames of the recording: "
                         f"photometric loss {before:.5f} -> {after:.5f} ({change:+.1%}).\nThe output {out_dir} is "
                         f"kept and marked 'verdict: worse' in its model card; keep using {model_dir}.\n{bar}\n")
        sys.stderr.flush()
    return AdaptResult(out_dir=out_dir, adaptation=adaptation, before=before, after=after, helped=helped,
                       steps=int(fit.step), stopped_by=stopped_by, split=split, trainer=trainer,
                       heldout_set=heldout_set, heldout_indices=heldout_indices)


# ------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("Exit codes: 0 adapted and the held-out loss fell; 3 adapted model written but the held-out "
                     "loss got worse (marked in its card); 2 bad inputs; 1 training or export failed. "
                     "See docs/adapt.md.")
    parser.add_argument("recording", help="rosbag2 (folder, .mcap / .db3; ROS 1 .bag) or a folder of images sorted by "
                                          "name with a calibration YAML")
    parser.add_argument("--out", required=True, help="output model directory (ONNX + weights + card)")
    parser.add_argument("--model", default=None,
                        help="exported model directory to start from (needs weights.safetensors; default: the "
                             "bundled model)")
    parser.add_argument("--minutes", type=float, default=None,
                        help=f"time budget of the training steps; the run stops after the step that crosses it and "
                             f"still scores and exports (default {DEFAULT_MINUTES:g} when --steps is not given)")
    parser.add_argument("--steps", type=int, default=None, help="step budget (optimiser steps)")
    parser.add_argument("--replay", default="synthetic",
                        help="replay data mixed into training so the model keeps what it knew: 'synthetic' (default: "
                             "a small seeded synthetic set rendered once into ~/.cache/depth_sfm_ros), 'none', a "
                             "dataset config YAML (as build_dataset takes: type, path, ...; a mixture too) or a "
                             "folder (synthetic KITTI-like folders, or images with calib.yaml)")
    parser.add_argument("--replay-fraction", type=float, default=DEFAULT_REPLAY_FRACTION,
                        help="about this fraction of the training samples are replay (default %(default)s)")
    parser.add_argument("--replay-frames", type=int, default=DEFAULT_REPLAY_FRAMES,
                        help="frames per sequence of the default synthetic replay set (default %(default)s)")
    parser.add_argument("--replay-cache", default=None,
                        help="where the default replay set is rendered (default "
                             "$XDG_CACHE_HOME/depth_sfm_ros/adapt_replay, ~/.cache without XDG_CACHE_HOME)")
    parser.add_argument("--holdout-fraction", type=float, default=DEFAULT_HOLDOUT_FRACTION,
                        help="the last part of the recording held out from training and scored before / after "
                             "(default %(default)s)")
    parser.add_argument("--holdout-max-frames", type=int, default=200,
                        help="score at most this many held-out samples, evenly spaced (default %(default)s)")
    parser.add_argument("--image-topic", default="/camera/image_raw", help="bag image topic (raw or compressed)")
    parser.add_argument("--camera-info-topic", default=None,
                        help="bag CameraInfo topic (default: <image namespace>/camera_info)")
    parser.add_argument("--calib", default=None, help="calibration YAML of an image folder (default FOLDER/calib.yaml)")
    parser.add_argument("--cache-dir", default=None,
                        help="where the bag's decoded frames are cached (default <bag>.depth_sfm_cache/)")
    parser.add_argument("--stride", type=int, default=1,
                        help="frames between a target and its sources (e.g. 3 for a slow 30 Hz camera)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the base config's (4)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the base config's, 1e-4)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: the cores the 1-minute load average leaves free, at least "
                             "1: on a busy machine one thread is several times faster than two; docs/adapt.md)")
    parser.add_argument("--workers", type=int, default=None,
                        help="data loader workers (default: the base config's, capped by the machine's cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=None,
                        help="base training config (default training/configs/adapt.yaml)")
    parser.add_argument("--run-dir", default=None,
                        help="also keep the training run's files there (config, checkpoints, metrics.jsonl)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="training config override, e.g. --set losses.smoothness_weight=0.002 (repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    from depth_sfm_ros.models.weights_file import WeightsFileError

    options = AdaptOptions(
        recording=args.recording, out=args.out, model=args.model, minutes=args.minutes, steps=args.steps,
        replay=args.replay, replay_frames=args.replay_frames, replay_fraction=args.replay_fraction,
        replay_cache=args.replay_cache, holdout_fraction=args.holdout_fraction,
        holdout_max_frames=args.holdout_max_frames, image_topic=args.image_topic,
        camera_info_topic=args.camera_info_topic, calib=args.calib, cache_dir=args.cache_dir, stride=args.stride,
        batch_size=args.batch_size, lr=args.lr, device=args.device, threads=args.threads, workers=args.workers,
        seed=args.seed,
        config=args.config, run_dir=args.run_dir, overrides=list(args.overrides), progress=not args.no_progress)
    try:
        result = adapt_recording(options)
    except (AdaptError, WeightsFileError, ConfigError) as exc:
        print(f"depth-sfm adapt: {exc}", file=sys.stderr)
        return 2
    except (FloatingPointError, RuntimeError) as exc:
        log.debug("adapt failed", exc_info=True)
        print(f"depth-sfm adapt: failed, nothing exported: {exc}", file=sys.stderr)
        return 1
    return 0 if result.helped else EXIT_WORSE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="depth-sfm adapt", description=__doc__.split("\n")[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
