"""Untrusted files never execute code: YAML ``!!python/...`` tags in training configs (files,
``_base_`` chains, command-line overrides), in a model card reached through the node, and in
the node's ``--params-file``; plus a source scan that every ``torch.load`` is weights-only and no
unsafe YAML / pickle loader is used anywhere in the package.

Covered elsewhere (not repeated): a malicious pickle checkpoint refused and not executed
(test_models.py::test_checkpoint_malicious_pickle_refused_not_executed), a model card with a
python tag refused (test_export.py::test_model_card_missing_fields_and_unsafe_yaml), the model
path parameter checked (test_ros_params.py::test_model_directory_is_checked,
test_bad_parameter_stops_the_node_naming_it).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from depth_sfm_training.config import ConfigError, apply_overrides, load_config, load_defaults
from depth_sfm_ros.runtime.tiny_model import export_tiny_model_dir

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = [REPO / "depth_sfm_ros", REPO / "training"]


def _payload(marker: Path) -> str:
    """A YAML value that runs ``touch marker`` under yaml.unsafe_load / full_load."""
    return f"!!python/object/apply:os.system [\"touch {marker}\"]"


def test_payload_is_real(tmp_path):
    """The payload does execute under an unsafe loader, so the refusals below mean something."""
    yaml = pytest.importorskip("yaml")
    marker = tmp_path / "executed"
    yaml.unsafe_load(f"value: {_payload(marker)}\n")
    assert marker.exists()


@pytest.mark.parametrize("where", ["top", "nested", "base"])
def test_training_config_with_python_tags_is_refused(tmp_path, where):
    marker = tmp_path / "pwned"
    config = tmp_path / "experiment.yaml"
    if where == "top":
        config.write_text(f"{_payload(marker)}\n")
    elif where == "nested":
        config.write_text(f"optim:\n  lr: {_payload(marker)}\n")
    else:  # the payload in a file reached through _base_
        (tmp_path / "base.yaml").write_text(f"optim: {_payload(marker)}\n")
        config.write_text("_base_: base.yaml\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(config)
    assert "python/object/apply" in str(info.value)
    assert not marker.exists()


def test_override_with_a_python_tag_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(ConfigError, match="optim.lr.*not valid YAML"):
        apply_overrides(load_defaults(), [f"optim.lr={_payload(marker)}"])
    assert not marker.exists()


# --- the node ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return export_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model", height=32, width=96, net_width=4)


def _start_node(tmp_path: Path, *args: str):
    pytest.importorskip("rclpy")
    from ros_helpers import common

    exe = str(common.NODE_EXECUTABLE)
    return common.Proc.start([exe, "--ros-args", *args], common.ros_env(common.unique_domain_id(87)),
                             tmp_path / "node.log")


@pytest.mark.ros
def test_node_refuses_a_model_card_with_a_python_tag(tmp_path, tiny_model):
    marker = tmp_path / "pwned"
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    card = (model / "model_card.yaml").read_text()
    (model / "model_card.yaml").write_text(card.replace("encoder: tiny4", f"encoder: {_payload(marker)}"))
    assert "python/object/apply" in (model / "model_card.yaml").read_text()
    node = _start_node(tmp_path, "-p", f"model:={model}")
    rc = node.wait(60.0)
    log = node.log()
    assert rc == 2 and "parameter 'model'" in log and "plain YAML" in log and "Traceback" not in log, log
    assert not marker.exists()


@pytest.mark.ros
def test_node_params_file_with_python_tags_runs_nothing(tmp_path, tiny_model):
    """rcl's C YAML parser ignores the tag: the value arrives as a string list, which the typed
    parameter declaration refuses. Nothing is executed."""
    marker = tmp_path / "pwned"
    params_file = tmp_path / "evil.yaml"
    params_file.write_text("/**/depth_sfm_node:\n  ros__parameters:\n"
                           f"    camera_frame: {_payload(marker)}\n")
    node = _start_node(tmp_path, "--params-file", str(params_file), "-p", f"model:={tiny_model}")
    rc = node.wait(60.0)
    log = node.log()
    assert rc == 2 and "parameter 'camera_frame'" in log and "Traceback" not in log, log
    assert not marker.exists()


# --- source scan --------------------------------------------------------------------------------

def _sources() -> list[Path]:
    return [p for d in PACKAGE_DIRS for p in d.rglob("*.py")]


def test_every_torch_load_is_weights_only():
    calls = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(", text):
            # the argument list up to the matching parenthesis
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            calls.append((path.relative_to(REPO), text[match.start(): end + 1]))
    assert calls, "no torch.load call found: the scan is broken"
    unsafe = [(str(p), c) for p, c in calls if "weights_only=True" not in c.replace(" ", "")]
    assert unsafe == [], unsafe


def test_no_unsafe_yaml_or_pickle_loaders():
    pattern = re.compile(r"yaml\.(unsafe_load|full_load|load)\(|yaml\.Loader\b|yaml\.UnsafeLoader|"
                         r"pickle\.loads?\(|marshal\.loads?\(|(?<![\w.])eval\(|(?<![\w.])exec\(")
    found = []
    for path in _sources():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == [], found
