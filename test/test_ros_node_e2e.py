"""End to end over real DDS: depth_sfm_node (started exactly as the launch file starts it), a
player publishing a synthetic drive, and a recorder, each its own process.

The node's outputs are compared with the bare Pipeline on the same frames (same model, same
configuration through ``pipeline_factory``), so this checks the ROS layer adds and loses
nothing. Accuracy against ground truth is asserted only with the trained default model.
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from ros_helpers import common  # noqa: E402

from depth_sfm_ros import metrics  # noqa: E402
from depth_sfm_ros.geometry import Intrinsics, Pose  # noqa: E402
from depth_sfm_ros.ros import outputs, params, topics  # noqa: E402
from depth_sfm_ros.ros.pipeline_factory import pipeline_config  # noqa: E402
from depth_sfm_ros.runtime.model_card import read_model_card  # noqa: E402
from depth_sfm_ros.runtime.pipeline import Pipeline, PipelineConfig  # noqa: E402
from depth_sfm_ros.synth.render import SynthConfig, render_sequence  # noqa: E402

pytestmark = pytest.mark.ros
NUM_FRAMES = 16
WIDTH, HEIGHT = 384, 128
FRAME_ID = "camera_optical"
MIN_DEPTH_M, MAX_DEPTH_M = 0.5, 10.0



def _card_hw(model_dir) -> tuple[int, int]:
    """(H, W) the model's networks take: the size of the published depth and mask."""
    card = read_model_card(model_dir)
    return card.input_height, card.input_width

def _scale_for_half_nan(model_dir: Path, seq) -> float:
    """Fixed scale putting the median depth of frame 0 at MAX_DEPTH_M, so about half of the
    published pixels are beyond the range (NaN) whatever the model predicts."""
    pipeline = Pipeline(PipelineConfig(model=str(model_dir), scale_mode="none", min_depth_m=0.0, max_depth_m=1e9))
    raw = pipeline.process(seq[0].image_rgb, "rgb8", seq[0].stamp_s, seq.intrinsics).depth_m
    pipeline.close()
    return MAX_DEPTH_M / float(np.nanmedian(raw))


