"""Loaders of real datasets in their public on-disk formats (training/datasets/real.py), FrameRange,
MixtureDataset and the ``frames`` / ``mixture`` configs.

Fixtures: test/fixtures/real_formats (a few downscaled frames of 7-Scenes, KITTI odometry and DAVIS, see its
README); TUM RGB-D and EuRoC sequences are written here in their exact formats with known contents. The
tests on the full development sequences in ../shared/real skip when that folder is absent (a user's clone).
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from depth_sfm_ros.geometry import Intrinsics, Pose
from depth_sfm_ros.geometry.camera_model import CameraModel, clear_map_cache
from depth_sfm_ros.geometry.camera_model import Undistorter as CameraModelUndistorter
from depth_sfm_training.datasets import FrameRange, MixtureDataset, SequenceDataset, build_dataset, build_sequences
from depth_sfm_training.datasets.base import FrameSequence
from depth_sfm_training.datasets.io import read_rgb, write_png
from depth_sfm_training.datasets.real import (TUM_CAMERAS, DavisSequence, EurocSequence, KittiOdometryFolderSequence,
                                              SevenScenesSequence, TumRgbdSequence, Undistorter, associate_nearest,
                                              assumed_intrinsics, davis_sequences, parse_stamp_ns,
                                              read_kitti_calib_matrices, tum_camera_of)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "real_formats"
SEVEN = FIXTURES / "seven_scenes"
KITTI = FIXTURES / "kitti_odometry"
DAVIS = FIXTURES / "davis"
SHARED_REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real"
needs_shared = pytest.mark.skipif(not SHARED_REAL.is_dir(),
                                  reason=f"{SHARED_REAL} (development copies of 7-Scenes / KITTI / DAVIS) is absent; "
                                         f"it is not part of the repository")


# ------------------------------------------------------------------------------------ helpers
class Numbered(FrameSequence):
    """In-memory sequence: frame i is an image filled with the value i (and depth i + 1 m, pose x = i m)."""

    def __init__(self, n: int, size: tuple[int, int] = (8, 6), depth: bool = True, poses: bool = True,
                 name: str = "numbered") -> None:
        self.n, self.size, self.name = n, size, name
        self.has_depth, self.has_poses = depth, poses
        self.K = Intrinsics(10.0, 10.0, size[0] / 2 - 0.5, size[1] / 2 - 0.5, *size)

    def __len__(self) -> int:
        return self.n

    def image_rgb(self, i: int) -> np.ndarray:
        return np.full((self.size[1], self.size[0], 3), i, np.uint8)

    def intrinsics(self, i: int) -> Intrinsics:
        return self.K

    def depth_m(self, i: int) -> np.ndarray | None:
        return np.full((self.size[1], self.size[0]), i + 1.0, np.float32) if self.has_depth else None

    def T_world_cam(self, i: int) -> np.ndarray | None:
        return Pose.from_Rt(np.eye(3), [float(i), 0.0, 0.0]).matrix if self.has_poses else None

    def stamp_ns(self, i: int) -> int | None:
        return 1_000 + 100 * i


def frame_numbers(sample: dict) -> list[int]:
    """The frame values of a sample's images (target first)."""
    return [int(round(float(im.mean()) * 255)) for im in sample["images"]]


def copy_tree(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------- 7-Scenes
def test_seven_scenes_fixture_reads_colour_depth_pose_and_intrinsics():
    seq = SevenScenesSequence(SEVEN)
    assert len(seq) == 4 and seq.has_depth and seq.has_poses and seq.nominal_fps == 30.0
    assert [seq.frame_id(i) for i in range(4)] == [f"frame-{i:06d}" for i in range(4)]
    rgb = seq.image_rgb(2)
    bgr = cv2.imread(str(SEVEN / "frame-000002.color.jpg"), cv2.IMREAD_COLOR)
    assert rgb.shape == (60, 80, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])  # RGB order, not BGR
    K = seq.intrinsics(0)
    assert (K.fx, K.fy, K.cx, K.cy, K.width, K.height) == pytest.approx((73.125, 73.125, 39.5625, 29.5625, 80, 60))
    raw = cv2.imread(str(SEVEN / "frame-000001.depth.png"), cv2.IMREAD_UNCHANGED)
    depth = seq.depth_m(1)
    assert depth.dtype == np.float32 and depth.shape == (60, 80)
    np.testing.assert_allclose(depth, raw / 1000.0, rtol=1e-6)
    assert 0.3 < np.median(depth[depth > 0]) < 5.0  # a kitchen, metres
    np.testing.assert_allclose(seq.T_world_cam(3), np.loadtxt(SEVEN / "frame-000003.pose.txt"))
    assert seq.stamp_ns(0) is None  # 7-Scenes has no time stamps


def _write_seven(root: Path, frames: int = 2, size: tuple[int, int] = (8, 6), depth: np.ndarray | None = None) -> Path:
    root.mkdir(parents=True)
    for i in range(frames):
        write_png(root / f"frame-{i:06d}.color.png", np.full((size[1], size[0], 3), 10 * i, np.uint8))
        d = depth if depth is not None else np.full((size[1], size[0]), 1000, np.uint16)
        write_png(root / f"frame-{i:06d}.depth.png", d)
        np.savetxt(root / f"frame-{i:06d}.pose.txt", Pose.from_vec([i, 0, 0, 0, 0.1 * i, 0]).matrix)
    return root


def test_seven_scenes_invalid_depth_0_and_65535_become_0_m(tmp_path):
    raw = np.array([[0, 65535, 1500, 65534]], np.uint16).repeat(2, axis=0)
    seq = SevenScenesSequence(_write_seven(tmp_path / "s", size=(4, 2), depth=raw))
    np.testing.assert_allclose(seq.depth_m(0), [[0.0, 0.0, 1.5, 65.534]] * 2, rtol=1e-6)


def test_seven_scenes_without_intrinsics_file_uses_the_dataset_K_scaled(tmp_path):
    seq = SevenScenesSequence(_write_seven(tmp_path / "s", size=(80, 60)))
    K = seq.intrinsics(0)
    assert (K.fx, K.fy, K.cx, K.cy) == pytest.approx((585 / 8, 585 / 8, 320.5 / 8 - 0.5, 240.5 / 8 - 0.5))


