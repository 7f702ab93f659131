"""The TensorRT code against each supported version's Python bindings (fakes: test/fakes/tensorrt_*.py):
8.6 (JetPack 5), 10.x (JetPack 6) and 11 (strongly typed only), every precision; the FP16 and INT8 Q/DQ
ONNX graphs that TensorRT 11 builds from; the runner's two execution APIs; GPU detection with cuda-python
12 / 13 and its error codes; ``auto`` falling back when TensorRT is unusable.

The real engine build/run is in test_engine_cache.py (skipped without TensorRT and a GPU).
"""
from __future__ import annotations

import collections
import importlib
import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from depth_sfm_ros.runtime import tensorrt_engine as te
from depth_sfm_ros.runtime.tensorrt_engine import DeviceInfo, build_engine

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from fakes import cuda_python  # noqa: E402
from fakes._tensorrt_base import MAGIC  # noqa: E402

ORIN = DeviceInfo("Orin (nvgpu)", "8.7")
H, W = 32, 96
VERSIONS = {"8_6": "8.6.2.3", "10": "10.3.0.30", "11": "11.0.0.11"}
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "depth_sfm_ros" / "data" / "default_model"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from depth_sfm_ros.runtime.tiny_model import build_tiny_nets, export_model_dir

    return export_model_dir(tmp_path_factory.mktemp("model"), *build_tiny_nets(width=8, seed=3), height=H, width=W)


def install_trt(monkeypatch, version: str):
    """Make ``import tensorrt`` give the fake of ``version`` ("8_6", "10", "11")."""
    fake = importlib.import_module(f"fakes.tensorrt_{version}")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


def frames(n: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, H, W), dtype=np.float32)


def payload(engine_bytes: bytes) -> dict:
    assert engine_bytes.startswith(MAGIC)
    return json.loads(engine_bytes[len(MAGIC):])


# --- building, per version and precision ----------------------------------------------------------
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("version", list(VERSIONS))
def test_build_engine_each_version_and_precision(monkeypatch, tmp_path, tiny_dir, version, precision):
    trt = install_trt(monkeypatch, version)
    onnx_path = tiny_dir / ("pose.onnx" if precision == "int8" else "depth.onnx")  # int8: a two-input net
    engine_bytes, path = build_engine(onnx_path, precision=precision, cache_dir=tmp_path, device=ORIN,
                                      calibration_images=frames() if precision == "int8" else None)
    built = payload(engine_bytes)
    assert built["version"] == trt.__version__ and built["precision"] == precision
    strong = version == "11"
    assert built["strongly_typed"] is strong
    assert built["progress_monitor"] is (version != "8_6")  # the Python IProgressMonitor arrived in 10.0
    assert built["timing_cache"] and built["workspace"] == 2 << 30
    meta = json.loads(te.metadata_path(path).read_text())
    assert meta["tensorrt_version"] == trt.__version__ and meta["precision"] == precision
    # I/O stays float32 at every precision: the runner's buffers do not depend on it
    assert {t["dtype"] for t in built["io"]} == {"FLOAT"}
    derived = sorted(p.name for p in path.parent.glob("*.onnx"))
    if strong:  # no precision flags exist: the precision is in the parsed graph
        assert built["flags"] == [] and not built["calibrated"]
        if precision == "fp32":
            assert derived == []
        else:
            (name,) = derived
            assert name.endswith(te.DERIVED_ONNX_SUFFIX[precision])
            graph = onnx.load(str(path.parent / name)).graph
            if precision == "fp16":
                assert {t.data_type for t in graph.initializer} == {onnx.TensorProto.FLOAT16}
            else:
                ops = collections.Counter(n.op_type for n in graph.node)
                assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    else:  # weakly typed: builder flags, and the entropy calibrator for INT8
        want = {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}[precision]
        assert built["flags"] == want and derived == []
        assert built["calibrated"] is (precision == "int8")
        assert bool(list(path.parent.glob("*.calib"))) is (precision == "int8")


