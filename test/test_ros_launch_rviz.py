"""launch/depth_sfm.launch.py and config/depth_sfm.rviz name things that exist.

launch / launch_ros are not available as wheels here, so the launch file is read with ``ast``
(and additionally executed when a real ROS install provides them).
"""
from __future__ import annotations

import ast
import glob
import importlib
import importlib.metadata
import importlib.util
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from depth_sfm_ros.ros import params, topics

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "depth_sfm.launch.py"
RVIZ_FILE = REPO / "config" / "depth_sfm.rviz"
LAUNCH_ARGUMENTS = {"image", "camera_info", "model", "backend", "params_file", "namespace", "use_sim_time", "rviz",
                    "dds_profile", "external_odometry", "scale_mode", "camera_input"}
# rviz display class -> the message type it shows
RVIZ_CLASSES = {"rviz_default_plugins/Image": "sensor_msgs/msg/Image",
                "rviz_default_plugins/Odometry": "nav_msgs/msg/Odometry",
                "rviz_default_plugins/PointCloud2": "sensor_msgs/msg/PointCloud2"}


def _launch_tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def _constants(tree: ast.Module) -> dict:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                if isinstance(node.value, ast.Call) and getattr(node.value.func, "attr", "") == "join":
                    out[node.targets[0].id] = "/".join(ast.literal_eval(a) for a in node.value.args)
    return out


