"""TensorRT engine building and the per-device engine cache.

An engine is only valid for the GPU model, compute capability and TensorRT version that built it,
for one precision, input shape and ONNX file. :class:`EngineCacheKey` holds exactly these fields;
each cached ``.engine`` has a JSON metadata file beside it with the key and the engine's sha256.

Cache layout: ``<cache_dir>/<gpu>-sm<cc>/<onnx stem>-<precision>-<H>x<W>.engine`` (+ ``.json``), where
``cache_dir`` defaults to ``$XDG_CACHE_HOME/depth_sfm/engines`` (``~/.cache/depth_sfm/engines``).
The path does not contain the TensorRT version or the ONNX hash on purpose: after an upgrade or a
re-export the old engine is found, the metadata says which field differs, and the policy decides:
``rebuild`` (log why, build, replace atomically) or ``refuse`` (raise :class:`EngineCacheMismatch`).
A corrupt engine (sha256 differs from its metadata) is never used.

Writes are atomic: temp file + fsync + rename, metadata last (it is the commit marker); an OSError
(disk full, permissions) becomes :class:`EngineCacheError` and leaves no valid-looking half file.

``tensorrt`` is imported only inside the build / detection functions.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from depth_sfm_ros.fileio import atomic_write

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
POLICIES = ("rebuild", "refuse")
METADATA_VERSION = 1
KEY_FIELDS = ("gpu_name", "compute_capability", "tensorrt_version", "precision", "input_shape", "onnx_sha256")


class EngineCacheError(RuntimeError):
    """The cache could not be read or written (permissions, disk full, ...)."""


class EngineCacheMismatch(EngineCacheError):
    """A cached engine exists but does not match (policy 'refuse'), or is corrupt."""


@dataclass(frozen=True)
class DeviceInfo:
    gpu_name: str
    compute_capability: str  # "8.7"


@dataclass(frozen=True)
class EngineCacheKey:
    """Everything an engine depends on. ``input_shape`` is the network input (1, 3, H, W)."""

    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    precision: str
    input_shape: tuple[int, ...]
    onnx_sha256: str
    onnx_name: str = "model"  # file stem, only for the file name

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        shape = tuple(int(d) for d in self.input_shape)
        if len(shape) != 4 or any(d < 1 for d in shape):
            raise ValueError(f"input_shape must be 4 positive ints (1, 3, H, W), got {self.input_shape!r}")
        object.__setattr__(self, "input_shape", shape)
        if not re.fullmatch(r"[0-9a-f]{64}", self.onnx_sha256):
            raise ValueError(f"onnx_sha256 must be 64 lowercase hex digits, got {self.onnx_sha256!r}")

    def to_dict(self) -> dict:
        return {f: (list(getattr(self, f)) if f == "input_shape" else getattr(self, f)) for f in KEY_FIELDS}

    def differences(self, cached: dict) -> list[str]:
        """Human-readable 'field: cached X, current Y' for every key field that differs."""
        current = self.to_dict()
        return [f"{f}: cached {cached.get(f)!r}, current {current[f]!r}" for f in KEY_FIELDS
                if cached.get(f) != current[f]]


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/depth_sfm/engines, default ~/.cache/depth_sfm/engines."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "depth_sfm" / "engines"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_") or "unknown"


def engine_path(key: EngineCacheKey, cache_dir: str | Path | None = None) -> Path:
    """Where the engine for ``key`` lives (its metadata is the same path + '.json')."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    device = f"{_slug(key.gpu_name)}-sm{_slug(key.compute_capability).replace('.', '')}"
    h, w = key.input_shape[2], key.input_shape[3]
    return root / device / f"{_slug(key.onnx_name)}-{key.precision}-{h}x{w}.engine"


def metadata_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# device / TensorRT detection (lazy)
# --------------------------------------------------------------------------------------------
def detect_device(index: int = 0) -> DeviceInfo:
    """GPU name and compute capability via torch.cuda, else cuda-python; RuntimeError without a GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(index)
            return DeviceInfo(torch.cuda.get_device_name(index), f"{major}.{minor}")
    except ImportError:
        pass
    try:
        from cuda import cuda  # cuda-python

        cuda.cuInit(0)
        _, device = cuda.cuDeviceGet(index)
        _, name = cuda.cuDeviceGetName(64, device)
        attr = cuda.CUdevice_attribute
        _, major = cuda.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
        _, minor = cuda.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
        return DeviceInfo(name.split(b"\0")[0].decode(), f"{major}.{minor}")
    except Exception as exc:  # ImportError or CUDA errors
        raise RuntimeError(f"no CUDA GPU found for TensorRT (torch.cuda and cuda-python unavailable: {exc})") from exc


def tensorrt_version() -> str:
    import tensorrt as trt

    return str(trt.__version__)


def make_key(onnx_path: str | Path, precision: str, input_shape: Sequence[int], device: DeviceInfo | None = None,
             trt_version: str | None = None) -> EngineCacheKey:
    """The cache key for ``onnx_path`` on this machine (``device`` / ``trt_version`` override detection)."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{onnx_path}: ONNX file not found")
    device = device or detect_device()
    return EngineCacheKey(gpu_name=device.gpu_name, compute_capability=device.compute_capability,
                          tensorrt_version=trt_version or tensorrt_version(), precision=precision,
                          input_shape=tuple(input_shape), onnx_sha256=sha256_file(onnx_path),
                          onnx_name=onnx_path.stem)


