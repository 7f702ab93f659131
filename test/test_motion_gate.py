"""Still-camera detection (runtime/motion_gate.py) and what the Pipeline does with it.

Synthetic pairs (noise only, shifted texture, a small moving object), real frames (a committed fixture
that always runs, and the full sequences in ../shared/real when present), and the Pipeline with the
bundled default model (ONNX Runtime) and a pose output that jitters: a still camera must give still
odometry.
"""
from __future__ import annotations

import dataclasses
import glob
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_sfm_ros.geometry import Intrinsics, Pose
from depth_sfm_ros.runtime.backends import Backend, BackendOutput
from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR
from depth_sfm_ros.runtime.motion_gate import MotionGate, MotionGateConfig
from depth_sfm_ros.runtime.pipeline import Pipeline, PipelineConfig

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "test" / "fixtures" / "real"
SHARED_REAL = REPO.parent / "shared" / "real"
SEVEN_SCENES = SHARED_REAL / "7scenes_redkitchen"
KITTI = SHARED_REAL / "kitti_odometry_51"
needs_shared = pytest.mark.skipif(not (SEVEN_SCENES.is_dir() and KITTI.is_dir()),
                                  reason=f"{SHARED_REAL} (7-Scenes / KITTI frames for development) is not here; "
                                         f"a clone has only the fixture in {FIXTURE}")
K_7SCENES = Intrinsics(fx=585.0, fy=585.0, cx=320.0, cy=240.0, width=640, height=480)  # camera-intrinsics.txt