def test_int8_needs_frames_and_11_needs_onnxruntime_quantization(monkeypatch, tmp_path, tiny_dir):
    install_trt(monkeypatch, "11")
    with pytest.raises(ValueError, match="calibration_images"):
        build_engine(tiny_dir / "pose.onnx", precision="int8", cache_dir=tmp_path, device=ORIN)
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # import fails
    from depth_sfm_ros.runtime.onnx_precision import QuantizationUnavailable

    with pytest.raises(QuantizationUnavailable, match=r"onnxruntime\.quantization"):
        build_engine(tiny_dir / "pose.onnx", precision="int8", cache_dir=tmp_path, device=ORIN,
                     calibration_images=frames())


def test_unsupported_version_is_refused(monkeypatch):
    assert te.strongly_typed("10.3.0") is False and te.strongly_typed("11.0.0.11") is True
    assert te.strongly_typed("8.6.1") is False and te.tensorrt_major_minor("10.13.2.6") == (10, 13)
    with pytest.raises(RuntimeError, match=r"TensorRT 8\.4\.3 is not supported; supported: 8\.6"):
        te.strongly_typed("8.4.3")


def test_engine_of_another_version_is_not_deserialized(monkeypatch, tmp_path, tiny_dir):
    install_trt(monkeypatch, "10")
    engine_bytes, _ = build_engine(tiny_dir / "depth.onnx", cache_dir=tmp_path, device=ORIN)
    trt11 = install_trt(monkeypatch, "11")
    assert trt11.Runtime(trt11.Logger()).deserialize_cuda_engine(engine_bytes) is None
    # the cache notices the upgrade and rebuilds for 11
    rebuilt, _ = build_engine(tiny_dir / "depth.onnx", cache_dir=tmp_path, device=ORIN)
    assert payload(rebuilt)["version"] == trt11.__version__


# --- running: the two execution APIs ------------------------------------------------------------
class _BindingsOnly:
    """An engine as TensorRT < 8.5 exposed it: no tensor-name API (to drive the binding-index path)."""

    HIDDEN = {"num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape", "get_tensor_dtype"}

    def __init__(self, engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str):
        if name in self.HIDDEN:
            raise AttributeError(name)
        return getattr(self._engine, name)


@pytest.mark.parametrize("version,bindings_only", [("8_6", False), ("8_6", True), ("10", False), ("11", False)])
def test_runner_binds_every_tensor(monkeypatch, tmp_path, tiny_dir, version, bindings_only):
    from depth_sfm_ros.runtime.model_dir import check_io, read_model_card
    from depth_sfm_ros.runtime.tensorrt_backend import _TrtRunner

    trt = install_trt(monkeypatch, version)
    engine_bytes, engine_file = build_engine(tiny_dir / "pose.onnx", precision="fp16", cache_dir=tmp_path,
                                             device=ORIN)
    runtime = trt.Runtime(trt.Logger())
    if bindings_only:
        real = runtime.deserialize_cuda_engine
        runtime = SimpleNamespace(deserialize_cuda_engine=lambda data: _BindingsOnly(real(data)))
    runner = _TrtRunner(trt, torch, runtime, engine_bytes, "pose.onnx", device="cpu")
    assert runner.tensor_api is not bindings_only  # 8.6 has both APIs; the tensor-name one is used
    assert runner.inputs == ["image_prev", "image_cur"] and runner.outputs == ["pose"]
    check_io("pose.onnx", engine_file, [(n, list(runner.buffers[n].shape)) for n in runner.inputs], runner.outputs,
             read_model_card(tiny_dir))
    prev, cur = frames(2, seed=5)
    out = runner.run({"image_prev": prev[None], "image_cur": cur[None]}, SimpleNamespace(cuda_stream=0))
    np.testing.assert_allclose(out["pose"].numpy(), prev.mean() + cur.mean() + 1, rtol=1e-5)


def test_progress_monitor_exists_from_tensorrt_10(monkeypatch):
    assert te._progress_monitor(install_trt(monkeypatch, "8_6")) is None
    for version in ("10", "11"):
        trt = install_trt(monkeypatch, version)
        assert isinstance(te._progress_monitor(trt), trt.IProgressMonitor)