def _published_topics(domain_id: int) -> dict[str, list[str]]:
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        probe = rclpy.create_node("graph_probe", context=context)
        import time

        deadline = time.monotonic() + 10.0
        found: dict[str, list[str]] = {}
        while time.monotonic() < deadline:
            try:
                found = dict(probe.get_publisher_names_and_types_by_node(topics.NODE_NAME, "/"))
            except Exception:  # noqa: BLE001 - the node is not discovered yet
                found = {}
            if "/depth_sfm_node/depth" in found:
                break
            time.sleep(0.1)
        probe.destroy_node()
        return found
    finally:
        rclpy.try_shutdown(context=context)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One node process, one played sequence; every test below reads this recording."""
    tmp = tmp_path_factory.mktemp("e2e")
    model_dir = common.test_model_dir(need_mask=True)  # every output, the dynamic mask included
    seq = render_sequence(SynthConfig(width=WIDTH, height=HEIGHT, num_frames=NUM_FRAMES))
    fixed_scale = _scale_for_half_nan(model_dir, seq)
    overrides = {"scale_mode": "fixed", "fixed_scale": fixed_scale, "min_depth_m": MIN_DEPTH_M,
                 "max_depth_m": MAX_DEPTH_M, "publish_points": True, "points_decimation": 2,
                 "diagnostics_period_s": 0.2, "camera_info_wait_s": 0.15}
    ros_args = [a for name, value in overrides.items()
                for a in ("-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}")]
    domain_id = common.unique_domain_id(21)
    env = common.ros_env(domain_id)
    # as the launch file does (dds_profile default), and as the README tells camera drivers to do
    env.update({name: str(common.REPO / "config" / "fastdds_large_images.xml")
                for name in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")})
    segments_before = _large_shm_segments()
    node = common.start_node(model_dir, env, tmp / "node.log", *ros_args)
    try:
        played, rec, gt = common.play_and_record(tmp, env, f"good:{NUM_FRAMES}",
                                                 player_args=("--width", str(WIDTH), "--height", str(HEIGHT),
                                                              "--frame-id", FRAME_ID))
        graph = _published_topics(domain_id)
        segments_running = _large_shm_segments()
    finally:
        rc = node.stop()
    # the node's own segment: there while it ran, gone after it stopped (player and recorder had exited)
    node_segments = (segments_running - segments_before) - _large_shm_segments()
    node_params = params.validate({"model": str(model_dir), **overrides})
    return {"played": played, "rec": rec, "gt": gt, "seq": seq, "rc": rc, "log": node.log(), "graph": graph,
            "params": node_params, "model_dir": model_dir, "node_shm_segments": node_segments}


def _large_shm_segments() -> set[str]:
    """Fast DDS shared-memory segments of at least 16 MiB (the profile's size; its default is 512 KiB)."""
    shm = Path("/dev/shm")
    return {p.name for p in shm.glob("fastrtps_*") if not p.name.endswith("_el") and p.stat().st_size >= 16 * 2**20}


@pytest.fixture(scope="module")
def bare(run):
    """The same frames through the bare Pipeline, configured as the node configures it."""
    pipeline = Pipeline(pipeline_config(run["params"]))
    results = {f.stamp_ns: pipeline.process(f.image_rgb, "rgb8", f.stamp_s, run["seq"].intrinsics)
               for f in run["seq"]}
    pipeline.close()
    return results


def _by_stamp(entries: list[dict]) -> dict[int, int]:
    return {e["stamp_ns"]: i for i, e in enumerate(entries)}


def test_node_ran_and_exited_cleanly(run):
    assert run["rc"] == 0, run["log"]
    assert not run["rec"].meta["timed_out"], run["log"]
    assert "Traceback" not in run["log"], run["log"]
    try:
        import tf2_ros  # noqa: F401
    except ImportError:  # no TF broadcaster: said once, and the node runs on
        assert run["log"].count("tf2_ros is not installed") == 1


def test_every_output_copies_the_input_stamp_and_frame(run):
    rec = run["rec"].meta
    inputs = [s["stamp_ns"] for s in run["played"]["steps"]]
    depth_stamps = [e["stamp_ns"] for e in rec["depth"]]
    assert depth_stamps == sorted(depth_stamps) and set(depth_stamps) <= set(inputs)
    assert depth_stamps[-1] == inputs[-1]  # the newest frame is never dropped
    assert len(depth_stamps) >= NUM_FRAMES // 2, "more than half of the frames at 5 Hz were dropped"
    for kind in ("depth_info", "colored", "odometry", "points"):
        assert [e["stamp_ns"] for e in rec[kind]] == depth_stamps, kind
    # the mask needs a previous frame: all but the first
    assert [e["stamp_ns"] for e in rec["mask"]] == depth_stamps[1:]
    for kind in ("depth", "depth_info", "colored", "mask", "points"):
        assert {e["frame_id"] for e in rec[kind]} == {FRAME_ID}, kind
    assert {(e["frame_id"], e["child_frame_id"]) for e in rec["odometry"]} == {("odom", "base_link")}


def test_encodings_sizes_and_camera_info(run):
    rec = run["rec"]
    h_net, w_net = _card_hw(run["model_dir"])
    for kind, encoding in (("depth", "32FC1"), ("colored", "bgr8"), ("mask", "mono8")):
        for entry in rec.meta[kind]:
            assert (entry["encoding"], entry["height"], entry["width"]) == (encoding, h_net, w_net), kind
    expected_K = run["seq"].intrinsics.scaled(w_net, h_net).K
    for info in rec.meta["depth_info"]:
        assert (info["width"], info["height"]) == (w_net, h_net)
        np.testing.assert_allclose(np.reshape(info["k"], (3, 3)), expected_K, rtol=1e-9)
    for mask in rec.images("mask"):
        assert set(np.unique(mask)) <= {0, 255}


def test_depth_is_the_pipelines_with_nan_where_unknown(run, bare):
    rec = run["rec"]
    nan_fractions = []
    for entry, depth, colored in zip(rec.meta["depth"], rec.images("depth"), rec.images("colored")):
        expected = bare[entry["stamp_ns"]].depth_m
        np.testing.assert_allclose(depth, expected, rtol=1e-5, equal_nan=True)
        unknown = np.isnan(depth)
        nan_fractions.append(unknown.mean())
        known = depth[~unknown]
        assert np.all((known >= MIN_DEPTH_M) & (known <= MAX_DEPTH_M))
        black = np.all(colored == 0, axis=-1)
        np.testing.assert_array_equal(black, unknown)  # unknown is black, and only unknown is
    assert 0.05 < float(np.mean(nan_fractions)) < 0.95, nan_fractions


def test_points_are_the_decimated_depth(run):
    rec = run["rec"]
    index = _by_stamp(rec.meta["depth"])
    for i, entry in enumerate(rec.meta["points"]):
        assert entry["fields"] == ["x", "y", "z", "rgb"] and entry["point_step"] == 16
        depth = rec.images("depth")[index[entry["stamp_ns"]]]
        z = np.sort(rec.arrays[f"points_{i}"][:, 2])
        np.testing.assert_allclose(z, np.sort(depth[::2, ::2][np.isfinite(depth[::2, ::2])]), rtol=1e-6)


def test_odometry_matches_the_pipeline_and_is_scored(run, bare):
    rec = run["rec"]
    diag = rec.last_diagnostics()["values"]
    odom = rec.meta["odometry"]
    for entry in odom:
        assert math.isclose(np.linalg.norm(entry["orientation_xyzw"]), 1.0, rel_tol=1e-9)
        cov = np.reshape(entry["covariance"], (6, 6))
        assert np.all(np.diag(cov) > 0) and np.allclose(cov, cov.T)
    est = np.stack([Pose.from_quaternion(e["position"], e["orientation_xyzw"]).matrix for e in odom])
    assert np.allclose(est[0], np.eye(4))  # odometry starts at the first processed frame
    if diag["frames_dropped"] == "0":  # same frame pairs as the bare pipeline: same poses
        p = run["params"]
        for entry, T in zip(odom, est):
            expected = outputs.odometry_pose(bare[entry["stamp_ns"]].T_odom_cam, p.T_base_cam, child_is_base=True)
            np.testing.assert_allclose(T, expected.matrix, atol=1e-6)
    # against ground truth (camera positions; T_base_cam has no translation), Sim(3)-aligned
    gt_index = {int(s): i for i, s in enumerate(run["gt"]["stamps_ns"])}
    gt = run["gt"]["T_world_cam"][[gt_index[e["stamp_ns"]] for e in odom]]
    gt_rel = np.linalg.inv(gt[0]) @ gt
    score = metrics.ate(est, gt_rel, align="sim3")
    path_m = float(np.sum(np.linalg.norm(np.diff(gt_rel[:, :3, 3], axis=0), axis=1)))
    print(f"\nodometry ATE (sim3) {score['rmse_m']:.3f} m over a {path_m:.2f} m path, {len(odom)} poses")
    assert math.isfinite(score["rmse_m"]) and path_m > 1.0
    if run["model_dir"] == common.DEFAULT_MODEL:
        assert score["rmse_m"] < 0.25 * path_m


def test_mask_matches_the_pipeline_and_iou_is_reported(run, bare):
    rec = run["rec"]
    gt_index = {int(s): i for i, s in enumerate(run["gt"]["stamps_ns"])}
    tp = fp = fn = 0
    same_pairs = rec.last_diagnostics()["values"]["frames_dropped"] == "0"
    for entry, mask in zip(rec.meta["mask"], rec.images("mask")):
        if same_pairs:
            np.testing.assert_array_equal(mask, bare[entry["stamp_ns"]].dynamic_mask)
        gt_mask = run["gt"]["dynamic_mask"][gt_index[entry["stamp_ns"]]].astype(np.uint8)
        gt_small = cv2.resize(gt_mask, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        scores = metrics.mask_metrics(mask > 0, gt_small)
        tp, fp, fn = tp + scores["tp"], fp + scores["fp"], fn + scores["fn"]
    total = metrics.mask_scores(tp, fp, fn)
    print(f"\ndynamic mask IoU {total['iou']:.3f} (precision {total['precision']:.3f}, recall {total['recall']:.3f})")
    assert tp + fn > 0  # the synthetic drive has moving objects in view
    assert math.isnan(total["iou"]) or 0.0 <= total["iou"] <= 1.0


def test_diagnostics_report_rates_latency_and_counters(run):
    status = run["rec"].last_diagnostics()
    values = status["values"]
    assert status["level"] == 0 and status["message"] == "running"
    assert "onnxruntime" in values["backend"] and status["hardware_id"] == values["backend"]
    assert int(values["frames_received"]) == NUM_FRAMES
    assert int(values["frames_processed"]) + int(values["frames_dropped"]) == NUM_FRAMES
    assert int(values["frames_processed"]) == len(run["rec"].meta["depth"])
    assert float(values["processing_rate_hz"]) > 0 and float(values["latency_ms_p50"]) > 0
    assert values["scale"] == f"{run['params'].fixed_scale:.6g}"
    # the scale says what it rests on; the still-camera test ran on every pair and found the drive moving
    assert values["scale_status"] == "ok" and values["scale_assumption"].startswith("fixed: fixed_scale=")
    assert values["scale_refusals"] == "0"
    assert values["still_frames"] == "0" and values["motion_state"] == "moving" and float(values["motion_px"]) > 0.6
    for kind in ("unsupported_encoding", "truncated", "empty", "size_change", "stamp_backwards",
                 "missing_camera_info", "camera_info_unsynced", "pipeline_error"):
        assert values[f"bad_input.{kind}"] == "0", kind
    assert {"timing_ms.infer", "timing_ms.total"} <= set(values)
    # where the node's own time goes, beside the Pipeline's stages
    node_stages = {"node_queued", "node_decode", "node_camera_info_wait", "node_pipeline", "node_publish"}
    assert {f"timing_ms.{k}" for k in node_stages} <= set(values)
    assert float(values["timing_ms.node_pipeline"]) >= float(values["timing_ms.total"]) * 0.9
    assert 0 <= int(values["frames_camera_info_late"]) <= NUM_FRAMES
    # every output has a subscriber (the recorder), so the last frame went to all of them
    assert set(values["outputs_last_frame"].split(",")) == set(topics.OUTPUT_TOPICS) - {"/diagnostics"}


def test_node_loaded_the_dds_profile_without_errors(run):
    # Fast DDS prints XML parser errors and falls back to its defaults: the profile must parse
    assert "XMLPARSER" not in run["log"] and "Error" not in run["log"], run["log"][-2000:]
    # and it took effect: the node's shared-memory segment has the profile's 16 MiB, not the default 512 KiB
    assert len(run["node_shm_segments"]) == 1, run["node_shm_segments"]


def test_published_topics_are_the_declared_outputs(run):
    graph = run["graph"]
    ours = {name: types for name, types in graph.items() if name not in ("/rosout", "/parameter_events")}
    assert ours == {topics.resolve(t): [msg_type] for t, msg_type in topics.OUTPUT_TOPICS.items()}


def test_outputs_without_subscribers_are_skipped(tmp_path):
    """A recorder subscribed to ~/depth alone: every frame's depth arrives, the image outputs nobody
    subscribed to are not built or sent, odometry always is."""
    num_frames = 4
    domain_id = common.unique_domain_id(23)
    env = common.ros_env(domain_id)
    node = common.start_node(common.test_model_dir(), env, tmp_path / "node.log", "-p", "publish_points:=true",
                             "-p", "diagnostics_period_s:=0.2")
    try:
        played, rec, _ = common.play_and_record(tmp_path, env, f"good:{num_frames}",
                                                recorder_args=("--outputs", "depth"))
    finally:
        assert node.stop() == 0, node.log()[-2000:]
    assert not rec.meta["timed_out"]
    assert [m["stamp_ns"] for m in rec.meta["depth"]] == [s["stamp_ns"] for s in played["steps"]]
    values = rec.last_diagnostics()["values"]
    assert values["outputs_last_frame"] == "~/depth,~/odometry"


def test_external_odometry_speed_gives_the_metric_scale(tmp_path):
    """scale_mode external: the player publishes the camera's true speed as wheel odometry on
    /wheel/odom (remapped to the node's external_odometry, as the launch argument does); the node's
    trajectory then has the true path length (no Sim(3) scale needed)."""
    num_frames = 12
    env = common.ros_env(common.unique_domain_id(25))
    node = common.start_node(common.test_model_dir(), env, tmp_path / "node.log", "-p", "scale_mode:=external",
                             "-r", "external_odometry:=/wheel/odom", "-p", "diagnostics_period_s:=0.2")
    try:
        _, rec, gt = common.play_and_record(tmp_path, env, f"good:{num_frames}",
                                            player_args=("--odom-topic", "/wheel/odom"),
                                            recorder_args=("--outputs", "depth,odometry"))
        _publish_odometry_with_nan_speed(int(env["ROS_DOMAIN_ID"]), "/wheel/odom")
        assert node.wait_for_line("ignoring external odometry", 10.0), node.log()[-2000:]
    finally:
        assert node.stop() == 0, node.log()[-2000:]
    assert "metric scale from the speed on '/wheel/odom'" in node.log()
    values = rec.last_diagnostics()["values"]
    assert values["bad_input.no_external_speed"] == "0" and values["bad_input.bad_external_odometry"] == "0"
    assert values["scale_valid"] == "true"
    assert values["scale_status"] == "ok" and values["scale_assumption"].startswith("external")
    odom = rec.meta["odometry"]
    assert len(odom) == num_frames
    est_m = np.array([e["position"] for e in odom])  # base_link = camera origin (T_base_cam has no translation)
    gt_index = {int(s): i for i, s in enumerate(gt["stamps_ns"])}
    gt_m = gt["T_world_cam"][[gt_index[e["stamp_ns"]] for e in odom], :3, 3]
    est_path_m = np.linalg.norm(np.diff(est_m, axis=0), axis=1).sum()
    gt_path_m = np.linalg.norm(np.diff(gt_m, axis=0), axis=1).sum()
    print(f"\nexternal scale: path {est_path_m:.2f} m, true {gt_path_m:.2f} m")
    assert gt_path_m > 1.0
    if common.test_model_dir() == common.DEFAULT_MODEL:
        assert 0.8 < est_path_m / gt_path_m < 1.25


def _publish_odometry_with_nan_speed(domain_id: int, topic: str) -> None:
    """A bad external odometry (NaN twist) from this process, once the node's subscription matched."""
    import time

    from nav_msgs.msg import Odometry

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)
    try:
        probe = rclpy.create_node("bad_odometry", context=context)
        pub = probe.create_publisher(Odometry, topic, 10)
        deadline = time.monotonic() + 10.0
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        msg = Odometry()
        msg.twist.twist.linear.x = float("nan")
        for _ in range(3):
            pub.publish(msg)
            time.sleep(0.1)
        probe.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_a_distorted_raw_camera_publishes_depth_whose_camera_info_matches_its_pixels(tmp_path):
    """image_raw from a camera with strong barrel distortion (plumb_bob, P set as image_proc's rectified camera),
    looking at a plane with red markers: ~/depth/camera_info is the rectified camera at the depth size (D = 0,
    R = I, K = P[:3, :3] scaled, P = [K | 0]); the depth is the Pipeline's on the undistorted image; and each
    marker's points (depth pixels back-projected with the published K, coloured by the image the network saw)
    point in the marker's true direction. With K and the raw image (the old behaviour) the outer markers are
    0.13 (~11 depth pixels) off."""
    from ros_helpers import distorted_scene as scene

    from depth_sfm_ros.geometry.camera_model import resolve_input

    num_frames = 3
    model_dir = common.test_model_dir()
    overrides = {"scale_mode": "none", "min_depth_m": 0.0, "max_depth_m": 1000.0, "publish_points": True,
                 "points_decimation": 1, "diagnostics_period_s": 0.2}
    ros_args = [a for name, value in overrides.items()
                for a in ("-p", f"{name}:={str(value).lower() if isinstance(value, bool) else value}")]
    env = common.ros_env(common.unique_domain_id(27))
    node = common.start_node(model_dir, env, tmp_path / "node.log", *ros_args)
    try:
        played, rec, _ = common.play_and_record(
            tmp_path, env, f"good:{num_frames}", recorder_args=("--outputs", "depth,depth_info,points"),
            player_args=("--width", str(scene.WIDTH), "--height", str(scene.HEIGHT), "--distorted"))
    finally:
        assert node.stop() == 0, node.log()[-3000:]
    assert not rec.meta["timed_out"] and rec.meta["depth"], node.log()[-3000:]
    assert "undistorting every image" in node.log() and "Traceback" not in node.log()

    geometry = resolve_input(scene.CAMERA, rectified=False)
    h_net, w_net = _card_hw(model_dir)
    K_depth = geometry.intrinsics.scaled(w_net, h_net)
    np.testing.assert_allclose(K_depth.K, Intrinsics.from_matrix(np.array(scene.P_RECT)[:, :3], scene.WIDTH,
                                                                 scene.HEIGHT).scaled(w_net, h_net).K)
    for info in rec.meta["depth_info"]:
        assert (info["width"], info["height"], info["distortion_model"]) == (w_net, h_net, "plumb_bob")
        assert not any(info["d"]) and info["r"] == np.eye(3).ravel().tolist()
        np.testing.assert_allclose(np.reshape(info["k"], (3, 3)), K_depth.K, rtol=1e-12)
        np.testing.assert_allclose(np.reshape(info["p"], (3, 4)), np.hstack([K_depth.K, np.zeros((3, 1))]), rtol=1e-12)

    pipeline = Pipeline(pipeline_config(params.validate({"model": str(model_dir), **overrides})))
    expected = pipeline.process(geometry.prepare(scene.raw_image()), "rgb8", 1.0, geometry.intrinsics).depth_m
    pipeline.close()
    for depth in rec.images("depth"):
        np.testing.assert_allclose(depth, expected, rtol=1e-5, equal_nan=True)

    assert rec.meta["points"]
    for i in range(len(rec.meta["points"])):
        xyz, rgb = rec.arrays[f"points_{i}"], rec.arrays[f"points_rgb_{i}"]
        direction = xyz[:, :2] / xyz[:, 2:3]  # (x/z, y/z) = K_published^-1 [u, v, 1] of each depth pixel
        red = scene.is_marker_colour(rgb)
        for marker in scene.MARKERS_XY:
            near = red & (np.abs(direction - marker).max(axis=1) < 2.5 * scene.MARKER_HALF)
            assert near.sum() > 20, (marker, int(near.sum()))
            centroid = direction[near].mean(axis=0)
            assert np.abs(centroid - marker).max() < 0.01, (marker, centroid)  # < 1 depth pixel
