"""camera_height scale: a poor ground-plane fit is refused (counted by reason, logged throttled, the last
accepted scale kept), a good one is accepted, and the state says what the scale assumes. Also the node
side: parameters, the camera mounting's 'up', and the diagnostics keys."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from depth_sfm_ros.geometry import Intrinsics, euler_to_matrix
from depth_sfm_ros.ros import params
from depth_sfm_ros.ros.diagnostics import NodeStats
from depth_sfm_ros.ros.pipeline_factory import pipeline_config
from depth_sfm_ros.runtime.motion_gate import ImageMotion, MotionDecision
from depth_sfm_ros.runtime.scale import (REFUSAL_REASONS, ScaleEstimator, fit_ground_plane, ground_plane_candidate,
                                         judge_ground_plane)

K = Intrinsics.from_normalized(0.58, 1.92, 0.5, 0.5, 192, 64)  # the bundled model's training intrinsics
HEIGHT_NET = 0.03  # the camera's height above the ground in network units (the bundled model's is ~0.027)


def _plane_depth(up_cam: np.ndarray, height: float, intrinsics: Intrinsics = K, far: float = 5.0) -> np.ndarray:
    """Depth (H, W) of a camera ``height`` above the plane with normal ``up_cam``; rays that miss it (or hit
    it beyond ``far`` x height x 30) see a fronto-parallel wall there instead, like the sky / background."""
    v, u = np.mgrid[0:intrinsics.height, 0:intrinsics.width].astype(np.float64)
    rays = np.stack([(u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy, np.ones_like(u)], -1)
    down = -(rays @ up_cam)
    with np.errstate(divide="ignore"):
        depth = np.where(down > 1e-6, height / down, np.inf)
    return np.minimum(depth, far * height * 30).astype(np.float32)


UP = np.array([0.0, -1.0, 0.0])


def test_good_ground_plane_is_accepted_with_the_assumption_stated():
    estimator = ScaleEstimator("camera_height", camera_height_m=1.65, window=5)
    state = estimator.state()
    assert state.status == "no_scale_yet" and not state.valid and state.scale == 1.0  # network units until then
    assert state.assumption.startswith("ground plane at camera_height_m=1.65 m below the camera")
    scale = estimator.update(depth=_plane_depth(UP, HEIGHT_NET), intrinsics=K)
    state = estimator.state()
    assert scale == pytest.approx(1.65 / HEIGHT_NET, rel=0.01)
    assert state.status == "ok" and state.valid and state.refusals == 0 and state.raw == pytest.approx(scale)
    fit = estimator.last_fit
    assert fit.tilt_deg < 0.5 and fit.inlier_ratio > 0.9 and fit.residual_ratio < 0.01
    assert set(state.refusals_by_reason) == set(REFUSAL_REASONS)


def test_wall_without_ground_is_refused_keeping_the_scale_and_counted(caplog):
    """A fronto-parallel wall fills the view: no ground plane. The previous scale stays, every frame is
    counted, and the log says so once per throttle period."""
    estimator = ScaleEstimator("camera_height", camera_height_m=1.65, window=5)
    wall = np.full((64, 192), 0.2, np.float32)
    with caplog.at_level(logging.WARNING, logger="depth_sfm_ros.runtime.scale"):
        assert estimator.update(depth=wall, intrinsics=K) == 1.0
        assert estimator.state().status == "no_scale_yet"  # refused before anything was accepted
        good = estimator.update(depth=_plane_depth(UP, HEIGHT_NET), intrinsics=K)
        for _ in range(4):
            assert estimator.update(depth=wall, intrinsics=K) == good
    state = estimator.state()
    assert state.status == "refused:no_plane" and state.valid and state.scale == good
    assert state.refusals == 5 and state.refusals_by_reason["no_plane"] == 5
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "no_plane" in lines[0] and "network units" in lines[0]  # throttled: the first only
    estimator.log_throttle_s = 0.0
    with caplog.at_level(logging.WARNING, logger="depth_sfm_ros.runtime.scale"):
        estimator.update(depth=wall, intrinsics=K)
    assert f"keeping scale {good:.4g}" in caplog.records[-1].getMessage()
    assert fit_ground_plane(wall, K) is None and ground_plane_candidate(wall, K) is None


def test_tilted_plane_is_refused_for_its_tilt_against_the_mounting():
    """A plane 25 degrees off the expected up (a ramp / a wall seen at an angle, or a camera pitched more than
    configured) is refused as 'tilt'; with the mounting's true up it is a good ground plane."""
    up_pitched = euler_to_matrix(math.radians(25.0), 0.0, 0.0) @ UP  # camera pitched 25 degrees down
    depth = _plane_depth(up_pitched, HEIGHT_NET)
    fit = ground_plane_candidate(depth, K, up=UP)
    assert fit is not None and fit.tilt_deg == pytest.approx(25.0, abs=0.5)
    assert judge_ground_plane(fit) == "tilt"
    level = ScaleEstimator("camera_height", window=5)
    level.update(depth=depth, intrinsics=K)
    assert level.state().status == "no_scale_yet" and level.refusals["tilt"] == 1
    mounted = ScaleEstimator("camera_height", window=5, up=tuple(up_pitched))
    assert mounted.update(depth=depth, intrinsics=K) == pytest.approx(1.65 / HEIGHT_NET, rel=0.01)
    assert mounted.state().status == "ok"


