"""`depth-sfm eval-bag` end to end: real bags, the real Pipeline on ONNX Runtime (tiny untrained model),
metrics against a direct computation, reports, output bags, missing ground truth, damaged bags."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from depth_sfm_ros import metrics as M
from depth_sfm_ros.bag.eval_bag import evaluate_bag
from depth_sfm_ros.bag.scoring import resize_depth, resize_mask
from depth_sfm_ros.bag.reader import BagFrameReader, topic_selection
from test_eval_bag_support import HEIGHT, WIDTH, synthetic_sequence, write_bag

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from depth_sfm_ros.runtime.tiny_model import export_tiny_model_dir
    return export_tiny_model_dir(tmp_path_factory.mktemp("model") / "tiny", height=HEIGHT, width=WIDTH)


@pytest.fixture(scope="module")
def cfg(model_dir: Path):
    """The node's configuration (scale_mode none) with the published depth range opened up: the untrained
    tiny model's depth (network units, ~0.2) lies below the node's min_depth_m and would all be NaN."""
    from dataclasses import replace

    from depth_sfm_ros.bag.eval_bag import node_pipeline_config
    return replace(node_pipeline_config(model_dir, "onnxruntime", "cpu", "none"), min_depth_m=0.01)


@pytest.fixture(scope="module")
def seq():
    return synthetic_sequence(10)


@pytest.fixture(scope="module")
def synth_bag(tmp_path_factory, seq) -> Path:
    """The synthetic-data writer's own bag (mcap, all ground-truth topics)."""
    from depth_sfm_ros.synth.rosbag import write_rosbag
    path = tmp_path_factory.mktemp("bags") / "synth"
    write_rosbag(seq.frames, seq.intrinsics, path, storage="mcap")
    return path


def test_metrics_match_a_direct_computation(tmp_path: Path, cfg, seq, synth_bag: Path):
    out = tmp_path / "out"
    metrics = evaluate_bag(synth_bag, out, pipeline_config=cfg)
    assert json.loads((out / "metrics.json").read_text()) == metrics  # strict JSON (no NaN)
    assert metrics["frames"] == len(seq)

    # the same frames straight from the renderer through a fresh pipeline, scored with depth_sfm_ros.metrics
    from depth_sfm_ros.runtime.pipeline import Pipeline
    pipeline = Pipeline(cfg)
    acc = M.DepthMetricsAccumulator()
    tp = fp = fn = 0
    est, gt = [], []
    for frame in seq:
        result = pipeline.process(frame.image_rgb, "rgb8", frame.stamp_s, seq.intrinsics)
        acc.add_regions(M.compute_depth_metrics_by_region(result.depth_m, frame.depth_m, frame.dynamic_mask))
        if result.dynamic_mask is not None:
            counts = M.mask_metrics(result.dynamic_mask > 0, frame.dynamic_mask)
            tp, fp, fn = tp + counts["tp"], fp + counts["fp"], fn + counts["fn"]
        est.append(result.T_odom_cam.matrix)
        gt.append(frame.T_world_cam.matrix)
    pipeline.close()
    direct = acc.result()
    for name in M.DEPTH_METRIC_NAMES:
        assert metrics["depth"][name] == pytest.approx(direct["all"][name], rel=1e-6, abs=1e-9)
        for region in ("static", "dynamic"):
            assert metrics["depth"]["regions"][region][name] == pytest.approx(direct[region][name], rel=1e-6,
                                                                              abs=1e-9)
    masks = M.mask_scores(tp, fp, fn)
    for name in ("iou", "precision", "recall"):
        assert metrics["mask"][name] == pytest.approx(masks[name], rel=1e-9)
    assert metrics["mask"]["frames"] == len(seq) - 1  # no mask on the first frame
    ate = M.ate(np.asarray(est), np.asarray(gt), "sim3")  # the bag's odom frame differs; sim3 absorbs it
    assert metrics["odometry"]["ate_m"] == pytest.approx(ate["rmse_m"], rel=1e-5, abs=1e-9)
    assert metrics["odometry"]["alignment"] == "sim3"
    assert metrics["odometry"]["rpe_trans_m"] >= 0 and metrics["odometry"]["rpe_rot_deg"] >= 0
    assert metrics["scale"]["mode"] == "none"
    assert metrics["scale"]["median_ratio_to_gt"] == pytest.approx(direct["all"]["scale_median"], rel=1e-6)
    assert metrics["scale"]["status_last"] == "ok" and "network units" in metrics["scale"]["assumption"]
    assert metrics["scale"]["refusals"] == 0
    # the still-camera test ran on every pair of the (moving) synthetic drive
    assert metrics["motion"] == {"still_frames": 0, "moving_frames": len(seq) - 1, "unchecked_frames": 0,
                                 "first_frames": 1}
    speed = metrics["speed"]
    assert speed["fps"] > 0 and 0 < speed["latency_ms_p50"] <= speed["latency_ms_p99"]
    # the one note: the camera policy's decision (a raw topic without distortion: K, no undistortion)
    assert len(metrics["notes"]) == 1 and "bag_error" not in metrics
    assert metrics["notes"][0].startswith("camera: raw input") and "intrinsics from K" in metrics["notes"][0]
    assert metrics["source"]["camera"] == [metrics["notes"][0][len("camera: "):]]

    for name in ("report.md", "report.html", "trajectory.png", "errors.png", "strip.png"):
        assert (out / name).stat().st_size > 0, name
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    abs_rel = f"{metrics['depth']['abs_rel']:.4g}"
    assert abs_rel in md and abs_rel in page and "![trajectory top view](trajectory.png)" in md
    assert "<img src='strip.png'" in page


