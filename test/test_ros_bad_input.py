"""Bad input never kills depth_sfm_node: each kind is sent over DDS, followed by good frames; the
node keeps publishing correct output, logs each kind, and counts it in /diagnostics."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
from ros_helpers import common  # noqa: E402

from depth_sfm_ros.ros import params  # noqa: E402
from depth_sfm_ros.ros.pipeline_factory import pipeline_config  # noqa: E402
from depth_sfm_ros.runtime.model_card import read_model_card  # noqa: E402
from depth_sfm_ros.runtime.pipeline import Pipeline  # noqa: E402
from depth_sfm_ros.synth.render import SynthConfig, render_sequence  # noqa: E402

pytestmark = pytest.mark.ros
FRAME_ID = "cam_front_optical"
FIXED_SCALE = 50.0  # untrained nets predict ~0.2 units: ~10 m, inside the published range
# (plan step, counter it must raise, exact count when no frame was dropped)
RAW_PLAN = ("good_noinfo:2,good:2,bad_encoding,truncated,empty,bad_step,good,bgr8,mono8,padded,resize:2,good:2,"
            "backwards,good:2,bad_info,good,no_frame_id,good:3")
EXPECTED_COUNTS = {"missing_camera_info": 2, "unsupported_encoding": 1, "truncated": 1, "empty": 1, "bad_step": 1,
                   "size_change": 2, "stamp_backwards": 1, "bad_camera_info": 1, "camera_info_unsynced": 1,
                   "decode_failed": 0, "missing_frame_id": 1, "pipeline_error": 0}
COMPRESSED_PLAN = "compressed:2,bad_compressed,compressed:3"



def _card_hw(model_dir) -> tuple[int, int]:
    """(H, W) the model's networks take: the size of the published depth and mask."""
    card = read_model_card(model_dir)
    return card.input_height, card.input_width

def _session(tmp_path_factory, name: str, plan: str, offset: int, *ros_args: str) -> dict:
    tmp = tmp_path_factory.mktemp(name)
    env = common.ros_env(common.unique_domain_id(offset))
    model_dir = common.test_model_dir()
    node = common.start_node(model_dir, env, tmp / "node.log", "-p", "diagnostics_period_s:=0.2",
                             "-p", "log_throttle_s:=60.0", "-p", "scale_mode:=fixed", "-p", f"fixed_scale:={FIXED_SCALE}",
                             "-p", "camera_info_wait_s:=0.15", *ros_args)  # < the player's 0.2 s period: no drop
    try:
        played, rec, _ = common.play_and_record(tmp, env, plan, player_args=("--frame-id", FRAME_ID))
    finally:
        rc = node.stop()
    return {"played": played, "rec": rec, "rc": rc, "log": node.log(), "model_dir": model_dir}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return _session(tmp_path_factory, "bad_raw", RAW_PLAN, 31)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    return _session(tmp_path_factory, "bad_compressed", COMPRESSED_PLAN, 41, "-p", "image_transport:=compressed")


def _good_stamps(played: dict, exclude: tuple[str, ...] = ()) -> list[int]:
    return [s["stamp_ns"] for s in played["steps"] if s["good"] and s["kind"] not in exclude]


def test_node_survives_and_exits_cleanly(raw):
    assert raw["rc"] == 0, raw["log"]
    assert not raw["rec"].meta["timed_out"], raw["log"]
    assert "Traceback" not in raw["log"], raw["log"]


def test_each_bad_input_is_counted(raw):
    values = raw["rec"].last_diagnostics()["values"]
    dropped = int(values["frames_dropped"])
    for kind, count in EXPECTED_COUNTS.items():
        got = int(values[f"bad_input.{kind}"])
        if dropped == 0 or kind in ("unsupported_encoding", "truncated", "empty", "bad_step", "bad_camera_info"):
            assert got == count, (kind, got, values)  # counted in the callback: never lost to a drop
        else:
            assert (got >= 1) == (count >= 1), (kind, got, values)
    assert int(values["odometry_resets"]) >= 4  # start, size change x2, backwards (+ the jump after it)


