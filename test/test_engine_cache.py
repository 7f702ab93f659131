"""TensorRT engine cache: keys, invalidation, corruption, atomic writes (no TensorRT needed),
plus a real engine build/run that is skipped when ``tensorrt`` does not import."""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os

import numpy as np
import pytest

from depth_sfm_ros.runtime import tensorrt_engine as te
from depth_sfm_ros.runtime.tensorrt_engine import (DeviceInfo, EngineCacheError, EngineCacheMismatch,
                                                   check_cached_engine, default_cache_dir, engine_path,
                                                   load_cached_engine, make_key, metadata_path, write_engine)

ORIN = DeviceInfo("Orin (nvgpu)", "8.7")


@pytest.fixture()
def onnx_file(tmp_path):
    path = tmp_path / "depth.onnx"
    path.write_bytes(b"pretend-onnx-bytes-v1")  # the cache only hashes the file
    return path


@pytest.fixture()
def key(onnx_file):
    return make_key(onnx_file, "fp16", (1, 3, 192, 640), device=ORIN, trt_version="8.6.2")


class Builder:
    """Counts rebuilds; returns distinct engine bytes each time."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return f"engine-build-{self.calls}".encode() * 10


def test_key_and_paths(key, onnx_file, tmp_path, monkeypatch):
    assert key.onnx_sha256 == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert key.input_shape == (1, 3, 192, 640) and key.onnx_name == "depth"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "depth_sfm" / "engines"
    path = engine_path(key)
    assert path == tmp_path / "xdg/depth_sfm/engines/Orin_nvgpu-sm87/depth-fp16-192x640.engine"
    assert metadata_path(path).name == "depth-fp16-192x640.engine.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == type(default_cache_dir())(os.path.expanduser("~/.cache/depth_sfm/engines"))
    # per device: another GPU gets another file
    other = dataclasses.replace(key, gpu_name="NVIDIA H100", compute_capability="9.0")
    assert engine_path(other, tmp_path) != engine_path(key, tmp_path)


@pytest.mark.parametrize("field,value,message", [
    ("precision", "fp8", "precision must be one of"),
    ("input_shape", (1, 3, 0, 640), "input_shape"),
    ("onnx_sha256", "abc", "64 lowercase hex"),
])
def test_key_validation(key, field, value, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(key, **{field: value})
    with pytest.raises(FileNotFoundError, match="ONNX file not found"):
        make_key("/nonexistent.onnx", "fp32", (1, 3, 8, 8), device=ORIN, trt_version="10.3")


def test_roundtrip_and_metadata(key, tmp_path):
    build = Builder()
    engine = load_cached_engine(key, tmp_path, rebuild=build)
    assert build.calls == 1 and engine == b"engine-build-1" * 10
    assert load_cached_engine(key, tmp_path, rebuild=build) == engine  # cache hit: no rebuild
    assert load_cached_engine(key, tmp_path, policy="refuse") == engine
    assert build.calls == 1
    meta = json.loads(metadata_path(engine_path(key, tmp_path)).read_text())
    assert meta["engine_sha256"] == hashlib.sha256(engine).hexdigest()
    assert meta["tensorrt_version"] == "8.6.2" and meta["gpu_name"] == "Orin (nvgpu)"
    assert meta["input_shape"] == [1, 3, 192, 640] and meta["build_time_s"] >= 0
    assert te.key_from_metadata(meta) == key


@pytest.mark.parametrize("change,field", [
    ({"tensorrt_version": "10.3.0"}, "tensorrt_version: cached '8.6.2', current '10.3.0'"),
    ({"onnx_sha256": "0" * 64}, "onnx_sha256: cached"),
])
def test_mismatch_refuses_or_rebuilds_naming_the_field(key, tmp_path, change, field):
    build = Builder()
    write_engine(key, b"old-engine", tmp_path)
    current = dataclasses.replace(key, **change)
    assert engine_path(current, tmp_path) == engine_path(key, tmp_path)  # same file, different setup
    with pytest.raises(EngineCacheMismatch, match=field):
        load_cached_engine(current, tmp_path, policy="refuse", rebuild=build)
    assert build.calls == 0 and engine_path(key, tmp_path).read_bytes() == b"old-engine"
    assert load_cached_engine(current, tmp_path, policy="rebuild", rebuild=build) == b"engine-build-1" * 10
    assert build.calls == 1
    assert check_cached_engine(current, tmp_path) == (b"engine-build-1" * 10, "ok")
    assert check_cached_engine(key, tmp_path)[0] is None  # the old setup no longer matches


def test_engine_copied_to_another_gpu_is_refused(key, tmp_path):
    """A prebuilt engine at an explicit path (e.g. shipped in a model dir) built on another GPU."""
    shipped = tmp_path / "shipped" / "depth.engine"
    write_engine(key, b"orin-engine", path=shipped)
    here = dataclasses.replace(key, gpu_name="NVIDIA H200", compute_capability="9.0")
    with pytest.raises(EngineCacheMismatch, match=r"gpu_name: cached 'Orin \(nvgpu\)', current 'NVIDIA H200'; "
                                                  r"compute_capability: cached '8.7', current '9.0'"):
        load_cached_engine(here, path=shipped, policy="refuse")
    assert load_cached_engine(key, path=shipped, policy="refuse") == b"orin-engine"


def test_corrupt_engine_is_never_used(key, tmp_path):
    path = write_engine(key, b"good-engine-bytes", tmp_path)
    path.write_bytes(b"good-engine-bytez")  # bit rot / partial copy
    with pytest.raises(EngineCacheMismatch, match="corrupt: sha256"):
        load_cached_engine(key, tmp_path, policy="refuse")
    build = Builder()
    assert load_cached_engine(key, tmp_path, rebuild=build) == b"engine-build-1" * 10 and build.calls == 1


def test_missing_or_broken_metadata(key, tmp_path):
    assert "no cached engine" in check_cached_engine(key, tmp_path)[1]
    with pytest.raises(EngineCacheMismatch, match="no cached engine"):
        load_cached_engine(key, tmp_path, policy="refuse")
    with pytest.raises(EngineCacheMismatch, match="no builder"):
        load_cached_engine(key, tmp_path, policy="rebuild")
    path = write_engine(key, b"engine", tmp_path)
    metadata_path(path).write_text("{not json")
    assert "unreadable or corrupt" in check_cached_engine(key, tmp_path)[1]
    metadata_path(path).unlink()
    assert "without metadata is not trusted" in check_cached_engine(key, tmp_path)[1]
    with pytest.raises(ValueError, match="policy"):
        load_cached_engine(key, tmp_path, policy="maybe")


def test_disk_full_leaves_nothing_valid(key, tmp_path, monkeypatch):
    write_engine(key, b"previous-engine", tmp_path)
    real_replace = os.replace

    def full_disk(src, dst):
        if str(dst).endswith(".json"):  # the engine lands, then the metadata write fails
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(te.os, "replace", full_disk)
    with pytest.raises(EngineCacheError, match="No space left on device"):
        write_engine(key, b"new-engine", tmp_path)
    monkeypatch.setattr(te.os, "replace", real_replace)
    engine_bytes, reason = check_cached_engine(key, tmp_path)
    assert engine_bytes is None and "metadata" in reason  # neither the old nor the new engine is trusted
    leftovers = [p.name for p in engine_path(key, tmp_path).parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_unwritable_cache_dir_is_a_clear_error(key, tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache dir should be")
    with pytest.raises(EngineCacheError, match="cannot write the TensorRT engine cache"):
        write_engine(key, b"engine", blocker)
    with pytest.raises(ValueError, match="empty engine"):
        write_engine(key, b"", tmp_path)


def test_build_engine_validates_before_tensorrt(tmp_path, onnx_file):
    with pytest.raises(ValueError, match="precision"):
        te.build_engine(onnx_file, precision="bf16", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="workspace_gb"):
        te.build_engine(onnx_file, workspace_gb=0, cache_dir=tmp_path)


def test_real_tensorrt_build_and_run(tmp_path):
    """Build a real engine from a tiny exported model, cache it, run it and compare with ONNX Runtime."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed on this machine")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    from depth_sfm_ros.runtime.backends import create_backend
    from depth_sfm_ros.runtime.tiny_model import export_tiny_model_dir

    model_dir = export_tiny_model_dir(tmp_path / "model", height=64, width=192, net_width=8)
    cache = tmp_path / "engines"
    trt_backend = create_backend(model_dir, name="tensorrt", engine_cache_dir=cache)
    ort_backend = create_backend(model_dir, name="onnxruntime", device="cpu")
    rng = np.random.default_rng(0)
    cur, prev = (rng.random((1, 3, 64, 192), dtype=np.float32) for _ in range(2))
    a, b = trt_backend.infer(cur, prev), ort_backend.infer(cur, prev)
    np.testing.assert_allclose(a.depth, b.depth, rtol=1e-3)
    np.testing.assert_allclose(a.pose_vec, b.pose_vec, atol=1e-4)
    assert len(list(cache.rglob("*.engine"))) == 3 and len(list(cache.rglob("*.engine.json"))) == 3
    again = create_backend(model_dir, name="tensorrt", engine_cache_dir=cache, engine_policy="refuse")
    np.testing.assert_allclose(again.infer(cur, prev).depth, a.depth, rtol=1e-6)
