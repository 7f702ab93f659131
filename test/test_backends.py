"""Inference backends (ONNX Runtime, PyTorch), model dir validation, auto selection and image_io.

Uses a tiny untrained model exported with torch.onnx.export in the exact exported-model format.
"""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import yaml

from depth_sfm_ros.runtime.backends import BackendOutput, auto_backend_order, create_backend
from depth_sfm_ros.runtime.image_io import ImagePreprocessor, to_rgb_float
from depth_sfm_ros.runtime.model_dir import ModelDirError, read_model_card

H, W = 32, 96

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from depth_sfm_ros.runtime.tiny_model import build_tiny_nets, export_model_dir

    nets = build_tiny_nets(width=8, seed=3)
    model_dir = export_model_dir(tmp_path_factory.mktemp("model"), *nets, height=H, width=W)
    return model_dir, nets


def _images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.random((1, 3, H, W), dtype=np.float32), rng.random((1, 3, H, W), dtype=np.float32))


def _copy_model(tiny_dir, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(tiny_dir, dst)
    return dst


# --- backends ---------------------------------------------------------------------------------
def test_onnxruntime_matches_torch(tiny):
    from depth_sfm_ros.runtime.torch_backend import TorchBackend

    model_dir, nets = tiny
    ort_backend = create_backend(model_dir, name="onnxruntime", device="cpu", threads=1)
    torch_backend = TorchBackend(read_model_card(model_dir), *nets, device="cpu")
    cur, prev = _images(1)
    a, b = ort_backend.infer(cur, prev), torch_backend.infer(cur, prev)
    assert isinstance(a, BackendOutput)
    for name in ("disparity", "depth", "dynamic_prob"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape == (H, W) and x.dtype == np.float32
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5, err_msg=name)
    assert a.pose_vec.shape == (6,) and a.pose_vec.dtype == np.float64
    np.testing.assert_allclose(a.pose_vec, b.pose_vec, rtol=1e-4, atol=1e-7)
    # depth follows the card's disparity convention, within [min_depth, max_depth]
    card = read_model_card(model_dir)
    expected = 1.0 / (1.0 / card.max_depth + (1.0 / card.min_depth - 1.0 / card.max_depth) * a.disparity)
    np.testing.assert_allclose(a.depth, expected, rtol=1e-5)
    # different inputs give different outputs (the graph really runs)
    c = ort_backend.infer(*_images(2))
    assert not np.allclose(c.depth, b.depth)


def test_first_frame_has_no_pose_and_inputs_are_checked(tiny):
    backend = create_backend(tiny[0], name="onnxruntime", device="cpu", threads=1)
    out = backend.infer(_images(0)[0], None)
    assert out.pose_vec is None and out.dynamic_prob is None and out.depth.shape == (H, W)
    with pytest.raises(ValueError, match=r"image_cur must be float32 \(1, 3, 32, 96\)"):
        backend.infer(np.zeros((1, 3, H, W + 1), np.float32))
    with pytest.raises(ValueError, match="image_prev"):
        backend.infer(_images(0)[0], np.zeros((1, 3, H, W), np.float64))


def test_auto_selection_on_this_machine(tiny, caplog):
    import onnxruntime as ort

    model_dir = tiny[0]
    order = auto_backend_order(model_dir, "auto")
    has_cuda = torch.cuda.is_available() or "CUDAExecutionProvider" in ort.get_available_providers()
    if not has_cuda:  # the CI machine: CPU only -> onnxruntime CPU first
        assert order[0][:2] == ("onnxruntime", "cpu")
    assert order[-1][1] == "cpu" or has_cuda
    with caplog.at_level(logging.INFO, logger="depth_sfm_ros.runtime.backends"):
        backend = create_backend(model_dir, threads=1)
    assert (backend.name, backend.device) == order[0][:2]
    assert "backend auto-selection" in caplog.text and backend.name in caplog.text
    assert auto_backend_order(model_dir, "cpu")[0][1] == "cpu"


def test_onnxruntime_reports_the_providers_the_session_really_uses(tiny, monkeypatch, caplog):
    """onnxruntime-gpu whose CUDA / cuDNN libraries do not match lists CUDAExecutionProvider but its sessions
    run on the CPU. Reproduced with the real (CPU) onnxruntime by making it list CUDA: the session falls back
    exactly as onnxruntime-gpu does. The backend must report the CPU, refuse device='cuda', and auto must
    not rank it as a GPU backend."""
    import onnxruntime as ort

    from depth_sfm_ros.runtime.backends import OnnxRuntimeBackend

    listed = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)
    model_dir = tiny[0]
    with caplog.at_level(logging.WARNING, logger="depth_sfm_ros.runtime.backends"):
        backend = OnnxRuntimeBackend(model_dir, device="auto", threads=1)
    assert backend.device == "cpu"
    assert "runs on ['CPUExecutionProvider']" in caplog.text and "cuDNN" in caplog.text
    assert backend.infer(*_images(3)).pose_vec is not None  # and it works, on the CPU
    with pytest.raises(RuntimeError, match="CUDA / cuDNN libraries do not match") as refused:
        OnnxRuntimeBackend(model_dir, device="cuda", threads=1)
    assert type(refused.value).__name__ == "OrtCudaUnavailable"
    assert auto_backend_order(model_dir, "auto")[0][:2] == ("onnxruntime", "cuda")  # what is listed...
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="depth_sfm_ros.runtime.backends"):
        chosen = create_backend(model_dir, threads=1)
    assert (chosen.name, chosen.device) == ("onnxruntime", "cpu")  # ...is not what is used
    assert "onnxruntime on cuda failed" in caplog.text and "auto-selection: onnxruntime on cpu" in caplog.text


