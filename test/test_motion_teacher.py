"""The label-free motion teacher (training/motion_teacher.py) and ``depth-sfm pseudo-masks`` (training/pseudo_masks.py).

The scenes are rendered here by ray casting onto textured planes (a world-anchored random texture), so the true
camera motion, depth and moving object are known exactly: a still camera, a panning camera (homography), and a
translating camera over a two-depth background with an object that moves with the camera (zero image motion: on
its own epipolar line, where only the depth test can see it).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_datasets import write_synthetic_folder

from depth_sfm_ros.geometry import Intrinsics
from depth_sfm_training.datasets import build_dataset
from depth_sfm_training.motion_teacher import (PairResidual, TeacherConfig, clean_mask, forward_backward_valid,
                                               motion_mask, pair_residual, standardize)
from depth_sfm_training.pseudo_masks import (TeacherDepth, sequence_motion_mask, source_indices,
                                             write_pseudo_masks)

H, W, F_PX = 240, 320, 300.0
K = np.array([[F_PX, 0, (W - 1) / 2], [0, F_PX, (H - 1) / 2], [0, 0, 1.0]])
INTRINSICS = Intrinsics.from_matrix(K, W, H)
REPO = Path(__file__).resolve().parents[1]


def texture(seed: int):
    """A world-anchored grey texture t(X, Y) in [0, 255]: a sum of random sinusoids (no period a flow can lock on)."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(2.0, 9.0, (24, 2)) * rng.choice([-1, 1], (24, 2))
    phase, amp = rng.uniform(0, 2 * np.pi, 24), rng.uniform(4, 12, 24)

    def t(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        v = sum(a * np.sin(f[0] * X + f[1] * Y + p) for f, p, a in zip(freq, phase, amp))
        return np.clip(128 + v, 0, 255)
    return t


BACKGROUND_NEAR, BACKGROUND_FAR, OBJECT = texture(1), texture(2), texture(3)


def render(cam_x: float, yaw_rad: float = 0.0, object_x: float | None = None, object_z: float = 4.0,
           two_depths: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grey uint8 (H, W), inverse depth (H, W), object mask (H, W) bool) seen by a camera at (cam_x, 0, 0) turned
    by yaw_rad about its y axis: background planes at z = 8 (world x < 0) and 16 (x >= 0) (one plane at 8 with
    two_depths False), and a 1.2 m square object at depth object_z centred at world x = object_x (None: none)."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    ray = np.stack([(u - K[0, 2]) / F_PX, (v - K[1, 2]) / F_PX, np.ones_like(u)], -1)
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    ray = ray @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T  # camera -> world rotation
    image = np.zeros((H, W))
    inv_depth = np.zeros((H, W))
    mask = np.zeros((H, W), bool)
    for z, tex, side in ((8.0, BACKGROUND_NEAR, -1), (16.0, BACKGROUND_FAR, 1)):
        t = z / ray[..., 2]
        X, Y = cam_x + t * ray[..., 0], t * ray[..., 1]
        here = (np.sign(X + 1e-9) == side) if two_depths else np.full((H, W), z == 8.0)
        image = np.where(here, tex(X, Y), image)
        inv_depth = np.where(here, 1.0 / (t * np.cos(yaw_rad)), inv_depth)  # z in the camera frame ~ t (small yaw)
    if object_x is not None:
        t = object_z / ray[..., 2]
        X, Y = cam_x + t * ray[..., 0], t * ray[..., 1]
        on = (np.abs(X - object_x) < 0.6) & (np.abs(Y) < 0.6)
        image = np.where(on, OBJECT(X - object_x, Y), image)
        inv_depth = np.where(on, 1.0 / object_z, inv_depth)
        mask = on
    return image.astype(np.uint8), inv_depth.astype(np.float32), mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_still_camera_static_scene_gives_an_empty_mask():
    rng = np.random.default_rng(0)
    frame, _, _ = render(0.0)
    noisy = [np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8) for _ in range(3)]
    mask = motion_mask(noisy[0], noisy[1:])
    assert mask.mean() < 0.002


def test_still_camera_finds_a_moving_object():
    tgt, _, obj = render(0.0, object_x=0.0)
    prev, _, _ = render(0.0, object_x=-0.08)
    nxt, _, _ = render(0.0, object_x=0.08)
    assert pair_residual(standardize(tgt), standardize(nxt)).model == "still"
    mask = motion_mask(tgt, [prev, nxt])
    assert iou(mask, obj) > 0.7
    assert (mask & ~obj).mean() < 0.01