GATE = MotionGate()


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Zero-mean, unit-std texture with detail at 1-8 px (like a natural image, not white noise)."""
    rng = np.random.default_rng(seed)
    texture = np.zeros((height, width), np.float32)
    for sigma in (1.0, 2.0, 4.0, 8.0):
        texture += cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), sigma) * sigma
    return (texture - texture.mean()) / texture.std()


def _camera(scene: np.ndarray, rng: np.random.Generator, read_noise: float, electrons_per_level: float = 4.0
            ) -> np.ndarray:
    """A mono8 exposure of ``scene`` (grey levels): Poisson shot noise (``electrons_per_level`` electrons per
    grey level) + Gaussian read noise (std ``read_noise`` grey levels), quantised."""
    electrons = rng.poisson(np.clip(scene, 0, None) * electrons_per_level) / electrons_per_level
    return np.clip(np.round(electrons + rng.normal(0.0, read_noise, scene.shape)), 0, 255).astype(np.uint8)


def _motion(a: np.ndarray, b: np.ndarray, encoding: str = "mono8"):
    return GATE.image_motion(GATE.grey(a, encoding), GATE.grey(b, encoding))


# --- synthetic pairs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("brightness", [30.0, 128.0, 220.0])
@pytest.mark.parametrize("read_noise", [1.0, 3.0, 6.0])
@pytest.mark.parametrize("contrast", [0.0, 40.0])
def test_noise_only_pairs_are_still(brightness, read_noise, contrast):
    """Two exposures of one still scene (flat or textured), Gaussian + Poisson noise: no motion."""
    rng = np.random.default_rng(int(brightness + 10 * read_noise + contrast))
    scene = np.clip(brightness + contrast * _texture(120, 160), 0, 255)
    for _ in range(3):
        m = _motion(_camera(scene, rng, read_noise), _camera(scene, rng, read_noise))
        assert not m.moving, m
        assert m.basis == ("flat" if contrast == 0 else "texture"), m
        if m.basis == "texture":
            assert m.motion_px < 0.5 and m.moving_fraction < 0.1, m
        else:
            assert 0.8 < m.change_ratio < 1.25, m  # a noise-only difference is what the noise estimate predicts


@pytest.mark.parametrize("brightness", [30.0, 128.0])
@pytest.mark.parametrize("shift_px", [(1, 0), (0, 1), (2, 0), (1, 1), (-2, 1)])
def test_shifted_texture_is_moving(brightness, shift_px):
    """The same textured scene shifted by 1-2 px of the 160-px-wide image: motion, measured as about the shift."""
    rng = np.random.default_rng(7)
    scene = np.clip(brightness + 40.0 * _texture(120, 160, seed=3), 0, 255)
    dx, dy = shift_px
    shifted = np.roll(scene, (dy, dx), axis=(0, 1))
    m = _motion(_camera(scene, rng, 2.0), _camera(shifted, rng, 2.0))
    assert m.moving, m
    assert 0.75 * math.hypot(dx, dy) < m.motion_px < 1.3 * math.hypot(dx, dy), m


@pytest.mark.parametrize("background_contrast", [40.0, 0.0])
@pytest.mark.parametrize("step_px", [3, 12])
def test_a_small_moving_object_in_front_of_a_still_camera_is_still(background_contrast, step_px):
    """10 % of the image (a textured 40x48 patch) moves, the rest is still: the camera is still, on a textured
    and on a plain background (where the object is the only texture there is)."""
    rng = np.random.default_rng(11)
    scene = np.clip(128.0 + background_contrast * _texture(120, 160, seed=4), 0, 255)
    patch = np.clip(128.0 + 60.0 * _texture(40, 48, seed=5), 0, 255)
    before, after = scene.copy(), scene.copy()
    before[40:80, 30:78] = patch
    after[40:80, 30 + step_px:78 + step_px] = patch
    assert patch.size / scene.size == pytest.approx(0.1)
    m = _motion(_camera(before, rng, 2.0), _camera(after, rng, 2.0))
    assert not m.moving, m
    assert m.moving_fraction < GATE.config.min_moving_fraction


def test_exposure_change_is_not_motion():
    rng = np.random.default_rng(2)
    scene = np.clip(100.0 + 40.0 * _texture(120, 160), 0, 255)
    assert not _motion(_camera(scene, rng, 2.0), _camera(np.clip(scene * 1.25, 0, 255), rng, 2.0)).moving


def test_the_pose_net_motion_is_zeroed_only_below_the_caps_and_only_if_the_image_is_still():
    rng = np.random.default_rng(0)
    scene = np.clip(128.0 + 40.0 * _texture(120, 160), 0, 255)
    still = _motion(_camera(scene, rng, 2.0), _camera(scene, rng, 2.0))
    moving = _motion(_camera(scene, rng, 2.0), _camera(np.roll(scene, 2, axis=1), rng, 2.0))
    small = Pose.from_vec([0.02, -0.01, 0.03, 0.001, 0.002, 0.0])  # 3.7 cm, 0.13 deg: network jitter
    decision = GATE.decide(still, small)
    assert decision.still and decision.reason == "image_still"
    assert decision.translation_m == pytest.approx(np.linalg.norm([0.02, -0.01, 0.03]))
    assert decision.rotation_deg == pytest.approx(math.degrees(math.hypot(0.001, 0.002)))
    assert GATE.decide(moving, small).reason == "image_motion"  # the image says moving: the pose is kept
    assert not GATE.decide(moving, Pose.identity()).still
    for big in (Pose.from_vec([0.0, 0.0, 0.3, 0.0, 0.0, 0.0]), Pose.from_vec([0.0, 0.0, 0.0, 0.0, 0.1, 0.0])):
        decision = GATE.decide(still, big)  # 0.3 m or 5.7 deg in one frame: not jitter, kept
        assert not decision.still and decision.reason == "pose_motion"
    assert GATE.decide(still, None).still and GATE.decide(still, None).reason == "image_only"


@pytest.mark.parametrize("kwargs,name", [
    ({"threshold_px": 0.0}, "threshold_px"), ({"max_translation_m": -1.0}, "max_translation_m"),
    ({"max_rotation_deg": math.inf}, "max_rotation_deg"), ({"gate_width_px": 8}, "gate_width_px"),
    ({"min_moving_fraction": 1.0}, "min_moving_fraction"), ({"enabled": "yes"}, "enabled"),
    ({"max_reference_age_s": 0.0}, "max_reference_age_s"),
])
def test_gate_config_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MotionGateConfig(**kwargs)


def test_grey_copy_is_160_wide_for_every_encoding():
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    grey = GATE.grey(rgb, "rgb8")
    assert grey.shape == (120, 160) and grey.dtype == np.float32 and 0 <= grey.min() and grey.max() <= 255
    np.testing.assert_allclose(GATE.grey(rgb[:, :, ::-1].copy(), "bgr8"), grey, atol=1e-3)
    mono = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    np.testing.assert_allclose(GATE.grey(mono.astype(np.uint16) * 257, "mono16"), GATE.grey(mono, "mono8"),
                               atol=0.6)  # the integer area resize rounds differently
    assert GATE.grey(np.zeros((370, 1226), np.uint8), "mono8").shape == (48, 160)


# --- real frames ---------------------------------------------------------------------------------------------
def _read(path: Path) -> tuple[np.ndarray, str]:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image, "mono8" if image.ndim == 2 else "bgr8"


def test_fixture_real_frames_still_kinect_vs_moving_car():
    """Committed downscaled real frames (test/fixtures/real/README.md): a handheld Kinect 2.3 mm / 0.19 deg
    apart is still; a car 1.2 m further on is moving."""
    kinect = [GATE.grey(*_read(FIXTURE / f"7scenes_redkitchen_{i:06d}.png")) for i in (0, 4)]
    car = [GATE.grey(*_read(FIXTURE / f"kitti_odometry_{i:06d}.png")) for i in (0, 1)]
    still = GATE.image_motion(*kinect)
    assert not still.moving and still.motion_px < 0.45, still
    moving = GATE.image_motion(*car)
    assert moving.moving and moving.motion_px > 1.5 and moving.moving_fraction > 0.3, moving


def _seven_scenes_motion_mm_deg(i: int, j: int) -> tuple[float, float]:
    T_i, T_j = (np.loadtxt(SEVEN_SCENES / f"frame-{k:06d}.pose.txt") for k in (i, j))
    T_ij = Pose(np.linalg.inv(T_i) @ T_j)
    return float(np.linalg.norm(T_ij.t)) * 1e3, math.degrees(T_ij.rotation_angle())


@needs_shared
def test_real_still_kinect_frames_are_still_and_kitti_frames_move():
    """7-Scenes redkitchen frames 0-9 (KinectFusion: 0.7-2.3 mm and 0.07-0.19 deg per frame): every pair is
    still, and so is every frame up to 8 against frame 0 (what the Pipeline compares with during a still
    stretch); frame 9 is 7.3 mm / 0.40 deg from frame 0, the first the gate sees move. All 50 KITTI pairs
    (1.2 m per frame) move."""
    steps = [_seven_scenes_motion_mm_deg(i - 1, i) for i in range(1, 10)]
    assert max(mm for mm, _ in steps) < 2.5 and max(deg for _, deg in steps) < 0.2  # the data is what we say
    frames = [GATE.grey(*_read(SEVEN_SCENES / f"frame-{i:06d}.color.jpg")) for i in range(10)]
    pairs = [GATE.image_motion(frames[i - 1], frames[i]) for i in range(1, 10)]
    assert not any(m.moving for m in pairs), pairs
    assert max(m.motion_px for m in pairs) < 0.45
    against_first = [GATE.image_motion(frames[0], frames[i]) for i in range(1, 10)]
    assert not any(m.moving for m in against_first[:8]), against_first
    kitti = [GATE.grey(*_read(Path(p))) for p in sorted(glob.glob(str(KITTI / "image_l" / "*.png")))]
    assert len(kitti) == 51
    motions = [GATE.image_motion(kitti[i - 1], kitti[i]) for i in range(1, len(kitti))]
    assert all(m.moving for m in motions)
    assert min(m.motion_px for m in motions) > 1.5 and min(m.moving_fraction for m in motions) > 0.25


# --- the Pipeline ---------------------------------------------------------------------------------------------
class JitterPose(Backend):
    """The bundled model (ONNX Runtime) with its pose output replaced by jitter: N(0, sigma_m) per translation
    axis, N(0, sigma_rad) per rotation axis, in network units (= metres with scale_mode fixed, fixed_scale 1)."""

    def __init__(self, inner: Backend, sigma_m: float, sigma_rad: float, seed: int = 0) -> None:
        self.inner, self.card, self.name = inner, inner.card, f"jitter({inner.name})"
        self.sigma_m, self.sigma_rad = sigma_m, sigma_rad
        self.rng = np.random.default_rng(seed)

    def infer(self, image_cur: np.ndarray, image_prev: np.ndarray | None = None) -> BackendOutput:
        out = self.inner.infer(image_cur, image_prev)
        if out.pose_vec is None:
            return out
        jitter = np.concatenate([self.rng.normal(0.0, self.sigma_m, 3), self.rng.normal(0.0, self.sigma_rad, 3)])
        return dataclasses.replace(out, pose_vec=jitter)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def bundled_backend():
    if not (DEFAULT_MODEL_DIR / "model_card.yaml").is_file():
        pytest.skip(f"the bundled default model is not at {DEFAULT_MODEL_DIR}")
    from depth_sfm_ros.runtime.backends import create_backend

    backend = create_backend(str(DEFAULT_MODEL_DIR), name="onnxruntime", device="cpu", threads=1)
    yield backend
    backend.close()


def _drive(backend: Backend, frames: list[tuple[np.ndarray, str]], K: Intrinsics | None, rate_hz: float,
           sigma_m: float, gate: bool = True):
    """Run the frames through a Pipeline (node defaults apart from a fixed scale of 1, so the stub's jitter is in
    metres); returns the results and the odometry's path length per second of the stretch (m/s)."""
    config = PipelineConfig(scale_mode="fixed", fixed_scale=1.0, motion_gate=MotionGateConfig(enabled=gate))
    pipeline = Pipeline(config, backend=JitterPose(backend, sigma_m, sigma_m / 10, seed=1))
    results = [pipeline.process(image, encoding, i / rate_hz, K) for i, (image, encoding) in enumerate(frames)]
    positions = np.array([r.T_odom_cam.t for r in results])
    path_m = float(np.linalg.norm(np.diff(positions, axis=0), axis=1).sum())
    return results, path_m / ((len(frames) - 1) / rate_hz)