def test_each_bad_input_is_logged_once_per_throttle_period(raw):
    log = raw["log"]
    for kind in ("unsupported_encoding", "truncated", "empty", "bad_step", "bad_camera_info", "camera_info_unsynced",
                 "missing_frame_id"):
        lines = [line for line in log.splitlines() if f"[{kind}, " in line]
        assert len(lines) == 1, (kind, lines)
    assert log.count("no CameraInfo on '/camera/camera_info'") == 1
    # odometry resets: one line each, from the Pipeline, through the node's ROS logger
    resets = [line for line in log.splitlines() if "[depth_sfm_node]" in line and "resetting odometry" in line]
    assert sum("stamp went backwards" in line for line in resets) == 1, resets
    assert sum("resolution changed" in line for line in resets) == 2, resets


def test_good_frames_between_bad_ones_are_published_correctly(raw):
    rec = raw["rec"]
    good = _good_stamps(raw["played"], exclude=("no_frame_id",))
    depth_stamps = [e["stamp_ns"] for e in rec.meta["depth"]]
    assert set(depth_stamps) <= set(good)  # nothing published for a bad message
    assert depth_stamps[-3:] == good[-3:]  # and it is still publishing at the end
    dropped = int(rec.last_diagnostics()["values"]["frames_dropped"])
    assert len(depth_stamps) == len(good) - dropped
    net_hw = _card_hw(raw["model_dir"])
    for entry, depth, colored in zip(rec.meta["depth"], rec.images("depth"), rec.images("colored")):
        assert (entry["encoding"], entry["frame_id"], depth.shape) == ("32FC1", FRAME_ID, net_hw)
        np.testing.assert_array_equal(np.all(colored == 0, axis=-1), np.isnan(depth))


def test_encoding_variants_give_the_same_depth(raw):
    """bgr8 and row-padded rgb8 frames decode to the same picture as rgb8, and the last frame is
    still right after all the bad input: the node publishes the depth the bare Pipeline computes
    from the rgb8 frame (the depth net sees one frame)."""
    steps = {s["stamp_ns"]: s for s in raw["played"]["steps"]}
    published = {steps[e["stamp_ns"]]["kind"]: (steps[e["stamp_ns"]]["frame"], d)
                 for e, d in zip(raw["rec"].meta["depth"], raw["rec"].images("depth"))}
    assert {"bgr8", "mono8", "padded"} <= set(published)
    seq = render_sequence(SynthConfig(width=192, height=64, num_frames=max(f for f, _ in published.values()) + 1))
    config = pipeline_config(params.validate({"model": str(raw["model_dir"]), "scale_mode": "fixed",
                                              "fixed_scale": FIXED_SCALE}))
    last_entry = raw["rec"].meta["depth"][-1]
    published["last good frame, after all the bad input"] = (steps[last_entry["stamp_ns"]]["frame"],
                                                            raw["rec"].images("depth")[-1])
    for kind in ("bgr8", "padded", "last good frame, after all the bad input"):
        frame, depth = published[kind]
        pipeline = Pipeline(config)
        expected = pipeline.process(seq[frame].image_rgb, "rgb8", seq[frame].stamp_s, seq.intrinsics).depth_m
        pipeline.close()
        assert np.isfinite(expected).any()
        np.testing.assert_allclose(depth, expected, rtol=1e-5, equal_nan=True, err_msg=kind)
    assert np.isfinite(published["mono8"][1]).any()


def test_stamp_going_backwards_resets_odometry(raw):
    steps = raw["played"]["steps"]
    backwards = next(s["stamp_ns"] for s in steps if s["kind"] == "backwards")
    odom = {e["stamp_ns"]: e for e in raw["rec"].meta["odometry"]}
    if backwards in odom:  # unless that frame was dropped, odometry restarts at the identity there
        assert odom[backwards]["position"] == [0.0, 0.0, 0.0]
        assert odom[backwards]["orientation_xyzw"] == [0.0, 0.0, 0.0, 1.0]
    assert "resetting odometry: stamp went backwards" in raw["log"]


def test_compressed_input_and_garbage(compressed):
    assert compressed["rc"] == 0, compressed["log"]
    assert not compressed["rec"].meta["timed_out"], compressed["log"]
    values = compressed["rec"].last_diagnostics()["values"]
    assert values["bad_input.decode_failed"] == "1"
    good = _good_stamps(compressed["played"])
    depth_stamps = [e["stamp_ns"] for e in compressed["rec"].meta["depth"]]
    assert set(depth_stamps) <= set(good) and depth_stamps[-1] == good[-1]
    assert {e["frame_id"] for e in compressed["rec"].meta["depth"]} == {FRAME_ID}