def test_create_backend_argument_errors(tiny, tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        create_backend(tiny[0], name="tflite")
    with pytest.raises(ValueError, match="device must be"):
        create_backend(tiny[0], device="tpu")
    with pytest.raises(ModelDirError, match="does not exist"):
        create_backend(tmp_path / "nope")
    with pytest.raises(ModelDirError, match="no checkpoint"):
        create_backend(tiny[0], name="torch")
    with pytest.raises(ValueError, match="threads"):
        create_backend(tiny[0], name="onnxruntime", threads=0)


def test_missing_file_is_named(tiny, tmp_path):
    model_dir = _copy_model(tiny[0], tmp_path)
    (model_dir / "pose.onnx").unlink()
    with pytest.raises(ModelDirError, match=r"pose\.onnx: missing; expected an ONNX model with inputs "
                                            r"\['image_prev', 'image_cur'\]"):
        create_backend(model_dir, name="onnxruntime")
    (model_dir / "model_card.yaml").unlink()
    with pytest.raises(ValueError, match="model card not found"):
        create_backend(model_dir, name="onnxruntime")


def _edit_card(model_dir, **changes) -> None:
    path = model_dir / "model_card.yaml"
    card = yaml.safe_load(path.read_text())
    card.update(changes)
    path.write_text(yaml.safe_dump(card))


def test_mask_is_optional(tiny, tmp_path):
    model_dir = _copy_model(tiny[0], tmp_path)
    (model_dir / "mask.onnx").unlink()
    with pytest.raises(ModelDirError, match=r"mask\.onnx: missing"):  # the card still lists it
        create_backend(model_dir, name="onnxruntime")
    files = yaml.safe_load((model_dir / "model_card.yaml").read_text())["files"]
    _edit_card(model_dir, files={k: v for k, v in files.items() if k != "mask.onnx"})
    backend = create_backend(model_dir, name="onnxruntime", device="cpu", threads=1)
    out = backend.infer(*_images(0))
    assert backend.has_mask is False and out.pose_vec is not None and out.dynamic_prob is None


def test_card_shape_mismatch_is_a_clear_error(tiny, tmp_path):
    model_dir = _copy_model(tiny[0], tmp_path)
    _edit_card(model_dir, input_width=128)
    with pytest.raises(ModelDirError, match=r"has shape \[1, 3, 32, 96\] but the model card says \[1, 3, 32, 128\]"):
        create_backend(model_dir, name="onnxruntime")


@pytest.mark.parametrize("field,value,message", [
    ("min_depth", 200.0, "must exceed min_depth"),
    ("intrinsics_normalized", [0.5, 0.5], "intrinsics_normalized must be null or"),
    ("input_height", "tall", "input_height must be a positive multiple of 32"),
])
def test_bad_card_fields(tiny, tmp_path, field, value, message):
    model_dir = _copy_model(tiny[0], tmp_path)
    _edit_card(model_dir, **{field: value})
    with pytest.raises(ValueError, match=message):
        create_backend(model_dir, name="onnxruntime")


def test_modified_or_broken_onnx(tiny, tmp_path):
    from depth_sfm_ros.runtime.model_card import sha256_file

    model_dir = _copy_model(tiny[0], tmp_path)
    (model_dir / "depth.onnx").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"depth\.onnx: sha256 .* does not match the model card"):
        create_backend(model_dir, name="onnxruntime")
    files = yaml.safe_load((model_dir / "model_card.yaml").read_text())["files"]
    _edit_card(model_dir, files=dict(files, **{"depth.onnx": sha256_file(model_dir / "depth.onnx")}))
    with pytest.raises(ModelDirError, match=r"depth\.onnx: ONNX Runtime cannot load it"):
        create_backend(model_dir, name="onnxruntime")


