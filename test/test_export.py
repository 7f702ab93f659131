"""ONNX export (real torch.onnx + onnx.checker + ONNX Runtime), the model card, and `depth-sfm export`."""
from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml

from depth_sfm_ros.cli import main as cli_main
from depth_sfm_ros.models import build_models, disp_to_depth, save_checkpoint
from depth_sfm_ros.runtime.export import export_bundle, load_calibration_images, resolve_intrinsics
from depth_sfm_ros.runtime.model_card import (MODEL_CARD_FORMAT, ModelCard, ModelCardError, read_model_card,
                                              sha256_file, verify_files, write_model_card)

H, W = 64, 192
LITE = {"encoder": "lite", "pose_encoder": "lite", "height": H, "width": W, "use_motion_net": True}
K_NORM = [0.58, 1.92, 0.5, 0.5]
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _frames(seed: int, h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prev = rng.random((1, 3, h, w), dtype=np.float32)
    cur = np.clip(prev + 0.1 * rng.standard_normal(prev.shape).astype(np.float32), 0, 1)
    return prev, cur


def _rel_close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-4) -> bool:
    return float(np.max(np.abs(got - want))) <= rtol * max(float(np.max(np.abs(want))), 1e-6)


@pytest.fixture(scope="module")
def lite_export(tmp_path_factory):
    torch.manual_seed(0)
    bundle = build_models(LITE).eval()
    out = tmp_path_factory.mktemp("lite_model")
    result = export_bundle(bundle, LITE, out, intrinsics_normalized=K_NORM, train_config={"lr": 1e-4},
                           metrics={"abs_rel": 0.5})
    return bundle, result


def test_export_writes_checked_onnx_with_contract_io(lite_export):
    _, result = lite_export
    assert sorted(result.onnx_files) == ["depth.onnx", "mask.onnx", "pose.onnx"]
    expected = {"depth.onnx": (["image"], ["disparity", "depth"], [[1, 1, H, W], [1, 1, H, W]]),
                "pose.onnx": (["image_prev", "image_cur"], ["pose"], [[1, 6]]),
                "mask.onnx": (["image_prev", "image_cur"], ["dynamic_prob"], [[1, 1, H, W]])}
    for name, (inputs, outputs, out_shapes) in expected.items():
        model = onnx.load(str(result.out_dir / name))
        onnx.checker.check_model(model, full_check=True)
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")][0] >= 17
        assert [i.name for i in model.graph.input] == inputs
        assert [o.name for o in model.graph.output] == outputs
        for value in model.graph.input:
            assert [d.dim_value for d in value.type.tensor_type.shape.dim] == [1, 3, H, W]
        assert [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output] == out_shapes
        ops = {node.op_type for node in model.graph.node}
        assert ops <= {"Conv", "Relu", "Elu", "Sigmoid", "Add", "Sub", "Mul", "Concat", "Slice", "Resize",
                       "GlobalAveragePool", "ReduceMean", "Reciprocal", "Constant", "Identity"}, ops


def test_onnxruntime_parity_with_torch(lite_export):
    bundle, result = lite_export
    prev, cur = _frames(1)
    depth_sess = ort.InferenceSession(str(result.out_dir / "depth.onnx"), providers=["CPUExecutionProvider"])
    pose_sess = ort.InferenceSession(str(result.out_dir / "pose.onnx"), providers=["CPUExecutionProvider"])
    mask_sess = ort.InferenceSession(str(result.out_dir / "mask.onnx"), providers=["CPUExecutionProvider"])
    disparity, depth = depth_sess.run(None, {"image": cur})
    pose = pose_sess.run(None, {"image_prev": prev, "image_cur": cur})[0]
    prob = mask_sess.run(None, {"image_prev": prev, "image_cur": cur})[0]
    t_prev, t_cur = torch.from_numpy(prev), torch.from_numpy(cur)
    with torch.no_grad():
        want_disp = bundle.depth(t_cur)[0]
        want_depth = disp_to_depth(want_disp, LITE.get("min_depth", 0.1), LITE.get("max_depth", 100.0))[1]
        want_pose = bundle.pose(t_cur, t_prev)  # PoseNet(tgt=cur, src=prev) = T_prev_cur
        wrong_order = bundle.pose(t_prev, t_cur)
        want_prob = bundle.motion(t_prev, t_cur)[1]
    assert _rel_close(disparity, want_disp.numpy())
    assert _rel_close(depth, want_depth.numpy())
    assert _rel_close(pose, want_pose.numpy())
    # frame order matters: swapping prev / cur changes the pose far more than the ONNX rounding error
    assert np.abs(pose - wrong_order.numpy()).max() > 100 * np.abs(pose - want_pose.numpy()).max()
    assert _rel_close(prob, want_prob.numpy())
    assert 0.1 <= depth.min() and depth.max() <= 100.0
    assert all(diff < 1e-4 for diff in result.parity.values()) and len(result.parity) == 4