# --- ONNX graphs for strongly typed builds ----------------------------------------------------------
def _run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString() if hasattr(model, "SerializeToString") else str(model),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("name", ["depth.onnx", "pose.onnx", "mask.onnx"])
def test_fp16_graph_matches_fp32_with_float32_io(name):
    from depth_sfm_ros.runtime.onnx_precision import convert_to_fp16

    source = onnx.load(str(DEFAULT_MODEL / name))
    half = convert_to_fp16(source)
    f32 = onnx.TensorProto.FLOAT
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [f32] * len(source.graph.input)
    assert [o.type.tensor_type.elem_type for o in half.graph.output] == [f32] * len(source.graph.output)
    assert [i.name for i in half.graph.input] == [i.name for i in source.graph.input]
    assert [o.name for o in half.graph.output] == [o.name for o in source.graph.output]
    convs = [n for n in half.graph.node if n.op_type == "Conv"]
    weights = {t.name: t.data_type for t in half.graph.initializer}
    weights.update({n.output[0]: n.attribute[0].t.data_type for n in half.graph.node if n.op_type == "Constant"})
    assert convs and all(weights[c.input[1]] == onnx.TensorProto.FLOAT16 for c in convs)
    # Resize's scales are float32 by the operator's schema and stay so
    for node in (n for n in half.graph.node if n.op_type == "Resize"):
        assert weights[node.input[2]] == f32
    rng = np.random.default_rng(1)
    h, w = (d.dim_value for d in source.graph.input[0].type.tensor_type.shape.dim[2:])
    feeds = {i.name: rng.random((1, 3, h, w), dtype=np.float32) for i in source.graph.input}
    for a, b in zip(_run(source, feeds), _run(half, feeds)):
        assert b.dtype == np.float32
        np.testing.assert_allclose(b, a, rtol=5e-3, atol=2e-3 * float(np.abs(a).max()))