def _calls(tree: ast.Module, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _value(node: ast.AST, constants: dict):
    if isinstance(node, ast.Name):
        return constants[node.id]
    return ast.literal_eval(node)


def test_launch_file_declares_the_documented_arguments():
    tree = _launch_tree()
    declared = {ast.literal_eval(call.args[0]) for call in _calls(tree, "DeclareLaunchArgument")}
    assert declared == LAUNCH_ARGUMENTS
    for call in _calls(tree, "DeclareLaunchArgument"):
        assert _keyword(call, "description") is not None and _keyword(call, "default_value") is not None
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_launch_file_names_existing_executables_files_and_topics():
    tree = _launch_tree()
    constants = _constants(tree)
    nodes = _calls(tree, "Node")
    ours = [n for n in nodes if _value(_keyword(n, "package"), constants) == "depth_sfm_ros"]
    assert len(ours) == 1
    node = ours[0]
    # the executable is a console script of this package, and it resolves to a main()
    executable = _value(_keyword(node, "executable"), constants)
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get(executable) == "depth_sfm_ros.ros.node:main"
    setup_text = (REPO / "setup.py").read_text()
    assert f'"{executable} = depth_sfm_ros.ros.node:main"' in setup_text
    module, _, func = scripts[executable].partition(":")
    assert callable(getattr(importlib.import_module(module), func))
    assert _value(_keyword(node, "name"), constants) == topics.NODE_NAME
    # parameters = [params_file, overrides], overrides only of declared parameters
    parameters = _keyword(node, "parameters")
    assert isinstance(parameters, ast.List) and len(parameters.elts) == 2
    assert "params_file" in ast.dump(parameters.elts[0])
    override_names = {ast.literal_eval(e) for e in ast.walk(tree) if isinstance(e, ast.Tuple)
                      for e in e.elts if isinstance(e, ast.Constant) and e.value in ("model", "backend", "scale_mode",
                                                                                               "camera_input")}
    assert override_names <= set(params.PARAMETERS_BY_NAME) and override_names == {"model", "backend", "scale_mode",
                                                                                   "camera_input"}
    # remappings are exactly the node's relative input topics
    remappings = _keyword(node, "remappings")
    remapped = {ast.literal_eval(pair.elts[0]) for pair in remappings.elts}
    assert remapped == {topics.IMAGE_TOPIC, topics.IMAGE_TOPIC + topics.COMPRESSED_SUFFIX, topics.CAMERA_INFO_TOPIC,
                        topics.EXTERNAL_ODOMETRY_TOPIC}
    # the files it opens exist and are installed by setup.py's data_files globs
    for key in ("PARAMS_FILE", "RVIZ_FILE", "DDS_PROFILE_FILE"):
        path = REPO / constants[key]
        assert path.is_file(), path
        pattern = f"config/*{path.suffix}"
        assert pattern in setup_text and str(path.relative_to(REPO)) in glob.glob(pattern, root_dir=REPO)
    assert "launch/*.launch.py" in setup_text
    rviz_nodes = [n for n in nodes if _value(_keyword(n, "package"), constants) == "rviz2"]
    assert len(rviz_nodes) == 1
    # rviz2 is built by _rviz, an OpaqueFunction that only runs under the `rviz` argument's condition,
    # and that moves the config's topics into the node's namespace
    opaque = {_keyword(c, "function").id: c for c in _calls(tree, "OpaqueFunction")}
    assert set(opaque) == {"_node", "_rviz"}
    assert "'rviz'" in ast.dump(_keyword(opaque["_rviz"], "condition"))
    rviz_function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_rviz")
    assert rviz_nodes[0] in list(ast.walk(rviz_function))
    assert _calls(rviz_function, "rviz_config_for_namespace")


def _launch_function(name: str, **namespace):
    """One top-level function of the launch file, compiled alone (launch / launch_ros are not importable here)."""
    tree = _launch_tree()
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    module = ast.Module(body=[function], type_ignores=[])
    scope = dict(namespace)
    exec(compile(module, str(LAUNCH_FILE), "exec"), scope)  # noqa: S102 - our own launch file
    return scope[name]


def test_scale_mode_argument_states_its_default(tmp_path):
    """scale_mode is a launch argument whose default ('' = the params file's) is stated: the description names
    the shipped file's value, which is the node's default, and the launch logs the value that will apply."""
    tree = _launch_tree()
    constants = _constants(tree)
    assert constants["SCALE_MODE_DEFAULT"] == params.PARAMETERS_BY_NAME["scale_mode"].default == "camera_height"
    call = next(c for c in _calls(tree, "DeclareLaunchArgument") if ast.literal_eval(c.args[0]) == "scale_mode")
    assert ast.literal_eval(_keyword(call, "default_value")) == ""
    description = ast.unparse(_keyword(call, "description"))
    for mode in params.PARAMETERS_BY_NAME["scale_mode"].choices:
        assert mode in description, mode
    assert "SCALE_MODE_DEFAULT" in description and "handheld" in description
    read = _launch_function("_file_scale_mode", yaml=yaml, NODE_NAME=topics.NODE_NAME)
    assert read(str(REPO / constants["PARAMS_FILE"])) == constants["SCALE_MODE_DEFAULT"]
    own = tmp_path / "own.yaml"
    own.write_text("/**/depth_sfm_node:\n  ros__parameters:\n    scale_mode: none\n")
    assert read(str(own)) == "none"
    own.write_text("other_node:\n  ros__parameters:\n    scale_mode: fixed\n")
    assert read(str(own)) is None and read(str(tmp_path / "missing.yaml")) is None
    node_function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_node")
    assert _calls(node_function, "LogInfo") and _calls(node_function, "_file_scale_mode")


def test_rviz_is_optional_and_its_absence_is_explained(monkeypatch):
    """rviz2 is not in package.xml (a headless robot must not get it from rosdep): rviz:=true without rviz2 logs
    how to install it and starts no rviz2 node; with rviz2 installed the node is started as before."""
    import os
    import tempfile

    class PackageNotFoundError(KeyError):
        pass

    installed = set()

    def get_package_prefix(name):
        if name not in installed:
            raise PackageNotFoundError(name)
        return "/opt/ros/jazzy"

    class Perform:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return ""

    built = []
    rviz = _launch_function(
        "_rviz", os=os, tempfile=tempfile, PACKAGE="depth_sfm_ros", RVIZ_FILE="config/depth_sfm.rviz",
        get_package_prefix=get_package_prefix, PackageNotFoundError=PackageNotFoundError,
        get_package_share_directory=lambda name: str(REPO), LaunchConfiguration=Perform,
        rviz_config_for_namespace=topics.rviz_config_for_namespace,
        LogInfo=lambda msg: ("LogInfo", msg), Node=lambda **kw: built.append(kw) or ("Node", kw["package"]))
    (action,) = rviz(None)
    assert action[0] == "LogInfo" and "apt install ros-$ROS_DISTRO-rviz2" in action[1] and not built
    installed.add("rviz2")
    assert rviz(None) == [("Node", "rviz2")] and built[0]["arguments"] == ["-d", str(REPO / "config/depth_sfm.rviz")]


def test_dds_profile_gives_a_shared_memory_segment_for_large_images():
    root = ElementTree.parse(REPO / "config" / "fastdds_large_images.xml").getroot()
    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    descriptors = {d.findtext("f:transport_id", namespaces=ns): d for d in root.iterfind(".//f:transport_descriptor", ns)}
    kinds = {name: d.findtext("f:type", namespaces=ns) for name, d in descriptors.items()}
    assert sorted(kinds.values()) == ["SHM", "UDPv4"]  # UDP stays for discovery and other machines
    shm = next(d for d in descriptors.values() if d.findtext("f:type", namespaces=ns) == "SHM")
    assert int(shm.findtext("f:segment_size", namespaces=ns)) >= 4 * 640 * 480 * 3  # several VGA frames
    participant = root.find("f:participant", ns)
    assert participant.get("is_default_profile") == "true"
    used = [e.text for e in participant.iterfind(".//f:userTransports/f:transport_id", ns)]
    assert set(used) == set(descriptors)
    assert participant.findtext(".//f:useBuiltinTransports", namespaces=ns) == "false"
    # the launch file hands it to the node under both Fast DDS variable names
    text = LAUNCH_FILE.read_text()
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" in text and "FASTDDS_DEFAULT_PROFILES_FILE" in text
    assert "additional_env=env" in text


def test_params_file_default_matches_node_name():
    with open(REPO / "config" / "depth_sfm.yaml") as f:
        data = yaml.safe_load(f)
    (key,) = data
    assert key.rsplit("/", 1)[-1] == topics.NODE_NAME
    assert set(data[key]["ros__parameters"]) == set(params.PARAMETERS_BY_NAME)


def test_launch_description_builds_with_real_launch_ros():
    launch = pytest.importorskip("launch")
    if not hasattr(launch, "LaunchDescription"):
        pytest.skip("the real 'launch' package is not installed (only the repository's launch/ folder)")
    pytest.importorskip("launch_ros")
    spec = importlib.util.spec_from_file_location("depth_sfm_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        description = module.generate_launch_description()
    except LookupError as exc:  # ament_index cannot find an uninstalled package
        pytest.skip(f"depth_sfm_ros is not installed in an ament prefix: {exc}")
    names = {a.name for a in description.get_launch_arguments()}
    assert names == LAUNCH_ARGUMENTS


def _rviz_displays() -> list[dict]:
    with open(RVIZ_FILE) as f:
        config = yaml.safe_load(f)
    return config["Visualization Manager"]["Displays"]


def test_rviz_config_shows_exactly_the_node_outputs():
    with open(RVIZ_FILE) as f:
        config = yaml.safe_load(f)
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == params.PARAMETERS_BY_NAME["odom_frame"].default
    displays = _rviz_displays()
    shown = {}
    for display in displays:
        if "Topic" in display:
            topic = display["Topic"]
            shown[topic["Value"]] = display["Class"]
            assert topic["Reliability Policy"] == "Reliable"  # default output_qos
            assert params.PARAMETERS_BY_NAME["output_qos"].default == "reliable"
    expected = {topics.resolve(t): t for t in topics.RVIZ_TOPICS}
    assert set(shown) == set(expected)
    for name, cls in shown.items():
        assert RVIZ_CLASSES[cls] == topics.OUTPUT_TOPICS[expected[name]], name
    classes = [d["Class"] for d in displays]
    assert "rviz_default_plugins/TF" in classes and classes.count("rviz_default_plugins/Image") == 2
    assert "rviz_default_plugins/PointCloud2" in classes and "rviz_default_plugins/Odometry" in classes
    points = next(d for d in displays if d["Class"] == "rviz_default_plugins/PointCloud2")
    assert points["Color Transformer"] == "RGB8"  # the node packs rgb into a float field


@pytest.mark.parametrize("namespace", ["car", "/fleet/car_7/"])
def test_rviz_config_follows_the_launch_namespace(namespace):
    text = topics.rviz_config_for_namespace(RVIZ_FILE.read_text(), namespace)
    config = yaml.safe_load(text)
    shown = {d["Topic"]["Value"] for d in config["Visualization Manager"]["Displays"] if "Topic" in d}
    assert shown == {topics.resolve(t, namespace=namespace) for t in topics.RVIZ_TOPICS}
    assert all(name.startswith("/" + namespace.strip("/") + "/depth_sfm_node/") for name in shown)
    # nothing else changed: the same lines apart from the topic values
    before, after = RVIZ_FILE.read_text().splitlines(), text.splitlines()
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after)) == len(topics.RVIZ_TOPICS)
    with pytest.raises(ValueError, match="names none"):
        topics.rviz_config_for_namespace("Panels: []\n", namespace)


def test_topic_resolution():
    assert topics.resolve("~/depth/colored") == "/depth_sfm_node/depth/colored"
    assert topics.resolve("~/odometry", namespace="/car") == "/car/depth_sfm_node/odometry"
    assert topics.resolve("/diagnostics", namespace="/car") == "/diagnostics"
    assert topics.resolve("image", namespace="car/") == "/car/image"
    assert set(topics.RVIZ_TOPICS) <= set(topics.OUTPUT_TOPICS)
