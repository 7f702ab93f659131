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


def test_package_xml_is_format3_ament_python_with_rosdep_keys():
    import xml.etree.ElementTree as ET

    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == PACKAGE
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    for key in ["rclpy", "sensor_msgs", "nav_msgs", "geometry_msgs", "std_msgs", "diagnostic_msgs", "tf2_ros",
                "cv_bridge", "launch_ros", "python3-numpy", "python3-opencv"]:
        assert key in deps, key


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