def test_qdq_graph_is_symmetric_int8_and_close_to_fp32(tmp_path, tiny_dir):
    from depth_sfm_ros.runtime.onnx_precision import write_qdq_onnx

    calibration = frames(6)
    out = write_qdq_onnx(tiny_dir / "pose.onnx", tmp_path / "pose.qdq.onnx", calibration)
    model = onnx.load(str(out))
    ops = collections.Counter(n.op_type for n in model.graph.node)
    assert ops["QuantizeLinear"] >= 3 and ops["DequantizeLinear"] >= ops["QuantizeLinear"]
    zero_points = [t for t in model.graph.initializer if t.name.endswith("zero_point")]
    assert zero_points and {t.data_type for t in zero_points} == {onnx.TensorProto.INT8}  # TensorRT: int8, 0
    assert not any(onnx.numpy_helper.to_array(t).any() for t in zero_points)
    feeds = {"image_prev": calibration[:1], "image_cur": calibration[1:2]}
    (a,), (b,) = _run(onnx.load(str(tiny_dir / "pose.onnx")), feeds), _run(model, feeds)
    np.testing.assert_allclose(b, a, atol=0.1 * float(np.abs(a).max()) + 1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        write_qdq_onnx(tiny_dir / "pose.onnx", tmp_path / "x.onnx", calibration[:1])


# --- export --engine and auto selection ------------------------------------------------------------
def test_export_builds_fp16_engines_with_tensorrt_11(monkeypatch, tmp_path, tiny_dir):
    from depth_sfm_ros.runtime import export
    from depth_sfm_ros.runtime.model_dir import onnx_files

    install_trt(monkeypatch, "11")
    monkeypatch.setattr(te, "detect_device", lambda index=0: ORIN)
    engines = export._build_engines(onnx_files(tiny_dir), "fp16", None, tmp_path)
    assert sorted(engines) == ["depth.onnx", "mask.onnx", "pose.onnx"]
    assert {payload(p.read_bytes())["precision"] for p in engines.values()} == {"fp16"}
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    with pytest.raises(export.EngineBuildError, match=r"int8 engine for depth\.onnx: .*onnxruntime\.quantization"):
        export._build_engines(onnx_files(tiny_dir), "int8", frames(), tmp_path / "int8")


def test_auto_falls_back_with_one_line_when_tensorrt_fails(monkeypatch, tiny_dir, caplog):
    """A node started with fp16: true on TensorRT 11 used to die on BuilderFlag.FP16; auto now moves on."""
    from depth_sfm_ros.runtime import backends, tensorrt_backend

    install_trt(monkeypatch, "11")
    monkeypatch.setattr(backends, "_torch_has_cuda", lambda: True)

    def broken(self, *args, **kwargs):
        raise AttributeError("type object 'tensorrt.BuilderFlag' has no attribute 'FP16'")

    monkeypatch.setattr(tensorrt_backend.TensorRTBackend, "__init__", broken)
    assert backends.auto_backend_order(tiny_dir, "auto")[0][:2] == ("tensorrt", "cuda")
    with caplog.at_level(logging.INFO, logger="depth_sfm_ros.runtime.backends"):
        backend = backends.create_backend(tiny_dir, fp16=True, threads=1)
    assert backend.name == "onnxruntime"
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "auto-selection" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "tensorrt on cuda failed" in warnings[0] and "BuilderFlag" in warnings[0]
    assert "falling back to onnxruntime" in warnings[0]
    # a broken model is not "fallen back" over: the error names it
    from depth_sfm_ros.runtime.model_dir import ModelDirError

    monkeypatch.setattr(tensorrt_backend.TensorRTBackend, "__init__",
                        lambda self, *a, **k: (_ for _ in ()).throw(ModelDirError("depth.onnx: bad I/O")))
    with pytest.raises(ModelDirError, match="bad I/O"):
        backends.create_backend(tiny_dir, threads=1)


def test_auto_reports_every_failure_when_nothing_works(monkeypatch, tiny_dir):
    from depth_sfm_ros.runtime import backends

    def fail(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(backends, "OnnxRuntimeBackend", fail)
    with pytest.raises(RuntimeError, match=r"no backend could be created .*onnxruntime on cpu: RuntimeError: boom"):
        backends.create_backend(tiny_dir, device="cpu")


# --- GPU detection: torch, else cuda-python 12 / 13 ------------------------------------------------
@pytest.fixture()
def no_cuda_torch(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("layout", ["13", "12", "11"])
def test_detect_device_without_cuda_torch(monkeypatch, no_cuda_torch, layout):
    """A Jetson with TensorRT but no CUDA build of torch: cuda-python 13 has only cuda.bindings.driver."""
    cuda_python.install(monkeypatch, layout)
    assert te.detect_device() == DeviceInfo("Orin (nvgpu)", "8.7")


@pytest.mark.parametrize("errors,message", [
    ({"cuInit": cuda_python.CUresult.CUDA_ERROR_NO_DEVICE}, r"cuInit failed: CUDA_ERROR_NO_DEVICE \(100\)"),
    ({"cuDeviceGetAttribute": cuda_python.CUresult.CUDA_ERROR_INVALID_VALUE},
     r"cuDeviceGetAttribute\(major\) failed: CUDA_ERROR_INVALID_VALUE"),
    ({"cuDeviceGetName": cuda_python.CUresult.CUDA_ERROR_INVALID_DEVICE}, "cuDeviceGetName failed"),
])
def test_detect_device_checks_cuda_error_codes(monkeypatch, no_cuda_torch, errors, message):
    cuda_python.install(monkeypatch, "13", cuda_python.FakeDriver(errors=errors))
    with pytest.raises(RuntimeError, match=f"no CUDA GPU found for TensorRT .*{message}"):
        te.detect_device()


def test_detect_device_names_what_is_missing(monkeypatch, no_cuda_torch):
    cuda_python.install(monkeypatch, "13", cuda_python.FakeDriver(devices=[]))
    with pytest.raises(RuntimeError, match="torch has no CUDA; cuda-python: CUDA driver call cuInit failed: "
                                           "CUDA_ERROR_NO_DEVICE"):
        te.detect_device()
    cuda_python.install(monkeypatch, "13")
    with pytest.raises(RuntimeError, match=r"CUDA device 3 requested but the driver reports 1 device"):
        te.detect_device(3)
    for name in ("cuda", "cuda.bindings", "cuda.bindings.driver", "cuda.cuda"):
        monkeypatch.setitem(sys.modules, name, None)  # not installed
    with pytest.raises(RuntimeError, match="cuda-python is not installed"):
        te.detect_device()
