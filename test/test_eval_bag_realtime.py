"""``eval-bag --realtime``: the bag played over DDS at its recorded rate through a real depth_sfm_node
process, its outputs recorded and scored; the depth must equal the offline path's on the same frames."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from test_eval_bag_support import HEIGHT, WIDTH, synthetic_sequence, write_bag

pytest.importorskip("rclpy")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from depth_sfm_ros.runtime.tiny_model import export_tiny_model_dir
    return export_tiny_model_dir(tmp_path_factory.mktemp("model") / "tiny", height=HEIGHT, width=WIDTH)


def _config(model_dir: Path):
    """The node's configuration (scale_mode none) with the depth range opened up for the untrained
    tiny model, whose depth (~0.2 network units) lies below the node's default min_depth_m."""
    from dataclasses import replace

    from depth_sfm_ros.bag.eval_bag import node_pipeline_config
    return replace(node_pipeline_config(model_dir, "onnxruntime", "cpu", "none"), min_depth_m=0.01)


def _ros_env() -> dict[str, str]:
    """An own DDS domain (from the process id) with localhost-only discovery."""
    return {"ROS_DOMAIN_ID": str(101 + os.getpid() % 100), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


@pytest.mark.ros
@pytest.mark.timeout(180)
@pytest.mark.parametrize("storage,compressed,frames", [("sqlite3", False, 10), ("mcap", True, 6)])
def test_realtime_node_path_matches_the_offline_path(tmp_path: Path, model_dir: Path, storage: str,
                                                      compressed: bool, frames: int):
    """Raw and compressed (the node subscribes to <image>/compressed) bags: the node's depth equals eval-bag's."""
    from depth_sfm_ros.bag.realtime import evaluate_bag_realtime
    seq = synthetic_sequence(frames)
    bag = write_bag(tmp_path / "bag", seq, storage, compressed=compressed)
    out = tmp_path / "out"
    image_topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    metrics = evaluate_bag_realtime(bag, out, image_topic=image_topic, pipeline_config=_config(model_dir),
                                    env=_ros_env())
    assert json.loads((out / "metrics.json").read_text()) == metrics
    rt = metrics["realtime"]
    assert rt["frames_played"] == len(seq)
    # playing at the recorded rate, a busy machine makes the node skip frames (it keeps the newest): how many is a
    # measurement of the machine, not a property of the code, so the test asserts on the frames it published
    assert 1 <= rt["frames_published"] <= len(seq)
    assert rt["dropped"] == rt["frames_played"] - rt["frames_published"]
    assert metrics["frames"] == rt["frames_published"]
    comparison = metrics["comparison"]
    assert comparison["frames_compared"] == rt["frames_published"]
    assert comparison["depth_max_abs_diff_m"] <= 1e-5 and comparison["depth_valid_mismatch_pixels"] == 0
    offline = json.loads(Path(comparison["offline_metrics"]).read_text())
    assert offline["frames"] == len(seq)
    if rt["dropped"] == 0:  # same frames -> same scores
        assert metrics["depth"]["abs_rel"] == pytest.approx(offline["depth"]["abs_rel"], rel=1e-5)
        assert metrics["odometry"]["ate_m"] == pytest.approx(offline["odometry"]["ate_m"], rel=1e-4, abs=1e-9)
    assert metrics["odometry"]["alignment"] == "sim3" and "mask" in metrics
    assert 0 < metrics["speed"]["latency_ms_p50"] < 5000
    assert (out / "realtime_bag").is_dir() and (out / "report.html").is_file()
    assert metrics["source"]["path"].startswith("realtime")
    assert "## Realtime (node over DDS)" in (out / "report.md").read_text()


def test_realtime_refuses_external_scale(tmp_path: Path, model_dir: Path):
    from depth_sfm_ros.bag.realtime import evaluate_bag_realtime
    bag = write_bag(tmp_path / "bag", synthetic_sequence(3), "mcap", streams=())
    with pytest.raises(ValueError, match="external"):
        evaluate_bag_realtime(bag, tmp_path / "out", model=model_dir, scale_mode="external")