def test_seven_scenes_partial_poses_and_missing_depth(tmp_path):
    root = _write_seven(tmp_path / "s", frames=3)
    (root / "frame-000001.pose.txt").unlink()
    (root / "frame-000002.depth.png").unlink()
    seq = SevenScenesSequence(root)
    assert not seq.has_poses and seq.T_world_cam(1) is None and seq.T_world_cam(0) is not None
    assert seq.depth_m(2) is None and seq.depth_m(0) is not None


@pytest.mark.parametrize("breakage, error, match", [
    ("no_folder", FileNotFoundError, "does not exist"),
    ("no_frames", FileNotFoundError, "no frame-NNNNNN.color"),
    ("depth_size", ValueError, "does not match the colour image"),
    ("depth_uint8", ValueError, "uint16 millimetres"),
    ("pose_words", ValueError, "not a 4x4 matrix of numbers"),
    ("pose_3x4", ValueError, r"finite 4x4 matrix, got shape \(3, 4\)"),
    ("pose_not_rigid", ValueError, "not a rigid transform"),
    ("pose_nan", ValueError, "finite 4x4"),
    ("K_other_size", ValueError, "principal point .* outside"),
    ("K_skew", ValueError, "skew"),
])
def test_seven_scenes_errors_name_the_problem(tmp_path, breakage, error, match):
    root = tmp_path / "s"
    if breakage != "no_folder":
        _write_seven(root)
    if breakage == "no_frames":
        for p in root.glob("*.color.png"):
            p.unlink()
    elif breakage == "depth_size":
        write_png(root / "frame-000000.depth.png", np.zeros((3, 3), np.uint16))
    elif breakage == "depth_uint8":
        write_png(root / "frame-000000.depth.png", np.zeros((6, 8), np.uint8))
    elif breakage == "pose_words":
        (root / "frame-000000.pose.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 one 0\n0 0 0 1\n")
    elif breakage == "pose_3x4":
        np.savetxt(root / "frame-000000.pose.txt", np.eye(4)[:3])
    elif breakage == "pose_not_rigid":
        np.savetxt(root / "frame-000000.pose.txt", np.diag([2.0, 1, 1, 1]))
    elif breakage == "pose_nan":
        (root / "frame-000000.pose.txt").write_text("1 0 0 nan\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    elif breakage == "K_other_size":
        np.savetxt(root / "camera-intrinsics.txt", [[585, 0, 320], [0, 585, 240], [0, 0, 1]])
    elif breakage == "K_skew":
        np.savetxt(root / "camera-intrinsics.txt", [[5, 1, 4], [0, 5, 3], [0, 0, 1]])
    with pytest.raises(error, match=match):
        seq = SevenScenesSequence(root)
        seq.depth_m(0)
        seq.T_world_cam(0)


# -------------------------------------------------------------------------------- KITTI odometry
def test_kitti_odometry_fixture_grey_image_calib_and_poses():
    seq = KittiOdometryFolderSequence(KITTI)
    assert len(seq) == 4 and seq.has_poses and not seq.has_depth and seq.nominal_fps == 10.0
    rgb = seq.image_rgb(1)
    grey = cv2.imread(str(KITTI / "image_l" / "000001.png"), cv2.IMREAD_UNCHANGED)
    assert grey.ndim == 2 and rgb.shape == (24, 80, 3)
    for c in range(3):  # a grey camera -> three equal channels
        np.testing.assert_array_equal(rgb[..., c], grey)
    P0 = np.array([float(v) for v in (KITTI / "calib.txt").read_text().splitlines()[0].split()]).reshape(3, 4)
    K = seq.intrinsics(0)
    assert (K.fx, K.fy, K.cx, K.cy, K.width, K.height) == pytest.approx(
        (P0[0, 0], P0[1, 1], P0[0, 2], P0[1, 2], 80, 24))
    rows = np.loadtxt(KITTI / "poses.txt")
    np.testing.assert_allclose(seq.T_world_cam(2)[:3], rows[2].reshape(3, 4))
    np.testing.assert_allclose(seq.T_world_cam(2)[3], [0, 0, 0, 1])
    steps = np.linalg.norm(np.diff([seq.T_world_cam(i)[:3, 3] for i in range(4)], axis=0), axis=1)
    assert np.all((steps > 0.8) & (steps < 1.6))  # ~1.2 m per frame at 10 Hz
    assert seq.stamp_ns(0) is None


def test_kitti_calib_with_and_without_P0_prefix_give_the_same_matrices(tmp_path):
    bare = read_kitti_calib_matrices(KITTI / "calib.txt")
    lines = (KITTI / "calib.txt").read_text().splitlines()
    prefixed = tmp_path / "calib.txt"
    prefixed.write_text("".join(f"P{k}: {line}\n" for k, line in enumerate(lines)) + f"Tr: {lines[0]}\n\n")
    with_keys = read_kitti_calib_matrices(prefixed)
    assert len(bare) == 2 and len(with_keys) == 3
    for a, b in zip(bare, with_keys):
        np.testing.assert_array_equal(a, b)
    folder = copy_tree(KITTI, tmp_path / "seq")
    (folder / "calib.txt").write_text(prefixed.read_text())
    assert KittiOdometryFolderSequence(folder).intrinsics(0) == KittiOdometryFolderSequence(KITTI).intrinsics(0)


def test_kitti_times_txt_gives_stamps(tmp_path):
    folder = copy_tree(KITTI, tmp_path / "seq")
    (folder / "times.txt").write_text("0.000000e+00\n1.036400e-01\n2.072800e-01\n3.109200e-01\n")
    seq = KittiOdometryFolderSequence(folder)
    assert [seq.stamp_ns(i) for i in range(4)] == [0, 103_640_000, 207_280_000, 310_920_000]


@pytest.mark.parametrize("breakage, error, match", [
    ("no_calib", FileNotFoundError, "calib.txt does not exist"),
    ("short_calib", ValueError, "needs 12 numbers, got 11"),
    ("words_calib", ValueError, "not a line of numbers"),
    ("nan_calib", ValueError, "NaN/Inf"),
    ("empty_calib", ValueError, "no projection matrix"),
    ("poses_count", ValueError, "3 poses for 4 images"),
    ("no_images", FileNotFoundError, "does not exist"),
    ("times_count", ValueError, "2 times for 4 images"),
])
def test_kitti_errors_name_the_problem(tmp_path, breakage, error, match):
    folder = copy_tree(KITTI, tmp_path / "seq")
    calib = folder / "calib.txt"
    if breakage == "no_calib":
        calib.unlink()
    elif breakage == "short_calib":
        calib.write_text(" ".join(["1"] * 11) + "\n")
    elif breakage == "words_calib":
        calib.write_text("P0: a b c\n")
    elif breakage == "nan_calib":
        calib.write_text("nan " + " ".join(["1"] * 11) + "\n")
    elif breakage == "empty_calib":
        calib.write_text("\n\n")
    elif breakage == "poses_count":
        (folder / "poses.txt").write_text("\n".join((folder / "poses.txt").read_text().splitlines()[:3]) + "\n")
    elif breakage == "no_images":
        import shutil
        shutil.rmtree(folder / "image_l")
    elif breakage == "times_count":
        (folder / "times.txt").write_text("0\n0.1\n")
    with pytest.raises(error, match=match):
        KittiOdometryFolderSequence(folder)


# ----------------------------------------------------------------------------------------- DAVIS
def test_davis_fixture_masks_and_assumed_intrinsics():
    clips = davis_sequences(DAVIS)
    assert [c.name for c in clips] == ["car-shadow", "dog"] and all(len(c) == 3 for c in clips)
    clip = clips[1]
    assert clip.image_rgb(0).shape == (45, 80, 3) and clip.nominal_fps == 24.0
    mask = clip.dynamic_mask(2)
    label = cv2.imread(str(DAVIS / "Annotations" / "dog" / "00002.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == bool and mask.shape == (45, 80)
    np.testing.assert_array_equal(mask, label > 0)
    assert 0.01 < mask.mean() < 0.9  # the dog is annotated, not the whole frame
    K = clip.intrinsics(0)
    assert math.degrees(2 * math.atan(K.width / 2 / K.fx)) == pytest.approx(60.0)  # assumed 60 deg HFOV
    assert K.fx == K.fy and (K.cx, K.cy) == ((80 - 1) / 2, (45 - 1) / 2)  # centre of the pixel grid
    assert "assumed" in clip.intrinsics_note and "60" in clip.intrinsics_note
    assert [c.name for c in davis_sequences(DAVIS, "dog")] == ["dog"]
    wide = DavisSequence(DAVIS, "dog", hfov_deg=90.0).intrinsics(0)
    assert wide.fx == pytest.approx(40.0)


def test_davis_colour_annotation_missing_annotation_and_errors(tmp_path):
    root = copy_tree(DAVIS, tmp_path / "davis")
    ann = root / "Annotations" / "dog"
    palette = np.zeros((45, 80, 3), np.uint8)
    palette[10:20, 30:40] = (128, 0, 0)  # DAVIS 2017 palette: object 1 in dark red (RGB)
    write_png(ann / "00000.png", palette)
    (ann / "00001.png").unlink()
    clip = DavisSequence(root, "dog")
    mask = clip.dynamic_mask(0)
    assert mask.sum() == 100 and mask[10:20, 30:40].all()
    assert clip.dynamic_mask(1) is None
    write_png(ann / "00002.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="does not match the image"):
        clip.dynamic_mask(2)
    with pytest.raises(ValueError, match="field of view"):
        assumed_intrinsics(80, 45, 0.5)
    with pytest.raises(FileNotFoundError, match=r"clip .no-such-clip. not found .*\(clips there: car-shadow, dog\)"):
        DavisSequence(root, "no-such-clip")
    with pytest.raises(FileNotFoundError, match="no clips"):
        davis_sequences(tmp_path / "empty")


def test_davis_official_480p_layout(tmp_path):
    for kind in ("JPEGImages", "Annotations"):
        (tmp_path / "DAVIS" / kind).mkdir(parents=True)
        (tmp_path / "DAVIS" / kind / "480p").symlink_to(DAVIS / kind)
    clips = davis_sequences(tmp_path / "DAVIS")
    assert [c.name for c in clips] == ["car-shadow", "dog"]
    np.testing.assert_array_equal(clips[1].dynamic_mask(0), DavisSequence(DAVIS, "dog").dynamic_mask(0))


# ------------------------------------------------------------------------------------ TUM RGB-D
TUM_T0 = "1305031102"


def tum_pose(k: float) -> Pose:
    return Pose.from_vec([0.1 * k, -0.05 * k, 0.02 * k, 0.01 * k, 0.02 * k, -0.01 * k])


def write_tum(root: Path, frames: int = 4, size: tuple[int, int] = (64, 48), gt_from: int = 0) -> Path:
    """A TUM RGB-D sequence: rgb at ~30 Hz, depth 10 ms after each rgb (frame 2's 50 ms: beyond the 20 ms
    tolerance), ground truth at 100 Hz from frame ``gt_from``; depth value = 5000 * (1 + frame) (1 + k m)."""
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines = ["# color images", "# file: 'rgbd_dataset_freiburg1_xyz.bag'", "# timestamp filename"]
    depth_lines = ["# depth maps", "# file: 'rgbd_dataset_freiburg1_xyz.bag'", "# timestamp filename"]
    for k in range(frames):
        t_us = 175304 + 33333 * k
        stamp = f"{TUM_T0}.{t_us:06d}"
        image = np.zeros((size[1], size[0], 3), np.uint8)
        image[..., 0] = 40 * k
        image[..., 1] = np.linspace(0, 255, size[0]).astype(np.uint8)[None]
        write_png(root / "rgb" / f"{stamp}.png", image)
        rgb_lines.append(f"{stamp} rgb/{stamp}.png")
        d_us = t_us + (50000 if k == 2 else 10000)
        d_stamp = f"{TUM_T0}.{d_us:06d}"
        write_png(root / "depth" / f"{d_stamp}.png", np.full((size[1], size[0]), 5000 * (1 + k), np.uint16))
        depth_lines.append(f"{d_stamp} depth/{d_stamp}.png")
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    gt = ["# ground truth trajectory", "# file: 'rgbd_dataset_freiburg1_xyz.bag'", "# timestamp tx ty tz qx qy qz qw"]
    for m in range(0, 33333 * frames // 10000 + 2):
        t_us = 175304 - 2000 + 10000 * m  # 2 ms before each 10 ms tick
        k = (t_us - 175304) / 33333.0
        if k < gt_from - 0.5:
            continue
        T = tum_pose(k)
        q = T.quaternion()
        gt.append(f"{TUM_T0}.{t_us:06d} " + " ".join(f"{v:.6f}" for v in [*T.t, *q]))
    (root / "groundtruth.txt").write_text("\n".join(gt) + "\n")
    return root


def test_tum_rgbd_associates_depth_and_poses_by_nearest_stamp(tmp_path):
    seq = TumRgbdSequence(write_tum(tmp_path / "rgbd_dataset_freiburg1_xyz"))
    assert len(seq) == 4 and seq.camera == "fr1" and seq.has_depth and seq.has_poses
    assert seq.stamp_ns(1) == 1305031102_208637000  # exact nanoseconds, no float rounding
    assert seq.image_rgb(3)[0, 0, 0] == 120
    depth = seq.depth_m(1)
    assert depth.dtype == np.float32 and np.all(depth == 2.0)  # 10000 / 5000 m
    assert seq.depth_m(2) is None  # its depth image is 50 ms away (> 20 ms)
    # frame 1 is at +33.333 ms; ground-truth lines at -2 + 10 m ms: +38 ms (4.7 ms away) beats +28 ms (5.3 ms)
    np.testing.assert_allclose(seq.T_world_cam(1), tum_pose(38000 / 33333.0).matrix, atol=1e-5)
    assert not np.allclose(seq.T_world_cam(1), tum_pose(28000 / 33333.0).matrix, atol=1e-4)
    K = seq.intrinsics(0)
    fx, fy, cx, cy, _ = TUM_CAMERAS["fr1"]
    assert (K.width, K.height) == (64, 48)
    assert (K.fx, K.cx) == pytest.approx((fx * 0.1, (cx + 0.5) * 0.1 - 0.5))  # 640x480 calibration scaled to 64x48


def test_tum_camera_from_name_default_and_override(tmp_path):
    assert tum_camera_of("rgbd_dataset_freiburg2_desk") == "fr2"
    assert tum_camera_of("fr3_office") == "fr3"
    assert tum_camera_of("freiburg12") == "ros_default"
    assert tum_camera_of("my_kinect") == "ros_default"
    root = write_tum(tmp_path / "my_kinect", size=(640, 480), frames=2)
    K = TumRgbdSequence(root).intrinsics(0)
    assert (K.fx, K.fy, K.cx, K.cy) == (525.0, 525.0, 319.5, 239.5)
    K3 = TumRgbdSequence(root, camera="fr3").intrinsics(0)
    assert (K3.fx, K3.fy, K3.cx, K3.cy) == (535.4, 539.2, 320.1, 247.6)
    with pytest.raises(ValueError, match="TUM camera must be one of"):
        TumRgbdSequence(root, camera="fr4")


def test_tum_undistort_fr1_changes_image_and_intrinsics_fr3_does_not(tmp_path):
    root = write_tum(tmp_path / "rgbd_dataset_freiburg1_desk", size=(640, 480), frames=2)
    plain = TumRgbdSequence(root)
    undist = TumRgbdSequence(root, undistort=True)
    assert undist.intrinsics(0) != plain.intrinsics(0) and undist.undistorter is not None
    assert not np.array_equal(undist.image_rgb(0), plain.image_rgb(0))
    depth = undist.depth_m(0)
    assert set(np.unique(depth)) <= {0.0, 1.0}  # nearest-neighbour: no mixed depths
    fr3 = TumRgbdSequence(root, camera="fr3", undistort=True)
    assert fr3.undistorter is None and np.array_equal(fr3.image_rgb(0), plain.image_rgb(0))


def test_tum_partial_ground_truth_and_frame_range(tmp_path):
    seq = TumRgbdSequence(write_tum(tmp_path / "rgbd_dataset_freiburg1_xyz", gt_from=2))
    assert seq.pose_known == [False, False, True, True] and not seq.has_poses
    assert FrameRange(seq, 2, 4).has_poses and not FrameRange(seq, 1, 4).has_poses


@pytest.mark.parametrize("breakage, error, match", [
    ("no_rgb_txt", FileNotFoundError, "rgb.txt does not exist"),
    ("rgb_fields", ValueError, "expected 2 fields, got 3"),
    ("bad_stamp", ValueError, "not a time stamp"),
    ("gt_fields", ValueError, "expected 8 fields"),
    ("gt_quaternion", ValueError, "unit quaternion"),
    ("empty_rgb", ValueError, "no entries"),
    ("depth_uint8", ValueError, "must be uint16"),
])
def test_tum_errors_name_the_problem(tmp_path, breakage, error, match):
    root = write_tum(tmp_path / "rgbd_dataset_freiburg1_xyz", frames=2)
    rgb = root / "rgb.txt"
    if breakage == "no_rgb_txt":
        rgb.unlink()
    elif breakage == "rgb_fields":
        rgb.write_text(rgb.read_text() + "1305031103.0 rgb/x.png extra\n")
    elif breakage == "bad_stamp":
        rgb.write_text(rgb.read_text() + "13050311e3 rgb/x.png\n")
    elif breakage == "gt_fields":
        (root / "groundtruth.txt").write_text("1305031102.1 1 2 3\n")
    elif breakage == "gt_quaternion":
        (root / "groundtruth.txt").write_text("1305031102.175304 0 0 0 0 0 0 2\n")
    elif breakage == "empty_rgb":
        rgb.write_text("# nothing\n")
    elif breakage == "depth_uint8":
        for p in (root / "depth").iterdir():
            write_png(p, np.zeros((48, 64), np.uint8))
    with pytest.raises(error, match=match):
        TumRgbdSequence(root).depth_m(0)


def test_stamp_parsing_and_nearest_association():
    assert parse_stamp_ns("1305031102.175304") == 1305031102_175304000
    assert parse_stamp_ns("7") == 7_000_000_000 and parse_stamp_ns("0.1234567894") == 123456789
    with pytest.raises(ValueError):
        parse_stamp_ns("-1.0")
    stamps = np.array([100, 200, 300], np.int64)
    idx = associate_nearest(np.array([90, 149, 151, 150, 360, 361, 0, 39]), stamps, 60)
    assert idx.tolist() == [0, 0, 1, 0, 2, -1, -1, -1]  # ties go to the earlier stamp; beyond 60 ns: -1
    assert associate_nearest(np.array([5]), np.array([], np.int64), 10).tolist() == [-1]


# ------------------------------------------------------------------------------------------ EuRoC
EUROC_T_BS = [0.0148655429818, -0.999880929698, 0.00414029679422, -0.0216401454975,
              0.999557249008, 0.0149672133247, 0.025715529948, -0.064676986768,
              -0.0257744366974, 0.00375618835797, 0.999660727178, 0.00981073058949,
              0.0, 0.0, 0.0, 1.0]
EUROC_DISTORTION = [-0.28340811, 0.07395907, 0.00019359, 1.76187114e-05]
EUROC_SIZE = (188, 120)  # 752x480 / 4
EUROC_K = (458.654 / 4, 457.296 / 4, (367.215 + 0.5) / 4 - 0.5, (248.375 + 0.5) / 4 - 0.5)
EUROC_T0 = 1403636579763555584


def euroc_T_world_body(t_s: float) -> Pose:
    return Pose.from_vec([4.0 + 0.5 * t_s, -1.0 + 0.1 * t_s, 0.8, 0.02 * t_s, -0.01, 0.3 + 0.05 * t_s])


def euroc_points_cam() -> np.ndarray:
    """3D points (camera frame, metres) whose images the synthetic EuRoC frames show as dots."""
    xs, ys = np.meshgrid(np.linspace(-1.1, 1.1, 5), np.linspace(-0.6, 0.6, 3))
    return np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, 2.0)], axis=1)


def write_euroc(root: Path, frames: int = 3, ground_truth: str = "state_groundtruth_estimate0",
                gt_delay_s: float = 0.0) -> Path:
    """A EuRoC (ASL) sequence with cam0 at 20 Hz, distorted grey images showing dots at the distorted
    projections of :func:`euroc_points_cam`, and ground truth at 200 Hz (starting ``gt_delay_s`` late)."""
    cam = root / "mav0" / "cam0"
    (cam / "data").mkdir(parents=True)
    fu, fv, cu, cv = EUROC_K
    (cam / "sensor.yaml").write_text(
        "%YAML:1.0\n# General sensor definitions.\nsensor_type: camera\ncomment: VI-Sensor cam0 (MT9M034)\n\n"
        "# Sensor extrinsics wrt. the body-frame.\nT_BS:\n  cols: 4\n  rows: 4\n"
        f"  data: [{', '.join(str(v) for v in EUROC_T_BS)}]\n\n"
        f"# Camera specific definitions.\nrate_hz: 20\nresolution: [{EUROC_SIZE[0]}, {EUROC_SIZE[1]}]\n"
        f"camera_model: pinhole\nintrinsics: [{fu}, {fv}, {cu}, {cv}] #fu, fv, cu, cv\n"
        f"distortion_model: radial-tangential\ndistortion_coefficients: [{', '.join(map(str, EUROC_DISTORTION))}]\n")
    K = np.array([[fu, 0, cu], [0, fv, cv], [0, 0, 1]])
    uv, _ = cv2.projectPoints(euroc_points_cam(), np.zeros(3), np.zeros(3), K, np.array(EUROC_DISTORTION))
    lines = ["#timestamp [ns],filename"]
    for k in range(frames):
        stamp = EUROC_T0 + k * 50_000_000
        image = np.full((EUROC_SIZE[1], EUROC_SIZE[0]), 20, np.uint8)
        for u, v in uv.reshape(-1, 2):
            cv2.circle(image, (int(round(u * 16)), int(round(v * 16))), 2 * 16, 255, -1, cv2.LINE_AA, shift=4)
        cv2.imwrite(str(cam / "data" / f"{stamp}.png"), image)
        lines.append(f"{stamp},{stamp}.png")
    (cam / "data.csv").write_text("\n".join(lines) + "\n")
    gt_dir = root / "mav0" / ground_truth
    gt_dir.mkdir(parents=True)
    if ground_truth == "leica0":
        header = "#timestamp [ns],p_RS_R_x [m],p_RS_R_y [m],p_RS_R_z [m]"
    else:
        header = ("#timestamp, p_RS_R_x [m], p_RS_R_y [m], p_RS_R_z [m], q_RS_w [], q_RS_x [], q_RS_y [], q_RS_z [], "
                  "v_RS_R_x [m s^-1], v_RS_R_y [m s^-1], v_RS_R_z [m s^-1], b_w_RS_S_x [rad s^-1], "
                  "b_w_RS_S_y [rad s^-1], b_w_RS_S_z [rad s^-1], b_a_RS_S_x [m s^-2], b_a_RS_S_y [m s^-2], "
                  "b_a_RS_S_z [m s^-2]")
    rows = [header]
    for m in range(int(gt_delay_s * 200), frames * 10 + 2):
        t_ns = EUROC_T0 + m * 5_000_000 + 1_000_000  # 1 ms after the 200 Hz ticks
        T = euroc_T_world_body((t_ns - EUROC_T0) * 1e-9)
        x, y, z, w = T.quaternion()
        values = [*T.t] if ground_truth == "leica0" else [*T.t, w, x, y, z, *[0.0] * 9]
        rows.append(f"{t_ns}," + ",".join(f"{v:.9f}" for v in values))
    (gt_dir / "data.csv").write_text("\n".join(rows) + "\n")
    (gt_dir / "sensor.yaml").write_text("%YAML:1.0\nsensor_type: visual-inertial\nT_BS:\n  cols: 4\n  rows: 4\n"
                                        "  data: [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, "
                                        "0.0, 0.0, 0.0, 1.0]\n")
    return root


def _dot_centres(image: np.ndarray) -> np.ndarray:
    grey = image[..., 0] if image.ndim == 3 else image
    n, _, _, centroids = cv2.connectedComponentsWithStats((grey > 120).astype(np.uint8))
    return centroids[1:]


def test_euroc_undistorts_images_and_gives_the_undistorted_intrinsics(tmp_path, monkeypatch):
    builds = []
    original = cv2.initUndistortRectifyMap
    monkeypatch.setattr(cv2, "initUndistortRectifyMap", lambda *a, **k: builds.append(1) or original(*a, **k))
    clear_map_cache()  # the maps are cached per process: an earlier test may have built this camera's
    seq = EurocSequence(write_euroc(tmp_path / "MH_01_easy"))
    assert len(seq) == 3 and seq.name == "MH_01_easy/cam0" and seq.nominal_fps == 20.0
    assert seq.stamp_ns(2) == EUROC_T0 + 100_000_000
    image = seq.image_rgb(0)
    assert image.shape == (EUROC_SIZE[1], EUROC_SIZE[0], 3)
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
    K = seq.intrinsics(0)
    assert (K.width, K.height) == EUROC_SIZE
    assert K.fx != pytest.approx(EUROC_K[0], rel=1e-3)  # the undistorted camera, not the distorted one
    # the dots land where a pinhole camera with the given intrinsics projects the points
    expected = euroc_points_cam() @ K.K.T
    expected = expected[:, :2] / expected[:, 2:]
    inside = ((expected[:, 0] > 3) & (expected[:, 0] < K.width - 4)
              & (expected[:, 1] > 3) & (expected[:, 1] < K.height - 4))
    found = _dot_centres(image)
    assert inside.sum() >= 9 and len(found) >= inside.sum()
    errors = [np.min(np.linalg.norm(found - e, axis=1)) for e in expected[inside]]
    assert max(errors) < 0.5, errors
    distorted = _dot_centres(cv2.imread(str(seq.images[0]), cv2.IMREAD_GRAYSCALE))
    raw_errors = [np.min(np.linalg.norm(distorted - e, axis=1)) for e in expected[inside]]
    assert max(raw_errors) > 1.5  # without undistortion the dots would be elsewhere
    seq.image_rgb(1), seq.image_rgb(2)
    assert len(builds) == 1  # the maps are built once per sequence
    assert seq.undistorter.__getstate__()["_maps"] is None  # not shipped to DataLoader workers


def test_euroc_equidistant_camera_is_undistorted_as_a_fisheye(tmp_path):
    """Kalibr's equidistant model (TUM-VI in the ASL layout) is OpenCV's fisheye model, from the shared module."""
    root = write_euroc(tmp_path / "fisheye", frames=2)
    sensor = root / "mav0" / "cam0" / "sensor.yaml"
    fisheye_D = [-0.013, 0.046, -0.042, 0.0079]
    sensor.write_text(sensor.read_text().replace("radial-tangential", "equidistant").replace(
        f"distortion_coefficients: [{', '.join(map(str, EUROC_DISTORTION))}]",
        f"distortion_coefficients: [{', '.join(map(str, fisheye_D))}]"))
    seq = EurocSequence(root)
    assert seq.undistorter.model.distortion_model == "equidistant"
    np.testing.assert_array_equal(seq.undistorter.model.D, fisheye_D)
    expected = CameraModelUndistorter(CameraModel.from_intrinsics(seq.distorted_intrinsics, fisheye_D, "equidistant"))
    assert seq.intrinsics(0) == expected.intrinsics != seq.distorted_intrinsics
    assert np.array_equal(seq.image_rgb(1), expected.image(read_rgb(seq.images[1])))


def test_euroc_camera_pose_is_world_body_times_body_cam(tmp_path):
    seq = EurocSequence(write_euroc(tmp_path / "V1_01_easy") / "mav0")  # mav0 itself works too
    assert seq.has_poses and seq.ground_truth == "state_groundtruth_estimate0" and seq.name == "V1_01_easy/cam0"
    T_body_cam = np.array(EUROC_T_BS).reshape(4, 4)
    for k in range(3):
        t_s = (k * 50_000_000 + 1_000_000) * 1e-9  # the nearest 200 Hz line is 1 ms after the image
        np.testing.assert_allclose(seq.T_world_cam(k), euroc_T_world_body(t_s).matrix @ T_body_cam, atol=1e-6)


def test_euroc_late_ground_truth_and_leica_positions(tmp_path):
    late = EurocSequence(write_euroc(tmp_path / "late", frames=4, gt_delay_s=0.06))
    assert late.pose_known == [False, False, True, True] and not late.has_poses
    assert FrameRange(late, 2, 4).has_poses
    leica = EurocSequence(write_euroc(tmp_path / "leica", ground_truth="leica0"))
    assert leica.ground_truth == "leica0" and not leica.has_poses and leica.T_world_cam(0) is None
    np.testing.assert_allclose(leica.position_world_m(1), euroc_T_world_body(0.051).t, atol=1e-6)


@pytest.mark.parametrize("breakage, error, match", [
    ("no_cam", FileNotFoundError, "camera folder"),
    ("fov", ValueError, "distortion_model 'fov' is not supported"),
    ("omni", ValueError, "camera_model 'omni' is not supported"),
    ("no_intrinsics", ValueError, "missing 'intrinsics'"),
    ("short_intrinsics", ValueError, r"intrinsics must be 4 numbers"),
    ("bad_stamp", ValueError, "integer nanoseconds"),
    ("bad_T_BS", ValueError, "T_BS must hold 16 numbers"),
    ("bad_quaternion", ValueError, "not a unit quaternion"),
    ("bad_yaml", ValueError, "not valid YAML"),
    ("resolution", ValueError, "does not match the resolution 376x240"),
])
def test_euroc_errors_name_the_problem(tmp_path, breakage, error, match):
    root = write_euroc(tmp_path / "seq", frames=2)
    cam = root / "mav0" / "cam0"
    sensor = cam / "sensor.yaml"
    text = sensor.read_text()
    if breakage == "no_cam":
        import shutil
        shutil.rmtree(cam)
    elif breakage == "fov":
        sensor.write_text(text.replace("radial-tangential", "fov"))
    elif breakage == "omni":
        sensor.write_text(text.replace("camera_model: pinhole", "camera_model: omni"))
    elif breakage == "no_intrinsics":
        sensor.write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith("intrinsics")))
    elif breakage == "short_intrinsics":
        sensor.write_text(text.replace("intrinsics: [", "intrinsics: [1, 2] #"))
    elif breakage == "bad_stamp":
        (cam / "data.csv").write_text("#timestamp [ns],filename\n1.5e18,x.png\n")
    elif breakage == "bad_T_BS":
        sensor.write_text(text.replace("data: [", "data: [1, 2, "))
    elif breakage == "bad_quaternion":
        gt = root / "mav0" / "state_groundtruth_estimate0" / "data.csv"
        gt.write_text(f"#header\n{EUROC_T0},0,0,0,2,0,0,0\n")
    elif breakage == "bad_yaml":
        sensor.write_text("intrinsics: [1, 2\n")
    elif breakage == "resolution":
        sensor.write_text(text.replace(f"resolution: [{EUROC_SIZE[0]}, {EUROC_SIZE[1]}]", "resolution: [376, 240]"))
    with pytest.raises(error, match=match):
        EurocSequence(root)


