"""Faults from the operating system and from broken model files, with real OS errors (no mocks):

- a file size limit (RLIMIT_FSIZE, so writes fail with EFBIG as on a full disk) while eval-bag
  writes its output bag, and while the TensorRT engine cache is written: a clear error, nothing
  half-written left looking like a result;
- output paths that cannot exist (under a regular file: ENOTDIR; under /proc);
- the node started with a model file missing or of the wrong shape: exit status 2 and a message
  naming the file and what was expected.

Already covered elsewhere (not repeated): corrupt / other-TensorRT-version / other-GPU engines
(test_engine_cache.py), a bag cut off mid-message or with corrupt chunk bytes
(test_eval_bag_reader.py, test_eval_bag.py::test_truncated_bag_keeps_the_metrics_of_the_frames_read;
test_reliability_bag_cut.py fuzzes the cut position).
"""
from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from depth_sfm_ros.runtime.tiny_model import export_tiny_model_dir
from test_eval_bag_support import synthetic_sequence, write_bag

FSIZE_LIMIT = 150_000  # bytes: the input bag and model are written before the limit applies


def _limit_file_size() -> None:
    """preexec_fn: writes past FSIZE_LIMIT fail with EFBIG (SIGXFSZ ignored, as a full disk fails)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return export_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "model", height=32, width=96, net_width=4)


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory) -> Path:
    return write_bag(tmp_path_factory.mktemp("bag") / "bag", synthetic_sequence(8), "mcap")


def _eval_bag(bag: Path, out: Path, model: Path, limit: bool) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "depth_sfm_ros.cli", "eval-bag", str(bag), "--out", str(out), "--model", str(model),
           "--write-bag", "--no-progress", "--backend", "onnxruntime"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_file_size if limit else None)


def test_output_bag_on_a_full_disk_is_a_clear_error_and_removed(tmp_path, small_bag, tiny_model):
    out = tmp_path / "out"
    done = _eval_bag(small_bag, out, tiny_model, limit=True)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"cannot write the output bag {out / 'output_bag'}: File too large" in done.stderr, done.stderr
    assert not (out / "output_bag").exists()  # nothing half-written left behind
    assert not (out / "metrics.json").exists()  # and no result claiming it
    # the same command without the limit works (the limit, not the command, made it fail)
    good = tmp_path / "good"
    done = _eval_bag(small_bag, good, tiny_model, limit=False)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((good / "metrics.json").read_text())
    assert metrics["output_bag"]["topics"]["/depth_sfm_node/depth"] == 8
    assert (good / "output_bag" / "metadata.yaml").is_file()


def test_output_dir_under_a_regular_file_is_a_clear_error(tmp_path, small_bag, tiny_model):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    done = _eval_bag(small_bag, blocker / "out", tiny_model, limit=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert str(blocker) in done.stderr and "Not a directory" in done.stderr, done.stderr


ENGINE_SCRIPT = textwrap.dedent("""
    import sys
    from depth_sfm_ros.runtime.tensorrt_engine import DeviceInfo, EngineCacheError, make_key, write_engine
    key = make_key(sys.argv[1], "fp16", (1, 3, 192, 640), device=DeviceInfo("Orin (nvgpu)", "8.7"),
                   trt_version="8.6.2")
    try:
        write_engine(key, b"E" * int(sys.argv[3]), sys.argv[2])
    except EngineCacheError as exc:
        print("ERROR", exc)
        sys.exit(3)
    print("WROTE")
""")


def _write_engine(onnx: Path, cache_dir: Path | str, size: int, limit: bool) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", ENGINE_SCRIPT, str(onnx), str(cache_dir), str(size)],
                          capture_output=True, text=True, timeout=60, preexec_fn=_limit_file_size if limit else None)


def test_engine_cache_on_a_full_disk_keeps_no_engine(tmp_path):
    from depth_sfm_ros.runtime.tensorrt_engine import DeviceInfo, check_cached_engine, engine_path, make_key

    onnx = tmp_path / "depth.onnx"
    onnx.write_bytes(b"onnx-bytes")
    cache = tmp_path / "cache"
    done = _write_engine(onnx, cache, 2 * FSIZE_LIMIT, limit=True)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "cannot write the TensorRT engine cache" in done.stdout and "File too large" in done.stdout, done.stdout
    key = make_key(onnx, "fp16", (1, 3, 192, 640), device=DeviceInfo("Orin (nvgpu)", "8.7"), trt_version="8.6.2")
    engine_bytes, reason = check_cached_engine(key, cache)
    assert engine_bytes is None and "no cached engine" in reason
    leftovers = [p.name for p in engine_path(key, cache).parent.iterdir()] if engine_path(key, cache).parent.exists() \
        else []
    assert leftovers == [], leftovers  # no partial engine, no temp file
    done = _write_engine(onnx, cache, 2 * FSIZE_LIMIT, limit=False)  # without the limit it is written and trusted
    assert done.returncode == 0 and "WROTE" in done.stdout, done.stderr
    assert check_cached_engine(key, cache)[0] == b"E" * 2 * FSIZE_LIMIT


@pytest.mark.parametrize("where", ["/proc/depth_sfm_engine_cache", "under_a_file"])
def test_engine_cache_in_an_impossible_place_is_a_clear_error(tmp_path, where):
    onnx = tmp_path / "depth.onnx"
    onnx.write_bytes(b"onnx-bytes")
    if where == "under_a_file":
        (tmp_path / "file").write_text("x")
        where = str(tmp_path / "file" / "cache")
    done = _write_engine(onnx, where, 1000, limit=False)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert "cannot write the TensorRT engine cache" in done.stdout and where in done.stdout, done.stdout


# --- the node refusing a broken model at start-up ---------------------------------------------

def _broken_model(kind: str, src: Path, dst: Path) -> tuple[Path, list[str]]:
    """A copy of the tiny model broken in one way, and the fragments its start-up error must name."""
    shutil.copytree(src, dst)
    if kind == "missing_depth_onnx":
        (dst / "depth.onnx").unlink()
        return dst, [str(dst / "depth.onnx"), "missing", "expected an ONNX model with inputs ['image']"]
    card_path = dst / "model_card.yaml"
    card = yaml.safe_load(card_path.read_text())
    card["input_height"] = 64  # the ONNX files take 32 rows
    card_path.write_text(yaml.safe_dump(card))
    return dst, [str(dst / "depth.onnx"), "[1, 3, 32, 96]", "the model card says [1, 3, 64, 96]"]


@pytest.mark.ros
@pytest.mark.parametrize("kind", ["missing_depth_onnx", "wrong_input_shape"])
def test_node_refuses_a_broken_model_naming_the_file(tmp_path, tiny_model, kind):
    pytest.importorskip("rclpy")
    from ros_helpers import common

    model, fragments = _broken_model(kind, tiny_model, tmp_path / "model")
    node = common.Proc.start(common.node_command(model), common.ros_env(common.unique_domain_id(83)),
                             tmp_path / "node.log")
    rc = node.wait(60.0)
    log = node.log()
    assert rc == 2, log
    assert "parameter 'model'" in log and "Traceback" not in log, log
    for fragment in fragments:
        assert fragment in log, (fragment, log)