# --------------------------------------------------------------------------------------------
# cache read / write
# --------------------------------------------------------------------------------------------
def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all-or-nothing (:func:`depth_sfm_ros.fileio.atomic_write`)."""
    with atomic_write(path) as handle:
        handle.write(data)


def write_engine(key: EngineCacheKey, engine_bytes: bytes, cache_dir: str | Path | None = None,
                 build_time_s: float | None = None, extra: dict | None = None, path: str | Path | None = None) -> Path:
    """Store an engine + metadata atomically; returns the engine path. EngineCacheError on OSError.

    ``path`` overrides the cache location (the metadata goes beside it).
    """
    if not engine_bytes:
        raise ValueError("refusing to cache an empty engine")
    path = Path(path) if path is not None else engine_path(key, cache_dir)
    meta = {"metadata_version": METADATA_VERSION, **key.to_dict(), "onnx_name": key.onnx_name,
            "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(), "engine_bytes": len(engine_bytes),
            "build_time_s": build_time_s, "created_unix": time.time(), **(extra or {})}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # metadata is the commit marker: drop the old one first, write it last
        metadata_path(path).unlink(missing_ok=True)
        _atomic_write(path, engine_bytes)
        _atomic_write(metadata_path(path), json.dumps(meta, indent=2, sort_keys=True).encode())
    except OSError as exc:
        raise EngineCacheError(f"cannot write the TensorRT engine cache at {path}: {exc.strerror or exc} "
                               f"(set engine_cache_dir / $XDG_CACHE_HOME to a writable directory with free space)"
                               ) from exc
    log.info("cached TensorRT engine %s (%.1f MB)", path, len(engine_bytes) / 1e6)
    return path


def check_cached_engine(key: EngineCacheKey, cache_dir: str | Path | None = None,
                        path: str | Path | None = None) -> tuple[bytes | None, str]:
    """(engine bytes, "ok") when a valid matching engine is cached, else (None, the reason).

    ``path`` overrides the cache location (e.g. a prebuilt engine shipped with a model dir).
    """
    path = Path(path) if path is not None else engine_path(key, cache_dir)
    meta_file = metadata_path(path)
    if not path.exists() and not meta_file.exists():
        return None, f"no cached engine at {path}"
    if not meta_file.is_file():
        return None, f"{meta_file} is missing (engine without metadata is not trusted)"
    try:
        meta = json.loads(meta_file.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return None, f"{meta_file} is unreadable or corrupt: {exc}"
    diffs = key.differences(meta)
    if diffs:
        return None, f"cached engine {path} was built for a different setup: " + "; ".join(diffs)
    try:
        engine_bytes = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    sha = hashlib.sha256(engine_bytes).hexdigest()
    if sha != meta.get("engine_sha256"):
        return None, (f"engine file {path} is corrupt: sha256 {sha[:16]}... differs from the metadata's "
                      f"{str(meta.get('engine_sha256'))[:16]}...")
    return engine_bytes, "ok"


def load_cached_engine(key: EngineCacheKey, cache_dir: str | Path | None = None, policy: str = "rebuild",
                       rebuild: Callable[[], bytes] | None = None, path: str | Path | None = None) -> bytes:
    """The serialized engine for ``key``: from the cache, or rebuilt (policy 'rebuild') with ``rebuild()``.

    Never returns a mismatched or corrupt engine. Policy 'refuse' raises EngineCacheMismatch with the
    reason (which field differs, or corruption); a missing engine with 'refuse' raises as well.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    engine_bytes, reason = check_cached_engine(key, cache_dir, path)
    if engine_bytes is not None:
        log.info("using cached TensorRT engine %s", path or engine_path(key, cache_dir))
        return engine_bytes
    if policy == "refuse":
        raise EngineCacheMismatch(f"refusing the TensorRT engine: {reason}. Rebuild it (policy 'rebuild' or "
                                  f"`depth-sfm export --tensorrt`) on this machine.")
    if rebuild is None:
        raise EngineCacheMismatch(f"{reason}; and no builder was given to rebuild it")
    log.warning("rebuilding the TensorRT engine: %s", reason)
    start = time.perf_counter()
    engine_bytes = rebuild()
    elapsed = time.perf_counter() - start
    write_engine(key, engine_bytes, cache_dir, build_time_s=elapsed, path=path)
    return engine_bytes