def test_model_card_contents_and_round_trip(lite_export, tmp_path):
    bundle, result = lite_export
    card = read_model_card(result.out_dir)
    assert card == result.card
    assert (card.input_height, card.input_width) == (H, W) and card.intrinsics_normalized == K_NORM
    assert card.encoder == "lite" and card.scale_convention == "relative" and card.has_mask and card.has_pose
    assert card.parameter_counts == bundle.parameter_counts() and card.training_config == {"lr": 1e-4}
    assert card.metrics == {"abs_rel": 0.5}
    assert card.files["depth.onnx"] == sha256_file(result.out_dir / "depth.onnx")
    assert card.intrinsics_matrix()[0] == [K_NORM[0] * W, 0.0, K_NORM[2] * W]
    verify_files(card, result.out_dir)
    copy = tmp_path / "model_card.yaml"
    write_model_card(card, copy)
    assert read_model_card(copy) == card
    model_dir = pytest.importorskip("depth_sfm_ros.runtime.model_dir")  # the runtime's checks of a model dir
    assert sorted(model_dir.onnx_files(result.out_dir)) == sorted(result.onnx_files)


def test_export_depth_flip_average_bakes_the_test_time_flip(tmp_path):
    """--depth-flip-average: depth.onnx computes (d(x) + mirror(d(mirror(x)))) / 2 with the usual ops, the card and
    weights record it, the PyTorch backend built from the weights runs the same, and the caller's net is unchanged."""
    from depth_sfm_ros.runtime.backends import create_backend

    cfg = dict(LITE, use_motion_net=False)
    torch.manual_seed(1)
    bundle = build_models(cfg).eval()
    plain = export_bundle(bundle, cfg, tmp_path / "plain", intrinsics_normalized=K_NORM)
    flip = export_bundle(bundle, cfg, tmp_path / "flip", intrinsics_normalized=K_NORM, depth_flip_average=True)
    assert bundle.depth.flip_average is False  # restored
    assert flip.card.model_config["depth_flip_average"] is True
    assert plain.card.model_config["depth_flip_average"] is False
    model = onnx.load(str(flip.out_dir / "depth.onnx"))
    assert [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.input] == [[1, 3, H, W]]
    assert {node.op_type for node in model.graph.node} <= {
        "Conv", "Relu", "Elu", "Sigmoid", "Add", "Sub", "Mul", "Concat", "Slice", "Resize", "GlobalAveragePool",
        "ReduceMean", "Reciprocal", "Constant", "Identity"}

    def onnx_disparity(out_dir, image):
        sess = ort.InferenceSession(str(out_dir / "depth.onnx"), providers=["CPUExecutionProvider"])
        return sess.run(["disparity"], {"image": image})[0]

    image = _frames(7)[1]
    mirrored = np.ascontiguousarray(image[..., ::-1])
    with torch.no_grad():
        single = bundle.depth(torch.from_numpy(image))[0].numpy()
        of_mirror = bundle.depth(torch.from_numpy(mirrored))[0].numpy()[..., ::-1]
    assert _rel_close(onnx_disparity(plain.out_dir, image), single)
    averaged = onnx_disparity(flip.out_dir, image)
    assert _rel_close(averaged, 0.5 * (single + of_mirror))
    assert np.abs(averaged - single).max() > 1e-4  # the switch changes the output
    np.testing.assert_allclose(onnx_disparity(flip.out_dir, mirrored), averaged[..., ::-1], atol=1e-5)
    outputs = [create_backend(flip.out_dir, name=name, device="cpu", threads=1).infer(image, image)
               for name in ("onnxruntime", "torch")]
    np.testing.assert_allclose(outputs[0].disparity, averaged[0, 0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(outputs[1].disparity, averaged[0, 0], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="depth_flip_average"):
        export_bundle(bundle, cfg, tmp_path / "bad", intrinsics_normalized=K_NORM, depth_flip_average="yes")


def test_verify_files_detects_modified_onnx(lite_export, tmp_path):
    _, result = lite_export
    for name in result.card.files:  # the ONNX files and weights.safetensors
        (tmp_path / name).write_bytes((result.out_dir / name).read_bytes())
    verify_files(result.card, tmp_path)
    data = bytearray((tmp_path / "pose.onnx").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "pose.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelCardError, match="pose.onnx.*does not match"):
        verify_files(result.card, tmp_path)
    (tmp_path / "pose.onnx").write_bytes((result.out_dir / "pose.onnx").read_bytes())
    (tmp_path / "mask.onnx").unlink()
    with pytest.raises(ModelCardError, match="mask.onnx"):
        verify_files(result.card, tmp_path)


def _card_dict() -> dict:
    return {"format": MODEL_CARD_FORMAT, "input_height": 64, "input_width": 192, "min_depth": 0.1, "max_depth": 80.0,
            "encoder": "lite", "intrinsics_normalized": K_NORM, "files": {"depth.onnx": "a" * 64}}


@pytest.mark.parametrize("change, message", [
    ({"input_height": 60}, "input_height"), ({"input_width": "192"}, "input_width"),
    ({"min_depth": 0.0}, "min_depth"), ({"max_depth": 0.05}, "max_depth"),
    ({"scale_convention": "absolute"}, "scale_convention"), ({"intrinsics_normalized": [0.5, 1.0]}, "intrinsics"),
    ({"files": {"pose.onnx": "a" * 64}}, "depth.onnx"), ({"files": {"depth.onnx": "xyz"}}, "sha256"),
    ({"files": {"depth.onnx": "a" * 64, "evil.so": "a" * 64}}, "evil.so"), ({"opset": 13}, "opset"),
    ({"format": "other/v9"}, "format"), ({"colour": "red"}, "unknown field"),
])
def test_invalid_model_cards_rejected(tmp_path, change, message):
    assert ModelCard.from_dict(_card_dict()).input_width == 192  # the base card is valid
    path = tmp_path / "model_card.yaml"
    path.write_text(yaml.safe_dump(dict(_card_dict(), **change)))
    with pytest.raises(ModelCardError, match=message):
        read_model_card(path)


def test_model_card_missing_fields_and_unsafe_yaml(tmp_path):
    with pytest.raises(ModelCardError, match="not found"):
        read_model_card(tmp_path)
    card = _card_dict()
    del card["max_depth"]
    (tmp_path / "model_card.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ModelCardError, match="missing required field.*max_depth"):
        read_model_card(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "model_card.yaml").write_text(
        f"!!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ModelCardError, match="plain YAML"):
        read_model_card(tmp_path)
    assert not marker.exists()
    (tmp_path / "model_card.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ModelCardError, match="mapping"):
        read_model_card(tmp_path)


def test_resnet18_export_without_motion_net(tmp_path):
    cfg = {"encoder": "resnet18", "pose_encoder": "lite", "height": 64, "width": 64, "use_motion_net": False,
           "min_depth": 0.5, "max_depth": 80.0}
    (tmp_path / "mask.onnx").write_bytes(b"stale mask of an earlier export")
    bundle = build_models(cfg).train()
    result = export_bundle(bundle, cfg, tmp_path, intrinsics_normalized={"fx": 0.6, "fy": 1.9, "cx": 0.5, "cy": 0.5},
                           train_config={"scale_convention": "metric"})
    assert bundle.training and bundle.depth.encoder.training and bundle.pose.training  # mode restored
    bundle.eval()
    assert sorted(result.onnx_files) == ["depth.onnx", "pose.onnx"] and not (tmp_path / "mask.onnx").exists()
    card = read_model_card(tmp_path)
    assert not card.has_mask and card.scale_convention == "metric" and card.max_depth == 80.0
    prev, cur = _frames(2, 64, 64)
    disparity, depth = ort.InferenceSession(str(tmp_path / "depth.onnx")).run(None, {"image": cur})
    pose = ort.InferenceSession(str(tmp_path / "pose.onnx")).run(None, {"image_prev": prev, "image_cur": cur})[0]
    with torch.no_grad():
        assert _rel_close(disparity, bundle.depth(torch.from_numpy(cur))[0].numpy())
        assert _rel_close(pose, bundle.pose(torch.from_numpy(cur), torch.from_numpy(prev)).numpy())
    assert np.allclose(depth, disp_to_depth(torch.from_numpy(disparity), 0.5, 80.0)[1].numpy(), rtol=1e-5)


def test_export_argument_errors(tmp_path):
    bundle = build_models(LITE).train()
    with pytest.raises(ValueError, match="height"):
        export_bundle(bundle, LITE, tmp_path / "b", height=50, intrinsics_normalized=K_NORM)
    with pytest.raises(ValueError, match="opset"):
        export_bundle(bundle, LITE, tmp_path / "c", opset=13, intrinsics_normalized=K_NORM)
    with pytest.raises(ValueError, match="calibration"):
        export_bundle(bundle, LITE, tmp_path / "d", int8=True, intrinsics_normalized=K_NORM)
    with pytest.raises(ValueError, match="scale_convention"):
        export_bundle(bundle, LITE, tmp_path / "f", intrinsics_normalized=K_NORM, scale_convention="absolute")
    with pytest.raises(ValueError, match="use_motion_net"):
        export_bundle(bundle, dict(LITE, use_motion_net="no"), tmp_path / "e", intrinsics_normalized=K_NORM)
    assert not any((tmp_path / d).exists() for d in "abcdef")  # nothing written for bad arguments


def test_resolve_intrinsics_sources():
    assert resolve_intrinsics("0.5, 1.5, 0.5, 0.4") == [0.5, 1.5, 0.5, 0.4]
    assert resolve_intrinsics(None, {"data": {"extra": {"intrinsics_normalized": {"fx": 1, "fy": 2, "cx": 0.5,
                                                                                   "cy": 0.5}}}}) == [1, 2, 0.5, 0.5]
    assert resolve_intrinsics(None, {"intrinsics_normalized": [1, 1, 0.5, 0.5]},
                              {"intrinsics_normalized": [2, 2, 0.5, 0.5]}) == [2, 2, 0.5, 0.5]
    assert resolve_intrinsics(None, {"data": {}}, None) is None
    with pytest.raises(ValueError, match="fx, fy > 0"):
        resolve_intrinsics([-1, 1, 0.5, 0.5])


def test_cli_export_end_to_end(tmp_path, capsys):
    ckpt = tmp_path / "last.pt"
    torch.manual_seed(3)
    bundle = build_models(LITE)
    train_config = {"experiment": "cli", "data": {"height": H, "width": W, "intrinsics_normalized": K_NORM}}
    save_checkpoint(ckpt, bundle, LITE, train_config, step=5, epoch=1)
    out = tmp_path / "model"
    assert cli_main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert "parity pose.onnx:pose" in capsys.readouterr().out
    card = read_model_card(out)
    assert card.training_config == train_config and card.intrinsics_normalized == K_NORM
    verify_files(card, out)
    prev, cur = _frames(4)
    pose = ort.InferenceSession(str(out / "pose.onnx")).run(None, {"image_prev": prev, "image_cur": cur})[0]
    with torch.no_grad():
        assert _rel_close(pose, bundle.eval().pose(torch.from_numpy(cur), torch.from_numpy(prev)).numpy())

    assert cli_main(["export", "--checkpoint", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "x")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert cli_main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "y"), "--int8"]) == 2
    assert "--calib" in capsys.readouterr().err


def test_cli_re_export_of_a_model_dir_with_and_without_the_flip(tmp_path, capsys):
    """`depth-sfm export --checkpoint MODEL_DIR --depth-flip-average` re-exports from weights.safetensors (FP16-rounded
    weights), keeps the card's intrinsics and training config, and switches the test-time flip on and off again."""
    ckpt = tmp_path / "last.pt"
    torch.manual_seed(4)
    cfg = dict(LITE, use_motion_net=False)
    train_config = {"experiment": "cli", "data": {"height": H, "width": W}}  # intrinsics only given at export
    save_checkpoint(ckpt, build_models(cfg), cfg, train_config, step=5, epoch=1)
    first, flipped, back = tmp_path / "first", tmp_path / "flipped", tmp_path / "back"
    assert cli_main(["export", "--checkpoint", str(ckpt), "--out", str(first),
                     "--intrinsics", ",".join(map(str, K_NORM))]) == 0
    assert cli_main(["export", "--checkpoint", str(first), "--out", str(flipped), "--depth-flip-average"]) == 0
    assert cli_main(["export", "--checkpoint", str(flipped), "--out", str(back), "--no-depth-flip-average"]) == 0
    capsys.readouterr()
    cards = [read_model_card(d) for d in (first, flipped, back)]
    assert [c.model_config["depth_flip_average"] for c in cards] == [False, True, False]
    assert all(c.intrinsics_normalized == K_NORM and c.training_config == train_config for c in cards)
    assert cards[1].metrics["re_exported_from"] == str(first)
    image = _frames(5)[1]
    disparity = [ort.InferenceSession(str(d / "depth.onnx")).run(["disparity"], {"image": image})[0]
                 for d in (first, flipped, back)]
    np.testing.assert_allclose(disparity[2], disparity[0], rtol=5e-3, atol=1e-4)  # FP16-rounded weights
    assert np.abs(disparity[1] - disparity[0]).max() > 10 * np.abs(disparity[2] - disparity[0]).max()
    assert cli_main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "z")]) == 2
    assert "weights.safetensors" in capsys.readouterr().err


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the behaviour without TensorRT")
def test_cli_export_without_tensorrt_and_intrinsics(tmp_path, capsys):
    cfg = dict(LITE, use_motion_net=False)
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, build_models(cfg), cfg, {"experiment": "no intrinsics recorded"}, step=0, epoch=0)
    # --fp16 without TensorRT: the ONNX export stands (exit 0); unknown intrinsics -> null + a warning
    assert cli_main(["export", "--checkpoint", str(bare), "--out", str(tmp_path / "fp16"), "--fp16", "--no-verify",
                     "--width", "64"]) == 0
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and "--intrinsics" in err
    card = read_model_card(tmp_path / "fp16")
    assert card.intrinsics_normalized is None and card.input_width == 64 and not card.has_mask
    verify_files(card, tmp_path / "fp16")
    # --engine without TensorRT fails (exit 1) after writing the ONNX files; --intrinsics fills the card
    assert cli_main(["export", "--checkpoint", str(bare), "--out", str(tmp_path / "eng"), "--engine", "--no-verify",
                     "--width", "64", "--intrinsics", "0.6,1.9,0.5,0.5"]) == 1
    assert "TensorRT is not installed" in capsys.readouterr().err
    assert read_model_card(tmp_path / "eng").intrinsics_normalized == [0.6, 1.9, 0.5, 0.5]


