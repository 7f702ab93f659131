"""The package's structure, read from its source with ``ast`` (docs/architecture.md, "Imports"):

- the layers import downwards only: ``geometry`` / ``msgs`` / ``models`` / ``runtime`` never import ``ros/``
  or ``bag/``, ``msgs`` imports nothing of the package but ``geometry``, ``ros/`` never imports ``bag/``;
- no import cycles between modules (imports inside functions count: a lazy import is still a dependency);
- ``ros/node.py`` stays a thin node (under 250 lines), and only ``ros/node.py`` / ``ros/rclpy_setup.py``
  import rclpy at module level;
- the ROS-free modules import where ROS is not installed, and their tests do not skip without it.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "depth_sfm_ros"
ROS_PACKAGES = ("rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "sensor_msgs", "nav_msgs",
                "geometry_msgs", "diagnostic_msgs", "tf2_ros", "tf2_msgs")


def _module_name(path: Path) -> str:
    parts = ("depth_sfm_ros",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported_names(module: str, node: ast.AST, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]


def _resolve(name: str) -> str | None:
    """The package module that ``name`` (a module, or a name inside one) refers to."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def _imports(module: str, top_level_only: bool = False) -> dict[str, int]:
    """Imported name -> line for every import of ``module`` (or only those at module level)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: dict[str, int] = {}
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for name in _imported_names(module, node, path.name == "__init__.py"):
                found.setdefault(name, node.lineno)
    return found


def _graph() -> dict[str, dict[str, int]]:
    """module -> {package module it imports: line} (importing a module's own parent package is not an edge)."""
    graph = {}
    for module in MODULES:
        edges: dict[str, int] = {}
        for name, line in _imports(module).items():
            target = _resolve(name)
            if target and target != module and not module.startswith(target + "."):
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


GRAPH = _graph()


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("lower,forbidden", [
    ("geometry", ("ros", "bag", "runtime", "models", "msgs", "synth")),
    ("msgs", ("ros", "bag", "runtime", "models", "synth")),
    ("models", ("ros", "bag", "runtime", "msgs")),
    ("runtime", ("ros", "bag")),
    ("ros", ("bag",)),
])
def test_layers_import_downwards_only(lower, forbidden):
    upward = [f"{module} -> {target} (line {line})" for module, edges in GRAPH.items() if _layer(module) == lower
              for target, line in edges.items() if _layer(target) in forbidden]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    """Tarjan's strongly connected components of the module graph: every component is one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, cycles


def test_the_checker_sees_lazy_and_relative_imports():
    """Not vacuous: lazy (function-level) and relative imports are edges."""
    assert "depth_sfm_ros.runtime.backends" in GRAPH["depth_sfm_ros.runtime.pipeline"]  # lazy, relative
    assert "depth_sfm_ros.runtime.torch_backend" in GRAPH["depth_sfm_ros.runtime.backends"]  # lazy
    assert "depth_sfm_ros.msgs" in GRAPH["depth_sfm_ros.ros.frame_policy"]  # a package's names: its __init__ ...
    assert "depth_sfm_ros.msgs.image" in GRAPH["depth_sfm_ros.msgs"]  # ... which imports the modules
    assert len(GRAPH) > 80


def test_the_node_is_thin_and_the_only_rclpy_module_with_its_setup():
    lines = (PACKAGE / "ros" / "node.py").read_text().count("\n")
    assert lines < 250, f"ros/node.py has {lines} lines; move per-frame logic to ros/frame_policy.py"
    rclpy_at_top = sorted(module for module in MODULES
                          if any(name.split(".")[0] in ROS_PACKAGES for name in _imports(module, top_level_only=True)))
    assert rclpy_at_top == ["depth_sfm_ros.ros.node", "depth_sfm_ros.ros.rclpy_setup"]


ROS_FREE_MODULES = ["depth_sfm_ros.msgs", "depth_sfm_ros.msgs.rclpy_msgs", "depth_sfm_ros.msgs.rosbags_msgs",
                    "depth_sfm_ros.ros.frame_policy", "depth_sfm_ros.ros.sync", "depth_sfm_ros.ros.diagnostics",
                    "depth_sfm_ros.ros.outputs", "depth_sfm_ros.ros.params", "depth_sfm_ros.ros.pipeline_factory",
                    "depth_sfm_ros.ros.topics", "depth_sfm_ros.runtime.pipeline", "depth_sfm_ros.bag.eval_bag",
                    "depth_sfm_ros.bag.realtime", "depth_sfm_ros.bag.cli"]
ROS_FREE_TESTS = ["test_node_helpers.py", "test_params_validate.py", "test_frame_policy.py", "test_msgs.py",
                  "test_scale.py", "test_pipeline.py", "test_compressed_decoder.py"]

_BLOCK_ROS = f"""
import importlib.abc, sys
class BlockRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ROS_PACKAGES!r}:
            raise ImportError(f"{{name}} is blocked: ROS is not installed here")
        return None
sys.meta_path.insert(0, BlockRos())
"""


def test_ros_free_modules_import_without_ros():
    code = _BLOCK_ROS + "".join(f"import {m}\n" for m in ROS_FREE_MODULES) + "print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.parametrize("test_file", ROS_FREE_TESTS)
def test_ros_free_tests_do_not_skip_without_ros(test_file):
    """Their module-level imports are ROS-free (checked above) and they never importorskip a ROS package
    at module level, so they run where ROS is missing."""
    tree = ast.parse((Path(__file__).parent / test_file).read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue  # a test that needs ROS may skip itself; the file must not
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            if getattr(call.func, "attr", "") == "importorskip" and call.args:
                assert str(getattr(call.args[0], "value", "")).split(".")[0] not in ROS_PACKAGES, \
                    f"{test_file}:{call.lineno} skips the whole file without ROS"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n.split(".")[0] in ROS_PACKAGES for n in names), f"{test_file}:{node.lineno}"