# --------------------------------------------------------------------------------------------
# building (real TensorRT API, 8.6 and 10.x)
# --------------------------------------------------------------------------------------------
def _make_calibrator(trt, input_names: list[str], frames: np.ndarray, cache_file: Path):
    """An IInt8EntropyCalibrator2 fed with real frames (N, 3, H, W) float32; two-input nets get
    consecutive pairs (image_prev = frame i-1, image_cur = frame i)."""
    import torch

    class FrameCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.index = 1 if len(input_names) == 2 else 0
            self.buffers = {n: torch.empty((1, *frames.shape[1:]), device="cuda") for n in input_names}

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names, *args):
            if self.index >= len(frames):
                return None
            for name in names:
                src = frames[self.index - 1] if name == "image_prev" else frames[self.index]
                self.buffers[name].copy_(torch.from_numpy(np.ascontiguousarray(src[None])))
            self.index += 1
            return [int(self.buffers[name].data_ptr()) for name in names]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            _atomic_write(cache_file, bytes(cache))

    return FrameCalibrator()


def _progress_monitor(trt):
    """A TensorRT >= 8.6 IProgressMonitor that logs build phases (None on older versions)."""
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class LogProgress(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            log.info("TensorRT build: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name, step) -> bool:
            return True  # False would cancel the build

        def phase_finish(self, phase_name) -> None:
            log.debug("TensorRT build: %s done", phase_name)

    return LogProgress()


def _build_serialized(onnx_path: Path, precision: str, calibration_images: np.ndarray | None,
                      workspace_gb: float, timing_cache_file: Path | None, calib_cache_file: Path) -> bytes:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if major < 10 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    workspace = int(workspace_gb * (1 << 30))
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:  # pragma: no cover - TensorRT < 8.4
        config.max_workspace_size = workspace
    if precision in ("fp16", "int8"):
        if not getattr(builder, "platform_has_fast_fp16", True):
            log.warning("this GPU has no fast FP16; building anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibration_images is None or len(calibration_images) < 2:
            raise ValueError("int8 needs calibration_images: at least 2 real frames (N, 3, H, W) float32 in [0, 1]")
        config.set_flag(trt.BuilderFlag.INT8)
        names = [network.get_input(i).name for i in range(network.num_inputs)]
        config.int8_calibrator = _make_calibrator(trt, names, np.asarray(calibration_images, np.float32),
                                                  calib_cache_file)
    timing_cache = None
    if timing_cache_file is not None:
        blob = timing_cache_file.read_bytes() if timing_cache_file.is_file() else b""
        timing_cache = config.create_timing_cache(blob)
        config.set_timing_cache(timing_cache, ignore_mismatch=False)
    monitor = _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    log.info("building TensorRT %s engine for %s (TensorRT %s) ...", precision, onnx_path.name, trt.__version__)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path} (see the TensorRT log above)")
    log.info("built %s in %.1f s", onnx_path.name, time.perf_counter() - start)
    if timing_cache is not None:
        try:
            _atomic_write(timing_cache_file, bytes(timing_cache.serialize()))
        except OSError as exc:  # the engine is fine; only the next build is slower
            log.warning("could not save the TensorRT timing cache %s: %s", timing_cache_file, exc)
    return bytes(serialized)


def build_engine(onnx_path: str | Path, precision: str = "fp32", calibration_images: np.ndarray | None = None,
                 cache_dir: str | Path | None = None, workspace_gb: float = 2.0, timing_cache: bool = True,
                 input_shape: Sequence[int] | None = None, policy: str = "rebuild",
                 device: DeviceInfo | None = None) -> tuple[bytes, Path]:
    """The engine for ``onnx_path`` from the cache, built (and cached atomically) when needed.

    Returns (serialized engine, its cache path). ``input_shape`` defaults to the ONNX's first input.
    """
    onnx_path = Path(onnx_path)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if workspace_gb <= 0:
        raise ValueError(f"workspace_gb must be > 0, got {workspace_gb}")
    if input_shape is None:
        import onnx

        dims = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        input_shape = [d.dim_value for d in dims]
    key = make_key(onnx_path, precision, input_shape, device=device)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = engine_path(key, root)
    timing_file = path.parent / f"timing-trt{_slug(key.tensorrt_version)}.cache" if timing_cache else None
    calib_file = path.with_name(f"{path.stem}-{key.onnx_sha256[:12]}.calib")  # per ONNX: never stale
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineCacheError(f"cannot create the engine cache dir {path.parent}: {exc.strerror or exc}") from exc
    engine_bytes = load_cached_engine(
        key, root, policy=policy,
        rebuild=lambda: _build_serialized(onnx_path, precision, calibration_images, workspace_gb,
                                          timing_file, calib_file))
    return engine_bytes, path


def key_from_metadata(meta: dict) -> EngineCacheKey:
    """Rebuild a key from a metadata dict (for tools that list the cache)."""
    fields = {f.name for f in dataclasses.fields(EngineCacheKey)}
    return EngineCacheKey(**{k: (tuple(v) if k == "input_shape" else v) for k, v in meta.items() if k in fields})
