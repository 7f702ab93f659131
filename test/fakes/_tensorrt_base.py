"""Machinery shared by the fake ``tensorrt`` modules (``fakes/tensorrt_8_6.py``, ``_10``, ``_11``). NOT TensorRT.

Each version module builds its classes with :func:`make_api` from a :class:`VersionSpec` that says what that
version's Python bindings have: the builder and creation flags, the binding-index API (8.6), the INT8
calibrator classes (8.6, 10.x), ``IProgressMonitor`` (10.0+), ``Builder.platform_has_fast_fp16`` (until 10.x),
and whether every network is strongly typed (11.x). Like pybind11 objects, the fakes refuse attributes their
version does not have (``config.int8_calibrator = ...`` raises AttributeError on 11).

What a "build" does: the ONNX parser really reads the graph (onnx), the builder checks the flags the way
TensorRT does (precision flags on a strongly typed network, INT8 without a calibrator or Q/DQ) and returns a
serialized "engine": a JSON document with the version, the precision the engine would have, the I/O tensors
and what the build used. The runtime deserializes it (refusing another version's engine, like TensorRT) and
its execution context computes, through the raw addresses it was given, output k = sum of the input means
+ k + 1, so a test can tell that every buffer was bound where the code said.
"""
from __future__ import annotations

import ctypes
import enum
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = b"FAKE-TENSORRT-ENGINE\n"


class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class Logger:
    """trt.Logger(min_severity); severities as class attributes (trt.Logger.WARNING)."""

    Severity = Severity
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (Severity.INTERNAL_ERROR, Severity.ERROR, Severity.WARNING,
                                                     Severity.INFO, Severity.VERBOSE)

    def __init__(self, min_severity: Severity = Severity.WARNING) -> None:
        self.min_severity = min_severity
        self.messages: list[str] = []

    def log(self, severity: Severity, msg: str) -> None:
        self.messages.append(f"[{severity.name}] {msg}")


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


_ONNX_TO_DTYPE = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL}


@dataclass(frozen=True)
class VersionSpec:
    """What one TensorRT version's Python bindings have."""

    version: str
    builder_flags: type[enum.IntEnum]
    creation_flags: type[enum.IntEnum]
    binding_api: bool           # num_bindings / get_binding_* / execute_async_v2 (removed in 10.0)
    calibrator: bool            # IInt8EntropyCalibrator2, IBuilderConfig.int8_calibrator (removed in 11)
    progress_monitor: bool      # trt.IProgressMonitor, IBuilderConfig.progress_monitor (Python: 10.0+)
    fast_fp16_query: bool       # Builder.platform_has_fast_fp16 (removed in 11)
    always_strongly_typed: bool  # 11: every network is strongly typed


class _Bound:
    """Refuses attributes outside ``_attributes``, as pybind11 objects do."""

    _attributes: frozenset = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name in self._attributes:
            object.__setattr__(self, name, value)
        else:
            raise AttributeError(f"'tensorrt.{type(self).__name__}' object has no attribute '{name}'")


class ITensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: DataType) -> None:
        self.name, self.shape, self.dtype = name, tuple(shape), dtype


class INetworkDefinition(_Bound):
    def __init__(self, spec: VersionSpec, flags: int) -> None:
        self._spec, self._flags = spec, flags
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self._graph: dict = {}
        self._parsed = False
        strong_bit = getattr(spec.creation_flags, "STRONGLY_TYPED", None)
        self._strongly_typed = spec.always_strongly_typed or (strong_bit is not None and
                                                               bool(flags & (1 << int(strong_bit))))
        batch_bit = getattr(spec.creation_flags, "EXPLICIT_BATCH", None)
        major = int(spec.version.split(".")[0])
        # 8.x: implicit batch unless EXPLICIT_BATCH; 10+: always explicit batch
        self._explicit_batch = major >= 10 or (batch_bit is not None and bool(flags & (1 << int(batch_bit))))

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]


class ITimingCache:
    def __init__(self, blob: bytes) -> None:
        self._blob = bytes(blob)

    def serialize(self) -> bytes:
        return b"fake-timing-cache"


