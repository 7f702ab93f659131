"""The bench scripts run from a clean checkout with their defaults (mechanics only: no timing is asserted;
speed is measured by running them, see README "Benchmarks")."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_inference_default_model_source_runs_and_prints_its_json_line():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_inference.py"), "--iters", "1", "--warmup", "0",
                          "--resolutions", "128x64", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["source"].startswith("the bundled default model's architecture")
    backends = {r["backend"] for r in result["results"]}
    assert {"torch eager fp32 cpu", "onnxruntime cpu"} <= backends
    assert all(r["resolution"] == "128x64" and r["fps"] > 0 for r in result["results"])


@pytest.mark.ros
def test_bench_dds_roundtrip_runs_and_every_image_is_answered():
    pytest.importorskip("rclpy")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_dds_roundtrip.py"), "--count", "5",
                          "--sizes", "64x32", "320x240"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    assert [r["size"] for r in result["rows"]] == ["64x32", "320x240"]
    assert all(r["answered"] == r["sent"] == 5 and r["p50_ms"] > 0 for r in result["rows"])


@pytest.mark.ros
def test_bench_node_runs_both_sides_and_the_transport_floor():
    pytest.importorskip("rclpy")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_node.py"), "--frames", "4", "--repeats", "1",
                          "--width", "192", "--height", "64", "--floor-count", "5"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    assert result["node"]["received"] == result["bare"]["received"] == 4
    assert result["transport_floor_p50_ms"] > 0
    assert "transport floor" in out.stdout


@pytest.mark.ros
def test_bench_online_adapt_node_mode_runs_both_sides_and_says_when_no_step_happened():
    """--node mechanics on a few frames (too few for an adaptation step: the run must say it measured nothing)."""
    pytest.importorskip("rclpy")
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_online_adapt.py"), "--node", "--frames", "4",
                          "--warmup", "2", "--repeats", "1", "--rate", "10"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    result = json.loads(out.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    assert [b["side"] for b in result["blocks"]] == ["off", "on"]
    assert result["off"]["received"] == result["on"]["received"] == 4
    assert result["on"]["samples"] > 0 and result["on"]["pipeline_p50_ms"] > 0
    if result["adapt_steps_during_on_blocks"] == 0:
        assert out.returncode == 1 and not result["measured"] and "NO adaptation step happened" in out.stdout
    else:
        assert out.returncode == 0 and result["measured"]