def test_still_fixture_camera_gives_still_odometry_despite_pose_jitter(bundled_backend):
    """Real Kinect frames that do not move (the fixture's two, alternating at 30 Hz, as a camera held still
    whose noise differs frame to frame) with a pose net that jitters 6 cm per axis per frame (a still
    camera's measured drift with the bundled model was 1.2 m/s): the odometry does not move at all."""
    frames = [_read(FIXTURE / f"7scenes_redkitchen_{i:06d}.png") for i in (0, 4)] * 5
    K = K_7SCENES.scaled(160, 120)
    results, drift_mps = _drive(bundled_backend, frames, K, 30.0, sigma_m=0.06)
    assert [r.motion_state for r in results] == ["first"] + ["still"] * 9
    assert all(r.still for r in results[1:]) and drift_mps == 0.0
    for r in results[1:]:
        assert np.array_equal(r.T_prev_cur.matrix, np.eye(4)) and np.array_equal(r.T_odom_cam.matrix, np.eye(4))
        assert r.motion.reason == "image_still" and r.motion.translation_m > 0  # the jitter was there, and zeroed
        # depth (and the mask, where the model has one) go on as usual
        assert r.depth_m.shape == results[0].depth_m.shape and np.isfinite(r.depth_m).all()
        assert (r.dynamic_mask is not None) == (r.dynamic_prob is not None) == bundled_backend.has_mask
    _, ungated_mps = _drive(bundled_backend, frames, K, 30.0, sigma_m=0.06, gate=False)
    assert ungated_mps > 1.0  # what today's code (no gate) publishes for the same frames