@pytest.mark.parametrize("storage,compressed", [("sqlite3", True), ("ros1", False), ("ros1", True)])
def test_storage_formats_and_compressed_images_give_the_same_numbers(tmp_path: Path, cfg, storage: str,
                                                                     compressed: bool):
    short = synthetic_sequence(5)
    reference = evaluate_bag(write_bag(tmp_path / "ref", short, "mcap"), tmp_path / "ref_out", pipeline_config=cfg,
                             report=False)
    bag = write_bag(tmp_path / "bag", short, storage, compressed=compressed)
    topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    metrics = evaluate_bag(bag, tmp_path / "out", image_topic=topic, pipeline_config=cfg, report=False)
    assert metrics["frames"] == 5
    for section, name in (("depth", "abs_rel"), ("depth", "rmse"), ("mask", "iou"), ("odometry", "ate_m")):
        assert metrics[section][name] == pytest.approx(reference[section][name], rel=1e-6), (section, name)


def test_missing_ground_truth_leaves_sections_out_and_says_so(tmp_path: Path, cfg, seq):
    bag = write_bag(tmp_path / "bag", seq, "mcap", streams=("depth",))
    metrics = evaluate_bag(bag, tmp_path / "out", pipeline_config=cfg)
    assert metrics["frames"] == len(seq)
    assert "depth" in metrics and metrics["depth"]["regions"] == {}  # no mask: no static/dynamic split
    assert "odometry" not in metrics and "mask" not in metrics
    notes = " ".join(metrics["notes"])
    assert "/gt/odom" in notes and "no odometry metrics" in notes
    assert "/gt/dynamic_mask" in notes and "/camera/camera_info" in notes
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Odometry" not in md and "no odometry metrics" in md and "Not drawn (no data for them): trajectory" in md

    bare = write_bag(tmp_path / "bare", seq, "mcap", streams=())
    metrics = evaluate_bag(bare, tmp_path / "bare_out", pipeline_config=cfg, gt_depth_topic="", report=False)
    assert set(metrics) >= {"frames", "speed", "scale"} and "depth" not in metrics
    assert any("no ground-truth depth stream requested" in n for n in metrics["notes"])


def test_truncated_bag_keeps_the_metrics_of_the_frames_read(tmp_path: Path, cfg, model_dir: Path):
    from depth_sfm_ros.cli import main
    seq = synthetic_sequence(16)
    bag = write_bag(tmp_path / "bag", seq, "mcap")
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: int(mcap.stat().st_size * 0.6)])
    out = tmp_path / "out"
    metrics = evaluate_bag(bag, out, pipeline_config=cfg)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert 0 < metrics["frames"] < len(seq)
    assert metrics["bag_error"]["frames_read"] == metrics["frames"]
    # the cut may fall between a frame's image and its GT depth
    assert metrics["frames"] - 1 <= metrics["depth"]["n_images"] <= metrics["frames"]
    assert any("truncated or corrupt" in n for n in metrics["notes"])
    assert "The bag is truncated or corrupt" in (out / "report.md").read_text()
    code = main(["eval-bag", str(bag), "--out", str(tmp_path / "cli"), "--model", str(model_dir), "--no-progress"])
    assert code == 1  # results written, but the bag was damaged
    cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert cli["frames"] == metrics["frames"] and cli["bag_error"] == metrics["bag_error"]