def test_undistorter_refuses_bad_input():
    K = Intrinsics(100.0, 100.0, 31.5, 23.5, 64, 48)
    with pytest.raises(ValueError, match="4, 5 or 8 finite"):
        Undistorter(K, [0.1, 0.2])
    with pytest.raises(ValueError, match="alpha"):
        Undistorter(K, [0.1, 0, 0, 0], alpha=2.0)
    with pytest.raises(ValueError, match="does not match the calibrated"):
        Undistorter(K, [0.1, 0, 0, 0]).image(np.zeros((10, 10, 3), np.uint8))


# ----------------------------------------------------------------------------------- FrameRange
def test_frame_range_rebases_positions_and_forwards_everything():
    seq = Numbered(10)
    part = FrameRange(seq, 3, 7)
    assert len(part) == 4 and part.name == "numbered" and part.has_depth and part.has_poses
    assert part.image_rgb(0)[0, 0, 0] == 3 and part.image_rgb(3)[0, 0, 0] == 6
    assert part.depth_m(1)[0, 0] == 5.0 and part.T_world_cam(2)[0, 3] == 5.0
    assert part.stamp_ns(0) == seq.stamp_ns(3) and part.frame_id(0) == "000003"
    with pytest.raises(IndexError):
        part.image_rgb(4)
    with pytest.raises(IndexError):
        part.image_rgb(-1)
    assert len(FrameRange(seq, 8, 100)) == 2  # a stop past the end means the end
    for start, stop in ((5, 5), (10, 12), (-1, 3)):
        with pytest.raises(ValueError, match="empty or outside"):
            FrameRange(seq, start, stop)


