"""depth_sfm_ros: an ament_python ROS 2 package that also installs with pip.

``colcon build`` uses ``data_files`` below to lay out ``share/depth_sfm_ros`` (package.xml,
the ament index marker, launch/ and config/); ``pip install -e .[dev]`` gives the same
console scripts on a machine without ROS (rclpy then comes from the ``ros`` extra).
"""
from glob import glob

from setuptools import setup

PACKAGE = "depth_sfm_ros"

# torch is pinned to the one CPU wheel this environment provides; GPU users install their own
# torch 2.x first (pip keeps an already satisfied requirement).
TORCH = "torch==2.13.0"
ROS_JAZZY_WHEELS = [
    "ros-jazzy-rclpy",
    "ros-jazzy-rmw-fastrtps-cpp",
    "ros-jazzy-sensor-msgs",
    "ros-jazzy-nav-msgs",
    "ros-jazzy-geometry-msgs",
    "ros-jazzy-std-msgs",
    "ros-jazzy-diagnostic-msgs",
]
EXTRAS = {
    "ros": ROS_JAZZY_WHEELS,
    "runtime": ["onnxruntime>=1.16", "rosbags>=0.9.20"],
    "train": [TORCH, "tensorboard", "tqdm", "onnx>=1.14", "onnxruntime>=1.16", "rosbags>=0.9.20", "safetensors"],
    "eval": ["rosbags>=0.9.20", "matplotlib", "tqdm", "evo"],
    "test": ["pytest>=7", "pytest-timeout", "hypothesis", "kornia", "colcon-common-extensions"],
}
EXTRAS["dev"] = sorted({req for group in EXTRAS.values() for req in group})

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[
        PACKAGE,
        f"{PACKAGE}.geometry",
        f"{PACKAGE}.msgs",
        f"{PACKAGE}.models",
        f"{PACKAGE}.synth",
        f"{PACKAGE}.runtime",
        f"{PACKAGE}.ros",
        f"{PACKAGE}.bag",
        "depth_sfm_training",
        "depth_sfm_training.datasets",
        "depth_sfm_training.losses",
    ],
    # The training code lives in the top-level training/ folder, imported as depth_sfm_training.
    package_dir={"depth_sfm_training": "training"},
    package_data={"depth_sfm_training": ["configs/*.yaml", "splits/*/*.txt"], PACKAGE: ["data/*", "data/*/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
    ],
    python_requires=">=3.10",
    install_requires=["numpy>=1.21", "pyyaml", "opencv-python-headless"],
    extras_require=EXTRAS,
    zip_safe=True,
    maintainer="depth_sfm_ros maintainers",
    maintainer_email="maintainers@depth-sfm-ros.invalid",
    description="Self-supervised monocular depth, ego-motion and dynamic masks for ROS 2",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "depth_sfm_node = depth_sfm_ros.ros.node:main",
            "depth-sfm = depth_sfm_ros.cli:main",
        ],
    },
)