def test_wrong_topic_fails_listing_the_topics(tmp_path: Path, model_dir: Path, seq, capsys):
    from depth_sfm_ros.cli import main
    bag = write_bag(tmp_path / "bag", seq, "sqlite3", streams=("depth",))
    code = main(["eval-bag", str(bag), "--out", str(tmp_path / "out"), "--model", str(model_dir),
                 "--image-topic", "/cam/image"])
    err = capsys.readouterr().err
    assert code == 2
    assert "/cam/image" in err and "/camera/image_raw  sensor_msgs/msg/Image" in err and "/gt/depth" in err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_output_bag_holds_inputs_and_predictions_with_the_input_stamps(tmp_path: Path, cfg, seq):
    bag = write_bag(tmp_path / "bag", seq, "sqlite3", compressed=True)
    results = {}

    def keep(frame, result):
        results[frame.stamp_ns] = (result.depth_m.copy(), result.T_odom_cam.matrix.copy())

    metrics = evaluate_bag(bag, tmp_path / "out", image_topic="/camera/image_raw/compressed", pipeline_config=cfg,
                           write_bag=True, report=False, on_frame=keep)
    out_bag = tmp_path / "out" / "output_bag"
    assert metrics["output_bag"]["path"] == str(out_bag)
    reader = BagFrameReader(out_bag, topic_selection("/camera/image_raw", "/depth_sfm_node/depth/camera_info",
                                                     gt_depth="/depth_sfm_node/depth",
                                                     gt_mask="/depth_sfm_node/dynamic_mask",
                                                     gt_pose="/depth_sfm_node/odometry"), max_stamp_diff_s=0.0)
    frames = list(reader)
    assert [f.stamp_ns for f in frames] == [f.stamp_ns for f in seq]
    for frame, truth in zip(frames, seq):
        # the input as the node decoded it (compressed -> OpenCV's bgr8), with its encoding
        assert frame.encoding == "bgr8"
        np.testing.assert_array_equal(frame.image[:, :, ::-1], truth.image_rgb)
        depth, T = results[frame.stamp_ns]
        np.testing.assert_array_equal(frame.gt_depth_m, depth)
        np.testing.assert_allclose(frame.gt_T_world_cam.matrix, T, atol=1e-12)
        assert frame.frame_id == "camera"
    assert frames[0].gt_dynamic_mask is None and all(f.gt_dynamic_mask is not None for f in frames[1:])
    from depth_sfm_ros.bag.reader import bag_topics
    topics = bag_topics(out_bag)
    assert topics["/depth_sfm_node/depth/colored"] == ("sensor_msgs/msg/Image", len(seq))
    assert topics["/tf"] == ("tf2_msgs/msg/TFMessage", len(seq))


def test_ground_truth_from_a_kitti_folder(tmp_path: Path, cfg, seq, synth_bag: Path):
    from depth_sfm_ros.synth.kitti import write_kitti_folder
    write_kitti_folder(seq.frames, seq.intrinsics, tmp_path / "kitti")
    by_topics = evaluate_bag(synth_bag, tmp_path / "a", pipeline_config=cfg, report=False)
    bag = write_bag(tmp_path / "bag", seq, "mcap", streams=("camera_info",))
    by_folder = evaluate_bag(bag, tmp_path / "b", pipeline_config=cfg, gt_kitti=tmp_path / "kitti", report=False)
    assert by_folder["frames"] == len(seq)
    assert by_folder["depth"]["abs_rel"] == pytest.approx(by_topics["depth"]["abs_rel"], rel=2e-3)  # 1/256 m steps
    assert by_folder["mask"]["iou"] == pytest.approx(by_topics["mask"]["iou"], rel=1e-9)
    assert by_folder["odometry"]["ate_m"] == pytest.approx(by_topics["odometry"]["ate_m"], rel=1e-5)
    with pytest.raises(ValueError, match="has none of"):
        evaluate_bag(bag, tmp_path / "c", pipeline_config=cfg, gt_kitti=tmp_path / "b")


