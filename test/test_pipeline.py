"""The ROS-free Pipeline (with a real ONNX Runtime backend on a tiny exported model), scale
recovery on synthetic ground truth, and odometry integration on a known trajectory."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from depth_sfm_ros.geometry import Intrinsics, Pose, euler_to_matrix
from depth_sfm_ros.metrics import ate
from depth_sfm_ros.runtime.backends import create_backend
from depth_sfm_ros.runtime.model_dir import card_intrinsics
from depth_sfm_ros.runtime.motion_gate import MotionGateConfig
from depth_sfm_ros.runtime.odometry import OdometryIntegrator
from depth_sfm_ros.runtime.pipeline import Pipeline, PipelineConfig
from depth_sfm_ros.runtime.scale import ScaleEstimator, fit_ground_plane
from depth_sfm_ros.synth.render import SynthConfig, render_sequence

H, W = 32, 96          # network
CAM_H, CAM_W = 64, 192  # camera
CAM_K = Intrinsics(fx=110.0, fy=120.0, cx=95.5, cy=31.5, width=CAM_W, height=CAM_H)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pytest.importorskip("torch")
    from depth_sfm_ros.runtime.tiny_model import export_tiny_model_dir

    return export_tiny_model_dir(tmp_path_factory.mktemp("model"), height=H, width=W, net_width=8, seed=5)


@pytest.fixture(scope="module")
def backend(model_dir):
    return create_backend(model_dir, name="onnxruntime", device="cpu", threads=1)


def _frame(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(CAM_H, CAM_W, 3), dtype=np.uint8)


def _pipeline(backend, **overrides) -> Pipeline:
    """The frames here are independent white noise, which the motion gate rightly takes for sensor noise
    (a still camera): these tests check the mechanics with the gate off; test_motion_gate.py tests the gate."""
    config = PipelineConfig(**{"min_depth_m": 0.1, "max_depth_m": 80.0,
                               "motion_gate": MotionGateConfig(enabled=False), **overrides})
    return Pipeline(config, backend=backend)


# --- per-frame behaviour ------------------------------------------------------------------------
def test_first_and_second_frame(backend):
    pipe = _pipeline(backend)
    first = pipe.process(_frame(0), "rgb8", 10.0, CAM_K)
    assert first.reset and first.reset_reason == "first frame" and first.frame_index == 0
    assert first.T_prev_cur is None and np.allclose(first.T_odom_cam.matrix, np.eye(4))
    assert first.dynamic_prob is None and first.dynamic_mask is None
    assert first.depth_m.shape == (H, W) and first.depth_m.dtype == np.float32
    assert first.intrinsics == CAM_K.scaled(W, H)
    assert set(first.timings_ms) >= {"preprocess", "infer", "postprocess"}
    assert all(v >= 0 for v in first.timings_ms.values())

    second = pipe.process(_frame(1), "rgb8", 10.1, CAM_K)
    assert not second.reset and second.reset_reason == "" and second.frame_index == 1
    assert second.T_prev_cur is not None
    np.testing.assert_allclose(second.T_odom_cam.matrix, second.T_prev_cur.matrix)
    assert second.dynamic_mask.dtype == np.uint8 and set(np.unique(second.dynamic_mask)) <= {0, 255}
    np.testing.assert_array_equal(second.dynamic_mask == 255, second.dynamic_prob >= 0.5)
    # the pose comes from the (prev, cur) pair the pipeline kept: same as calling the backend directly
    from depth_sfm_ros.runtime.image_io import ImagePreprocessor

    pre = ImagePreprocessor(H, W)
    prev = pre(_frame(0), "rgb8").copy()
    direct = backend.infer(pre(_frame(1), "rgb8"), prev)
    np.testing.assert_allclose(second.T_prev_cur.to_vec(), Pose.from_vec(direct.pose_vec).to_vec(), atol=1e-9)
    third = pipe.process(_frame(2), "rgb8", 10.2, CAM_K)
    np.testing.assert_allclose(third.T_odom_cam.matrix, (second.T_odom_cam @ third.T_prev_cur).matrix)


def test_depth_range_is_nan_and_upsampling(backend):
    wide = _pipeline(backend, min_depth_m=0.01, max_depth_m=1000.0).process(_frame(0), "rgb8", 1.0, CAM_K)
    assert np.isfinite(wide.depth_m).all()
    low, high = (float(q) for q in np.percentile(wide.depth_m, [25, 75]))
    narrow = _pipeline(backend, min_depth_m=low, max_depth_m=high).process(_frame(0), "rgb8", 1.0, CAM_K)
    inside = (wide.depth_m >= low) & (wide.depth_m <= high)
    assert 0 < inside.sum() < inside.size  # the test really exercises both sides
    np.testing.assert_array_equal(np.isfinite(narrow.depth_m), inside)
    np.testing.assert_array_equal(narrow.depth_m[inside], wide.depth_m[inside])
    up_pipe = _pipeline(backend, upsample_to_camera=True)
    up = up_pipe.process(_frame(0), "rgb8", 1.0, CAM_K)
    assert up.depth_m.shape == (CAM_H, CAM_W) and up.intrinsics == CAM_K
    up2 = up_pipe.process(_frame(1), "rgb8", 1.1, CAM_K)
    assert up2.dynamic_prob.shape == up2.dynamic_mask.shape == (CAM_H, CAM_W)
    # reset on demand: the next frame starts a new odometry
    up_pipe.reset("operator request")
    again = up_pipe.process(_frame(2), "rgb8", 1.2, CAM_K)
    assert again.reset and again.reset_reason == "restart" and again.T_prev_cur is None


def test_resolution_change_resets(backend, caplog):
    pipe = _pipeline(backend)
    pipe.process(_frame(0), "rgb8", 1.0, CAM_K)
    pipe.process(_frame(1), "rgb8", 1.1, CAM_K)
    small = np.ascontiguousarray(_frame(2)[::2, ::2])
    with caplog.at_level(logging.WARNING, logger="depth_sfm_ros.runtime.pipeline"):
        result = pipe.process(small, "rgb8", 1.2, CAM_K.scaled(CAM_W // 2, CAM_H // 2))
    assert result.reset and "resolution changed from 192x64 to 96x32" in result.reset_reason
    assert result.reset_code == "size_change"
    assert "resolution changed" in caplog.text
    assert result.T_prev_cur is None and np.allclose(result.T_odom_cam.matrix, np.eye(4))
    assert not pipe.process(small, "rgb8", 1.3, CAM_K.scaled(CAM_W // 2, CAM_H // 2)).reset


def test_intrinsics_of_another_size_are_scaled_only_when_asked(backend):
    """A binned / resized stream publishes the full-size CameraInfo: the node and eval-bag pass
    rescale_intrinsics=True and the Pipeline scales it to the image; a direct caller's mismatch is refused."""
    pipe = _pipeline(backend)
    small = np.ascontiguousarray(_frame(0)[::2, ::2])
    with pytest.raises(ValueError, match="intrinsics are for 192x64 but the image is 96x32"):
        pipe.process(small, "rgb8", 1.0, CAM_K)
    result = pipe.process(small, "rgb8", 1.0, CAM_K, rescale_intrinsics=True)
    assert result.intrinsics == CAM_K.scaled(CAM_W // 2, CAM_H // 2).scaled(W, H)
    assert result.reset_code == "first_frame" and pipe.process(small, "rgb8", 1.1, CAM_K, rescale_intrinsics=True) \
        .reset_code == ""


@pytest.mark.parametrize("next_stamp,reason,code", [(0.5, "stamp went backwards", "stamp_backwards"),
                                                    (1.1, "repeated", "stamp_repeated"),
                                                    (9.0, "stamp jumped forward by 7.900 s", "stamp_gap")])
def test_stamp_discontinuities_reset_odometry(backend, next_stamp, reason, code):
    pipe = _pipeline(backend, max_stamp_gap_s=2.0)
    pipe.process(_frame(0), "rgb8", 1.0, CAM_K)
    moved = pipe.process(_frame(1), "rgb8", 1.1, CAM_K)
    assert not np.allclose(moved.T_odom_cam.matrix, np.eye(4))
    result = pipe.process(_frame(2), "rgb8", next_stamp, CAM_K)
    assert result.reset and reason in result.reset_reason and result.reset_code == code
    assert result.T_prev_cur is None and np.allclose(result.T_odom_cam.matrix, np.eye(4))


def test_all_encodings_give_the_same_depth(backend):
    rgb = _frame(7)
    grey = rgb[:, :, 1]
    alpha = np.full((CAM_H, CAM_W, 1), 255, np.uint8)
    colour = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1].copy(), "rgba8": np.concatenate([rgb, alpha], 2),
              "bgra8": np.concatenate([rgb[:, :, ::-1], alpha], 2)}
    mono = {"mono8": grey, "mono16": grey.astype(np.uint16) * 257, "16UC1": grey.astype(np.uint16) * 257}
    pipe = _pipeline(backend, min_depth_m=0.001, max_depth_m=1e4)
    stamp = [0.0]

    def depth(image, encoding):
        stamp[0] += 0.1
        return pipe.process(image, encoding, stamp[0], CAM_K).depth_m

    ref = depth(rgb, "rgb8")
    for encoding, image in colour.items():
        np.testing.assert_array_equal(depth(image, encoding), ref, err_msg=encoding)
    grey_ref = depth(np.dstack([grey] * 3), "rgb8")
    assert not np.allclose(grey_ref, ref)
    for encoding, image in mono.items():
        np.testing.assert_allclose(depth(image, encoding), grey_ref, rtol=2e-2, err_msg=encoding)


