"""Fake ``tensorrt`` 10.3 (JetPack 6): NOT TensorRT, shaped like its Python bindings (see _tensorrt_base.py).

10.x specifics: explicit batch only (``EXPLICIT_BATCH`` deprecated and ignored); weakly typed builds still work
(``BuilderFlag.FP16`` / ``INT8`` + the deprecated ``IInt8EntropyCalibrator2``) and ``STRONGLY_TYPED`` is opt-in;
the binding-index API is gone (tensor names + ``execute_async_v3`` only); ``IProgressMonitor`` exists.
"""
import enum

from ._tensorrt_base import VersionSpec, make_api


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 4
    DISABLE_TIMING_CACHE = 5
    TF32 = 6
    SPARSE_WEIGHTS = 7
    SAFETY_SCOPE = 8
    OBEY_PRECISION_CONSTRAINTS = 9
    PREFER_PRECISION_CONSTRAINTS = 10
    DIRECT_IO = 11
    REJECT_EMPTY_ALGORITHMS = 12
    VERSION_COMPATIBLE = 13
    EXCLUDE_LEAN_RUNTIME = 14
    FP8 = 15
    ERROR_ON_TIMING_CACHE_MISS = 16
    BF16 = 17
    DISABLE_COMPILATION_CACHE = 18
    WEIGHTLESS = 19
    STRIP_PLAN = 20
    REFIT_IDENTICAL = 21
    WEIGHT_STREAMING = 22
    INT4 = 23


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1
    PREFER_JIT_PYTHON_PLUGINS = 2
    PREFER_AOT_PYTHON_PLUGINS = 3


SPEC = VersionSpec(version="10.3.0.30", builder_flags=BuilderFlag, creation_flags=NetworkDefinitionCreationFlag,
                   binding_api=False, calibrator=True, progress_monitor=True, fast_fp16_query=True,
                   always_strongly_typed=False)
globals().update(make_api(SPEC))
