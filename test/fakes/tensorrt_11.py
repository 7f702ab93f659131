"""Fake ``tensorrt`` 11 (``pip install tensorrt`` today): NOT TensorRT, shaped like its Python bindings (see
_tensorrt_base.py).

11.x specifics (NVIDIA's 10.x -> 11.x migration guide): every network is strongly typed (``STRONGLY_TYPED`` is
accepted and ignored); the weak-typing API is removed: ``BuilderFlag.FP16`` / ``INT8`` / ``BF16`` / ``FP8`` /
``INT4`` / ``OBEY_PRECISION_CONSTRAINTS`` / ``PREFER_PRECISION_CONSTRAINTS`` / ``DIRECT_IO``,
``IBuilderConfig.int8_calibrator`` and the INT8 calibrator classes, ``Builder.platform_has_fast_fp16``.
Precision comes from the ONNX graph (FP16 tensors, Q/DQ nodes).
"""
import enum

from ._tensorrt_base import VersionSpec, make_api


class BuilderFlag(enum.IntEnum):
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 4
    DISABLE_TIMING_CACHE = 5
    TF32 = 6
    SPARSE_WEIGHTS = 7
    SAFETY_SCOPE = 8
    REJECT_EMPTY_ALGORITHMS = 12
    VERSION_COMPATIBLE = 13
    EXCLUDE_LEAN_RUNTIME = 14
    ERROR_ON_TIMING_CACHE_MISS = 16
    DISABLE_COMPILATION_CACHE = 18
    WEIGHTLESS = 19
    STRIP_PLAN = 20
    REFIT_IDENTICAL = 21
    WEIGHT_STREAMING = 22


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 1
    PREFER_JIT_PYTHON_PLUGINS = 2
    PREFER_AOT_PYTHON_PLUGINS = 3


SPEC = VersionSpec(version="11.0.0.11", builder_flags=BuilderFlag, creation_flags=NetworkDefinitionCreationFlag,
                   binding_api=False, calibrator=False, progress_monitor=True, fast_fp16_query=False,
                   always_strongly_typed=True)
globals().update(make_api(SPEC))