def test_bad_inputs(backend, caplog):
    pipe = _pipeline(backend)
    K = CAM_K.K
    for bad in (np.where(np.eye(3) == 1, np.nan, K), np.where(np.isinf(K), 0, K) + np.diag([np.inf, 0, 0])):
        with pytest.raises(ValueError, match="NaN/Inf"):
            pipe.process(_frame(0), "rgb8", 1.0, bad)
    with pytest.raises(ValueError, match="focal lengths must be > 0"):
        pipe.process(_frame(0), "rgb8", 1.0, np.diag([-100.0, 100.0, 1.0]))
    with pytest.raises(ValueError, match="intrinsics are for 96x32 but the image is 192x64"):
        pipe.process(_frame(0), "rgb8", 1.0, CAM_K.scaled(96, 32))
    with pytest.raises(ValueError, match="stamp_s must be a finite number"):
        pipe.process(_frame(0), "rgb8", float("nan"), CAM_K)
    with pytest.raises(ValueError, match="unsupported image encoding"):
        pipe.process(_frame(0), "yuv422", 1.0, CAM_K)
    with pytest.raises(ValueError, match="external_speed_mps"):
        pipe.process(_frame(0), "rgb8", 1.0, CAM_K, external_speed_mps=-1.0)
    assert pipe.frame_index == 0  # nothing was half-processed
    # a 3x3 K is accepted; no intrinsics -> the card's, with one warning
    assert pipe.process(_frame(0), "rgb8", 1.0, K).intrinsics == CAM_K.scaled(W, H)
    with caplog.at_level(logging.WARNING, logger="depth_sfm_ros.runtime.pipeline"):
        r1 = pipe.process(_frame(1), "rgb8", 1.1)
        pipe.process(_frame(2), "rgb8", 1.2)
    assert caplog.text.count("no camera intrinsics given") == 1
    assert r1.intrinsics == card_intrinsics(backend.card, CAM_W, CAM_H).scaled(W, H)