@needs_shared
def test_real_still_kinect_sequence_drifts_less_than_5_cm_per_s(bundled_backend):
    """7-Scenes redkitchen frames 0-9 at their 30 Hz with a pose net jittering 5 mm per axis per frame: without
    the gate the odometry walks ~0.25 m/s; with it, below 0.05 m/s (the camera's true motion over the stretch is
    7.3 mm in 0.3 s, 0.024 m/s; the gate sees it move once, at frame 9, against frame 0)."""
    frames = [_read(SEVEN_SCENES / f"frame-{i:06d}.color.jpg") for i in range(10)]
    results, drift_mps = _drive(bundled_backend, frames, K_7SCENES, 30.0, sigma_m=0.005)
    _, ungated_mps = _drive(bundled_backend, frames, K_7SCENES, 30.0, sigma_m=0.005, gate=False)
    print(f"\nstill Kinect, 10 frames: drift {drift_mps:.3f} m/s with the gate, {ungated_mps:.3f} m/s without; "
          f"states {[r.motion_state for r in results]}")
    assert ungated_mps > 0.1
    assert drift_mps < 0.05
    assert sum(r.still for r in results) >= 8


@needs_shared
def test_real_kitti_drive_is_never_gated(bundled_backend):
    """KITTI, 1.2 m per frame: every pair is moving, so the pose net's motion is integrated as before."""
    paths = sorted(glob.glob(str(KITTI / "image_l" / "*.png")))[:8]
    frames = [_read(Path(p)) for p in paths]
    results, drift_mps = _drive(bundled_backend, frames, None, 10.0, sigma_m=0.01)
    assert [r.motion_state for r in results] == ["first"] + ["moving"] * 7
    assert all(r.motion.reason == "image_motion" for r in results[1:]) and drift_mps > 0