def make_api(spec: VersionSpec) -> dict[str, Any]:
    """The module-level names of a fake ``tensorrt`` of version ``spec``."""
    names: dict[str, Any] = {"__version__": spec.version, "Logger": Logger, "ILogger": Logger,
                             "MemoryPoolType": MemoryPoolType, "DataType": DataType, "TensorIOMode": TensorIOMode,
                             "BuilderFlag": spec.builder_flags, "NetworkDefinitionCreationFlag": spec.creation_flags,
                             "ITimingCache": ITimingCache, "INetworkDefinition": INetworkDefinition}

    class IInt8Calibrator:
        def __init__(self) -> None:
            pass

    class IInt8EntropyCalibrator2(IInt8Calibrator):
        pass

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    class IBuilderConfig(_Bound):
        _attributes = frozenset({"max_workspace_size"}
                                | ({"int8_calibrator"} if spec.calibrator else set())
                                | ({"progress_monitor"} if spec.progress_monitor else set()))

        def __init__(self) -> None:
            self._flags: set = set()
            self._pools: dict = {}
            self._timing_cache: ITimingCache | None = None
            if spec.calibrator:
                self.int8_calibrator = None
            if spec.progress_monitor:
                self.progress_monitor = None

        def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
            self._pools[MemoryPoolType(pool)] = int(size)

        def set_flag(self, flag: enum.IntEnum) -> None:
            if not isinstance(flag, spec.builder_flags):
                raise TypeError(f"set_flag(): incompatible argument {flag!r} (not a BuilderFlag of TensorRT "
                                f"{spec.version})")
            self._flags.add(flag.name)

        def get_flag(self, flag: enum.IntEnum) -> bool:
            return flag.name in self._flags

        def create_timing_cache(self, blob: bytes) -> ITimingCache:
            return ITimingCache(blob)

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            self._timing_cache = cache
            return True

    class OnnxParser(_Bound):
        def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
            self._network, self._logger = network, logger
            self._errors: list[str] = []

        @property
        def num_errors(self) -> int:
            return len(self._errors)

        def get_error(self, index: int) -> str:
            return self._errors[index]

        def parse(self, model: bytes, path: str | None = None) -> bool:
            import onnx

            if not self._network._explicit_batch:
                self._errors.append("ModelImporter: the network must have been created with the EXPLICIT_BATCH "
                                    "flag")
                return False
            try:
                proto = onnx.load_from_string(bytes(model))
                onnx.checker.check_model(proto)
            except Exception as exc:  # the real parser reports, it does not raise
                self._errors.append(f"ModelImporter: cannot read the ONNX model: {exc}")
                return False
            graph = proto.graph

            def tensor(value) -> ITensor:
                dims = tuple(d.dim_value for d in value.type.tensor_type.shape.dim)
                return ITensor(value.name, dims, _ONNX_TO_DTYPE[value.type.tensor_type.elem_type])

            self._network._inputs = [tensor(v) for v in graph.input]
            self._network._outputs = [tensor(v) for v in graph.output]
            float_types = {t.data_type for t in graph.initializer} | {
                a.t.data_type for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"}
            self._network._graph = {"qdq_nodes": sum(n.op_type in ("QuantizeLinear", "DequantizeLinear")
                                                     for n in graph.node),
                                    "half_constants": 10 in float_types}
            self._network._parsed = True
            return True

    class Builder(_Bound):
        def __init__(self, logger: Logger) -> None:
            self._logger = logger

        if spec.fast_fp16_query:
            @property
            def platform_has_fast_fp16(self) -> bool:
                return True

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            known = sum(1 << int(f) for f in spec.creation_flags)
            if flags & ~known:
                raise TypeError(f"create_network(): unknown NetworkDefinitionCreationFlag bits {flags:#x}")
            return INetworkDefinition(spec, flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
            if not network._parsed:
                self._logger.log(Severity.ERROR, "network has no layers")
                return None
            precision_flags = config._flags & {"FP16", "INT8", "BF16", "FP8"}
            if network._strongly_typed and precision_flags:
                self._logger.log(Severity.ERROR, f"precision flags {sorted(precision_flags)} are not allowed with a "
                                                 f"strongly typed network")
                return None
            calibrated = False
            if "INT8" in config._flags:
                calibrator = getattr(config, "int8_calibrator", None)
                if calibrator is None and not network._graph["qdq_nodes"]:
                    self._logger.log(Severity.ERROR, "INT8 requested without a calibrator or Q/DQ nodes")
                    return None
                if calibrator is not None:
                    if calibrator.get_batch_size() != 1:
                        raise ValueError("calibration batch size must be 1")
                    if calibrator.read_calibration_cache() is None:
                        calibrator.write_calibration_cache(b"fake-calibration-table")
                    calibrated = True
            monitor = getattr(config, "progress_monitor", None)
            if monitor is not None:
                monitor.phase_start("Building engine", None, 1)
                monitor.step_complete("Building engine", 0)
                monitor.phase_finish("Building engine")
            if network._strongly_typed:
                precision = ("int8" if network._graph["qdq_nodes"] else
                             "fp16" if network._graph["half_constants"] else "fp32")
            else:
                precision = "int8" if "INT8" in config._flags else "fp16" if "FP16" in config._flags else "fp32"
            io = ([{"name": t.name, "shape": list(t.shape), "dtype": t.dtype.name, "mode": "INPUT"}
                   for t in network._inputs]
                  + [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype.name, "mode": "OUTPUT"}
                     for t in network._outputs])
            payload = {"version": spec.version, "precision": precision, "strongly_typed": network._strongly_typed,
                       "flags": sorted(config._flags), "calibrated": calibrated,
                       "progress_monitor": monitor is not None, "timing_cache": config._timing_cache is not None,
                       "workspace": config._pools.get(MemoryPoolType.WORKSPACE), "io": io}
            return MAGIC + json.dumps(payload).encode()

    class IExecutionContext(_Bound):
        def __init__(self, engine: "ICudaEngine") -> None:
            self._engine = engine
            self._addresses: dict[str, int] = {}
            self.runs = 0

        _attributes = frozenset({"runs"})

        def set_tensor_address(self, name: str, address: int) -> bool:
            if name not in self._engine._by_name:
                return False
            self._addresses[name] = int(address)
            return True

        def _compute(self, addresses: dict[str, int]) -> bool:
            io = self._engine._io
            if set(addresses) != {t["name"] for t in io} or not all(addresses.values()):
                return False
            def array(tensor: dict) -> np.ndarray:  # the float32 buffer at the address bound for ``tensor``
                n = int(np.prod(tensor["shape"]))
                return np.ctypeslib.as_array((ctypes.c_float * n).from_address(addresses[tensor["name"]]))

            total = sum(float(array(t).mean()) for t in io if t["mode"] == "INPUT")
            for k, t in enumerate(x for x in io if x["mode"] == "OUTPUT"):
                array(t)[:] = total + k + 1
            self.runs += 1
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            return self._compute(self._addresses)

        if spec.binding_api:
            def execute_async_v2(self, bindings: list[int], stream_handle: int, input_consumed=None) -> bool:
                names = [t["name"] for t in self._engine._io]
                if len(bindings) != len(names):
                    return False
                return self._compute(dict(zip(names, bindings)))

    class ICudaEngine(_Bound):
        def __init__(self, payload: dict) -> None:
            self._payload = payload
            self._io = payload["io"]
            self._by_name = {t["name"]: t for t in self._io}

        @property
        def num_io_tensors(self) -> int:
            return len(self._io)

        def get_tensor_name(self, index: int) -> str:
            return self._io[index]["name"]

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return TensorIOMode[self._by_name[name]["mode"]]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self._by_name[name]["shape"])

        def get_tensor_dtype(self, name: str) -> DataType:
            return DataType[self._by_name[name]["dtype"]]

        if spec.binding_api:
            @property
            def num_bindings(self) -> int:
                return len(self._io)

            def get_binding_name(self, index: int) -> str:
                return self._io[index]["name"]

            def get_binding_shape(self, index: int) -> tuple[int, ...]:
                return tuple(self._io[index]["shape"])

            def binding_is_input(self, index: int) -> bool:
                return self._io[index]["mode"] == "INPUT"

            def get_binding_dtype(self, index: int) -> DataType:
                return DataType[self._io[index]["dtype"]]

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext(self)

    class Runtime(_Bound):
        def __init__(self, logger: Logger) -> None:
            self._logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> ICudaEngine | None:
            data = bytes(data)
            if not data.startswith(MAGIC):
                self._logger.log(Severity.ERROR, "not a serialized engine")
                return None
            payload = json.loads(data[len(MAGIC):])
            if payload["version"] != spec.version:
                self._logger.log(Severity.ERROR, f"engine built by TensorRT {payload['version']}, this is "
                                                 f"{spec.version}")
                return None
            return ICudaEngine(payload)

    names.update(Builder=Builder, IBuilderConfig=IBuilderConfig, OnnxParser=OnnxParser, Runtime=Runtime,
                 ICudaEngine=ICudaEngine, IExecutionContext=IExecutionContext)
    if spec.calibrator:
        names.update(IInt8Calibrator=IInt8Calibrator, IInt8EntropyCalibrator2=IInt8EntropyCalibrator2)
    if spec.progress_monitor:
        names["IProgressMonitor"] = IProgressMonitor
    return names