@pytest.mark.parametrize("overrides,message", [
    ({"scale_mode": "magic"}, "scale_mode"), ({"camera_height_m": -1.0}, "camera_height_m"),
    ({"fixed_scale": float("nan")}, "fixed_scale"), ({"min_depth_m": 5.0, "max_depth_m": 1.0}, "min_depth_m"),
    ({"mask_threshold": 1.5}, "mask_threshold"), ({"scale_window": 0}, "scale_window"),
    ({"engine_policy": "sometimes"}, "engine_policy"),
])
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig(**overrides)
    with pytest.raises(ValueError, match="model is required"):
        Pipeline(PipelineConfig())


def test_fixed_and_external_scale_are_applied_to_depth_and_pose(backend):
    plain = _pipeline(backend, min_depth_m=0.001, max_depth_m=1e4)
    fixed = _pipeline(backend, scale_mode="fixed", fixed_scale=2.5, min_depth_m=0.001, max_depth_m=1e4)
    external = _pipeline(backend, scale_mode="external", min_depth_m=0.001, max_depth_m=1e4)
    results = {}
    for name, pipe in (("plain", plain), ("fixed", fixed), ("external", external)):
        pipe.process(_frame(0), "rgb8", 5.0, CAM_K, external_speed_mps=12.0)
        results[name] = pipe.process(_frame(1), "rgb8", 5.1, CAM_K, external_speed_mps=12.0)
    np.testing.assert_allclose(results["fixed"].depth_m, 2.5 * results["plain"].depth_m, rtol=1e-6)
    np.testing.assert_allclose(results["fixed"].T_prev_cur.t, 2.5 * results["plain"].T_prev_cur.t)
    ext = results["external"]
    assert ext.scale_valid and abs(np.linalg.norm(ext.T_prev_cur.t) - 12.0 * 0.1) < 1e-6
    np.testing.assert_allclose(ext.depth_m, ext.scale * results["plain"].depth_m, rtol=1e-5)