@pytest.mark.parametrize("boundary, offsets, targets", [("skip", [0, -1, 1], 2), ("clamp", [0, -2, -1, 1, 2], 4)])
def test_sources_never_cross_the_frame_range(boundary, offsets, targets):
    ds = SequenceDataset([FrameRange(Numbered(12), 4, 8)], frame_offsets=offsets, boundary=boundary)
    assert len(ds) == targets
    seen = set()
    for k in range(len(ds)):
        numbers = frame_numbers(ds[k])
        seen.update(numbers)
        assert all(4 <= n < 8 for n in numbers), numbers  # frames 3 and 8 exist but are outside the range
    assert seen == set(range(4, 8))


def test_frame_range_skip_keeps_only_targets_with_all_sources_inside():
    ds = SequenceDataset([FrameRange(Numbered(12), 4, 9)], frame_offsets=[0, -1, 1])
    assert [frame_numbers(ds[k]) for k in range(len(ds))] == [[5, 4, 6], [6, 5, 7], [7, 6, 8]]
    # the ground-truth pose of a range is relative to the range's own frames
    np.testing.assert_allclose(ds[0]["T_src_tgt_gt"][0].numpy()[0, 3], 1.0)  # T_src_tgt: x_src = x_tgt + 1 m


# -------------------------------------------------------------------------------- MixtureDataset
def test_mixture_keeps_only_common_keys_repeats_and_maps_indices():
    with_depth = SequenceDataset([Numbered(5, name="a")], frame_offsets=[0, -1, 1], height=6, width=8)
    without = SequenceDataset([Numbered(4, depth=False, poses=False, name="b")], frame_offsets=[0, -1, 1],
                              height=6, width=8)
    mix = MixtureDataset([with_depth, without], repeats=[1, 3])
    assert len(mix) == len(with_depth) + 3 * len(without) == 9
    first, last = mix[0], mix[len(mix) - 1]
    for sample in (first, last):
        assert "depth_gt" not in sample and "has_depth_gt" not in sample and "T_src_tgt_gt" not in sample
        assert sample["images"].shape == (3, 3, 6, 8)
    assert first["sequence"] == "a" and frame_numbers(first)[0] == 1
    assert last["sequence"] == "b" and frame_numbers(last)[0] == 2 and last["index"] == 8
    assert [mix[k]["sequence"] for k in range(len(mix))].count("b") == 6
    both = MixtureDataset([with_depth, SequenceDataset([Numbered(3, name="c")], height=6, width=8)])
    assert "depth_gt" in both[0] and "T_src_tgt_gt" in both[len(both) - 1]


