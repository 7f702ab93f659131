"""Node parameters without ROS: the params file, descriptions and ranges, validation (depth_sfm_ros.ros.params
is ROS-free; test_ros_params.py checks the same parameters on a real node)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from depth_sfm_ros.ros import params
from depth_sfm_ros.ros.params import PARAMETERS, PARAMETERS_BY_NAME, ParameterError

PARAMS_FILE = Path(__file__).resolve().parents[1] / "config" / "depth_sfm.yaml"

CONFIG_KEY = "/**/depth_sfm_node"


def _config_values() -> dict:
    with open(PARAMS_FILE) as f:
        return yaml.safe_load(f)[CONFIG_KEY]["ros__parameters"]


def test_config_file_lists_every_parameter_with_valid_values():
    values = _config_values()
    assert set(values) == set(PARAMETERS_BY_NAME)
    validated = params.validate(values, check_model_files=False)
    assert validated.model_dir == params.DEFAULT_MODEL_DIR  # "" = the bundled default
    for name, value in values.items():  # the file states the defaults (one source of truth: params.py)
        assert value == PARAMETERS_BY_NAME[name].default, name


def test_every_parameter_is_described_with_a_range_or_choices():
    for spec in PARAMETERS:
        assert len(spec.description) > 15, spec.name
        if spec.type_name in ("int", "float", "float_array"):
            assert spec.min_value is not None and spec.max_value is not None, spec.name
            assert spec.min_value <= (min(spec.default) if isinstance(spec.default, list) else spec.default) \
                <= spec.max_value, spec.name


@pytest.mark.parametrize("name,value,fragment", [
    ("backend", "tensorflow", "one of"),
    ("scale_mode", "metric", "one of"),
    ("image_transport", "theora", "one of"),
    ("camera_input", "undistorted", "one of"),
    ("undistort_alpha", 1.5, "outside"),
    ("camera_height_m", -1.0, "outside"),
    ("camera_height_m", math.nan, "finite"),
    ("points_decimation", 0, "outside"),
    ("points_decimation", 2.5, "integer"),
    ("publish_tf", "yes", "true or false"),
    ("camera_to_base_xyz", [0.0, 1.0], "3 numbers"),
    ("odom_frame", "/odom", "frame id"),
    ("odom_frame", "", "empty"),
    ("base_frame", "odom", "differ"),
    ("min_depth_m", 90.0, "max_depth_m"),
    ("no_such_parameter", 1, "unknown"),
])
def test_validate_names_the_bad_parameter(name, value, fragment):
    with pytest.raises(ParameterError) as info:
        params.validate({name: value}, check_model_files=False)
    assert info.value.name == name
    assert f"'{name}'" in str(info.value) and fragment in str(info.value)


def test_model_directory_is_checked(tmp_path):
    with pytest.raises(ParameterError, match="'model'.*not a directory"):
        params.validate({"model": str(tmp_path / "missing")})
    with pytest.raises(ParameterError, match="model_card.yaml"):
        params.validate({"model": str(tmp_path)})
    (tmp_path / "model_card.yaml").write_text("input_height: 64\n")
    assert params.validate({"model": str(tmp_path)}).model_dir == str(tmp_path)


def test_fallback_intrinsics():
    p = params.validate({}, check_model_files=False)
    assert p.fallback_intrinsics(320, 96) is None  # fx 0: the model card's
    p = params.validate({"fx": 200.0}, check_model_files=False)
    K = p.fallback_intrinsics(320, 96)
    assert (K.fx, K.fy, K.cx, K.cy) == (200.0, 200.0, 159.5, 47.5)


def test_readme_parameter_table_states_the_real_defaults():
    """The README's node parameter table (| `name` | `default` | ...) lists every parameter with params.py's default
    (it once said mask_threshold 0.5 while the node used 0.15)."""
    import ast
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", readme, flags=re.M))
    missing = sorted(set(PARAMETERS_BY_NAME) - set(rows))
    assert not missing, f"README parameter table lacks {missing}"
    for name, spec in PARAMETERS_BY_NAME.items():
        assert ast.literal_eval(rows[name]) == spec.default, f"README says {name} = {rows[name]}, params.py {spec.default!r}"