def test_calibration_images_from_folder(tmp_path):
    red_bgr = np.zeros((40, 120, 3), np.uint8)
    red_bgr[..., 2] = 255
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i:06d}.png"), red_bgr)
    cv2.imwrite(str(tmp_path / "000005.png"), np.full((40, 120), 128, np.uint8))  # grey frames are accepted too
    (tmp_path / "notes.txt").write_text("not an image")
    frames = load_calibration_images(tmp_path, 32, 64, max_images=8)
    assert frames.shape == (6, 3, 32, 64) and frames.dtype == np.float32
    assert np.allclose(frames[0, 0], 1.0) and np.allclose(frames[0, 1:], 0.0)  # RGB order, [0, 1]
    assert np.allclose(frames[5], 128 / 255, atol=1e-6)
    assert load_calibration_images(tmp_path, 32, 64, max_images=3).shape[0] == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_calibration_images(empty, 32, 64)
    with pytest.raises(FileNotFoundError):
        load_calibration_images(tmp_path / "absent", 32, 64)


def test_calibration_images_from_bag(tmp_path):
    rosbags_io = pytest.importorskip("depth_sfm_ros.bag.rosbags_io")
    bag = tmp_path / "calib_bag"
    with rosbags_io.BagWriter(bag) as writer:
        for i in range(4):
            image = np.zeros((40, 120, 3), np.uint8)
            image[..., 1] = 60 * i  # green ramp over time, rgb8
            writer.write("/camera/image_raw", rosbags_io.image_to_msg(image, "rgb8", 1000 + i, "cam"), 1000 + i)
    frames = load_calibration_images(bag, 32, 64, max_images=4)
    assert frames.shape == (4, 3, 32, 64)
    assert np.allclose(frames[:, 1].mean(axis=(1, 2)), [0, 60 / 255, 120 / 255, 180 / 255], atol=1e-6)
    assert np.allclose(frames[:, [0, 2]], 0.0)
    with pytest.raises(ValueError, match="not an image topic"):
        load_calibration_images(bag, 32, 64, topic="/gt/odom")


def test_export_of_a_lite_small_motion_encoder_and_its_weights_file(tmp_path):
    # the mask net with a pose-sized encoder (model.motion_encoder_init: pose) exports and reloads like the default
    from depth_sfm_ros.models.weights_file import load_bundle_weights, weights_path_of

    cfg = {**LITE, "pose_encoder": "lite_small", "motion_encoder": "lite_small"}
    torch.manual_seed(1)
    bundle = build_models(cfg).eval()
    result = export_bundle(bundle, cfg, tmp_path, intrinsics_normalized=K_NORM, train_config={})
    prev, cur = _frames(3)
    prob = ort.InferenceSession(str(tmp_path / "mask.onnx")).run(None, {"image_prev": prev, "image_cur": cur})[0]
    with torch.no_grad():
        assert _rel_close(prob, bundle.motion(torch.from_numpy(prev), torch.from_numpy(cur))[1].numpy())
    state, saved = load_bundle_weights(weights_path_of(tmp_path))  # export writes the weights by default
    assert saved["motion_encoder"] == "lite_small" and "mask.onnx" in result.onnx_files
    build_models(saved).motion.load_state_dict({k: v.float() for k, v in state["motion"].items()})