# --- scale recovery on ground truth --------------------------------------------------------------
def test_ground_plane_fit_on_an_analytic_scene():
    """A flat road 1.2 m below a camera pitched 4 degrees down: the fit finds height and normal."""
    K = Intrinsics.from_normalized(0.58, 1.92, 0.5, 0.5, 160, 48)
    R_cam_level = euler_to_matrix(np.radians(-4.0), 0.0, 0.0)  # about x: pitch in the optical frame
    v, u = np.mgrid[0:48, 0:160].astype(np.float64)
    rays = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], -1)
    up_cam = R_cam_level @ np.array([0.0, -1.0, 0.0])
    with np.errstate(divide="ignore"):
        depth = 1.2 / -(rays @ up_cam)  # ray z=1 hits n.p + 1.2 = 0 at depth t
    depth[depth <= 0] = np.nan
    fit = fit_ground_plane(depth.astype(np.float32), K, region_top=0.5)
    assert fit is not None and abs(fit.distance - 1.2) < 0.01 and fit.inlier_ratio > 0.95
    assert abs(float(fit.normal @ up_cam)) > 0.9999
    rng = np.random.default_rng(0)
    assert fit_ground_plane(rng.uniform(1, 50, (48, 160)).astype(np.float32), K) is None  # no plane: no guess


def test_camera_height_scale_within_5_percent_on_synthetic_gt():
    seq = render_sequence(SynthConfig(seed=2, width=192, height=64, num_frames=12, camera_height_m=1.65))
    unknown = 0.37  # the network's depth = GT * unknown factor
    estimator = ScaleEstimator("camera_height", camera_height_m=1.65, window=9)
    rng = np.random.default_rng(1)
    for i, frame in enumerate(seq):
        depth = frame.depth_m * unknown
        if i % 4 == 3:  # an outlier frame (no ground visible): must not move the estimate
            depth = rng.uniform(0.5, 20.0, depth.shape).astype(np.float32)
        scale = estimator.update(depth=depth, intrinsics=seq.intrinsics)
    assert estimator.valid
    assert abs(scale * unknown - 1.0) < 0.05, f"recovered scale {scale:.3f}, truth {1 / unknown:.3f}"
    depth_m = seq[5].depth_m * unknown * scale
    valid = np.isfinite(depth_m)
    assert np.median(np.abs(depth_m[valid] / seq[5].depth_m[valid] - 1.0)) < 0.05


def test_scale_estimator_modes():
    assert ScaleEstimator("none").update() == 1.0
    assert ScaleEstimator("fixed", fixed_scale=3.0).update() == 3.0
    ext = ScaleEstimator("external", window=3)
    assert not ext.valid and ext.update(translation=np.array([0.0, 0.0, 0.5]), dt_s=0.1, speed_mps=10.0) == 2.0
    assert ext.update(translation=np.zeros(3), dt_s=0.1, speed_mps=10.0) == 2.0  # |t| ~ 0: keep
    with pytest.raises(ValueError, match="scale_mode"):
        ScaleEstimator("lidar")
    with pytest.raises(ValueError, match="camera_height_m"):
        ScaleEstimator("camera_height", camera_height_m=0.0)
    with pytest.raises(ValueError, match="needs the depth"):
        ScaleEstimator("camera_height").update()


# --- odometry -------------------------------------------------------------------------------------
def test_odometry_integration_on_a_known_trajectory():
    seq = render_sequence(SynthConfig(seed=4, width=32, height=16, num_frames=40))
    gt = [f.T_world_cam for f in seq]
    stamps = [f.stamp_s for f in seq]
    rng = np.random.default_rng(0)
    unknown = 0.2  # the network's translation unit
    estimator = ScaleEstimator("external", window=5)
    odom = OdometryIntegrator()
    raw = OdometryIntegrator()
    est, est_raw = [odom.T_odom_cam.matrix], [raw.T_odom_cam.matrix]
    for i in range(1, len(gt)):
        T_gt = gt[i - 1].inverse() @ gt[i]
        noise = Pose.from_vec(np.concatenate([rng.normal(0, 0.002, 3), rng.normal(0, 2e-4, 3)]))
        T_pred = (T_gt @ noise).with_translation_scaled(unknown)
        dt = stamps[i] - stamps[i - 1]
        speed = np.linalg.norm(T_gt.t) / dt
        scale = estimator.update(translation=T_pred.t, dt_s=dt, speed_mps=speed)
        est.append(odom.update(T_pred.with_translation_scaled(scale)).matrix)
        est_raw.append(raw.update(T_pred).matrix)
    gt_rel = np.array([(gt[0].inverse() @ T).matrix for T in gt])
    length = float(np.linalg.norm(gt_rel[-1, :3, 3]))
    assert length > 10.0
    good = ate(np.array(est), gt_rel, align="se3")
    bad = ate(np.array(est_raw), gt_rel, align="se3")
    assert good["rmse_m"] < 0.01 * length, good
    assert bad["rmse_m"] > 0.2 * length, bad  # unscaled odometry fails the same check
    odom.reset()
    assert np.allclose(odom.T_odom_cam.matrix, np.eye(4))