def test_panning_camera_homography_finds_the_moving_object_and_not_the_background():
    tgt, _, obj = render(0.0, yaw_rad=0.0, object_x=0.0)
    nxt, _, _ = render(0.0, yaw_rad=0.02, object_x=0.1)   # the camera turns, the object moves
    prev, _, _ = render(0.0, yaw_rad=-0.02, object_x=-0.1)
    assert pair_residual(standardize(tgt), standardize(nxt)).model == "homography"
    mask = motion_mask(tgt, [prev, nxt])
    assert iou(mask, obj) > 0.6
    assert (mask & ~obj).mean() < 0.02


def test_translating_camera_object_on_its_epipolar_line_needs_the_depth_test():
    """The object moves with the camera: zero image motion, which satisfies the epipolar constraint (the
    camera translates along x: horizontal epipolar lines). Only the depth test (a static point at 4 m would
    move 22 px) finds it; the two-depth background keeps a single homography from explaining the scene."""
    frames = {dx: render(dx, object_x=dx) for dx in (-0.3, 0.0, 0.3)}
    tgt, inv_depth, obj = frames[0.0]
    sources = [frames[-0.3][0], frames[0.3][0]]
    assert pair_residual(standardize(tgt), standardize(sources[1])).model == "fundamental"
    without = motion_mask(tgt, sources)
    with_depth = motion_mask(tgt, sources, intrinsics=INTRINSICS, inv_depth=inv_depth)
    assert iou(without, obj) < 0.2
    assert iou(with_depth, obj) > 0.6
    assert (with_depth & ~obj).mean() < 0.03


