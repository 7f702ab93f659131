"""Launch depth_sfm_node (and optionally rviz2).

    ros2 launch depth_sfm_ros depth_sfm.launch.py image:=/camera/image_raw camera_info:=/camera/camera_info

Arguments: image, camera_info (input topics; an image_rect* topic is taken as rectified (CameraInfo P), any
other as raw: K, with lens distortion undistorted by the node; camera_input auto | rectified | raw overrides
the guess, "" = the params file's),
external_odometry (speed source for scale_mode external), model (exported model dir, "" = bundled default),
backend, scale_mode (camera_height | fixed | external | none; default "" = the params file's, which in the
shipped config/depth_sfm.yaml is camera_height: a ground vehicle with the camera camera_height_m above a
visible road; use none for handheld / drone cameras, see the README's "Metric scale"; the effective
value is logged at launch), params_file (default: share/depth_sfm_ros/config/depth_sfm.yaml), namespace,
use_sim_time (true when replaying a bag with --clock), rviz (open config/depth_sfm.rviz; with a
namespace, a copy of it whose topics are in that namespace; rviz2 is optional, not a package dependency:
without it the launch says how to install it and starts the node alone),
dds_profile (Fast DDS XML profile for the node: default config/fastdds_large_images.xml, or the
FASTRTPS_DEFAULT_PROFILES_FILE already set; "" = none. Large images need it, see that file).
The node gets [params_file, overrides]: model/backend/scale_mode/camera_input/use_sim_time given here win over
the file; an empty model, backend, scale_mode or camera_input argument leaves the file's value.
"""
import os
import tempfile

import yaml

from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from depth_sfm_ros.ros.topics import rviz_config_for_namespace

PACKAGE = "depth_sfm_ros"
EXECUTABLE = "depth_sfm_node"
NODE_NAME = "depth_sfm_node"
PARAMS_FILE = os.path.join("config", "depth_sfm.yaml")
RVIZ_FILE = os.path.join("config", "depth_sfm.rviz")
DDS_PROFILE_FILE = os.path.join("config", "fastdds_large_images.xml")
# Fast DDS 2.x (Jazzy) reads the first, 3.x the second
DDS_PROFILE_ENV = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
SCALE_MODE_DEFAULT = "camera_height"  # the node's own default (depth_sfm_ros/ros/params.py) and the shipped file's


def _file_scale_mode(params_file):
    """scale_mode in a params file (any node key ending in depth_sfm_node, or /**), or None."""
    try:
        with open(params_file) as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return None
    for key, section in data.items() if isinstance(data, dict) else ():
        if (str(key).endswith(NODE_NAME) or key == "/**") and isinstance(section, dict):
            value = (section.get("ros__parameters") or {}).get("scale_mode")
            if value:
                return str(value)
    return None


def _node(context, *args, **kwargs):
    """The node action, built once the arguments are known (empty overrides are left out)."""
    overrides = {"use_sim_time": LaunchConfiguration("use_sim_time").perform(context).lower() in ("true", "1")}
    for name in ("model", "backend", "scale_mode", "camera_input"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    dds_profile = LaunchConfiguration("dds_profile").perform(context)
    env = {name: dds_profile for name in DDS_PROFILE_ENV} if dds_profile else {}
    params_file = LaunchConfiguration("params_file").perform(context)
    if "scale_mode" in overrides:
        scale_source = f"scale_mode {overrides['scale_mode']} (launch argument)"
    else:
        from_file = _file_scale_mode(params_file)
        scale_source = (f"scale_mode {from_file} (from {params_file})" if from_file else
                        f"scale_mode {SCALE_MODE_DEFAULT} (the node's default; not set in {params_file})")
    return [LogInfo(msg=f"depth_sfm: {scale_source}; camera_height assumes a ground vehicle with a visible road, "
                        f"use scale_mode:=none for handheld / drone cameras"), Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[LaunchConfiguration("params_file"), overrides],
        remappings=[("image", LaunchConfiguration("image")),
                    # image_transport: compressed subscribes image/compressed: follow the image remap
                    ("image/compressed", [LaunchConfiguration("image"), "/compressed"]),
                    ("camera_info", LaunchConfiguration("camera_info")),
                    ("external_odometry", LaunchConfiguration("external_odometry"))],
        additional_env=env,
    )]


def _rviz(context, *args, **kwargs):
    """rviz2 on config/depth_sfm.rviz; with a namespace, on a copy whose topics are in that namespace.
    rviz2 is optional (a headless robot has none): when it is not installed, a log line instead."""
    try:
        get_package_prefix("rviz2")
    except PackageNotFoundError:
        return [LogInfo(msg="depth_sfm: rviz:=true but rviz2 is not installed (it is optional, not a dependency "
                            "of depth_sfm_ros); install it with: sudo apt install ros-$ROS_DISTRO-rviz2. "
                            "Starting depth_sfm_node without rviz2")]
    config = os.path.join(get_package_share_directory(PACKAGE), RVIZ_FILE)
    namespace = LaunchConfiguration("namespace").perform(context).strip("/")
    if namespace:
        with open(config) as f:
            text = rviz_config_for_namespace(f.read(), namespace)
        with tempfile.NamedTemporaryFile("w", prefix=f"depth_sfm_{namespace.replace('/', '_')}_", suffix=".rviz",
                                         delete=False) as f:
            f.write(text)
            config = f.name
    return [Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=namespace,
        arguments=["-d", config],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        output="screen",
    )]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="input sensor_msgs/Image topic (its /compressed sibling when "
                                          "image_transport is compressed): image_rect* (rectified by image_proc: "
                                          "the CameraInfo's P is used) or image_raw (K; plumb_bob, "
                                          "rational_polynomial and equidistant distortion is undistorted by the "
                                          "node); the params file's camera_input (auto) decides from this name"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="input sensor_msgs/CameraInfo topic"),
        DeclareLaunchArgument("external_odometry", default_value="/odom",
                              description="nav_msgs/Odometry whose speed gives the metric scale when the node's "
                                          "scale_mode is external (e.g. wheel odometry)"),
        DeclareLaunchArgument("model", default_value="",
                              description="exported model directory ('' = the params file's, else the bundled default)"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto | onnxruntime | tensorrt | torch ('' = the params file's)"),
        DeclareLaunchArgument("scale_mode", default_value="",
                              description="metric scale: camera_height (ground vehicle, camera camera_height_m above "
                                          "a visible road/floor) | external (wheel odometry on external_odometry) | "
                                          "fixed (known-scale model) | none (handheld / drone: relative units). "
                                          f"'' = the params file's, which in the shipped config/depth_sfm.yaml is "
                                          f"{SCALE_MODE_DEFAULT}"),
        DeclareLaunchArgument("camera_input", default_value="",
                              description="auto (an image_rect* topic is rectified: CameraInfo P; any other is raw: "
                                          "K and D, undistorted by the node) | rectified | raw ('' = the params "
                                          "file's, which in the shipped config/depth_sfm.yaml is auto)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, PARAMS_FILE),
                              description="node parameters (YAML)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its outputs"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("rviz", default_value="false", description="open rviz2 with config/depth_sfm.rviz"),
        DeclareLaunchArgument("dds_profile",
                              default_value=os.environ.get(DDS_PROFILE_ENV[0]) or os.path.join(share, DDS_PROFILE_FILE),
                              description="Fast DDS XML profile for the node (shared memory for large images; "
                                          "'' = none)"),
        OpaqueFunction(function=_node),
        OpaqueFunction(function=_rviz, condition=IfCondition(LaunchConfiguration("rviz"))),
    ])