def test_few_inliers_and_residual_spread_are_refused():
    rng = np.random.default_rng(0)
    random_depth = rng.uniform(0.05, 2.0, (64, 192)).astype(np.float32)
    estimator = ScaleEstimator("camera_height", window=5)
    estimator.update(depth=random_depth, intrinsics=K)
    assert estimator.state().status == "no_scale_yet"
    assert estimator.refusals["few_inliers"] + estimator.refusals["no_plane"] == 1
    bumpy = _plane_depth(UP, HEIGHT_NET) * rng.uniform(0.995, 1.005, (64, 192)).astype(np.float32)
    fit = ground_plane_candidate(bumpy, K)
    assert fit.inlier_ratio > 0.3 and fit.residual_ratio > 0.0
    strict = ScaleEstimator("camera_height", window=5, max_residual_ratio=fit.residual_ratio / 2)
    strict.update(depth=bumpy, intrinsics=K)
    assert strict.state().status == "no_scale_yet" and strict.refusals["residual"] == 1


def test_scale_jump_is_refused_and_a_lasting_change_restarts_the_scale():
    estimator = ScaleEstimator("camera_height", camera_height_m=1.65, window=4, max_jump=1.5)
    for _ in range(3):
        estimator.update(depth=_plane_depth(UP, HEIGHT_NET), intrinsics=K)
    smoothed = estimator.scale
    half = _plane_depth(UP, HEIGHT_NET / 2)  # the same road seen as twice as close: x2 scale in one frame
    assert estimator.update(depth=half, intrinsics=K) == smoothed
    state = estimator.state()
    assert state.status == "refused:jump" and state.refusals_by_reason["jump"] == 1
    assert state.raw == pytest.approx(2 * smoothed, rel=0.02)  # what was refused
    for _ in range(3):  # 4 in a row (the window) that agree: a lasting change, not an outlier
        estimator.update(depth=half, intrinsics=K)
    assert estimator.scale == pytest.approx(2 * smoothed, rel=0.02) and estimator.state().status == "ok"


def test_external_and_other_modes_state_their_assumption():
    ext = ScaleEstimator("external", window=3)
    ext.update()  # first frame of a pair: nothing to estimate, nothing refused
    assert ext.state().status == "no_scale_yet" and ext.state().refusals == 0
    ext.update(translation=np.array([0.0, 0.0, 0.5]), dt_s=0.1, speed_mps=None)
    assert ext.state().status == "no_scale_yet" and ext.refusals["no_speed"] == 1
    assert ext.update(translation=np.array([0.0, 0.0, 0.5]), dt_s=0.1, speed_mps=10.0) == 2.0
    ext.update(translation=None, dt_s=0.1, speed_mps=10.0)  # a still frame: no translation to scale
    assert ext.state().status == "refused:no_motion" and ext.scale == 2.0
    assert "external odometry" in ext.state().assumption
    assert ScaleEstimator("none").state().status == "ok" and "network units" in ScaleEstimator("none").assumption
    fixed = ScaleEstimator("fixed", fixed_scale=2.5).state()
    assert fixed.status == "ok" and fixed.scale == 2.5 and "fixed_scale=2.5" in fixed.assumption
    with pytest.raises(ValueError, match="max_jump"):
        ScaleEstimator("camera_height", max_jump=1.0)
    with pytest.raises(ValueError, match="up"):
        ScaleEstimator("camera_height", up=(0.0, 0.0, 0.0))