def test_card_intrinsics(tiny):
    from depth_sfm_ros.runtime.model_dir import card_intrinsics

    K = card_intrinsics(read_model_card(tiny[0]), 640, 192)
    assert (K.width, K.height) == (640, 192)
    np.testing.assert_allclose([K.fx, K.fy, K.cx, K.cy], [0.58 * 640, 1.92 * 192, 319.5, 95.5])


def test_torch_backend_fp16_request_on_cpu_runs_fp32(tiny):
    from depth_sfm_ros.runtime.torch_backend import TorchBackend

    model_dir, nets = tiny
    backend = TorchBackend(read_model_card(model_dir), *nets, device="cpu", fp16=True)
    assert backend.fp16 is False and backend.device == "cpu"
    out = backend.infer(*_images(4))
    assert np.isfinite(out.depth).all() and out.dynamic_prob.shape == (H, W)


# --- image_io --------------------------------------------------------------------------------
def _picture(h: int = 48, w: int = 144, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_colour_encodings_give_identical_network_input():
    rgb = _picture()
    variants = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1].copy(),
                "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
                "bgra8": np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 200, np.uint8)])}
    pre = ImagePreprocessor(H, W)
    reference = pre(variants["rgb8"], "rgb8").copy()
    assert reference.shape == (1, 3, H, W) and reference.dtype == np.float32
    assert 0.0 <= reference.min() and reference.max() <= 1.0
    for encoding, image in variants.items():
        np.testing.assert_array_equal(pre(image, encoding), reference, err_msg=encoding)
    # no resize when the image already has the network size: exact value / 255
    np.testing.assert_allclose(pre(rgb[:H, :W], "rgb8")[0], rgb[:H, :W].transpose(2, 0, 1) / 255.0, atol=1e-7)


def test_grey_encodings_agree():
    grey = _picture()[:, :, 0]
    pre = ImagePreprocessor(H, W)
    from_rgb = pre(np.dstack([grey] * 3), "rgb8").copy()
    np.testing.assert_array_equal(pre(grey, "mono8"), from_rgb)
    np.testing.assert_array_equal(pre(grey[:, :, None], "8UC1"), from_rgb)
    mono16 = grey.astype(np.uint16) * 257  # same picture at 16 bits
    for encoding in ("mono16", "16UC1"):
        np.testing.assert_allclose(pre(mono16, encoding), from_rgb, atol=1.0 / 255)
    # a configured raw range: [1000, 3000] -> [0, 1], clipped
    ranged = ImagePreprocessor(2, 2, value_range=(1000, 3000))
    raw = np.array([[0, 1000], [2000, 65535]], np.uint16)
    np.testing.assert_allclose(ranged(raw, "mono16")[0, 1], [[0, 0], [0.5, 1.0]], atol=1e-6)
    np.testing.assert_allclose(to_rgb_float(raw, "mono16", value_range=(1000, 3000))[:, :, 2],
                               [[0, 0], [0.5, 1.0]], atol=1e-6)