class StubBackend(Backend):
    """No networks: constant depth, a fixed pose, no mask (fast Pipeline mechanics tests)."""

    name = "stub"

    def __init__(self, card, pose_vec) -> None:
        self.card = card
        self.pose_vec = np.asarray(pose_vec, dtype=np.float64)

    def _infer(self, image_cur, image_prev):
        h, w = self.input_hw
        depth = np.full((h, w), 10.0, np.float32)
        return BackendOutput(disparity=np.full((h, w), 0.1, np.float32), depth=depth,
                             pose_vec=None if image_prev is None else self.pose_vec.copy(), dynamic_prob=None)


def test_slow_motion_accumulates_against_the_reference_frame():
    """A camera panning 0.3 px (of 160) per frame, below the threshold each frame: the still frames keep the
    reference, so the motion shows against it after a few frames and the pose net then gets the whole
    baseline; nothing is lost to the gate. The reference also stays through a still stretch."""
    from depth_sfm_ros.runtime.model_card import read_model_card

    card = read_model_card(DEFAULT_MODEL_DIR) if (DEFAULT_MODEL_DIR / "model_card.yaml").is_file() else None
    if card is None:
        pytest.skip("needs the bundled model's card for the network size")
    scene = np.clip(128.0 + 40.0 * _texture(480, 640, seed=9), 0, 255).astype(np.float32)
    rng = np.random.default_rng(3)

    def frame(shift_px_640: float) -> np.ndarray:
        M = np.float32([[1, 0, shift_px_640], [0, 1, 0]])
        return _camera(cv2.warpAffine(scene, M, (640, 480), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT),
                       rng, 1.0)

    pipeline = Pipeline(PipelineConfig(scale_mode="fixed", fixed_scale=1.0),
                        backend=StubBackend(card, [0.0, 0.0, 0.01, 0.0, 0.0, 0.0]))
    states = [pipeline.process(frame(1.2 * i), "mono8", i / 30.0, K_7SCENES).motion_state for i in range(12)]
    moving = [i for i, s in enumerate(states) if s == "moving"]
    assert states[0] == "first" and states[1] == "still" and moving, states
    assert all(b - a >= 2 for a, b in zip([0] + moving, moving)), states  # each detection covers >= 2 frames
    assert len(moving) >= 3  # the pan goes on being detected: every 2-3 frames of 1.2 px (at 640) each
