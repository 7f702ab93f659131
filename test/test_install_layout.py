"""The package installs the way a ROS user (colcon) and a pip user get it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "depth_sfm_ros"
SHARE_FILES = ["package.xml", "launch/depth_sfm.launch.py", "config/depth_sfm.yaml", "config/depth_sfm.rviz"]
SOURCES = ["setup.py", "setup.cfg", "package.xml", "resource", PACKAGE, "training", "launch", "config"]


def _copy_sources(dest: Path) -> Path:
    pkg = dest / "src" / PACKAGE
    pkg.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, pkg / name, ignore=ignore)
        else:
            shutil.copy2(src, pkg / name)
    return pkg


# Python modules that are ROS packages (their rosdep key is the package name)
ROS_PACKAGES = {"rclpy", "builtin_interfaces", "rcl_interfaces", "sensor_msgs", "nav_msgs", "geometry_msgs", "std_msgs",
                "diagnostic_msgs", "tf2_ros", "tf2_msgs", "launch", "launch_ros", "ament_index_python", "rosgraph_msgs",
                "cv_bridge", "rviz2"}
# Python modules with a rosdep key (checked in ros/rosdistro rosdep/python.yaml: python3-numpy, python3-opencv,
# python3-yaml and python3-pytest exist; there is no python3-onnxruntime, only python3-onnxruntime-pip)
ROSDEP_PYTHON_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml",
                      "pytest": "python3-pytest"}
# installed with pip (README "ROS 2 usage"), not through rosdep
PIP_MODULES = {"onnxruntime", "onnx", "rosbags", "torch", "safetensors", "tensorrt", "cuda", "evo", "matplotlib", "tqdm",
               "lz4", "backports"}
NEWER_STDLIB = {"compression"}  # Python 3.14 (zstd), imported with a fallback
# this setup.py installs both (training/ as depth_sfm_training; the online adapter imports it lazily, with torch)
OWN_PACKAGES = {PACKAGE, "depth_sfm_training"}


def _imported_top_level_modules(paths) -> set[str]:
    import ast

    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def test_package_xml_is_format3_ament_python_with_rosdep_keys():
    import xml.etree.ElementTree as ET

    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == PACKAGE
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    # exactly what the package and its launch file import: nothing missing, nothing unused (rosdep would install
    # rviz2 on a headless robot, and cv_bridge for nothing)
    imported = _imported_top_level_modules(list((REPO / PACKAGE).rglob("*.py")) + list((REPO / "launch").glob("*.py")))
    needed = {m for m in imported if m in ROS_PACKAGES} | {ROSDEP_PYTHON_KEYS[m] for m in imported
                                                           if m in ROSDEP_PYTHON_KEYS}
    assert deps == needed, f"missing {sorted(needed - deps)}, unused {sorted(deps - needed)}"
    assert "rviz2" not in deps and "cv_bridge" not in deps
    for key in deps | {e.text for e in root.findall("test_depend")}:
        assert key in ROS_PACKAGES or key in ROSDEP_PYTHON_KEYS.values(), f"{key}: not a known rosdep key"
    # the rest comes from pip, and the README says how
    readme = (REPO / "README.md").read_text()
    assert "pip install onnxruntime" in readme and "python3-onnxruntime" in readme
    unknown = {m for m in imported if m not in ROS_PACKAGES | set(ROSDEP_PYTHON_KEYS) | PIP_MODULES | NEWER_STDLIB
               and m not in sys.stdlib_module_names and m not in OWN_PACKAGES}
    assert not unknown, f"imports without a rosdep key or a pip note: {sorted(unknown)}"


@pytest.mark.slow
def test_colcon_build_installs_share_files_and_executables(tmp_path):
    colcon = Path(sys.executable).parent / "colcon"
    if not colcon.exists():
        pytest.skip("colcon not installed (pip install colcon-common-extensions)")
    pkg = _copy_sources(tmp_path)
    env = dict(os.environ, COLCON_HOME=str(tmp_path / "colcon_home"))
    proc = subprocess.run([str(colcon), "build", "--base-paths", str(pkg.parent), "--build-base", str(tmp_path / "build"),
                           "--install-base", str(tmp_path / "install"), "--event-handlers", "console_direct+"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    prefix = tmp_path / "install" / PACKAGE
    share = prefix / "share" / PACKAGE
    for rel in SHARE_FILES:
        assert (share / rel).is_file(), rel
    assert (prefix / "share/ament_index/resource_index/packages" / PACKAGE).is_file()
    for exe in ["depth_sfm_node", "depth-sfm"]:
        assert (prefix / "lib" / PACKAGE / exe).is_file(), f"{exe} not in lib/{PACKAGE} (ros2 run looks there)"
    # ament_index_python finds the package through AMENT_PREFIX_PATH, as ros2 launch would
    code = ("from ament_index_python.packages import get_package_share_directory as g;"
            f"print(g('{PACKAGE}'))")
    found = subprocess.run([sys.executable, "-c", code], env=dict(env, AMENT_PREFIX_PATH=str(prefix)),
                           capture_output=True, text=True, timeout=60)
    if "No module named" in found.stderr:
        pytest.skip("ament_index_python not installed")
    assert Path(found.stdout.strip()) == share


@pytest.mark.slow
def test_wheel_contains_package_data_and_entry_points(tmp_path):
    pkg = _copy_sources(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                           str(tmp_path / "dist"), str(pkg)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in SHARE_FILES:
        assert any(n.endswith(f".data/data/share/{PACKAGE}/{rel}") for n in names), rel
    assert any(n.endswith(f"share/ament_index/resource_index/packages/{PACKAGE}") for n in names)
    assert "depth_sfm_training/configs/defaults.yaml" in names
    packages = sorted(init.parent.relative_to(REPO).as_posix() for init in (REPO / PACKAGE).rglob("__init__.py"))
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert not missing, f"setup.py's packages lack {missing}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "depth_sfm_node = depth_sfm_ros.ros.node:main" in text and "depth-sfm = depth_sfm_ros.cli:main" in text


def test_cli_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "depth_sfm_ros.cli", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    for sub in ["synth", "train", "evaluate", "export", "eval-bag", "demo", "bench"]:
        assert sub in out.stdout
    bad = subprocess.run([sys.executable, "-m", "depth_sfm_ros.cli", "no-such-thing"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_importing_the_package_does_not_import_torch_or_rclpy():
    code = ("import sys, depth_sfm_ros, depth_sfm_ros.geometry, depth_sfm_ros.cli;"
            "print('torch' in sys.modules, 'rclpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr
