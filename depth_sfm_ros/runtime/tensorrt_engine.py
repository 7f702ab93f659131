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

Supported TensorRT: 8.6 (JetPack 5), 10.x (JetPack 6) and 11+ (``pip install tensorrt`` today), told apart by
``tensorrt.__version__``. 8.6 / 10.x build weakly typed networks (FP16 / INT8 builder flags, INT8 entropy
calibrator); 11+ builds strongly typed networks whose precision comes from the ONNX graph (an FP16 copy, or
an INT8 Q/DQ copy calibrated with onnxruntime.quantization, written beside the engine). The GPU is found
with torch.cuda, else with cuda-python's driver API (no CUDA torch needed to build an engine).

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
def _cuda_driver():
    """The CUDA driver API of cuda-python: ``cuda.bindings.driver`` (cuda-python >= 12.6, the only one in 13),
    else the older ``cuda.cuda`` (cuda-python 11.x / 12.x). ImportError when neither is installed."""
    try:
        from cuda.bindings import driver
    except ImportError:
        from cuda import cuda as driver  # cuda-python < 13
    return driver


def _cuda_check(driver, result: tuple, call: str):
    """The value of a cuda-python call's ``(CUresult, value...)`` tuple; RuntimeError naming the CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != driver.CUresult.CUDA_SUCCESS:
        try:
            _, name = driver.cuGetErrorName(err)
            name = name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # an unknown code: the number is still useful
            name = str(err)
        raise RuntimeError(f"CUDA driver call {call} failed: {name} ({getattr(err, 'value', err)})")
    return values[0] if len(values) == 1 else tuple(values)


def _detect_device_cuda_python(index: int) -> DeviceInfo:
    """GPU name and compute capability through the CUDA driver API (cuda-python), every error code checked."""
    driver = _cuda_driver()
    _cuda_check(driver, driver.cuInit(0), "cuInit")
    count = _cuda_check(driver, driver.cuDeviceGetCount(), "cuDeviceGetCount")
    if not 0 <= index < int(count):
        raise RuntimeError(f"CUDA device {index} requested but the driver reports {int(count)} device(s)")
    device = _cuda_check(driver, driver.cuDeviceGet(index), "cuDeviceGet")
    name = _cuda_check(driver, driver.cuDeviceGetName(256, device), "cuDeviceGetName")
    attr = driver.CUdevice_attribute
    major = _cuda_check(driver, driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                                            device), "cuDeviceGetAttribute(major)")
    minor = _cuda_check(driver, driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                                            device), "cuDeviceGetAttribute(minor)")
    text = name.split(b"\0")[0].decode() if isinstance(name, bytes) else str(name).split("\0")[0]
    return DeviceInfo(text.strip(), f"{int(major)}.{int(minor)}")


def detect_device(index: int = 0) -> DeviceInfo:
    """GPU name and compute capability of CUDA device ``index``.

    Through torch.cuda when torch has CUDA, else through the CUDA driver API of cuda-python
    (``from cuda.bindings import driver`` in cuda-python >= 12.6 / 13, ``from cuda import cuda`` before), so a
    Jetson with TensorRT but without a CUDA build of torch can build engines. RuntimeError without a GPU,
    naming the CUDA error (e.g. CUDA_ERROR_NO_DEVICE) or what is missing.
    """
    torch_note = "torch is not installed"
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(index)
            return DeviceInfo(torch.cuda.get_device_name(index), f"{major}.{minor}")
        torch_note = "torch has no CUDA"
    except ImportError:
        pass
    try:
        return _detect_device_cuda_python(index)
    except ImportError as exc:
        raise RuntimeError(f"no CUDA GPU found for TensorRT: {torch_note}, and cuda-python is not installed "
                           f"({exc}; pip install cuda-python)") from exc
    except RuntimeError as exc:
        raise RuntimeError(f"no CUDA GPU found for TensorRT ({torch_note}; cuda-python: {exc})") from exc


def tensorrt_version() -> str:
    import tensorrt as trt

    return str(trt.__version__)


SUPPORTED_TENSORRT = "8.6 (JetPack 5), 10.x (JetPack 6) and 11+"
STRONGLY_TYPED_MAJOR = 11  # TensorRT 11 removed weakly typed builds (BuilderFlag.FP16 / INT8, INT8 calibrators)
# file suffix of the ONNX copy a strongly typed build parses, per precision (fp32 parses the export itself)
DERIVED_ONNX_SUFFIX = {"fp32": ".onnx", "fp16": ".fp16.onnx", "int8": ".qdq.onnx"}


def tensorrt_major_minor(version: str) -> tuple[int, int]:
    """(major, minor) of a TensorRT version string such as "10.3.0.26"; ValueError if unparsable."""
    match = re.match(r"\s*(\d+)(?:\.(\d+))?", str(version))
    if not match:
        raise ValueError(f"cannot parse the TensorRT version {version!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def strongly_typed(version: str) -> bool:
    """True when TensorRT ``version`` builds only strongly typed networks (precision from the ONNX graph).

    RuntimeError for versions older than 8.6 (not supported).
    """
    major, minor = tensorrt_major_minor(version)
    if (major, minor) < (8, 6):
        raise RuntimeError(f"TensorRT {version} is not supported; supported: {SUPPORTED_TENSORRT}")
    return major >= STRONGLY_TYPED_MAJOR


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
# building (the real TensorRT Python API of 8.6, 10.x and 11)
# --------------------------------------------------------------------------------------------
# How each supported version gets its precision:
#   8.6, 10.x  weakly typed network from the FP32 ONNX; fp16: BuilderFlag.FP16; int8: BuilderFlag.INT8 (+ FP16
#              for the layers left in float) with an IInt8EntropyCalibrator2 fed real frames.
#   11+        strongly typed network (NetworkDefinitionCreationFlag.STRONGLY_TYPED; the precision flags and the
#              calibrators no longer exist): fp16 parses an FP16 copy of the ONNX graph, int8 a Q/DQ copy
#              calibrated with onnxruntime.quantization (runtime/onnx_precision.py); both stay beside the engine.
def _make_calibrator(trt, input_names: list[str], frames: np.ndarray, cache_file: Path):
    """An IInt8EntropyCalibrator2 (TensorRT 8.6 / 10.x) fed with real frames (N, 3, H, W) float32; two-input
    nets get consecutive pairs (image_prev = frame i-1, image_cur = frame i). Buffers are torch CUDA tensors."""
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise RuntimeError(f"TensorRT {trt.__version__} has no IInt8EntropyCalibrator2 (INT8 calibration was "
                           f"removed in TensorRT 11: INT8 engines there come from a Q/DQ ONNX graph)")

    class FrameCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.index = 1 if len(input_names) == 2 else 0
            self.buffers: dict[str, object] = {}  # torch CUDA tensors, allocated when calibration starts

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names, *args):
            import torch

            if self.index >= len(frames):
                return None
            if not self.buffers:
                self.buffers = {n: torch.empty((1, *frames.shape[1:]), device="cuda") for n in input_names}
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
    """An IProgressMonitor that logs build phases. The Python class exists from TensorRT 10.0 on (the C++
    interface came with 8.6, its Python binding did not): None on 8.6."""
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


def _network_flags(trt, strong: bool) -> int:
    """create_network flags: EXPLICIT_BATCH on 8.6 (10.x made explicit batch the only mode and deprecated the
    flag); STRONGLY_TYPED on 11+ (every network is strongly typed there; the flag is accepted and ignored, so
    it is set only where the enum still has it)."""
    major, _ = tensorrt_major_minor(trt.__version__)
    flags = trt.NetworkDefinitionCreationFlag
    if strong:
        return 1 << int(flags.STRONGLY_TYPED) if hasattr(flags, "STRONGLY_TYPED") else 0
    if major < 10:
        return 1 << int(flags.EXPLICIT_BATCH)
    return 0


def _strongly_typed_onnx(onnx_path: Path, precision: str, calibration_images: np.ndarray | None,
                         derived: Path) -> Path:
    """The ONNX graph a strongly typed network is parsed from: the FP32 export itself, its FP16 copy, or its
    INT8 Q/DQ copy (an existing Q/DQ copy for this ONNX is reused, like the 8.6/10 calibration cache)."""
    from .onnx_precision import write_fp16_onnx, write_qdq_onnx

    if precision == "fp32":
        return onnx_path
    if precision == "fp16":
        return write_fp16_onnx(onnx_path, derived)
    if derived.is_file():
        log.info("using the INT8 Q/DQ graph %s (delete it to calibrate again)", derived)
        return derived
    return write_qdq_onnx(onnx_path, derived, calibration_images)


def _build_serialized(onnx_path: Path, precision: str, calibration_images: np.ndarray | None,
                      workspace_gb: float, timing_cache_file: Path | None, calib_cache_file: Path,
                      derived_onnx: Path | None = None) -> bytes:
    """Build a serialized engine with the installed TensorRT (see the table above for each version).

    ``derived_onnx``: where TensorRT 11+ writes the FP16 / Q/DQ copy of the graph (default: beside
    ``calib_cache_file``).
    """
    import tensorrt as trt

    strong = strongly_typed(trt.__version__)
    if precision == "int8" and (calibration_images is None or len(calibration_images) < 2):
        raise ValueError("int8 needs calibration_images: at least 2 real frames (N, 3, H, W) float32 in [0, 1]")
    source = onnx_path
    if strong:
        derived = derived_onnx or calib_cache_file.with_suffix(DERIVED_ONNX_SUFFIX[precision])
        source = _strongly_typed_onnx(onnx_path, precision, calibration_images, derived)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, strong))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(source.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {source}: {errors}")
    config = builder.create_builder_config()
    workspace = int(workspace_gb * (1 << 30))
    if hasattr(config, "set_memory_pool_limit"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:  # pragma: no cover - TensorRT < 8.4
        config.max_workspace_size = workspace
    if not strong and precision in ("fp16", "int8"):
        flags = trt.BuilderFlag
        if not hasattr(flags, "FP16") or (precision == "int8" and not hasattr(flags, "INT8")):
            raise RuntimeError(f"TensorRT {trt.__version__} has no BuilderFlag.FP16/INT8 (weakly typed builds)")
        if not getattr(builder, "platform_has_fast_fp16", True):
            log.warning("this GPU has no fast FP16; building anyway")
        config.set_flag(flags.FP16)
        if precision == "int8":
            config.set_flag(flags.INT8)
            names = [network.get_input(i).name for i in range(network.num_inputs)]
            config.int8_calibrator = _make_calibrator(trt, names, np.asarray(calibration_images, np.float32),
                                                      calib_cache_file)
    timing_cache = None
    if timing_cache_file is not None and hasattr(config, "create_timing_cache"):
        blob = timing_cache_file.read_bytes() if timing_cache_file.is_file() else b""
        timing_cache = config.create_timing_cache(blob)
        config.set_timing_cache(timing_cache, ignore_mismatch=False)
    monitor = _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    log.info("building TensorRT %s engine for %s (TensorRT %s, %s network from %s) ...", precision, onnx_path.name,
             trt.__version__, "strongly typed" if strong else "weakly typed", source.name)
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
    # TensorRT 11+: the FP16 / Q/DQ copy of the graph, per ONNX like the calibration cache
    derived = path.with_name(f"{path.stem}-{key.onnx_sha256[:12]}{DERIVED_ONNX_SUFFIX[precision]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineCacheError(f"cannot create the engine cache dir {path.parent}: {exc.strerror or exc}") from exc
    engine_bytes = load_cached_engine(
        key, root, policy=policy,
        rebuild=lambda: _build_serialized(onnx_path, precision, calibration_images, workspace_gb,
                                          timing_file, calib_file, derived))
    return engine_bytes, path


def key_from_metadata(meta: dict) -> EngineCacheKey:
    """Rebuild a key from a metadata dict (for tools that list the cache)."""
    fields = {f.name for f in dataclasses.fields(EngineCacheKey)}
    return EngineCacheKey(**{k: (tuple(v) if k == "input_shape" else v) for k, v in meta.items() if k in fields})
