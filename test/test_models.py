"""Networks, model config, torchvision-style weights and checkpoints (depth_sfm_ros.models)."""
from __future__ import annotations

import pickle

import pytest
import torch

from depth_sfm_ros.models import (CHECKPOINT_FORMAT, CheckpointError, DepthNet, LiteEncoder, MotionNet, ObjPoseNet,
                                  PoseNet, ResNetEncoder, build_from_checkpoint, build_models, count_parameters,
                                  disp_to_depth, load_checkpoint, save_checkpoint, validate_model_config)
from depth_sfm_ros.models.encoders import build_encoder
from depth_sfm_ros.models.layers import reflection_pad1
from depth_sfm_ros.models.runtime_wrappers import load_runtime_modules

SIZES = [(64, 96), (96, 128)]  # two resolutions, multiples of 32


def _images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ layers
def test_disp_to_depth_range_and_monotonic():
    disp = torch.linspace(0, 1, 11)
    scaled, depth = disp_to_depth(disp, 0.1, 100.0)
    assert depth[0].item() == pytest.approx(100.0) and depth[-1].item() == pytest.approx(0.1)
    assert torch.all(depth[1:] < depth[:-1])
    assert torch.allclose(scaled * depth, torch.ones_like(depth))
    with pytest.raises(ValueError, match="min_depth"):
        disp_to_depth(disp, 5.0, 1.0)


def test_reflection_pad_matches_torch():
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(reflection_pad1(x), torch.nn.ReflectionPad2d(1)(x))