def test_resize_helpers_keep_holes_and_masks():
    depth = np.array([[1.0, 2.0], [np.nan, 4.0]], np.float32)
    up = resize_depth(depth, (4, 4))
    assert np.isnan(up[2:, :2]).all() and np.isfinite(up[:2]).all() and np.isfinite(up[2:, 2:]).all()
    assert np.nanmin(up) >= 1.0 and np.nanmax(up) <= 4.0  # holes do not pull values towards 0
    mask = resize_mask(np.array([[0, 255], [0, 0]], np.uint8), (4, 4))
    assert mask.dtype == bool and mask.sum() == 4 and mask[:2, 2:].all()


def test_bad_arguments_are_refused(tmp_path: Path, cfg, seq):
    bag = write_bag(tmp_path / "bag", seq, "mcap", streams=())
    with pytest.raises(ValueError, match="alignment"):
        evaluate_bag(bag, tmp_path / "o", pipeline_config=cfg, alignment="best")
    with pytest.raises(ValueError, match="--model"):
        evaluate_bag(bag, tmp_path / "o", model=tmp_path / "no_model")
    with pytest.raises(RuntimeError, match="no frame"):
        evaluate_bag(bag, tmp_path / "o", pipeline_config=cfg, start_s=100.0)


def test_images_the_pipeline_refuses_are_skipped_and_reported(tmp_path: Path, cfg, seq):
    from depth_sfm_ros.bag import rosbags_io as io
    path = tmp_path / "float_images"
    with io.BagWriter(path, storage="mcap") as bag:
        for frame in seq.frames[:3]:  # a depth image on the camera topic: 32FC1 is no camera encoding
            bag.write("/camera/image_raw", io.image_to_msg(frame.depth_m, "32FC1", frame.stamp_ns, "cam"),
                      frame.stamp_ns)
    with pytest.raises(RuntimeError, match="refused.*32FC1"):
        evaluate_bag(path, tmp_path / "out", pipeline_config=cfg, report=False)


def test_intrinsics_parameter_reaches_the_pipeline(tmp_path: Path, cfg, seq):
    """--intrinsics stands in for a missing CameraInfo: the pipeline gets them (the depth intrinsics it
    reports are them scaled to the network size) and the output bag carries them."""
    from depth_sfm_ros.geometry import Intrinsics
    bag = write_bag(tmp_path / "bag", seq, "mcap", streams=("depth",))
    K = Intrinsics(fx=40.0, fy=50.0, cx=47.0, cy=15.0, width=WIDTH, height=HEIGHT)
    seen = []
    metrics = evaluate_bag(bag, tmp_path / "out", pipeline_config=cfg, report=False, write_bag=True,
                           intrinsics=(K.fx, K.fy, K.cx, K.cy), on_frame=lambda f, r: seen.append(r.intrinsics))
    assert seen == [K] * len(seq)  # the model input is the image size here
    assert any("/camera/camera_info" in n for n in metrics["notes"])
    frames = list(BagFrameReader(tmp_path / "out" / "output_bag",
                                 topic_selection("/camera/image_raw", "/camera/camera_info")))
    assert [f.camera.intrinsics_K() for f in frames] == [K] * len(seq) and not frames[0].camera.has_distortion
    with pytest.raises(ValueError, match="fx, fy, cx, cy"):
        evaluate_bag(bag, tmp_path / "o2", pipeline_config=cfg, intrinsics=(1.0, 2.0))


def test_a_bare_mcap_file_is_read(tmp_path: Path, cfg, seq):
    bag = write_bag(tmp_path / "bag", seq, "mcap", streams=("depth",))
    metrics = evaluate_bag(next(bag.glob("*.mcap")), tmp_path / "out", pipeline_config=cfg, report=False)
    assert metrics["frames"] == len(seq) and metrics["depth"]["n_images"] == len(seq)