# --- node side -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,value,fragment", [
    ("still_detection", "yes", "true or false"),
    ("still_threshold_px", 0.0, "outside"),
    ("still_threshold_px", math.nan, "finite"),
    ("still_max_translation_m", -0.1, "outside"),
    ("still_max_rotation_deg", 200.0, "outside"),
    ("ground_max_tilt_deg", 60.0, "outside"),
    ("ground_min_inlier_fraction", 1.0, "outside"),
    ("scale_max_jump", 1.0, "outside"),
])
def test_new_parameters_are_validated(name, value, fragment):
    spec = params.PARAMETERS_BY_NAME[name]
    assert len(spec.description) > 30
    with pytest.raises(params.ParameterError) as info:
        params.validate({name: value}, check_model_files=False)
    assert info.value.name == name and fragment in str(info.value)


def test_parameters_reach_the_pipeline_config():
    p = params.validate({"still_detection": False, "still_threshold_px": 0.8, "still_max_translation_m": 0.1,
                         "still_max_rotation_deg": 2.0, "ground_max_tilt_deg": 10.0,
                         "ground_min_inlier_fraction": 0.4, "scale_max_jump": 2.0,
                         "camera_to_base_rpy": [-math.pi / 2 - math.radians(30.0), 0.0, -math.pi / 2]},
                        check_model_files=False)
    config = pipeline_config(p)
    gate = config.motion_gate
    assert (gate.enabled, gate.threshold_px, gate.max_translation_m, gate.max_rotation_deg) == (False, 0.8, 0.1, 2.0)
    assert (config.ground_max_tilt_deg, config.ground_min_inlier_ratio, config.scale_max_jump) == (10.0, 0.4, 2.0)
    # base +z in the optical frame of a camera pitched 30 degrees down: up is -y rotated towards -z
    np.testing.assert_allclose(config.up_cam, [0.0, -math.cos(math.radians(30)), -math.sin(math.radians(30))],
                               atol=1e-9)
    default = pipeline_config(params.validate({}, check_model_files=False))
    np.testing.assert_allclose(default.up_cam, [0.0, -1.0, 0.0], atol=1e-12)
    assert default.motion_gate.enabled and default.scale_mode == "camera_height"


def test_diagnostics_report_still_frames_and_the_scale_state():
    stats = NodeStats(clock=lambda: 0.0)
    estimator = ScaleEstimator("camera_height", window=3)
    estimator.update(depth=np.full((64, 192), 0.2, np.float32), intrinsics=K)
    image = ImageMotion(motion_px=0.2, moving_fraction=0.01, textured_fraction=0.6, noise_grey=3.0,
                        change_ratio=0.9, basis="texture", moving=False)
    assert MotionDecision(still=True, reason="image_still", image=image).still
    for state in ("first", "still", "still", "moving"):
        stats.frame_processed(20.0, {"infer": 3.0}, scale=1.0, scale_valid=False, reset=state == "first",
                              motion_state=state, motion_px=image.motion_px, scale_state=estimator.state())
    values = dict(stats.key_values())
    assert values["still_frames"] == "2" and values["motion_state"] == "moving" and values["motion_px"] == "0.200"
    assert values["scale_status"] == "no_scale_yet" and values["scale_refusals"] == "1"
    assert values["scale_refusals.no_plane"] == "1"
    assert {f"scale_refusals.{r}" for r in REFUSAL_REASONS} <= set(values)
    assert values["scale_assumption"].startswith("ground plane at camera_height_m=1.65 m below the camera")
