"""depth-sfm evaluate: the pure protocol functions, and the CLI end to end with an untrained model."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from depth_sfm_ros.geometry import Pose
from depth_sfm_training.evaluate import (DEPTH_PROTOCOLS, DepthProtocol, evaluate_depth_frames, markdown_table,
                                         odometry_report, resize_depth_prediction)


def test_resize_prediction_goes_through_disparity():
    pred = np.array([[1.0, 4.0]], np.float32)
    up = resize_depth_prediction(pred, 1, 4)
    assert up.shape == (1, 4)
    # bilinear between disparities 1 and 0.25: never a depth between the two that averaging depth would give
    assert up[0, 0] == pytest.approx(1.0) and up[0, -1] == pytest.approx(4.0)
    assert np.all(np.diff(up[0]) > 0)
    with pytest.raises(ValueError, match="> 0"):
        resize_depth_prediction(np.zeros((2, 2)), 4, 4)


def test_evaluate_depth_frames_protocol():
    gt = np.full((40, 60), 10.0, np.float32)
    gt[:5] = 0  # invalid rows
    dyn = np.zeros_like(gt, bool)
    dyn[20:30, 10:20] = True
    pred = np.ones_like(gt)  # median scale 10 makes the static part exact
    pred[dyn] = 2.0  # the dynamic object is wrong by a factor 2
    res = evaluate_depth_frames([(pred, gt, dyn), (pred, gt, dyn)], DepthProtocol(crop=None))
    assert res["static"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert res["dynamic"]["abs_rel"] == pytest.approx(1.0, rel=1e-5)
    assert res["all"]["n_images"] == 2 and 0 < res["all"]["abs_rel"] < 1.0
    # Garg crop ignores errors above 40.8 % of the height
    rng = np.random.default_rng(0)
    gt = rng.uniform(5, 60, size=(40, 60)).astype(np.float32)
    bad_top = gt * 0.1
    bad_top[:10] = 7.0
    garg = evaluate_depth_frames([(bad_top, gt, None)], DEPTH_PROTOCOLS["kitti_eigen"])
    assert garg["all"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert set(garg) == {"all"}
    # a half-resolution prediction is resized to the GT first
    half = evaluate_depth_frames([(np.full((20, 30), 3.0, np.float32), gt, None)], DepthProtocol(crop=None))
    assert half["all"]["n_images"] == 1 and half["all"]["scale_median"] > 0
    with pytest.raises(ValueError, match="no frame"):
        evaluate_depth_frames([], DepthProtocol(crop=None))


def _trajectory(n: int) -> np.ndarray:
    poses = [np.eye(4)]
    for k in range(n - 1):
        poses.append(poses[-1] @ Pose.from_vec([0.05, 0.0, 1.0, 0.0, 0.02 * np.sin(k / 3), 0.0]).matrix)
    return np.asarray(poses)


def test_odometry_report_perfect_up_to_scale():
    gt = _trajectory(12)
    rel = np.linalg.inv(gt[:-1]) @ gt[1:]
    rel_scaled = rel.copy()
    rel_scaled[:, :3, 3] *= 0.3
    rep = odometry_report(rel_scaled, gt)
    assert rep["snippet_ate"]["mean_m"] == pytest.approx(0.0, abs=1e-9)
    assert rep["ate"]["rmse_m"] == pytest.approx(0.0, abs=1e-9) and rep["ate"]["scale"] == pytest.approx(1 / 0.3)
    assert rep["rpe"]["trans_rmse_m"] == pytest.approx(0.0, abs=1e-9)
    assert rep["kitti"]["n_segments"] == 0  # 11 m is shorter than 100 m
    noisy = rel_scaled.copy()
    noisy[::2, 0, 3] += 0.1
    assert odometry_report(noisy, gt)["snippet_ate"]["mean_m"] > 0.001
    with pytest.raises(ValueError, match="N-1"):
        odometry_report(rel, gt[:5])
    table = markdown_table({"dataset": "x", "checkpoint": "c", "odometry": {"09": rep},
                            "depth": {"all": {**{k: 0.1 for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1",
                                                                  "a2", "a3")}, "n_images": 3}}})
    assert "| 09 |" in table and "| all | 0.100" in table


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("depth_sfm_ros.models")
    torch.manual_seed(0)
    cfg = models.validate_model_config({"encoder": "lite", "pose_encoder": "lite", "height": 64, "width": 96,
                                        "use_motion_net": False})
    return models.save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", models.build_models(cfg), cfg,
                                  None, step=0, epoch=0)


def _evaluate(args: list[str]) -> dict:
    from depth_sfm_ros.cli import main

    out = args[args.index("--out") + 1]
    assert main(["evaluate"] + args) == 0
    assert "|" in (Path(out) / "results.md").read_text()
    return json.loads((Path(out) / "results.json").read_text())


def test_cli_synthetic_depth_regions_and_odometry(tmp_path, untrained_checkpoint):
    from test_datasets import write_synthetic_folder

    data = write_synthetic_folder(tmp_path / "synth", frames=6)
    results = _evaluate(["--checkpoint", str(untrained_checkpoint), "--dataset", "synthetic", "--data-path",
                         str(data), "--out", str(tmp_path / "eval")])
    assert results["input_size"] == [96, 64]
    depth = results["depth"]
    assert set(depth) == {"all", "static", "dynamic"} and depth["all"]["n_images"] == 6
    assert all(math.isfinite(depth[r]["abs_rel"]) for r in depth)
    odom = results["odometry"]["synth"]
    assert odom["n_frames"] == 6 and odom["snippet_ate"]["n_snippets"] == 2
    assert math.isfinite(odom["ate"]["rmse_m"])
    # the test-time flip ('pp'): recorded, and it changes the depth scores, not the odometry
    flipped = _evaluate(["--checkpoint", str(untrained_checkpoint), "--dataset", "synthetic", "--data-path",
                         str(data), "--out", str(tmp_path / "eval_pp"), "--depth-flip-average"])
    assert results["depth_flip_average"] is False and flipped["depth_flip_average"] is True
    assert flipped["depth"]["all"]["abs_rel"] != depth["all"]["abs_rel"]
    assert flipped["odometry"]["synth"]["ate"]["rmse_m"] == odom["ate"]["rmse_m"]


def test_cli_kitti_eigen_split_and_odometry(tmp_path, untrained_checkpoint):
    from test_datasets import write_kitti_odometry, write_kitti_raw

    root = write_kitti_raw(tmp_path / "kitti")
    split = tmp_path / "test_files.txt"
    split.write_text("2011_09_26/2011_09_26_drive_0001_sync 0 l\n2011_09_26/2011_09_26_drive_0001_sync 4 l\n")
    results = _evaluate(["--checkpoint", str(untrained_checkpoint), "--dataset", "kitti_eigen", "--data-path",
                         str(root), "--split", str(split), "--out", str(tmp_path / "eigen")])
    assert results["depth"]["all"]["n_images"] == 2  # boundary frames are kept for single-frame evaluation
    assert results["depth_protocol"]["crop"] == "garg" and set(results["depth"]) == {"all"}
    odom_root = write_kitti_odometry(tmp_path / "odom", frames=6)
    results = _evaluate(["--checkpoint", str(untrained_checkpoint), "--dataset", "kitti_odom", "--data-path",
                         str(odom_root), "--split", "09", "--out", str(tmp_path / "odom_eval")])
    rep = results["odometry"]["09/image_2"]
    assert rep["snippet_ate"]["n_snippets"] == 2 and "depth" not in results
    assert rep["kitti"]["t_err_pct"] is None  # 5 m path: no 100 m segment, written as null (strict JSON)


def test_cli_cityscapes_hood_cropped_gt(tmp_path, untrained_checkpoint):
    from test_datasets import write_cityscapes

    root = write_cityscapes(tmp_path / "cs", split="test")
    results = _evaluate(["--checkpoint", str(untrained_checkpoint), "--dataset", "cityscapes", "--data-path",
                         str(root), "--out", str(tmp_path / "cs_eval")])
    # 5 frames, only frame 19 has disparity; of its two depths only (6, 8) lies in the crop (rows >= 12/3)
    assert results["frames_without_gt"] == 4
    all_ = results["depth"]["all"]
    assert all_["n_images"] == 1 and all_["abs_rel"] == pytest.approx(0.0, abs=1e-6)  # 1 pixel: median-exact
