"""Training configs: defaults + experiment files + overrides, schema validation, shipped configs."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from depth_sfm_training.config import (DEFAULTS_PATH, ConfigError, apply_overrides, deep_merge, list_experiment_configs,
                                       load_config, load_defaults, parse_override)

EXPECTED_CONFIGS = {
    "baseline_monodepth2", "sfmlearner_explainability", "multiple_masks_overlap_blank", "object_boundary",
    "instance_aware", "sc_depth_geometric", "pose_cycle", "auto_weight_less_dynamic", "auto_weight_more_dynamic",
    "normal_losses", "flow3d", "full", "synthetic_default_model", "kitti_eigen", "cityscapes", "rosbag_own_robot",
}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_deep_merge_merges_dicts_and_replaces_other_values():
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "b": [1, 2], "c": 3}
    out = deep_merge(base, {"a": {"y": {"q": 5}}, "b": [9]})
    assert out == {"a": {"x": 1, "y": {"p": 1, "q": 5}}, "b": [9], "c": 3}
    assert base["a"]["y"]["q"] == 2  # inputs untouched


def test_overrides_are_typed_by_yaml():
    assert parse_override("optim.lr=2e-4") == (["optim", "lr"], "2e-4")  # YAML 1.1: a string ...
    config = load_config(None, ["optim.lr=2e-4", "data.frame_offsets=[0,-2,2]", "data.val_path=null",
                                "train.amp=true", "train.batch_size=3", "experiment=x"])
    assert config["optim"]["lr"] == pytest.approx(2e-4) and isinstance(config["optim"]["lr"], float)  # ... made a float
    assert config["data"]["frame_offsets"] == [0, -2, 2]
    assert config["data"]["val_path"] is None
    assert config["train"]["amp"] is True and config["train"]["batch_size"] == 3
    assert config["experiment"] == "x"


@pytest.mark.parametrize("override, key", [
    ("losses.smoothnes_weight=1", "losses.smoothnes_weight"),
    ("optimizer.lr=1", "optimizer"),
    ("optim.lr.x=1", "optim.lr"),
])
def test_unknown_override_key_is_rejected_by_name(override, key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        load_config(None, [override])


@pytest.mark.parametrize("override, message", [
    ("optim.lr=abc", "optim.lr' must be a number"),
    ("train.batch_size=2.5", "train.batch_size' must be an integer"),
    ("train.amp=1", "train.amp' must be true/false"),
    ("data.height=100", "data.height'.*multiple of 32"),
    ("data.frame_offsets=[-1,1]", "data.frame_offsets"),
    ("losses.flow3d=true", "model.use_motion_net"),
    ("optim.lr=-1.0", "optim.lr'.*> 0"),
    ("device=tpu", "device"),
    ("nonsense", "key.sub=value"),
])
def test_bad_values_are_rejected_with_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_experiment_file_chain_and_unknown_key_in_file(tmp_path):
    _write(tmp_path / "base.yaml", {"_base_": str(DEFAULTS_PATH), "optim": {"lr": 0.5}, "seed": 7})
    child = _write(tmp_path / "child.yaml", {"_base_": "base.yaml", "optim": {"gamma": 0.5}})
    config = load_config(child, ["seed=9"])
    assert config["optim"]["lr"] == 0.5 and config["optim"]["gamma"] == 0.5  # merged from both files
    assert config["seed"] == 9                                                # override wins
    assert config["optim"]["name"] == "adam"                                  # defaults fill the rest
    bad = _write(tmp_path / "bad.yaml", {"_base_": "base.yaml", "losses": {"smoothness_weigth": 0.1}})
    with pytest.raises(ConfigError, match="losses.smoothness_weigth"):
        load_config(bad)


def test_circular_base_and_missing_file_are_clear_errors(tmp_path):
    _write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    _write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_every_seed_technique_and_ablation_row_has_a_config():
    names = {p.stem for p in list_experiment_configs()}
    assert EXPECTED_CONFIGS <= names
    for path in list_experiment_configs():
        config = load_config(path)
        assert config["experiment"] == path.stem, f"{path.name}: experiment name should be the file name"


def test_losses_section_mirrors_loss_config_with_paper_defaults():
    from depth_sfm_training.losses import LossConfig

    defaults = load_defaults()["losses"]
    fields = {f.name: f.default for f in dataclasses.fields(LossConfig)}
    assert set(defaults) == set(fields), "defaults.yaml losses: must list every LossConfig field, nothing else"
    for name, value in fields.items():
        assert defaults[name] == pytest.approx(value) if isinstance(value, float) else defaults[name] == value, name
    for path in list_experiment_configs():
        LossConfig.from_dict(load_config(path)["losses"])  # every shipped config is a valid LossConfig


def test_each_technique_config_switches_its_technique_on():
    on = {
        "sfmlearner_explainability": ["explainability"], "multiple_masks_overlap_blank": ["overlap_mask", "blank_mask"],
        "object_boundary": ["boundary"], "instance_aware": ["instance"], "sc_depth_geometric": ["geometric"],
        "pose_cycle": ["cycle"], "normal_losses": ["normal", "ranking"], "flow3d": ["flow3d"],
    }
    baseline = load_config(list_experiment_configs()[0].parent / "baseline_monodepth2.yaml")["losses"]
    for name, switches in on.items():
        losses = load_config(DEFAULTS_PATH.parent / f"{name}.yaml")["losses"]
        for switch in switches:
            assert losses[switch] is True and baseline[switch] is False, (name, switch)
    assert load_config(DEFAULTS_PATH.parent / "auto_weight_less_dynamic.yaml")["losses"]["auto_weight"] == \
        "less_dynamic_more_weight"
    assert load_config(DEFAULTS_PATH.parent / "auto_weight_more_dynamic.yaml")["losses"]["auto_weight"] == \
        "more_dynamic_more_weight"
    full = load_config(DEFAULTS_PATH.parent / "full.yaml")["losses"]
    assert all(full[s] for s in ("overlap_mask", "blank_mask", "boundary", "geometric", "instance", "cycle",
                                 "normal", "ranking", "flow3d"))


def test_model_section_is_a_valid_model_config():
    from depth_sfm_ros.models import validate_model_config
    from depth_sfm_training.trainer import model_config_from

    for path in list_experiment_configs():
        cfg = validate_model_config(model_config_from(load_config(path)))
        assert cfg["height"] % 32 == 0 and cfg["width"] % 32 == 0


def test_apply_overrides_does_not_touch_its_input():
    config = load_defaults()
    out = apply_overrides(config, ["seed=5"])
    assert out["seed"] == 5 and config["seed"] == 0


def test_cli_prints_config_and_rejects_unknown_key(capsys):
    from depth_sfm_ros.cli import main

    assert main(["train", "--config", "pose_cycle", "seed=3", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 3 and printed["losses"]["cycle"] is True
    assert main(["train", "--config", "pose_cycle", "losses.cycel=true"]) == 2
    assert "losses.cycel" in capsys.readouterr().err
    assert main(["train", "--config", "no_such_config"]) == 2