def test_depth_test_tolerates_a_depth_that_is_off_by_a_third():
    """A static scene with a depth 30 % off in places (a CPU-trained net's) must stay unmarked."""
    frames = {dx: render(dx) for dx in (-0.3, 0.0, 0.3)}
    tgt, inv_depth, _ = frames[0.0]
    wrong = inv_depth * np.where(np.arange(W)[None] < W // 3, 1.3, 0.8).astype(np.float32)
    mask = motion_mask(tgt, [frames[-0.3][0], frames[0.3][0]], intrinsics=INTRINSICS, inv_depth=wrong)
    assert mask.mean() < 0.02


def test_standardising_the_images_survives_an_exposure_change():
    """The sources 45 % darker than the target (auto-exposure): with ``normalize`` the moving object is still
    found and a still scene stays unmarked; without it the brightness change leaks into the flow."""
    tgt, _, obj = render(0.0, object_x=0.0)
    darker = [np.clip(render(0.0, object_x=x)[0] * 0.55 + 10, 0, 255).astype(np.uint8) for x in (-0.08, 0.08)]
    still = np.clip(tgt * 0.55 + 10, 0, 255).astype(np.uint8)
    normalized = motion_mask(tgt, darker)
    raw = motion_mask(tgt, darker, TeacherConfig(normalize=False))
    assert iou(normalized, obj) > 0.8 and iou(normalized, obj) > iou(raw, obj) + 0.1
    assert not motion_mask(tgt, [still]).any()
    assert motion_mask(tgt, [still], TeacherConfig(normalize=False)).mean() > 0.01


def test_flat_regions_are_not_called_moving():
    """A texture-less region whose flow is a guess: the component gradient check drops it."""
    tgt, _, _ = render(0.0)
    nxt, _, _ = render(0.0)
    tgt[60:180, 80:240] = 120
    nxt[60:180, 80:240] = 126  # a flat patch that changes brightness: a flow may 'see' motion in it
    assert not motion_mask(tgt, [nxt])[60:180, 80:240].any()


def test_forward_backward_check_and_cleaning():
    flow_fw = np.zeros((20, 30, 2), np.float32)
    flow_fw[..., 0] = 2.0
    flow_bw = -flow_fw.copy()
    valid = forward_backward_valid(flow_fw, flow_bw, 1.0, 0.05)
    assert valid[:, :27].all() and not valid[:, 28:].any()  # x + 2 leaves the image in the last columns
    flow_bw[5:10, 5:10] = 3.0  # disagreeing backward flow: occluded / unreliable
    assert not forward_backward_valid(flow_fw, flow_bw, 1.0, 0.05)[5:10, 3:8].any()
    mask = np.zeros((100, 100), bool)
    mask[10:40, 10:40] = True
    mask[70, 70] = True  # a speck
    cleaned = clean_mask(mask, 0.01)
    assert cleaned[10:40, 10:40].all() and not cleaned[70, 70]
    assert not clean_mask(mask, 0.2).any()  # 900 px < 20 % of the image


def test_pair_residual_dynamic_combines_its_tests():
    residual = np.array([[0.5, 3.0, np.nan, 0.5]], np.float32)
    pair = PairResidual(residual, 1.5, "fundamental", parallax_px=np.full((1, 4), 10.0, np.float32),
                        parallax_ratio=np.array([[1.0, 1.0, 0.0, 0.1]], np.float32), ratio_range=(0.5, 3.0),
                        min_residual_px=1.5)
    assert pair.dynamic.tolist() == [[False, True, False, True]]  # epipolar; unreliable; depth ratio


@pytest.mark.parametrize("kwargs", [{"min_residual_px": -1}, {"work_width": 32}, {"homography_ratio": 0},
                                    {"min_component_gradient": float("nan")}])
def test_teacher_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        TeacherConfig(**kwargs)


def test_motion_mask_rejects_bad_inputs():
    frame, inv_depth, _ = render(0.0)
    with pytest.raises(ValueError, match="at least one"):
        motion_mask(frame, [])
    with pytest.raises(ValueError, match="differ in size"):
        motion_mask(frame, [frame[:-2]])
    with pytest.raises(ValueError, match="both intrinsics and inv_depth"):
        motion_mask(frame, [frame], intrinsics=INTRINSICS)
    with pytest.raises(ValueError, match="finite positive"):
        motion_mask(frame, [frame], intrinsics=INTRINSICS, inv_depth=np.zeros_like(inv_depth))
    with pytest.raises(ValueError, match="intrinsics are for"):
        motion_mask(frame, [frame], intrinsics=INTRINSICS.scaled(W // 2, H // 2), inv_depth=inv_depth)
    with pytest.raises(ValueError, match="uint8"):
        motion_mask(frame.astype(np.float32), [frame])


def test_source_indices():
    assert source_indices(0, 5, 1) == [1]
    assert source_indices(2, 5, 2) == [0, 4]
    assert source_indices(0, 1, 1) == []
    with pytest.raises(ValueError):
        source_indices(0, 5, 0)


def test_pseudo_masks_are_written_where_the_datasets_read_them(tmp_path):
    root = write_synthetic_folder(tmp_path / "synth", frames=4)
    seq = build_dataset({"type": "synthetic", "data_path": str(root)}).sequences[0]
    out = tmp_path / "masks"
    written = write_pseudo_masks([seq], out)
    assert written == {seq.name: 4}
    for i in range(4):
        stored = cv2.imread(str(out / seq.name / f"{seq.frame_id(i)}.png"), cv2.IMREAD_UNCHANGED)
        assert stored.dtype == np.uint8 and set(np.unique(stored)) <= {0, 255}
        assert np.array_equal(stored > 0, sequence_motion_mask(seq, i))
    with pytest.raises(FileExistsError, match="--resume"):
        write_pseudo_masks([seq], out)
    assert write_pseudo_masks([seq], out, resume=True) == {seq.name: 0}
    # the dataset option reads them in place of the folder's ground truth
    sample = build_dataset({"type": "synthetic", "data_path": str(root), "dynamic_mask_dir": str(out)})[1]
    assert sample["has_dynamic_mask"]
    stored = cv2.imread(str(out / seq.name / f"{seq.frame_id(1)}.png"), cv2.IMREAD_UNCHANGED) > 0
    assert np.array_equal(sample["dynamic_mask"][0, 0].numpy() > 0.5, stored)


def test_pseudo_masks_refuse_two_recordings_with_one_name(tmp_path):
    a = build_dataset({"type": "synthetic", "data_path": str(write_synthetic_folder(tmp_path / "x" / "s"))})
    b = build_dataset({"type": "synthetic", "data_path": str(write_synthetic_folder(tmp_path / "y" / "s"))})
    with pytest.raises(ValueError, match="both named"):
        write_pseudo_masks([a.sequences[0], b.sequences[0]], tmp_path / "masks")


def test_teacher_depth_of_the_bundled_model_is_a_positive_inverse_depth():
    from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR

    depth = TeacherDepth(DEFAULT_MODEL_DIR)
    frame, _, _ = render(0.0)
    inv = depth(np.repeat(frame[..., None], 3, axis=2))
    assert inv.shape == depth.size and inv.dtype == np.float32
    assert np.all(np.isfinite(inv)) and np.all(inv > 0)


def test_pseudo_masks_cli(tmp_path):
    root = write_synthetic_folder(tmp_path / "synth", frames=3)
    config = tmp_path / "c.yaml"
    config.write_text(f"_base_: {REPO / 'training/configs/baseline_monodepth2.yaml'}\ndata:\n  dataset: synthetic\n  path: {root}\n"
                      f"  height: 32\n  width: 32\n")
    out = tmp_path / "masks"
    run = subprocess.run([sys.executable, "-m", "depth_sfm_ros.cli", "pseudo-masks", "--config", str(config),
                          "--out", str(out), "--depth-model", "none"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert "wrote 3 masks" in run.stdout
    assert len(list(out.rglob("*.png"))) == 3
    bad = subprocess.run([sys.executable, "-m", "depth_sfm_ros.cli", "pseudo-masks", "--config", str(config),
                          "--out", str(out), "--stride", "0"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "--stride" in bad.stderr
