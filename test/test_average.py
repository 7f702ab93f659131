"""`depth-sfm average`: the weight average of checkpoints of one run (depth_sfm_training.average)."""
from __future__ import annotations

import pytest
import torch

from depth_sfm_ros.cli import main as cli_main
from depth_sfm_ros.models import build_from_checkpoint, build_models, load_checkpoint, save_checkpoint
from depth_sfm_training.average import average_checkpoints

CFG = {"encoder": "lite", "pose_encoder": "lite_small", "height": 64, "width": 96, "use_motion_net": False}


def _checkpoint(path, seed: int, step: int, cfg=CFG):
    torch.manual_seed(seed)
    bundle = build_models(cfg)
    with torch.no_grad():  # distinct BatchNorm statistics too
        for module in bundle.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.num_batches_tracked.fill_(step)
    save_checkpoint(path, bundle, cfg, {"experiment": "avg"}, step=step, epoch=1,
                    optimizer_state={"state": {}, "param_groups": []}, extra={"metrics": {"abs_rel": 0.3}})
    return path


def test_average_is_the_elementwise_mean_and_an_ordinary_checkpoint(tmp_path):
    paths = [_checkpoint(tmp_path / f"c{i}.pt", seed=i, step=100 * (i + 1)) for i in range(3)]
    out = average_checkpoints(paths, tmp_path / "avg.pt")
    data, inputs = load_checkpoint(out), [load_checkpoint(p) for p in paths]
    for net in ("depth", "pose"):
        for key, value in data["state_dict"][net].items():
            if value.is_floating_point():
                want = sum(d["state_dict"][net][key] for d in inputs) / 3
                assert torch.allclose(value, want, atol=1e-6), f"{net}.{key}"
            else:
                assert torch.equal(value, inputs[-1]["state_dict"][net][key])
    some = next(k for k, v in data["state_dict"]["depth"].items() if v.dim() == 4)  # a conv weight
    assert not torch.allclose(data["state_dict"]["depth"][some], inputs[0]["state_dict"]["depth"][some])
    assert data["step"] == 300 and data["optimizer"] is None and data["train_config"] == {"experiment": "avg"}
    assert data["extra"]["averaged_from"] == [{"path": str(p), "step": 100 * (i + 1)} for i, p in enumerate(paths)]
    assert "metrics" not in data["extra"]
    bundle, cfg = build_from_checkpoint(out)  # loads strictly, runs
    with torch.no_grad():
        assert bundle.depth.predict(torch.rand(1, 3, 64, 96)).shape == (1, 1, 64, 96)


def test_average_refuses_what_cannot_be_averaged(tmp_path):
    a = _checkpoint(tmp_path / "a.pt", seed=0, step=1)
    b = _checkpoint(tmp_path / "b.pt", seed=1, step=2, cfg=dict(CFG, pose_encoder="lite"))
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([a], tmp_path / "x.pt")
    with pytest.raises(ValueError, match="listed twice"):
        average_checkpoints([a, a], tmp_path / "x.pt")
    with pytest.raises(ValueError, match="model_config differs"):
        average_checkpoints([a, b], tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_cli_average(tmp_path, capsys):
    paths = [str(_checkpoint(tmp_path / f"c{i}.pt", seed=i, step=i + 1)) for i in range(2)]
    assert cli_main(["average", *paths, "--out", str(tmp_path / "avg.pt")]) == 0
    assert "weight average of 2 checkpoints" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "avg.pt")["step"] == 2
    assert cli_main(["average", paths[0], str(tmp_path / "absent.pt"), "--out", str(tmp_path / "b.pt")]) == 2
    assert "not found" in capsys.readouterr().err
