"""depth_sfm_ros.metrics against hand-computed values and known transforms."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from depth_sfm_ros import metrics as M
from depth_sfm_ros.geometry import Pose, axis_angle_to_matrix


def test_metrics_module_imports_no_torch():
    import subprocess
    code = "import sys, depth_sfm_ros.metrics; assert 'torch' not in sys.modules and 'rclpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_depth_metrics_hand_computed():
    gt = np.array([[2.0, 4.0], [10.0, 0.0]])  # last pixel invalid
    pred = np.array([[1.0, 4.0], [12.5, 3.0]])
    m = M.compute_depth_metrics(pred, gt, median_scaling=False)
    # errors on (2,1), (4,4), (10,12.5)
    assert m["n_valid"] == 3 and m["scale"] == 1.0
    assert m["abs_rel"] == pytest.approx((0.5 + 0 + 0.25) / 3)
    assert m["sq_rel"] == pytest.approx((1 / 2 + 0 + 6.25 / 10) / 3)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 6.25) / 3))
    assert m["rmse_log"] == pytest.approx(math.sqrt((math.log(2) ** 2 + 0 + math.log(1.25) ** 2) / 3))
    # ratios 2, 1, 1.25: 1.25 is not < 1.25 but < 1.5625; 2 is not < 1.953125
    assert m["a1"] == pytest.approx(1 / 3)
    assert m["a2"] == pytest.approx(2 / 3)
    assert m["a3"] == pytest.approx(2 / 3)


def test_median_scaling_invariance_and_scale():
    rng = np.random.default_rng(0)
    gt = rng.uniform(2, 50, size=(12, 20))
    pred = gt * rng.uniform(0.8, 1.2, size=gt.shape)
    a = M.compute_depth_metrics(pred, gt)
    b = M.compute_depth_metrics(pred * 7.0, gt)
    for name in M.DEPTH_METRIC_NAMES:
        assert a[name] == pytest.approx(b[name], rel=1e-9)
    assert b["scale"] == pytest.approx(a["scale"] / 7.0)
    exact = M.compute_depth_metrics(gt / 3.0, gt)
    assert exact["abs_rel"] == pytest.approx(0.0, abs=1e-12) and exact["scale"] == pytest.approx(3.0)


def test_clamping_and_caps():
    gt = np.array([[50.0, 90.0, 0.0005]])
    pred = np.array([[200.0, 10.0, 1.0]])
    m = M.compute_depth_metrics(pred, gt, median_scaling=False, max_depth=80)
    # only the first pixel is valid; prediction clamped to 80
    assert m["n_valid"] == 1
    assert m["abs_rel"] == pytest.approx(30 / 50)


def test_no_valid_pixels_gives_nan_not_crash():
    m = M.compute_depth_metrics(np.ones((3, 3)), np.zeros((3, 3)))
    assert m["n_valid"] == 0 and math.isnan(m["abs_rel"])
    acc = M.DepthMetricsAccumulator()
    acc.add(m)
    acc.add(M.compute_depth_metrics(np.full((2, 2), 2.0), np.full((2, 2), 4.0), median_scaling=False))
    res = acc.result()["all"]
    assert res["n_images"] == 1 and res["n_skipped"] == 1 and res["abs_rel"] == pytest.approx(0.5)


def test_shape_mismatch_errors():
    with pytest.raises(ValueError, match="does not match"):
        M.compute_depth_metrics(np.ones((3, 4)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="mask shape"):
        M.compute_depth_metrics(np.ones((3, 4)), np.ones((3, 4)), mask=np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="unknown crop"):
        M.compute_depth_metrics(np.ones((3, 4)), np.ones((3, 4)), crop="eigen2")


def test_garg_crop_indices_and_cityscapes_crop():
    assert M.crop_box("garg", 375, 1242) == (153, 371, 44, 1197)
    assert M.crop_box("cityscapes", 768, 2048) == (256, 768, 192, 1856)
    assert M.cityscapes_hood_crop_height(1024) == 768
    mask = M.crop_mask("garg", 375, 1242)
    assert mask.sum() == (371 - 153) * (1197 - 44) and mask[153, 44] and not mask[152, 44]
    # a crop-only error outside the crop does not count
    gt = np.full((375, 1242), 10.0)
    pred = gt.copy()
    pred[:100] = 1.0
    assert M.compute_depth_metrics(pred, gt, crop="garg", median_scaling=False)["abs_rel"] == 0.0
    assert M.compute_depth_metrics(pred, gt, median_scaling=False)["abs_rel"] > 0.1


def test_regions_share_the_image_scale():
    gt = np.full((4, 4), 10.0)
    pred = np.full((4, 4), 5.0)
    pred[:, 3] = 50.0  # a "dynamic" column predicted far away
    dyn = np.zeros((4, 4), bool)
    dyn[:, 3] = True
    r = M.compute_depth_metrics_by_region(pred, gt, dyn)
    assert r["all"]["scale"] == pytest.approx(2.0)
    assert r["static"]["abs_rel"] == pytest.approx(0.0)
    assert r["dynamic"]["abs_rel"] == pytest.approx((80 - 10) / 10)  # 100 clamped to 80
    assert r["dynamic"]["n_valid"] == 4 and r["static"]["n_valid"] == 12
    acc = M.DepthMetricsAccumulator()
    acc.add_regions(r)
    assert set(acc.result()) == {"all", "static", "dynamic"}


def _random_trajectory(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    poses = [np.eye(4)]
    for _ in range(n - 1):
        step = Pose.from_vec(np.concatenate([rng.normal(0, 0.3, 3) + [0, 0, 1.0], rng.normal(0, 0.05, 3)]))
        poses.append(poses[-1] @ step.matrix)
    return np.asarray(poses)


def test_umeyama_recovers_known_sim3():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(30, 3))
    R = axis_angle_to_matrix([0.3, -0.5, 1.1])
    t = np.array([1.0, -2.0, 3.0])
    dst = 2.5 * src @ R.T + t
    s, R_est, t_est = M.umeyama_alignment(src, dst, with_scale=True)
    assert s == pytest.approx(2.5) and np.allclose(R_est, R) and np.allclose(t_est, t)
    s, R_est, _ = M.umeyama_alignment(src, src @ R.T, with_scale=False)
    assert s == 1.0 and np.allclose(R_est, R)


def test_ate_zero_identical_and_constant_offset():
    gt = _random_trajectory(20)
    assert M.ate(gt, gt)["rmse_m"] == pytest.approx(0.0, abs=1e-9)
    shifted = gt.copy()
    shifted[:, :3, 3] += [0.3, 0.0, 0.4]
    assert M.ate(shifted, gt, align="none")["rmse_m"] == pytest.approx(0.5)
    assert M.ate(shifted, gt, align="se3")["rmse_m"] == pytest.approx(0.0, abs=1e-9)
    scaled = gt.copy()
    scaled[:, :3, 3] *= 0.2
    res = M.ate(scaled, gt, align="sim3")
    assert res["rmse_m"] == pytest.approx(0.0, abs=1e-9) and res["scale"] == pytest.approx(5.0)


def test_snippet_ate_scale_invariant_and_nonzero_for_wrong_shape():
    gt = _random_trajectory(12, seed=2)
    rel_gt = np.linalg.inv(gt[:-1]) @ gt[1:]
    rel_pred = rel_gt.copy()
    rel_pred[:, :3, 3] *= 0.1  # monocular scale ambiguity: removed by the snippet scale
    res = M.snippet_ate(rel_pred, rel_gt)
    assert res["n_snippets"] == 8 and res["mean_m"] == pytest.approx(0.0, abs=1e-9)
    # hand value: straight 1 m steps vs. a prediction that stands still for the last step
    rel_gt = np.tile(np.eye(4), (4, 1, 1))
    rel_gt[:, 2, 3] = 1.0
    rel_pred = rel_gt.copy()
    rel_pred[3, 2, 3] = 0.0
    g = np.array([0, 1, 2, 3, 4.0])
    p = np.array([0, 1, 2, 3, 3.0])
    s = (g @ p) / (p @ p)
    expected = np.sqrt(np.sum((p * s - g) ** 2)) / 5
    assert M.snippet_ate(rel_pred, rel_gt)["mean_m"] == pytest.approx(expected)


def test_rpe_known_values():
    gt = _random_trajectory(10, seed=3)
    r = M.rpe(gt, gt)
    assert r["trans_rmse_m"] == pytest.approx(0, abs=1e-9) and r["rot_rmse_deg"] == pytest.approx(0, abs=1e-6)
    line_gt = np.tile(np.eye(4), (5, 1, 1))
    line_gt[:, 2, 3] = np.arange(5)
    line_est = line_gt.copy()
    line_est[:, 2, 3] *= 1.5
    assert M.rpe(line_est, line_gt)["trans_rmse_m"] == pytest.approx(0.5)
    assert M.rpe(line_est, line_gt, delta=2)["trans_mean_m"] == pytest.approx(1.0)


def test_kitti_terr_straight_line_scale_error():
    n = 1001  # 1000 m at 1 m per frame
    gt = np.tile(np.eye(4), (n, 1, 1))
    gt[:, 2, 3] = np.arange(n)
    est = gt.copy()
    est[:, 2, 3] *= 1.1
    res = M.kitti_odometry_errors(est, gt)
    assert res["n_segments"] > 0
    assert res["t_err_pct"] == pytest.approx(10.0)
    assert res["r_err_deg_per_100m"] == pytest.approx(0.0, abs=1e-6)
    assert M.kitti_odometry_errors(est, gt, align="scale")["t_err_pct"] == pytest.approx(0.0, abs=1e-6)
    short = M.kitti_odometry_errors(est[:50], gt[:50])
    assert short["n_segments"] == 0 and math.isnan(short["t_err_pct"])


def test_evo_cross_check_matches():
    pytest.importorskip("evo")
    gt = _random_trajectory(15, seed=4)
    est = gt.copy()
    est[:, :3, 3] += np.random.default_rng(5).normal(0, 0.05, (15, 3))
    ours = M.ate(est, gt, align="sim3")["rmse_m"]
    theirs = M.evo_cross_check(est, gt)
    assert ours == pytest.approx(theirs["ape_rmse_m"], rel=1e-6)
    assert M.rpe(est, gt, align="sim3")["trans_rmse_m"] == pytest.approx(theirs["rpe_trans_rmse_m"], rel=1e-6)


def test_mask_metrics():
    pred = np.array([[1, 1, 0, 0]], bool)
    gt = np.array([[1, 0, 1, 0]], bool)
    m = M.mask_metrics(pred, gt)
    assert m["iou"] == pytest.approx(1 / 3) and m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["f1"] == pytest.approx(0.5)
    empty = M.mask_metrics(np.zeros((2, 2)), np.zeros((2, 2)))
    assert math.isnan(empty["iou"])
    with pytest.raises(ValueError, match="does not match"):
        M.mask_metrics(np.zeros((2, 2)), np.zeros((2, 3)))


def test_pose_input_validation():
    with pytest.raises(ValueError, match=r"\(N, 4, 4\)"):
        M.ate(np.zeros((3, 3, 3)), np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="same number"):
        M.ate(_random_trajectory(4), _random_trajectory(5))
