"""Fake ``tensorrt`` 8.6 (JetPack 5): NOT TensorRT, shaped like its Python bindings (see _tensorrt_base.py).

8.6 specifics: weakly typed builds (``BuilderFlag.FP16`` / ``INT8`` + ``IInt8EntropyCalibrator2``); a network is
implicit-batch unless created with ``EXPLICIT_BATCH`` (the ONNX parser refuses implicit batch); both the
binding-index API (``num_bindings``, ``execute_async_v2``) and the tensor-name API (8.5+: ``num_io_tensors``,
``set_tensor_address``, ``execute_async_v3``); no Python ``IProgressMonitor`` (it arrived in 10.0).
"""
import enum

from ._tensorrt_base import VersionSpec, make_api


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 5
    DISABLE_TIMING_CACHE = 6
    TF32 = 7
    SPARSE_WEIGHTS = 8
    SAFETY_SCOPE = 9
    OBEY_PRECISION_CONSTRAINTS = 10
    PREFER_PRECISION_CONSTRAINTS = 11
    DIRECT_IO = 12
    REJECT_EMPTY_ALGORITHMS = 13
    VERSION_COMPATIBLE = 14
    EXCLUDE_LEAN_RUNTIME = 15
    FP8 = 16


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    EXPLICIT_PRECISION = 1


SPEC = VersionSpec(version="8.6.2.3", builder_flags=BuilderFlag, creation_flags=NetworkDefinitionCreationFlag,
                   binding_api=True, calibrator=True, progress_monitor=False, fast_fp16_query=True,
                   always_strongly_typed=False)
globals().update(make_api(SPEC))
