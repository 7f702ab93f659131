"""How the trainer feeds the losses: the depth prior of the normal losses, the auto-weight masks, the ranking
loss's generator and the instance-id relabelling (CPU, lite networks, a tiny synthetic sequence)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from depth_sfm_training.config import CONFIG_DIR, ConfigError, load_config

H, W = 64, 128


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    from depth_sfm_ros.synth import SynthConfig, render_sequence
    from depth_sfm_ros.synth.kitti import write_kitti_folder

    root = tmp_path_factory.mktemp("synth")
    seq = render_sequence(SynthConfig(seed=1, width=W, height=H, num_frames=5))
    write_kitti_folder(seq.frames, seq.intrinsics, root / "train")
    return root


def _config(synth_root: Path, name: str, *overrides: str) -> dict:
    base = ["model.encoder=lite", "model.pose_encoder=lite", f"data.height={H}", f"data.width={W}",
            "data.dataset=synthetic", f"data.path={synth_root / 'train'}", "data.extra={}", "data.val_path=null",
            "data.split=null", "train.batch_size=1", "train.num_workers=0", "train.max_steps=1",
            "log.progress_bar=false", "log.tensorboard=false", "data.augment=false"]
    return load_config(CONFIG_DIR / f"{name}.yaml", base + list(overrides))


def _prior_bundle(seed: int = 123):
    from depth_sfm_ros.models import build_models, validate_model_config

    torch.manual_seed(seed)
    cfg = validate_model_config({"encoder": "lite", "pose_encoder": "lite", "height": H, "width": W,
                                 "min_depth": 0.5, "max_depth": 50.0})
    return build_models(cfg), cfg


@pytest.fixture(scope="module")
def prior_files(tmp_path_factory) -> dict[str, Path]:
    """The same prior networks as a training checkpoint (.pt) and as an exported model directory."""
    from depth_sfm_ros.models import save_checkpoint
    from depth_sfm_ros.models.weights_file import save_bundle_weights

    bundle, cfg = _prior_bundle()
    root = tmp_path_factory.mktemp("prior")
    (root / "model_dir").mkdir()
    return {"pt": save_checkpoint(root / "prior.pt", bundle, cfg, None, step=7, epoch=0),
            "dir": save_bundle_weights(bundle, cfg, root / "model_dir" / "weights.safetensors").parent}


# --- defect 4: the normal / ranking losses' prior is an independent, trained model ------------------------------

def test_normal_losses_refuse_to_run_without_a_prior_checkpoint(synth_root, capsys):
    from depth_sfm_ros.cli import main
    from depth_sfm_training.trainer import Trainer

    config = _config(synth_root, "normal_losses")
    assert config["depth_prior"]["source"] == "checkpoint" and config["depth_prior"]["checkpoint"] is None
    with pytest.raises(ConfigError, match="depth_prior.checkpoint"):
        Trainer(config, None)
    args = ["train", "--config", "normal_losses", "model.encoder=lite", "model.pose_encoder=lite",
            f"data.height={H}", f"data.width={W}", f"data.path={synth_root / 'train'}", "train.max_steps=1"]
    assert main(args) == 2
    assert "depth_prior.checkpoint" in capsys.readouterr().err
    # the snapshot of the run's own net is still there, but only when asked for
    trainer = Trainer(_config(synth_root, "normal_losses", "depth_prior.source=snapshot"), None)
    assert trainer.prior.mode == "snapshot"


@pytest.mark.parametrize("kind", ["pt", "dir"])
def test_depth_prior_is_the_frozen_depth_net_of_a_checkpoint_or_model_dir(synth_root, prior_files, kind):
    from depth_sfm_training.trainer import Trainer

    trainer = Trainer(_config(synth_root, "normal_losses", f"depth_prior.checkpoint={prior_files[kind]}"), None)
    reference, reference_cfg = _prior_bundle()
    prior = trainer.prior
    assert prior.net is not trainer.bundle.depth
    assert (prior.min_depth, prior.max_depth) == (reference_cfg["min_depth"], reference_cfg["max_depth"])
    tolerance = 1e-3 if kind == "dir" else 0.0  # the model directory stores FP16 weights
    for key, value in reference.depth.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(prior.net.state_dict()[key], value, atol=tolerance, rtol=tolerance, msg=key)
    assert not any(p.requires_grad for p in prior.net.parameters())
    before = {k: v.clone() for k, v in prior.net.state_dict().items()}
    batch = trainer._to_device(next(trainer._batches())[1])
    values, _, inputs = trainer.train_step(batch)
    assert math.isfinite(values["total"]) and values["normal"] > 0 and values["ranking"] >= 0
    for key, value in prior.net.state_dict().items():
        assert torch.equal(value, before[key]), key  # frozen: not trained, not updated
    own = trainer.bundle.depth
    own.eval()
    with torch.no_grad():
        own_depth = own.to_depth(own.predict(batch["images"][:, 0]))
        prior_depth = reference.depth.eval().to_depth(reference.depth.predict(batch["images"][:, 0].cpu()))
    # the prior is the checkpoint's depth net, not this run's (both compared in depth units)
    torch.testing.assert_close(inputs.depth_prior.cpu(), prior_depth, atol=0.05, rtol=0.02)
    assert not torch.allclose(inputs.depth_prior, own_depth, atol=0.05, rtol=0.02)


# --- defect 3: auto-weight masks must come from the dataset or a trained motion net ----------------------------

def test_auto_weight_refuses_masks_from_an_untrained_motion_net(synth_root):
    from depth_sfm_training.forward import ForwardOutputs
    from depth_sfm_training.loss_adapter import build_loss_inputs
    from depth_sfm_training.losses import LossConfig

    with pytest.raises(ConfigError, match="losses.auto_weight"):
        _config(synth_root, "auto_weight_less_dynamic", "model.use_motion_net=true", "data.use_dynamic_masks=false")
    # with the flow3d terms training the motion net's probability it is accepted; dataset masks always are
    _config(synth_root, "auto_weight_less_dynamic", "model.use_motion_net=true", "data.use_dynamic_masks=false",
            "losses.flow3d=true")
    _config(synth_root, "auto_weight_less_dynamic", "data.use_dynamic_masks=true")
    # at run time: a dataset without masks and no flow3d -> refused, not silently weight 1
    b, s = 2, 2
    outputs = ForwardOutputs(disps=[torch.full((b, 1, H, W), 0.5)], depths=[torch.full((b, 1, H, W), 5.0)],
                             T_src_tgt=[torch.eye(4).expand(b, 4, 4)] * s,
                             flow3d=[torch.zeros(b, 3, H, W)] * s, dynamic_prob=[torch.full((b, 1, H, W), 0.05)] * s)
    batch = {"images": torch.rand(b, 1 + s, 3, H, W), "K": torch.eye(3).expand(b, 3, 3),
             "has_dynamic_mask": torch.zeros(b, dtype=torch.bool)}
    with pytest.raises(ValueError, match="flow3d is off"):
        build_loss_inputs(outputs, batch, None, LossConfig(auto_weight="less_dynamic_more_weight"))
    inputs = build_loss_inputs(outputs, batch, None, LossConfig(auto_weight="less_dynamic_more_weight", flow3d=True))
    assert inputs.dynamic_masks is not None and inputs.dynamic_masks.sum() == 0


# --- defect 5: the ranking loss's generator lives on the trainer's device ---------------------------------------

def test_trainer_makes_the_ranking_generator_on_its_device(synth_root, prior_files, monkeypatch):
    import depth_sfm_training.trainer as trainer_module
    from depth_sfm_training.losses import normals

    made, used = [], []
    real_sampling_generator, real_pairs = normals.sampling_generator, normals.edge_guided_pairs

    def recording_generator(device, seed):
        made.append(torch.device(device))
        return real_sampling_generator(device, seed)

    def recording_pairs(guide, num_pairs=1024, generator=None, **kw):
        used.append((guide.device, None if generator is None else generator.device))
        return real_pairs(guide, num_pairs, generator, **kw)

    monkeypatch.setattr(trainer_module, "sampling_generator", recording_generator)
    monkeypatch.setattr("depth_sfm_training.losses.compose.edge_guided_pairs", recording_pairs)
    trainer = trainer_module.Trainer(_config(synth_root, "normal_losses",
                                             f"depth_prior.checkpoint={prior_files['pt']}"), None)
    trainer.train_step(trainer._to_device(next(trainer._batches())[1]))
    assert made == [trainer.device]
    assert used and all(guide == gen for guide, gen in used)


# --- defect 6: one relabelling function for the forward pass and the losses -------------------------------------

def test_forward_pass_and_losses_share_one_relabelling():
    from depth_sfm_training import forward
    from depth_sfm_training.losses import instance_ids

    assert forward.relabel_instances is instance_ids.relabel_instances
    ids = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    ids[0, 0, :2, :2] = 26001
    ids[1, 0, 2:, 2:] = 33002
    ids[1, 0, :1, :1] = 26001
    # over the batch (Obj-PoseNet slots): the same object keeps its label in every frame; largest objects kept
    assert forward.relabel_instances(ids).unique().tolist() == [0, 1, 2]
    assert forward.relabel_instances(ids, max_objects=1).unique().tolist() == [0, 1]
    assert forward.relabel_instances(ids, max_objects=1)[0, 0, 0, 0] == 1  # 26001: 5 pixels, 33002: 4