def test_mixture_set_epoch_reaches_every_component():
    parts = [SequenceDataset([Numbered(4)], augment=True, height=6, width=8) for _ in range(2)]
    mix = MixtureDataset(parts)
    mix.set_epoch(7)
    assert [p.epoch for p in parts] == [7, 7]


def test_mixture_refuses_different_sizes_frames_and_bad_repeats():
    a = SequenceDataset([Numbered(4)], height=6, width=8)
    with pytest.raises(ValueError, match="same height and width"):
        MixtureDataset([a, SequenceDataset([Numbered(4)], height=12, width=16)])
    with pytest.raises(ValueError, match="same height and width"):
        MixtureDataset([a, SequenceDataset([Numbered(4)])])  # unknown size
    with pytest.raises(ValueError, match="frames per sample"):
        MixtureDataset([a, SequenceDataset([Numbered(4)], height=6, width=8, frame_offsets=[0, 1])])
    with pytest.raises(ValueError, match="repeats must be"):
        MixtureDataset([a], repeats=[0])
    with pytest.raises(ValueError, match="at least one"):
        MixtureDataset([])


# ------------------------------------------------------------------------- frames / mixture configs
def test_frames_config_selects_a_range_of_a_real_sequence():
    ds = build_dataset({"type": "seven_scenes", "data_path": str(SEVEN), "frames": [1, 4], "height": 30, "width": 40})
    assert len(ds) == 1 and ds.sequences[0].start == 1 and ds.with_depth and ds.with_poses
    sample = ds[0]
    assert sample["images"].shape == (3, 3, 30, 40) and sample["frame"] == 1  # position 1 of the range = frame 2
    full = SevenScenesSequence(SEVEN)
    expected = np.linalg.inv(full.T_world_cam(1)) @ full.T_world_cam(2)
    np.testing.assert_allclose(sample["T_src_tgt_gt"][0].numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("frames", [[1], [3, 1], [2, 2], ["a", 2], [-1, 2], [1.5, 3], [True, 3], "0,2", 5])
def test_frames_config_refuses_bad_ranges(frames):
    with pytest.raises(ValueError, match="frames must be"):
        build_sequences({"type": "seven_scenes", "data_path": str(SEVEN), "frames": frames})


def test_frames_config_refuses_a_split_file(tmp_path):
    from test_datasets import write_kitti_raw
    root = write_kitti_raw(tmp_path / "kitti")
    split = tmp_path / "split.txt"
    split.write_text("2011_09_26/2011_09_26_drive_0001_sync 2 l\n")
    with pytest.raises(ValueError, match="split file"):
        build_sequences({"type": "kitti_raw", "data_path": str(root), "split_file": str(split), "frames": [0, 2]})


def test_mixture_config_builds_components_relative_to_data_path():
    mix = build_dataset({"type": "mixture", "data_path": str(FIXTURES), "height": 24, "width": 32,
                         "frame_offsets": [0, -1, 1],
                         "components": [{"type": "seven_scenes", "path": "seven_scenes", "frames": [0, 3]},
                                        {"type": "kitti_odom_folder", "path": "kitti_odometry", "repeat": 2},
                                        {"type": "davis", "path": "davis", "clips": ["dog"]}]})
    assert isinstance(mix, MixtureDataset) and mix.repeats == [1, 2, 1]
    assert len(mix) == 1 + 2 * 2 + 1
    assert {mix[k]["sequence"] for k in range(len(mix))} == {"seven_scenes", "kitti_odometry", "dog"}
    assert mix[0]["images"].shape == (3, 3, 24, 32) and "depth_gt" not in mix[0]
    assert all(d.height == 24 for d in mix.datasets)  # common keys are inherited


@pytest.mark.parametrize("change, match", [
    ({"components": []}, "non-empty list"),
    ({"components": [{"path": "davis"}]}, "must be a dataset config with a type"),
    ({"components": [{"type": "mixture", "components": []}]}, "not a mixture"),
    ({"frames": [0, 2]}, "set frames on each component"),
    ({"split": "train"}, "no splits"),
    ({"colour": True}, "unknown keys for a mixture"),
    ({"components": [{"type": "davis", "path": "davis", "repeat": 0}]}, "repeat must be an integer >= 1"),
    ({"components": [{"type": "davis", "path": "davis", "repeat": "2"}]}, "repeat must be an integer >= 1"),
    ({"components": [{"type": "davis", "path": "davis", "hfov": 60}]}, r"unknown keys for a davis dataset: \['hfov'\]"),
    ({"components": [{"type": "davis", "path": "davis", "frames": [0]}]}, "frames must be"),
])
def test_mixture_config_errors(change, match):
    config = {"type": "mixture", "data_path": str(FIXTURES), "height": 24, "width": 32,
              "components": [{"type": "davis", "path": "davis"}], **change}
    with pytest.raises(ValueError, match=match):
        build_dataset(config)


def test_tum_and_euroc_are_dataset_types(tmp_path):
    tum = write_tum(tmp_path / "rgbd_dataset_freiburg2_xyz")
    ds = build_dataset({"type": "tum_rgbd", "data_path": str(tum), "frames": [0, 3], "height": 24, "width": 32})
    assert len(ds) == 1 and ds.with_depth and ds.with_poses and ds.sequences[0].sequence.camera == "fr2"
    assert build_sequences({"type": "tum_rgbd", "data_path": str(tum), "camera": "fr3"})[0][0].camera == "fr3"
    euroc = write_euroc(tmp_path / "MH_02_easy")
    ds = build_dataset({"type": "euroc", "data_path": str(euroc), "height": 24, "width": 32, "alpha": 1.0})
    assert len(ds) == 1 and ds.with_poses and "T_src_tgt_gt" in ds[0]
    with pytest.raises(ValueError, match="unknown keys for a euroc dataset"):
        build_dataset({"type": "euroc", "data_path": str(euroc), "undistort": False})


# --------------------------------------------------------------------- full development sequences
@needs_shared
def test_shared_seven_scenes_400_frames_with_depth_and_poses():
    seq = SevenScenesSequence(SHARED_REAL / "7scenes_redkitchen")
    assert len(seq) == 400 and seq.has_depth and seq.has_poses
    assert seq.intrinsics(0) == Intrinsics(585.0, 585.0, 320.0, 240.0, 640, 480)
    assert all((seq.root / f"{seq.frame_id(i)}.depth.png").is_file() for i in range(400))
    poses = np.asarray([seq.T_world_cam(i) for i in range(400)])
    steps = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    assert steps.max() < 0.1 and steps.sum() > 0.5  # handheld at 30 Hz: centimetres per frame
    for i in range(0, 400, 40):
        depth = seq.depth_m(i)
        assert depth.shape == (480, 640) and (depth > 0).mean() > 0.5 and 0.3 < np.median(depth[depth > 0]) < 5.0
    assert seq.image_rgb(399).shape == (480, 640, 3)


@needs_shared
def test_shared_kitti_odometry_51_frames_about_1_2_m_apart():
    seq = KittiOdometryFolderSequence(SHARED_REAL / "kitti_odometry_51")
    assert len(seq) == 51 and seq.has_poses
    K = seq.intrinsics(0)
    assert (K.width, K.height, K.fx) == (1226, 370, pytest.approx(707.0912))
    steps = np.linalg.norm(np.diff([seq.T_world_cam(i)[:3, 3] for i in range(51)], axis=0), axis=1)
    assert np.mean(steps) == pytest.approx(1.2, abs=0.1) and steps.min() > 0.9
    image = seq.image_rgb(50)
    assert image.shape == (370, 1226, 3) and np.array_equal(image[..., 0], image[..., 2])


@needs_shared
def test_shared_davis_six_clips_with_masks():
    clips = davis_sequences(SHARED_REAL / "davis_moving_camera")
    assert sorted(c.name for c in clips) == ["camel", "car-roundabout", "car-shadow", "dog", "drift-straight",
                                             "parkour"]
    for clip in clips:
        assert all((clip.annotations / f"{p.stem}.png").is_file() for p in clip.images), clip.name
        for i in (0, len(clip) - 1):
            mask = clip.dynamic_mask(i)
            assert mask.shape == (480, 854) and 0.001 < mask.mean() < 0.9, clip.name


@needs_shared
def test_shared_real_mixture_config_components_build():
    """The real_mixture.yaml training config's real components (the synthetic one needs rendered data)."""
    config_path = Path(__file__).resolve().parents[1] / "training" / "configs" / "real_mixture.yaml"
    data = yaml.safe_load(config_path.read_text())["data"]
    components = [c for c in data["extra"]["components"] if c["type"] != "synthetic"]
    repo = config_path.parents[2]  # the config's paths are relative to the repository root, like the trainer's cwd
    mix = build_dataset({"type": "mixture", "data_path": str(repo / data["path"]), "height": data["height"],
                         "width": data["width"], "frame_offsets": [0, -1, 1], "components": components})
    names = {d.sequences[0].name for d in mix.datasets}
    assert {"7scenes_redkitchen", "kitti_odometry_51"} <= names
    davis = [d for d in mix.datasets if d.sequences[0].name in ("camel", "dog", "drift-straight", "parkour")]
    assert davis and not any(s.name in ("car-roundabout", "car-shadow") for d in mix.datasets for s in d.sequences)
    for d in mix.datasets:  # held-out frames never train
        for s in d.sequences:
            if s.name == "7scenes_redkitchen":
                assert s.stop <= 300
            if s.name == "kitti_odometry_51":
                assert s.stop <= 40