# ------------------------------------------------------------------------------------------ encoders
@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "lite"])
@pytest.mark.parametrize("size", SIZES)
def test_encoder_feature_shapes(name, size):
    h, w = size
    enc = build_encoder(name, num_input_images=2).eval()
    with torch.no_grad():
        feats = enc(torch.rand(1, 6, h, w))
    assert len(feats) == 5
    for level, (f, ch) in enumerate(zip(feats, enc.num_ch_enc)):
        assert f.shape == (1, ch, h // 2 ** (level + 1), w // 2 ** (level + 1))


def test_encoder_rejects_bad_input():
    enc = LiteEncoder()
    with pytest.raises(ValueError, match="multiples of 32"):
        enc(torch.rand(1, 3, 50, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        enc(torch.rand(1, 6, 64, 64))
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("vgg16")
    with pytest.raises(ValueError, match="ResNet encoders only"):
        build_encoder("lite", weights_path="x.pth")


def _fake_torchvision_state(name: str, seed: int) -> dict[str, torch.Tensor]:
    """A state dict named like torchvision's resnet: our encoder's keys, random values, plus the classifier."""
    gen = torch.Generator().manual_seed(seed)
    state = {k: (torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone())
             for k, v in ResNetEncoder(name).state_dict().items()}
    for key in [k for k in state if k.endswith("running_var")]:
        state[key] = state[key].abs() + 0.5  # variances are positive
    state["fc.weight"] = torch.randn(1000, 512 if name != "resnet50" else 2048, generator=gen)
    state["fc.bias"] = torch.randn(1000, generator=gen)
    return state


def test_resnet_uses_torchvision_parameter_names():
    sd18 = ResNetEncoder("resnet18").state_dict()
    expected18 = {"conv1.weight": (64, 3, 7, 7), "bn1.running_mean": (64,), "layer1.0.conv1.weight": (64, 64, 3, 3),
                  "layer2.0.downsample.0.weight": (128, 64, 1, 1), "layer2.0.downsample.1.running_var": (128,),
                  "layer4.1.bn2.weight": (512,)}
    for key, shape in expected18.items():
        assert tuple(sd18[key].shape) == shape, key
    assert not any(k.startswith("layer1.0.downsample") for k in sd18)  # identity shortcut in torchvision too
    sd50 = ResNetEncoder("resnet50").state_dict()
    expected50 = {"layer1.0.conv3.weight": (256, 64, 1, 1), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
                  "layer3.5.bn3.weight": (1024,), "layer4.0.conv2.weight": (512, 512, 3, 3)}
    for key, shape in expected50.items():
        assert tuple(sd50[key].shape) == shape, key
    assert "layer3.6.conv1.weight" not in sd50 and "layer3.5.conv1.weight" in sd50  # 6 blocks in stage 3


def test_load_torchvision_weights_single_and_multi_frame(tmp_path):
    state = _fake_torchvision_state("resnet18", seed=1)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(state, path)
    enc = ResNetEncoder("resnet18", weights_path=str(path))
    assert enc.weights_report.missing_keys == [] and enc.weights_report.unexpected_keys == []
    loaded = enc.state_dict()
    for key in ("conv1.weight", "layer3.1.conv2.weight", "layer2.0.downsample.1.running_mean"):
        assert torch.equal(loaded[key], state[key])
    # two stacked frames: conv1 repeated per frame and divided by 2, so identical frames respond the same
    pose_enc = ResNetEncoder("resnet18", num_input_images=2, weights_path=str(path))
    w2 = pose_enc.conv1.weight.detach()
    assert w2.shape == (64, 6, 7, 7)
    assert torch.allclose(w2[:, :3], state["conv1.weight"] / 2) and torch.allclose(w2[:, 3:], state["conv1.weight"] / 2)
    depth_net = DepthNet("resnet18", weights_path=str(path))  # the model_config route
    assert torch.equal(depth_net.encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    enc.eval(), pose_enc.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(enc(x)[0], pose_enc(torch.cat([x, x], 1))[0], rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_load_torchvision_weights_reports_and_rejects(tmp_path):
    state = _fake_torchvision_state("resnet18", seed=2)
    deeper = dict(state, **{"layer3.5.conv1.weight": torch.zeros(256, 256, 3, 3)})  # a ResNet-34-only key
    torch.save(deeper, tmp_path / "r34.pth")
    report = ResNetEncoder("resnet18").load_torchvision_weights(tmp_path / "r34.pth")
    assert report.unexpected_keys == ["layer3.5.conv1.weight"] and report.missing_keys == []
    partial = {k: v for k, v in state.items() if not k.startswith("layer4")}
    torch.save(partial, tmp_path / "partial.pth")
    report = ResNetEncoder("resnet18").load_torchvision_weights(tmp_path / "partial.pth")
    assert "layer4.0.conv1.weight" in report.missing_keys
    bottleneck = dict(state, **{"layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)})  # ResNet-50 shape
    torch.save(bottleneck, tmp_path / "r50.pth")
    with pytest.raises(ValueError, match="layer1.0.conv1.weight"):
        ResNetEncoder("resnet18").load_torchvision_weights(tmp_path / "r50.pth")
    with pytest.raises(FileNotFoundError):
        ResNetEncoder("resnet18").load_torchvision_weights(tmp_path / "absent.pth")
    torch.save({"not": "tensors"}, tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="state_dict"):
        ResNetEncoder("resnet18").load_torchvision_weights(tmp_path / "junk.pth")
    (tmp_path / "evil.pth").write_bytes(pickle.dumps(_Payload(str(tmp_path / "pwned"))))
    with pytest.raises(ValueError, match="weights-only"):
        ResNetEncoder("resnet18").load_torchvision_weights(tmp_path / "evil.pth")
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------------------ DepthNet
@pytest.mark.parametrize("encoder", ["resnet18", "resnet34", "resnet50", "lite"])
def test_depth_net_scales_train_vs_eval(encoder):
    h, w = SIZES[0]
    net = DepthNet(encoder, num_scales=4)
    x = _images(2, h, w)
    with torch.no_grad():
        train_out = net.train()(x)
        eval_out = net.eval()(x)
    assert isinstance(train_out, tuple) and len(train_out) == 4
    for s, disp in enumerate(train_out):
        assert disp.shape == (2, 1, h // 2 ** s, w // 2 ** s)
        assert disp.min() > 0 and disp.max() < 1
    assert isinstance(eval_out, tuple) and len(eval_out) == 1 and eval_out[0].shape == (2, 1, h, w)
    with torch.no_grad():
        assert len(net(x, all_scales=True)) == 4  # explicit override in eval


@pytest.mark.parametrize("size", SIZES)
def test_depth_net_lite_two_resolutions_and_export_mode(size):
    h, w = size
    net = DepthNet("lite", num_scales=3).train()
    net.export_mode = True
    out = net(_images(1, h, w))
    assert len(out) == 1 and out[0].shape == (1, 1, h, w)
    net.export_mode = False
    assert [d.shape[-1] for d in net(_images(1, h, w))] == [w, w // 2, w // 4]


def test_depth_net_normalises_inside_and_checks_input():
    net = DepthNet("lite").eval()
    with torch.no_grad():
        a = net(torch.zeros(1, 3, 64, 64))[0]
        b = net(torch.ones(1, 3, 64, 64))[0]
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, 60, 64))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(1, 1, 64, 64))
    with pytest.raises(TypeError, match="float"):
        net(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown encoder"):
        DepthNet("resnet101")


@pytest.mark.parametrize("batch", [1, 3])
def test_depth_net_predict_flip_average_is_mirror_equivariant(batch):
    """depth_flip_average: predict = (d(x) + mirror(d(mirror(x)))) / 2, hence predict(mirror(x)) = mirror(predict(x)).
    Without it an (asymmetric, random) net is not mirror-equivariant: the switch changes the output."""
    h, w = SIZES[0]
    plain = build_models({"encoder": "lite", "use_motion_net": False}).depth.eval()
    flip = build_models({"encoder": "lite", "use_motion_net": False, "depth_flip_average": True}).depth.eval()
    flip.load_state_dict(plain.state_dict())
    assert flip.flip_average and not plain.flip_average
    x = _images(batch, h, w, seed=3)
    mirror = lambda t: torch.flip(t, dims=[3])  # noqa: E731
    with torch.no_grad():
        single, mirrored = plain.predict(x), mirror(plain(mirror(x), all_scales=False)[0])
        averaged = flip.predict(x)
        assert single.shape == averaged.shape == (batch, 1, h, w)
        assert torch.allclose(single, plain(x, all_scales=False)[0])
        assert torch.allclose(averaged, 0.5 * (single + mirrored), atol=1e-6)
        assert torch.allclose(flip.predict(mirror(x)), mirror(averaged), atol=1e-6)
        assert (plain.predict(mirror(x)) - mirror(single)).abs().max() > 1e-4
        for i in range(batch):  # the batch of 2B keeps every image with its own mirror image
            assert torch.allclose(flip.predict(x[i:i + 1]), averaged[i:i + 1], atol=1e-6)


def test_depth_net_predict_flip_average_gradient_is_mirror_equivariant():
    """The flip path is differentiable (adaptation fine-tunes through it) and its input gradient of a mirrored
    objective is the mirrored gradient."""
    net = DepthNet("lite", flip_average=True).eval()
    x = _images(1, 64, 96, seed=4).requires_grad_(True)
    weight = torch.rand(1, 1, 64, 96, generator=torch.Generator().manual_seed(5))
    (grad,) = torch.autograd.grad((net.predict(x) * weight).sum(), x)
    xm = torch.flip(x.detach(), dims=[3]).requires_grad_(True)
    (grad_m,) = torch.autograd.grad((net.predict(xm) * torch.flip(weight, dims=[3])).sum(), xm)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert torch.allclose(torch.flip(grad_m, dims=[3]), grad, atol=1e-6, rtol=1e-4)


def test_parameter_counts():
    lite = count_parameters(DepthNet("lite"))
    r18 = count_parameters(DepthNet("resnet18"))
    print(f"\nparameters: lite depth {lite / 1e6:.2f}M, resnet18 depth {r18 / 1e6:.2f}M, "
          f"motion {count_parameters(MotionNet()) / 1e6:.2f}M, obj_pose {count_parameters(ObjPoseNet()) / 1e6:.2f}M")
    assert 2.0e6 <= lite <= 4.0e6  # Lite-Mono class
    assert 14.0e6 <= r18 <= 15.0e6  # monodepth2 ResNet-18 depth net: 14.3M
    assert count_parameters(MotionNet()) < 0.5e6 < count_parameters(MotionNet("lite_small")) < 1.0e6


def test_motion_net_encoders_and_the_bundle_key():
    small = MotionNet("lite_small")  # the encoder of a lite_small PoseNet: same parameter names and shapes
    pose = PoseNet("lite_small").encoder.state_dict()
    assert {k: v.shape for k, v in small.encoder.state_dict().items()} == {k: v.shape for k, v in pose.items()}
    with pytest.raises(ValueError, match="MotionNet encoder"):
        MotionNet("resnet18")
    assert validate_model_config({})["motion_encoder"] == "lite_motion"
    assert build_models({"motion_encoder": "lite_small", "height": 64, "width": 64}).motion.encoder_name == "lite_small"
    with pytest.raises(ValueError, match="motion_encoder"):
        validate_model_config({"motion_encoder": "big"})


# ------------------------------------------------------------------------------------------ pose / motion
@pytest.mark.parametrize("encoder", ["resnet18", "lite"])
@pytest.mark.parametrize("size", SIZES)
def test_pose_net_shape_and_small_start(encoder, size):
    h, w = size
    net = PoseNet(encoder).eval()
    a, b = _images(2, h, w, 1), _images(2, h, w, 2)
    with torch.no_grad():
        pose_ab, pose_ba = net(a, b), net(b, a)
    assert pose_ab.shape == (2, 6)
    assert pose_ab.abs().max() < 0.1  # 0.01 output scaling: training starts near identity
    assert not torch.allclose(pose_ab, pose_ba)  # frame order matters


def test_pose_net_context_frames_and_errors():
    net = PoseNet("lite", num_input_frames=3)
    x = _images(1, 64, 64)
    assert net(x, x, x).shape == (1, 6)
    with pytest.raises(ValueError, match="3 frames"):
        net(x, x)
    with pytest.raises(ValueError, match="image_src"):
        net(x, _images(1, 64, 96), x)
    with pytest.raises(ValueError, match="PoseNet encoder"):
        PoseNet("resnet50")
    with pytest.raises(ValueError, match="num_input_frames"):
        PoseNet("lite", num_input_frames=1)


@pytest.mark.parametrize("size", SIZES)
def test_obj_pose_net_per_instance(size):
    h, w = size
    net = ObjPoseNet().eval()
    inter, tgt = _images(2, h, w, 3), _images(2, h, w, 4)
    masks = torch.zeros(2, 3, h, w)
    masks[0, 0, : h // 2, : w // 2] = 1
    masks[0, 1, h // 2:, w // 2:] = 1
    masks[1, 0, :, : w // 3] = 1  # instance 2 of image 0 and instances 1, 2 of image 1 are empty (padding)
    with torch.no_grad():
        poses = net(inter, tgt, masks)
    assert poses.shape == (2, 3, 6)
    assert torch.all(poses[0, 2] == 0) and torch.all(poses[1, 1:] == 0)
    assert poses[0, 0].abs().sum() > 0 and not torch.allclose(poses[0, 0], poses[0, 1])
    with torch.no_grad():  # an instance's pose depends only on the pixels inside its mask
        inter2 = inter.clone()
        inter2[0, :, h // 2:, w // 2:] = 0.5
        poses2 = net(inter2, tgt, masks)
    assert torch.allclose(poses2[0, 0], poses[0, 0], atol=1e-6) and not torch.allclose(poses2[0, 1], poses[0, 1])
    assert net(inter, tgt, masks[:, :0]).shape == (2, 0, 6)
    with pytest.raises(ValueError, match="instance_masks"):
        net(inter, tgt, masks[0])


@pytest.mark.parametrize("size", SIZES)
def test_motion_net_outputs_and_gradients(size):
    h, w = size
    net = MotionNet().train()
    prev, cur = _images(2, h, w, 5), _images(2, h, w, 6)
    motion, prob = net(prev, cur)
    assert motion.shape == (2, 3, h, w) and prob.shape == (2, 1, h, w)
    assert prob.min() >= 0 and prob.max() <= 1
    assert 0.01 < prob.mean().item() < 0.15  # starts mostly static (bias -3)
    assert motion.abs().max() == 0  # the flow head starts at zero: the rigid warp alone
    (motion.sum() + prob.mean()).backward()
    head = net.decoder.heads[0].conv
    assert head.weight.grad[:3].abs().sum() > 0  # ... but it learns
    assert net.encoder.stem[0][0].weight.grad.abs().sum() > 0
    with torch.no_grad():  # the flow is not gated by the mask (the mask is distilled from the flow)
        head.weight[:3].normal_(0.0, 0.1)
        head.bias[3] = -60.0
        motion_free, prob_static = net(prev, cur)
    assert prob_static.max() < 1e-20 and motion_free.abs().max() > 1e-3
    with pytest.raises(ValueError, match="differ"):
        net(prev, cur[:, :, :32])


# ------------------------------------------------------------------------------------------ config / bundle
def test_model_config_validation():
    cfg = validate_model_config({"encoder": "resnet18", "height": 128})
    assert cfg["encoder"] == "resnet18" and cfg["height"] == 128 and cfg["width"] == 640
    bad = [({"encodr": "lite"}, "encodr"), ({"encoder": "vgg"}, "encoder"), ({"height": 100}, "height"),
           ({"width": True}, "width"), ({"min_depth": 10.0, "max_depth": 5.0}, "max_depth"),
           ({"min_depth": -1}, "min_depth"), ({"num_scales": 5}, "num_scales"),
           ({"use_motion_net": "yes"}, "use_motion_net"), ({"weights_path": "w.pth"}, "weights_path"),
           ({"pose_encoder": "resnet34"}, "pose_encoder"), ({"depth_flip_average": 1}, "depth_flip_average")]
    for override, key in bad:
        with pytest.raises(ValueError, match=key):
            validate_model_config(override)


def test_build_models_optional_nets():
    full = build_models({"use_motion_net": True, "use_obj_pose": True})
    assert isinstance(full.motion, MotionNet) and isinstance(full.obj_pose, ObjPoseNet)
    counts = full.parameter_counts()
    assert counts["obj_pose"] > 0 and counts["motion"] > 0
    bare = build_models({"use_motion_net": False})
    assert bare.motion is None and bare.obj_pose is None and bare.parameter_counts()["motion"] == 0


# ------------------------------------------------------------------------------------------ checkpoints
CFG = {"encoder": "lite", "pose_encoder": "lite", "height": 64, "width": 96, "use_motion_net": True}


def _perturb(bundle, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in bundle.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))


def test_checkpoint_round_trip(tmp_path):
    bundle = build_models(CFG)
    _perturb(bundle)
    # an optimizer.state_dict()-shaped value (torch.optim itself takes seconds to import here)
    optimizer_state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(4)}},
                       "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}]}
    train_config = {"data": {"height": 64, "frame_offsets": (0, -1, 1)}, "lr": 1e-4}
    path = save_checkpoint(tmp_path / "ckpt" / "last.pt", bundle, CFG, train_config, step=12, epoch=3,
                           optimizer_state=optimizer_state, extra={"intrinsics_normalized": [0.5, 1.6, 0.5, 0.5]})
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind
    data = load_checkpoint(path)
    assert data["format"] == CHECKPOINT_FORMAT and data["step"] == 12 and data["epoch"] == 3
    assert data["train_config"] == {"data": {"height": 64, "frame_offsets": [0, -1, 1]}, "lr": 1e-4}
    assert data["extra"]["intrinsics_normalized"] == [0.5, 1.6, 0.5, 0.5]
    assert set(data["state_dict"]) == {"depth", "pose", "motion", "obj_pose"} and data["state_dict"]["obj_pose"] is None
    assert torch.equal(data["optimizer"]["state"][0]["exp_avg"], optimizer_state["state"][0]["exp_avg"])
    assert data["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    rebuilt, cfg = build_from_checkpoint(path)
    assert cfg == validate_model_config(CFG) and not rebuilt.training
    bundle.eval()
    a, b = _images(1, 64, 96, 7), _images(1, 64, 96, 8)
    with torch.no_grad():
        assert torch.equal(rebuilt.depth(a)[0], bundle.depth(a)[0])
        assert torch.equal(rebuilt.pose(a, b), bundle.pose(a, b))
        assert torch.equal(rebuilt.motion(a, b)[1], bundle.motion(a, b)[1])
        runtime = load_runtime_modules(path)
        assert torch.equal(runtime.pose(b, a), bundle.pose(a, b))  # runtime order: (prev, cur) -> T_prev_cur
        assert torch.equal(runtime.mask(a, b), bundle.motion(a, b)[1])


def test_checkpoint_rejects_bad_arguments(tmp_path):
    bundle = build_models(CFG)
    with pytest.raises(ValueError, match="train_config"):
        save_checkpoint(tmp_path / "x.pt", bundle, CFG, {"dataset": object()}, step=0, epoch=0)
    with pytest.raises(ValueError, match="use_motion_net"):
        save_checkpoint(tmp_path / "x.pt", bundle, dict(CFG, use_motion_net=False), {}, step=0, epoch=0)
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(tmp_path / "x.pt", bundle, CFG, {}, step=-1, epoch=0)
    assert not (tmp_path / "x.pt").exists()


def test_checkpoint_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "absent.pt")
    bundle = build_models(dict(CFG, use_motion_net=False))
    good = save_checkpoint(tmp_path / "good.pt", bundle, dict(CFG, use_motion_net=False), {}, step=1, epoch=0)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(truncated)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a depth_sfm_ros checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    data = load_checkpoint(good)
    data["format"] = "depth_sfm_ros/checkpoint/v2"
    torch.save(data, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="v2"):
        load_checkpoint(tmp_path / "future.pt")
    data = load_checkpoint(good)
    data["model_config"] = dict(data["model_config"], encoder="resnet18")  # weights do not fit
    torch.save(data, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        build_from_checkpoint(tmp_path / "mismatch.pt")


class _Payload:
    """Unpickling this object would run code (write a marker file)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('executed')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_malicious_pickle_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": {}, "payload": _Payload(str(marker))}, evil)
    # the payload is real: an unrestricted unpickler executes it
    with open(evil, "rb") as handle:
        torch.load(handle, weights_only=False)
    assert marker.read_text() == "executed"
    marker.unlink()
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(evil)
    assert not marker.exists()
    plain = tmp_path / "evil.pkl"  # a plain (non-zip) pickle file
    plain.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)
    assert not marker.exists()