def test_preprocessor_reuses_its_buffer_and_accepts_strided_input():
    pre = ImagePreprocessor(H, W)
    padded = np.zeros((48, 160, 3), np.uint8)
    padded[:, :144] = _picture()
    a = pre(padded[:, :144], "rgb8")  # a view with row padding, as from a ROS step > width*3
    b = pre(_picture(seed=1), "rgb8")
    assert a is b is pre.buffer
    out = np.empty((1, 3, H, W), np.float32)
    assert pre(_picture(), "rgb8", out=out) is out


@pytest.mark.parametrize("image,encoding,message", [
    (np.zeros((4, 4, 3), np.uint8), "yuv422", "unsupported image encoding 'yuv422'"),
    (np.zeros((4, 4, 3), np.uint16), "rgb8", "needs dtype uint8"),
    (np.zeros((4, 4), np.uint8), "rgb8", r"shape \(H, W, 3\)"),
    (np.zeros((4, 4, 3), np.uint8), "mono8", r"\(H, W\) or \(H, W, 1\)"),
    (np.zeros((4, 4), np.uint8), "mono16", "needs dtype uint16"),
    (np.zeros((0, 4, 3), np.uint8), "rgb8", "empty"),
    ([[1, 2]], "mono8", "numpy array"),
])
def test_bad_images_are_rejected(image, encoding, message):
    with pytest.raises(ValueError, match=message):
        to_rgb_float(image, encoding)
    with pytest.raises(ValueError, match=message):
        ImagePreprocessor(2, 2)(image, encoding)


def test_bad_preprocessor_arguments():
    with pytest.raises(ValueError, match="positive integers"):
        ImagePreprocessor(0, 4)
    with pytest.raises(ValueError, match="high > low"):
        ImagePreprocessor(2, 2, value_range=(5, 5))
    with pytest.raises(ValueError, match="out must be float32"):
        ImagePreprocessor(2, 2)(np.zeros((2, 2), np.uint8), "mono8", out=np.zeros((1, 3, 2, 3), np.float32))


def test_real_lite_model_checkpoint_and_export_agree(tmp_path):
    """The project's own lite networks: export_bundle -> ONNX Runtime, checkpoint -> torch backend."""
    models = pytest.importorskip("depth_sfm_ros.models")
    export = pytest.importorskip("depth_sfm_ros.runtime.export")
    torch.manual_seed(0)
    config = {"encoder": "lite", "pose_encoder": "lite", "height": 64, "width": 192}
    bundle = models.build_models(config)
    model_dir = tmp_path / "lite"
    export.export_bundle(bundle, config, model_dir, intrinsics_normalized=[0.58, 1.92, 0.5, 0.5], verify=False)
    models.save_checkpoint(model_dir / "checkpoint.pt", bundle, config, None, 0, 0)
    ort_backend = create_backend(model_dir, name="onnxruntime", device="cpu", threads=1)
    torch_backend = create_backend(model_dir, name="torch", device="cpu", threads=1)
    assert (torch_backend.name, torch_backend.input_hw) == ("torch", (64, 192))
    rng = np.random.default_rng(5)
    cur, prev = (rng.random((1, 3, 64, 192), dtype=np.float32) for _ in range(2))
    a, b = ort_backend.infer(cur, prev), torch_backend.infer(cur, prev)
    np.testing.assert_allclose(a.disparity, b.disparity, atol=1e-4)
    np.testing.assert_allclose(a.depth, b.depth, rtol=1e-3)
    np.testing.assert_allclose(a.pose_vec, b.pose_vec, atol=1e-5)
    np.testing.assert_allclose(a.dynamic_prob, b.dynamic_prob, atol=1e-4)
    # auto: onnxruntime is preferred over torch on a CPU-only machine even when both are possible
    if not torch.cuda.is_available():
        assert create_backend(model_dir, threads=1).name == "onnxruntime"
