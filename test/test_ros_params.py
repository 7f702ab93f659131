"""Node parameters on the real node: a bad parameter stops it with a message naming the parameter, and
the declared ranges and overrides apply (separate processes over DDS). The ROS-free validation and the
params file are tested in test_params_validate.py."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from depth_sfm_ros.ros.params import PARAMETERS_BY_NAME

CONFIG_KEY = "/**/depth_sfm_node"

rclpy = pytest.importorskip("rclpy")
import rclpy.executors  # noqa: E402
from ros_helpers import common  # noqa: E402

# --- the real node ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir() -> Path:
    return common.test_model_dir()


@pytest.fixture(scope="module")
def env() -> dict:
    return common.ros_env(common.unique_domain_id(11))


@pytest.mark.ros
@pytest.mark.parametrize("override,name", [
    ("camera_height_m:=100.0", "camera_height_m"),   # outside the declared FloatingPointRange
    ("threads:=many", "threads"),                    # wrong type
    ("backend:=tensorflow", "backend"),              # not one of the choices
    ("odom_frame:=/odom", "odom_frame"),              # not a frame id
    ("model:=/nonexistent/model", "model"),         # no such directory
])
def test_bad_parameter_stops_the_node_naming_it(model_dir, env, tmp_path, override, name):
    node = common.Proc.start(common.node_command(model_dir, "-p", override), env, tmp_path / "node.log")
    rc = node.wait(30.0)
    log = node.log()
    assert rc == 2, log
    assert f"parameter '{name}'" in log, log


@pytest.mark.ros
def test_parameters_are_declared_with_ranges_and_overrides_apply(model_dir, env, tmp_path):
    """One node in a namespace: a "/**/depth_sfm_node" params file (the form of
    config/depth_sfm.yaml) applies there, -p beats it, and the parameter services describe the
    declared ranges."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters

    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({CONFIG_KEY: {"ros__parameters": {"max_depth_m": 50.0, "points_decimation": 2}}}))
    node = common.Proc.start(common.node_command(model_dir, "--params-file", str(extra), "-p", "points_decimation:=3",
                                                 "-r", "__ns:=/car"), env, tmp_path / "node.log")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    try:
        client_node = rclpy.create_node("param_probe", context=context)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        get = client_node.create_client(GetParameters, "/car/depth_sfm_node/get_parameters")
        describe = client_node.create_client(DescribeParameters, "/car/depth_sfm_node/describe_parameters")
        assert get.wait_for_service(timeout_sec=30.0), node.log()
        assert describe.wait_for_service(timeout_sec=10.0)

        def call(client, request):
            future = client.call_async(request)
            deadline = time.monotonic() + 10.0
            while not future.done() and time.monotonic() < deadline:
                rclpy.spin_once(client_node, executor=executor, timeout_sec=0.1)
            assert future.done()
            return future.result()

        got = call(get, GetParameters.Request(names=["points_decimation", "max_depth_m", "odom_frame"]))
        assert got.values[0].integer_value == 3
        assert got.values[1].double_value == 50.0
        assert got.values[2].string_value == "odom"
        described = call(describe, DescribeParameters.Request(names=["camera_height_m", "points_decimation",
                                                                     "backend"])).descriptors
        assert described[0].floating_point_range[0].from_value == PARAMETERS_BY_NAME["camera_height_m"].min_value
        assert described[0].floating_point_range[0].to_value == PARAMETERS_BY_NAME["camera_height_m"].max_value
        assert described[1].integer_range[0].to_value == 64
        assert "onnxruntime" in described[2].additional_constraints
        assert "metres" in described[0].description
        assert all(d.read_only for d in described)
        set_client = client_node.create_client(SetParameters, "/car/depth_sfm_node/set_parameters")
        assert set_client.wait_for_service(timeout_sec=10.0)
        change = Parameter(name="max_depth_m", value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE,
                                                                      double_value=20.0))
        (result,) = call(set_client, SetParameters.Request(parameters=[change])).results
        assert not result.successful and "read-only" in result.reason
        client_node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
        assert node.stop() == 0, node.log()