def test_the_default_configuration_is_the_nodes(model_dir: Path):
    from depth_sfm_ros.bag.eval_bag import node_pipeline_config
    from depth_sfm_ros.ros.params import PARAMETERS_BY_NAME
    config = node_pipeline_config(model_dir)
    for name in ("scale_mode", "min_depth_m", "max_depth_m", "mask_threshold", "max_stamp_gap_s"):
        assert getattr(config, name) == PARAMETERS_BY_NAME[name].default, name
    assert node_pipeline_config(model_dir, scale_mode="external").scale_mode == "external"
    with pytest.raises(ValueError, match="scale_mode"):
        node_pipeline_config(model_dir, scale_mode="sideways")


def test_external_scale_from_a_speed_topic_matches_the_ground_truth_speed(tmp_path: Path, model_dir: Path,
                                                                           synth_bag: Path):
    """--scale-mode external --speed-topic: the speed comes from an Odometry's twist (here the synthetic bag's
    /gt/odom, whose twist is the camera's true velocity), as the node's external_odometry input; without a
    speed topic it comes from the ground-truth poses. Both give the same scale; a missing topic is an error."""
    from dataclasses import replace

    from depth_sfm_ros.bag.eval_bag import node_pipeline_config
    from depth_sfm_ros.bag.reader import BagTopicError

    cfg_external = replace(node_pipeline_config(model_dir, "onnxruntime", "cpu", "external"), min_depth_m=0.01)
    from_topic = evaluate_bag(synth_bag, tmp_path / "topic", pipeline_config=cfg_external, speed_topic="/gt/odom",
                              report=False)
    from_gt = evaluate_bag(synth_bag, tmp_path / "gt", pipeline_config=cfg_external, report=False)
    assert "external scale: speed from /gt/odom" in from_topic["notes"]
    assert "external scale: speed from the ground-truth poses" in from_gt["notes"]
    assert from_topic["scale"]["mode"] == "external"
    assert from_topic["scale"]["pipeline_scale_median"] != pytest.approx(1.0)  # the speeds set the scale
    ratio_topic, ratio_gt = from_topic["scale"]["median_ratio_to_gt"], from_gt["scale"]["median_ratio_to_gt"]
    assert ratio_topic is not None and ratio_topic == pytest.approx(ratio_gt, rel=0.02)
    with pytest.raises(BagTopicError, match="/wheel/odom"):
        evaluate_bag(synth_bag, tmp_path / "missing", pipeline_config=cfg_external, speed_topic="/wheel/odom")


def test_reader_pairs_the_speed_topic_by_stamp(synth_bag: Path, seq):
    reader = BagFrameReader(synth_bag, topic_selection("/camera/image_raw", speed="/gt/odom"))
    frames = list(reader)
    assert len(frames) == len(seq)
    true_speed = [float(np.linalg.norm(b.T_world_cam.t - a.T_world_cam.t) / (b.stamp_s - a.stamp_s))
                  for a, b in zip(seq.frames[:-1], seq.frames[1:])]
    speeds = [f.speed_mps for f in frames]
    assert all(s is not None and s >= 0 for s in speeds)
    np.testing.assert_allclose(speeds[1:], true_speed, rtol=0.05)


def test_speed_topic_pairs_with_the_nodes_tolerance_not_the_ground_truth_one(tmp_path: Path, seq):
    """An odometry stamped 30 ms after each image: outside max_stamp_diff (20 ms, ground truth), inside the
    node's external_odometry_tolerance_s (50 ms), so the speed pairs offline as it would in the node."""
    from depth_sfm_ros.bag import rosbags_io as rio
    from depth_sfm_ros.geometry import Pose

    bag = tmp_path / "late_odom"
    with rio.BagWriter(bag, storage="mcap") as writer:
        for frame in seq.frames:
            writer.write("/camera/image_raw", rio.image_to_msg(frame.image_rgb, "rgb8", frame.stamp_ns, "cam"),
                         frame.stamp_ns)
            late_ns = frame.stamp_ns + 30_000_000
            writer.write("/wheel/odom", rio.odometry_to_msg(Pose.identity(), late_ns, "odom", "base_link",
                                                            linear_mps=(2.0, 0, 0)), late_ns)
    speeds = [f.speed_mps for f in BagFrameReader(bag, topic_selection("/camera/image_raw", speed="/wheel/odom"))]
    assert speeds == [2.0] * len(seq)
    gt_only = BagFrameReader(bag, topic_selection("/camera/image_raw", speed="/wheel/odom"), speed_tolerance_s=0.02)
    assert [f.speed_mps for f in gt_only] == [None] * len(seq)
