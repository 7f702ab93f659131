"""Dataset loaders on small fixtures written in the real on-disk formats."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from depth_sfm_ros.geometry import Intrinsics
from depth_sfm_training.datasets import build_dataset
from depth_sfm_training.datasets.io import write_png
from depth_sfm_training.datasets.kitti import parse_kitti_split, velodyne_to_depth_map

W, H = 24, 16
FX, FY, CX, CY = 20.0, 21.0, 12.0, 8.0


def frame_image(k: int, width: int = W, height: int = H) -> np.ndarray:
    """RGB uint8 whose red channel encodes the frame number and green a horizontal ramp."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = 10 * k
    img[..., 1] = np.linspace(0, 250, width).astype(np.uint8)[None, :]
    img[..., 2] = 77
    return img


def frame_number_of(image_chw: torch.Tensor) -> int:
    return int(round(float(image_chw[0].mean()) * 255 / 10))


def _p(fx=FX, fy=FY, cx=CX, cy=CY, tx=0.0) -> str:
    return f"{fx} 0 {cx} {tx} 0 {fy} {cy} 0 0 0 1 0"


# ------------------------------------------------------------------------------- KITTI raw
def write_kitti_raw(root: Path, frames: int = 5) -> Path:
    date = root / "2011_09_26"
    drive = date / "2011_09_26_drive_0001_sync"
    date.mkdir(parents=True)
    (date / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n"
        f"S_rect_02: {W} {H}\nS_rect_03: {W} {H}\nR_rect_00: 1 0 0 0 1 0 0 0 1\n"
        f"P_rect_02: {_p()}\nP_rect_03: {_p(tx=-FX * 0.54)}\n")
    # velodyne: x forward, y left, z up -> camera: x right, y down, z forward
    (date / "calib_velo_to_cam.txt").write_text("calib_time: 15-Mar-2012 11:37:16\nR: 0 -1 0 0 0 -1 1 0 0\nT: 0 0 0\n")
    for k in range(frames):
        for cam in (2, 3):
            write_png(drive / f"image_0{cam}" / "data" / f"{k:010d}.png", frame_image(k))
        pts = np.array([[10, 0, 0, 1], [20, 0, 0, 1], [-5, 0, 0, 1], [8, -2, 0, 1]], np.float32)
        pts[:, 0] += 0.0 * k
        (drive / "velodyne_points" / "data").mkdir(parents=True, exist_ok=True)
        pts.tofile(drive / "velodyne_points" / "data" / f"{k:010d}.bin")
    annotated = np.zeros((H, W), np.uint16)
    annotated[5, 6] = 12 * 256
    write_png(drive / "proj_depth" / "groundtruth" / "image_02" / f"{2:010d}.png", annotated)
    return root


def test_velodyne_projection_hand_values():
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    P = np.array([[FX, 0, CX, 0], [0, FY, CY, 0], [0, 0, 1, 0]])
    pts = np.array([[10, 0, 0], [20, 0, 0], [-5, 0, 0], [8, -2, 0]], float)
    depth = velodyne_to_depth_map(pts, P, np.eye(3), T, W, H)
    # (10,0,0) and (20,0,0) hit u = round(12) - 1 = 11, v = 7: nearest wins; behind-sensor point dropped
    assert depth[7, 11] == pytest.approx(10.0)
    # (8,-2,0): camera x = 2 -> u = round(20 * 2 / 8 + 12) - 1 = 16
    assert depth[7, 16] == pytest.approx(8.0)
    assert np.count_nonzero(depth) == 2
    # the Eigen test GT stores the LiDAR forward distance instead of the camera depth
    T_shifted = T.copy()
    T_shifted[2, 3] = -0.5  # camera 0.5 m ahead of the LiDAR
    cam = velodyne_to_depth_map(pts, P, np.eye(3), T_shifted, W, H)
    lidar = velodyne_to_depth_map(pts, P, np.eye(3), T_shifted, W, H, lidar_x_depth=True)
    assert cam[7, 11] == pytest.approx(9.5) and lidar[7, 11] == pytest.approx(10.0)


def test_kitti_raw_split_velodyne_and_boundaries(tmp_path):
    root = write_kitti_raw(tmp_path / "kitti")
    split = tmp_path / "split.txt"
    split.write_text("2011_09_26/2011_09_26_drive_0001_sync 2 l\n2011_09_26/2011_09_26_drive_0001_sync 0 l\n"
                     "2011_09_26/2011_09_26_drive_0001_sync 4 r\n2011_09_26/2011_09_26_drive_0001_sync 3 r\n")
    assert parse_kitti_split(split)[0] == ("2011_09_26/2011_09_26_drive_0001_sync", 2, "l")
    ds = build_dataset({"type": "kitti_raw", "data_path": str(root), "split_file": str(split),
                        "depth_source": "velodyne"})
    assert len(ds) == 2 and ds.n_dropped == 2  # frames 0 (no -1) and 4 (no +1) lack a source
    s = ds[0]
    assert s["images"].shape == (3, 3, H, W) and s["images"].dtype == torch.float32
    assert [frame_number_of(im) for im in s["images"]] == [2, 1, 3]
    assert torch.allclose(s["K"], torch.tensor([[FX, 0, CX], [0, FY, CY], [0, 0, 1]]))
    assert s["depth_gt"].shape == (1, H, W) and s["depth_gt"][0, 7, 11] == pytest.approx(10.0)
    assert not s["has_instances"] and s["instance_ids"].shape == (3, 1, H, W) and s["instance_ids"].sum() == 0
    assert ds[1]["sequence"].endswith("image_03")
    clamp = build_dataset({"type": "kitti_raw", "data_path": str(root), "split_file": str(split), "boundary": "clamp"})
    assert len(clamp) == 4 and [frame_number_of(im) for im in clamp[1]["images"]] == [0, 0, 1]


def test_kitti_eigen_benchmark_annotated_depth(tmp_path):
    root = write_kitti_raw(tmp_path / "kitti")
    split = tmp_path / "test_files.txt"
    split.write_text("2011_09_26/2011_09_26_drive_0001_sync 2 l\n2011_09_26/2011_09_26_drive_0001_sync 3 l\n")
    ds = build_dataset({"type": "kitti_raw", "data_path": str(root), "split_file": str(split),
                        "depth_source": "annotated", "frame_offsets": [0]})
    assert ds[0]["has_depth_gt"] and ds[0]["depth_gt"][0, 5, 6] == pytest.approx(12.0)
    assert int((ds[0]["depth_gt"] > 0).sum()) == 1
    assert not ds[1]["has_depth_gt"] and float(ds[1]["depth_gt"].sum()) == 0.0


def test_kitti_split_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("2011_09_26/2011_09_26_drive_0001_sync 2 x\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        parse_kitti_split(bad)
    root = write_kitti_raw(tmp_path / "kitti")
    missing = tmp_path / "missing.txt"
    missing.write_text("2011_09_26/2011_09_26_drive_0001_sync 99 l\n")
    with pytest.raises(FileNotFoundError, match="frame 99"):
        build_dataset({"type": "kitti_raw", "data_path": str(root), "split_file": str(missing)})


def test_crop_resize_flip_intrinsics_and_content(tmp_path):
    root = write_kitti_raw(tmp_path / "kitti")
    cfg = {"type": "kitti_raw", "data_path": str(root), "crop": [2, 1, 20, 14], "height": 7, "width": 10}
    plain = build_dataset(cfg)[0]
    flipped = build_dataset({**cfg, "augment": True, "flip_prob": 1.0, "jitter": None})[0]
    K = Intrinsics(FX, FY, CX, CY, W, H).cropped(2, 1, 20, 14).scaled(10, 7)
    assert np.allclose(plain["K"].numpy(), K.K, atol=1e-5)
    assert np.allclose(flipped["K"].numpy(), K.flipped_horizontally().K, atol=1e-5)
    assert plain["images"].shape == (3, 3, 7, 10)
    assert torch.equal(flipped["images"], plain["images"].flip(-1))
    # the green ramp increases left to right, so the flip is visible
    assert plain["images"][0, 1, 0, 0] < plain["images"][0, 1, 0, -1]
    assert "depth_gt" not in plain


# --------------------------------------------------------------------------- KITTI odometry
def write_kitti_odometry(root: Path, frames: int = 4, step=(0.5, 0.0, 1.0)) -> Path:
    seq = root / "sequences" / "09"
    for k in range(frames):
        write_png(seq / "image_2" / f"{k:06d}.png", frame_image(k))
    (seq / "calib.txt").write_text(f"P0: {_p()}\nP1: {_p(tx=-FX * 0.54)}\nP2: {_p(tx=FX * 0.06)}\n"
                                   f"P3: {_p(tx=-FX * 0.48)}\n")
    (root / "poses").mkdir(parents=True)
    lines = []
    for k in range(frames):
        T = np.eye(4)[:3]
        T[:, 3] = np.array(step) * k
        lines.append(" ".join(f"{v:.6e}" for v in T.ravel()))
    (root / "poses" / "09.txt").write_text("\n".join(lines) + "\n")
    return root


def test_kitti_odometry_poses_intrinsics_flip(tmp_path):
    root = write_kitti_odometry(tmp_path / "odom")
    ds = build_dataset({"type": "kitti_odom", "data_path": str(root), "sequences": ["09"]})
    assert len(ds) == 2
    seq = ds.sequences[0]
    # camera 2 sits 0.06 m left of camera 0... P2[0,3] = fx * 0.06 -> T_cam2_cam0 t = +0.06 in x
    assert np.allclose(seq.T_world_cam(0)[:3, 3], [-0.06, 0, 0])
    s = ds[0]
    assert [frame_number_of(im) for im in s["images"]] == [1, 0, 2]
    T = s["T_src_tgt_gt"].numpy()
    assert T.shape == (2, 4, 4)
    assert np.allclose(T[0][:3, 3], [0.5, 0, 1.0], atol=1e-6) and np.allclose(T[1][:3, 3], [-0.5, 0, -1.0], atol=1e-6)
    flipped = build_dataset({"type": "kitti_odom", "data_path": str(root), "augment": True, "flip_prob": 1.0,
                             "jitter": None})[0]
    assert np.allclose(flipped["T_src_tgt_gt"][0, :3, 3].numpy(), [-0.5, 0, 1.0], atol=1e-6)
    stride2 = build_dataset({"type": "kitti_odom", "data_path": str(root), "stride": 2, "frame_offsets": [0, -1]})
    assert len(stride2) == 2 and [frame_number_of(im) for im in stride2[0]["images"]] == [2, 0]


# ------------------------------------------------------------------------------- Cityscapes
def write_cityscapes(root: Path, split: str = "val") -> Path:
    cw, ch = 32, 16
    for frame in range(17, 22):
        write_png(root / "leftImg8bit_sequence" / split / "aachen" / f"aachen_000000_{frame:06d}_leftImg8bit.png",
                  frame_image(frame - 17, cw, ch))
    cam = {"extrinsic": {"baseline": 0.2, "pitch": 0.04, "x": 1.7}, "intrinsic": {"fx": 40.0, "fy": 41.0,
                                                                                  "u0": 16.0, "v0": 7.5}}
    (root / "camera" / split / "aachen").mkdir(parents=True)
    (root / "camera" / split / "aachen" / "aachen_000000_000019_camera.json").write_text(json.dumps(cam))
    disparity = np.zeros((ch, cw), np.uint16)
    disparity[3, 4] = 1 + 4 * 256  # disparity 4 px -> depth 0.2 * 40 / 4 = 2 m
    disparity[6, 8] = 1 + 2 * 256  # 4 m, inside the ManyDepth evaluation crop
    disparity[14, 4] = 1 + 4 * 256  # in the hood, cropped away
    write_png(root / "disparity_sequence" / split / "aachen" / "aachen_000000_000019_disparity.png", disparity)
    return root


def test_cityscapes_hood_crop_and_disparity_depth(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    ds = build_dataset({"type": "cityscapes", "data_path": str(root), "split": "val"})
    assert len(ds) == 3
    s = ds[1]  # target frame 19
    assert s["images"].shape == (3, 3, 12, 32)
    assert np.allclose(s["K"].numpy(), [[40, 0, 16], [0, 41, 7.5], [0, 0, 1]])
    assert [frame_number_of(im) for im in s["images"]] == [2, 1, 3]
    assert s["has_depth_gt"] and s["depth_gt"][0, 3, 4] == pytest.approx(2.0)
    assert s["depth_gt"][0, 6, 8] == pytest.approx(4.0) and int((s["depth_gt"] > 0).sum()) == 2
    assert not ds[0]["has_depth_gt"]


def test_cityscapes_missing_camera(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    (root / "camera" / "val" / "aachen" / "aachen_000000_000019_camera.json").unlink()
    with pytest.raises(FileNotFoundError, match="camera json"):
        build_dataset({"type": "cityscapes", "data_path": str(root), "split": "val"})


# ---------------------------------------------------------------------- image folder, masks
def test_image_folder_calib_formats_and_mask_folder(tmp_path):
    folder = tmp_path / "drive"
    for k in range(3):
        write_png(folder / f"img_{k:03d}.png", frame_image(k))
    (folder / "calib.yaml").write_text(f"fx: {FX}\nfy: {FY}\ncx: {CX}\ncy: {CY}\n")
    ds = build_dataset({"type": "folder", "data_path": str(folder)})
    assert len(ds) == 1 and np.allclose(ds[0]["K"].numpy(), [[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
    # ROS camera_info yaml calibrated at twice the resolution: scaled to the images
    info = tmp_path / "camera_info.yaml"
    info.write_text(f"image_width: {2 * W}\nimage_height: {2 * H}\ncamera_name: cam\ncamera_matrix:\n  rows: 3\n"
                    f"  cols: 3\n  data: [{2 * FX}, 0, {2 * CX + 0.5}, 0, {2 * FY}, {2 * CY + 0.5}, 0, 0, 1]\n")
    ds2 = build_dataset({"type": "folder", "data_path": str(folder), "calib": str(info)})
    assert np.allclose(ds2[0]["K"].numpy(), [[FX, 0, CX], [0, FY, CY], [0, 0, 1]], atol=1e-5)
    masks = tmp_path / "masks"
    ids = np.zeros((H, W), np.uint16)
    ids[2:5, 3:9] = 7
    for k in range(3):
        write_png(masks / "drive" / f"img_{k:03d}.png", ids)
    ds3 = build_dataset({"type": "folder", "data_path": str(folder), "mask_dir": str(masks),
                         "augment": True, "flip_prob": 1.0, "jitter": None})
    s = ds3[0]
    assert s["has_instances"] and s["instance_ids"].dtype == torch.int64
    assert torch.equal(s["instance_ids"][0, 0], torch.from_numpy(ids[:, ::-1].astype(np.int64).copy()))
    with pytest.raises(FileNotFoundError, match="calibration"):
        build_dataset({"type": "folder", "data_path": str(folder), "calib": str(tmp_path / "nope.yaml")})


# -------------------------------------------------------------------------------- synthetic
def write_synthetic_folder(root: Path, frames: int = 4) -> Path:
    """The synthetic KITTI-like folder format of docs/architecture.md."""
    lines = []
    for k in range(frames):
        write_png(root / "image_2" / f"{k:06d}.png", frame_image(k))
        depth = np.full((H, W), 10.0 + k, np.float32)
        depth[:3] = 0  # sky
        write_png(root / "depth" / f"{k:06d}.png", (depth * 256).astype(np.uint16))
        dyn = np.zeros((H, W), np.uint8)
        dyn[8:12, 4:10] = 255
        write_png(root / "dynamic_mask" / f"{k:06d}.png", dyn)
        write_png(root / "instance" / f"{k:06d}.png", (dyn > 0).astype(np.uint16) * 3)
        T = np.eye(4)[:3]
        T[2, 3] = 1.0 * k
        lines.append(" ".join(f"{v:.6e}" for v in T.ravel()))
    (root / "poses.txt").write_text("\n".join(lines) + "\n")
    (root / "calib.txt").write_text(f"P2: {_p()}\n")
    (root / "times.txt").write_text("\n".join(f"{0.1 * k:.6f}" for k in range(frames)) + "\n")
    return root


def test_synthetic_folder_masks_depth_poses_and_determinism(tmp_path):
    root = write_synthetic_folder(tmp_path / "synth")
    cfg = {"type": "synthetic", "data_path": str(root), "height": 8, "width": 12, "augment": True, "seed": 3}
    ds = build_dataset(cfg)
    s = ds[0]
    assert s["has_instances"] and s["has_dynamic_mask"]
    assert s["dynamic_mask"].shape == (3, 1, 8, 12) and s["dynamic_mask"].max() == 1.0
    assert set(torch.unique(s["instance_ids"]).tolist()) == {0, 3}
    valid = s["depth_gt"][s["depth_gt"] > 0]
    assert torch.allclose(valid, torch.full_like(valid, 11.0))
    assert torch.allclose(s["T_src_tgt_gt"][:, 2, 3], torch.tensor([1.0, -1.0]))
    # deterministic per (seed, epoch, index); jitter changes colours identically for all frames
    again = build_dataset(cfg)[0]
    assert torch.equal(s["images"], again["images"])
    assert not torch.equal(s["images"], s["images_raw"])
    ds.set_epoch(1)
    assert torch.equal(ds[0]["images"], ds[0]["images"])  # same epoch, same draw
    epoch_draws = []
    for epoch in range(1, 5):
        ds.set_epoch(epoch)
        epoch_draws.append(torch.equal(ds[0]["images"], s["images"]))
    assert not all(epoch_draws)
    assert not all(torch.equal(build_dataset({**cfg, "seed": sd})[0]["images"], s["images"]) for sd in range(4, 8))


def test_rendered_synthetic_sequence_and_collate(tmp_path):
    """A sequence rendered and written by depth_sfm_ros.synth, read back and batched by a DataLoader."""
    from torch.utils.data import DataLoader

    from depth_sfm_ros.synth.kitti import write_kitti_folder
    from depth_sfm_ros.synth.render import SynthConfig, render_sequence

    sequence = render_sequence(SynthConfig(seed=1, width=64, height=32, num_frames=4))
    write_kitti_folder(sequence.frames, sequence.intrinsics, tmp_path / "drive")
    ds = build_dataset({"type": "synthetic", "path": str(tmp_path), "split": None})
    assert len(ds) == 2 and np.allclose(ds[0]["K"].numpy(), sequence.intrinsics.K, atol=1e-4)
    s = ds[0]
    frame = sequence.frames[1]
    # the folder stores metres * 256 in uint16: sky (NaN) and depths >= 256 m become 0 = invalid
    expected_depth = np.nan_to_num(frame.depth_m, nan=0.0)
    expected_depth[expected_depth >= 255.99] = 0.0
    assert np.allclose(s["depth_gt"][0].numpy(), expected_depth, atol=1 / 256)
    assert np.array_equal(s["dynamic_mask"][0, 0].numpy() > 0, frame.dynamic_mask)
    assert np.array_equal(s["instance_ids"][0, 0].numpy(), frame.instance_ids)
    T_expected = sequence.frames[0].T_world_cam.inverse() @ frame.T_world_cam
    assert np.allclose(s["T_src_tgt_gt"][0].numpy(), T_expected.matrix, atol=1e-5)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["images"].shape == (2, 3, 3, 32, 64) and batch["K"].shape == (2, 3, 3)
    assert batch["has_instances"].tolist() == [True, True] and batch["T_src_tgt_gt"].shape == (2, 2, 4, 4)


def test_identical_frames_get_identical_jitter(tmp_path):
    folder = tmp_path / "same"
    for k in range(3):
        write_png(folder / f"{k:03d}.png", frame_image(5))
    (folder / "calib.yaml").write_text(f"fx: {FX}\nfy: {FY}\ncx: {CX}\ncy: {CY}\n")
    s = build_dataset({"type": "folder", "data_path": str(folder), "augment": True, "flip_prob": 0.0})[0]
    assert torch.equal(s["images"][0], s["images"][1]) and torch.equal(s["images"][0], s["images"][2])
    assert not torch.equal(s["images"], s["images_raw"])


def test_grayscale_augmentation_greys_the_network_input_only(tmp_path):
    """grayscale_prob 1: every network input frame has R = G = B (luminance), the loss images keep their colour;
    grayscale_prob 0 draws nothing extra (the same images as without the key: old runs reproduce); out of range is
    refused; a mixture passes it to its components."""
    folder = tmp_path / "colour"
    for k in range(3):
        write_png(folder / f"{k:03d}.png", frame_image(k))
    (folder / "calib.yaml").write_text(f"fx: {FX}\nfy: {FY}\ncx: {CX}\ncy: {CY}\n")
    cfg = {"type": "folder", "data_path": str(folder), "augment": True, "flip_prob": 0.0}
    grey = build_dataset({**cfg, "grayscale_prob": 1.0})[0]
    assert torch.equal(grey["images"][:, 0], grey["images"][:, 1])
    assert torch.equal(grey["images"][:, 1], grey["images"][:, 2])
    raw = grey["images_raw"]
    assert (raw[:, 0] - raw[:, 1]).abs().max() > 0.05  # the loss images stay in colour
    colour = build_dataset(cfg)[0]
    assert torch.equal(build_dataset({**cfg, "grayscale_prob": 0.0})[0]["images"], colour["images"])
    assert (colour["images"][:, 0] - colour["images"][:, 1]).abs().max() > 0.05
    draws = [bool(torch.equal(s["images"][0, 0], s["images"][0, 1]))
             for s in (build_dataset({**cfg, "grayscale_prob": 0.5, "seed": sd})[0] for sd in range(12))]
    assert 0 < sum(draws) < 12  # a probability, not a switch
    with pytest.raises(ValueError, match="grayscale_prob"):
        build_dataset({**cfg, "grayscale_prob": 1.5})
    mixture = build_dataset({"type": "mixture", "data_path": str(tmp_path), "augment": True, "flip_prob": 0.0,
                             "height": H, "width": W, "grayscale_prob": 1.0, "components": [{"type": "folder", "path": str(folder)}]})[0]
    assert torch.equal(mixture["images"][:, 0], mixture["images"][:, 2])


def test_config_validation(tmp_path):
    root = write_synthetic_folder(tmp_path / "synth", frames=3)
    with pytest.raises(ValueError, match="unknown keys"):
        build_dataset({"type": "synthetic", "data_path": str(root), "heigth": 5})
    with pytest.raises(ValueError, match="dataset type"):
        build_dataset({"type": "kitty", "data_path": str(root)})
    with pytest.raises(ValueError, match="start with 0"):
        build_dataset({"type": "synthetic", "data_path": str(root), "frame_offsets": [-1, 0]})
    with pytest.raises(ValueError, match="no target frame"):
        build_dataset({"type": "synthetic", "data_path": str(root), "frame_offsets": [0, -3]})


# ---------------------------------------------------------------------------------- rosbags
def _write_bag(path: Path, kind: str, frames: int = 4, d: list[float] | None = None,
               p: list[float] | None = None) -> None:
    """A camera bag: /cam/image_raw (rgb8, written out of time order), /cam/camera_info (distortion ``d`` and
    projection ``p``, zeros by default) and a compressed /cam2/image_raw/compressed (rosbag2 only)."""
    import cv2
    from rosbags.typesys import Stores, get_typestore

    ros1 = kind == "ros1"
    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_JAZZY)
    Image = store.types["sensor_msgs/msg/Image"]
    Info = store.types["sensor_msgs/msg/CameraInfo"]
    Compressed = store.types["sensor_msgs/msg/CompressedImage"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    Roi = store.types["sensor_msgs/msg/RegionOfInterest"]

    def header(t_s: float):
        stamp = Time(sec=int(t_s), nanosec=int(round((t_s % 1) * 1e9)))
        return Header(seq=0, stamp=stamp, frame_id="cam") if ros1 else Header(stamp=stamp, frame_id="cam")

    K = np.array([FX, 0, CX, 0, FY, CY, 0, 0, 1], np.float64)
    info_kwargs = dict(header=header(0.0), height=H, width=W, distortion_model="plumb_bob", binning_x=0,
                       binning_y=0, roi=Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    D = np.zeros(5) if d is None else np.asarray(d, np.float64)
    P = np.zeros(12) if p is None else np.asarray(p, np.float64)
    if ros1:
        info = Info(D=D, K=K, R=np.eye(3).ravel(), P=P, **info_kwargs)
    else:
        info = Info(d=D, k=K, r=np.eye(3).ravel(), p=P, **info_kwargs)
    serialize = store.serialize_ros1 if ros1 else store.serialize_cdr
    order = [0, 2, 1, 3][:frames]  # bag time order != header stamp order
    if ros1:
        from rosbags.rosbag1 import Writer
        writer = Writer(path)
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer
        writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP if kind == "mcap" else StoragePlugin.SQLITE3)
    with writer:
        c_img = writer.add_connection("/cam/image_raw", Image.__msgtype__, typestore=store)
        c_info = writer.add_connection("/cam/camera_info", Info.__msgtype__, typestore=store)
        c_comp = None if ros1 else writer.add_connection("/cam2/image_raw/compressed", Compressed.__msgtype__,
                                                         typestore=store)
        writer.write(c_info, 1, serialize(info, Info.__msgtype__))
        for n, k in enumerate(order):
            t_ns = 10 + n
            rgb = frame_image(k)
            msg = Image(header=header(1.0 + 0.1 * k), height=H, width=W, encoding="rgb8", is_bigendian=0,
                        step=3 * W, data=rgb.ravel())
            writer.write(c_img, t_ns, serialize(msg, Image.__msgtype__))
            if c_comp is not None:
                ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                comp = Compressed(header=header(1.0 + 0.1 * k), format="png", data=png.ravel())
                writer.write(c_comp, t_ns, serialize(comp, Compressed.__msgtype__))


@pytest.mark.parametrize("kind", ["mcap", "sqlite3", "ros1"])
def test_rosbag_loader(tmp_path, kind):
    bag = tmp_path / ("cam.bag" if kind == "ros1" else "cam_bag")
    _write_bag(bag, kind)
    cfg = {"type": "rosbag", "data_path": str(bag), "image_topic": "/cam/image_raw",
           "cache_dir": str(tmp_path / "cache")}
    ds = build_dataset(cfg)
    assert len(ds) == 2
    seq = ds.sequences[0]
    assert np.allclose(np.diff(seq.stamps_s), 0.1)  # sorted by header stamp
    assert [frame_number_of(im) for im in ds[0]["images"]] == [1, 0, 2]
    assert np.allclose(ds[0]["K"].numpy(), [[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
    # the cache is reused: a second dataset does not need the bag's messages again
    mtime = (tmp_path / "cache" / "index.json").stat().st_mtime_ns
    build_dataset(cfg)
    assert (tmp_path / "cache" / "index.json").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match=r"available topics: .*/cam/camera_info"):
        build_dataset({**cfg, "image_topic": "/nope", "cache_dir": str(tmp_path / "cache2")})
    if kind != "ros1":
        comp = build_dataset({**cfg, "image_topic": "/cam2/image_raw", "camera_info_topic": "/cam/camera_info",
                              "cache_dir": str(tmp_path / "cache3")})
        assert torch.equal(comp[0]["images"], ds[0]["images"])


@pytest.mark.parametrize("kind", ["mcap", "ros1"])
def test_rosbag_loader_takes_the_node_camera_policy(tmp_path, kind):
    """A distorted raw camera is undistorted into P's geometry (geometry.camera_model, as the node); the same
    bag read as a rectified topic uses P as it is; the cache holds the raw frames either way."""
    from depth_sfm_ros.geometry.camera_model import CameraModel, resolve_input

    D = [-0.2, 0.05, 0.001, -0.001, 0.0]
    P = [18.0, 0.0, 12.5, 0.0, 0.0, 19.0, 7.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    bag = tmp_path / ("cam.bag" if kind == "ros1" else "cam_bag")
    _write_bag(bag, kind, d=D, p=P)
    cfg = {"type": "rosbag", "data_path": str(bag), "image_topic": "/cam/image_raw",
           "cache_dir": str(tmp_path / "cache")}
    raw = build_dataset(cfg).sequences[0]
    expected = resolve_input(CameraModel.from_fields(W, H, [[FX, 0, CX], [0, FY, CY], [0, 0, 1]], D, "plumb_bob",
                                                     P=P), rectified=False)
    assert raw.undistorter is not None and raw.geometry.source == "undistorted (P)"
    assert raw.intrinsics(0) == expected.intrinsics == Intrinsics(18.0, 19.0, 12.5, 7.5, W, H)
    assert np.array_equal(raw.image_rgb(0), expected.prepare(frame_image(0)))
    assert not np.array_equal(raw.image_rgb(0), frame_image(0))
    rect = build_dataset({**cfg, "camera_input": "rectified"}).sequences[0]
    assert rect.undistorter is None and rect.intrinsics(0) == Intrinsics(18.0, 19.0, 12.5, 7.5, W, H)
    assert np.array_equal(rect.image_rgb(0), frame_image(0))
    with pytest.raises(ValueError, match="auto, rectified or raw"):
        build_dataset({**cfg, "camera_input": "undistorted"})


def test_decode_image_msg_encodings_and_row_padding():
    from rosbags.typesys import Stores, get_typestore

    from depth_sfm_training.datasets.rosbag import decode_image_msg

    store = get_typestore(Stores.ROS2_JAZZY)
    Image = store.types["sensor_msgs/msg/Image"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    rgb = frame_image(3, 5, 2)

    def msg(encoding: str, pixels: np.ndarray, pad: int = 0, bigendian: int = 0):
        rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
        rows = np.concatenate([rows, np.zeros((rows.shape[0], pad), np.uint8)], axis=1)
        return Image(header=Header(stamp=Time(sec=0, nanosec=0), frame_id="c"), height=pixels.shape[0],
                     width=pixels.shape[1], encoding=encoding, is_bigendian=bigendian, step=rows.shape[1],
                     data=rows.ravel())

    assert np.array_equal(decode_image_msg(msg("rgb8", rgb, pad=3), Image.__msgtype__), rgb)
    assert np.array_equal(decode_image_msg(msg("bgr8", rgb[..., ::-1].copy()), Image.__msgtype__), rgb)
    value = 40 * 256 + 200  # bytes differ, so byte order matters; 10440 / 257 = 40.6 -> 41
    grey = decode_image_msg(msg("mono16", np.full((2, 5), value, "<u2")), Image.__msgtype__)
    assert grey.shape == (2, 5, 3) and np.all(grey == 41)
    big = decode_image_msg(msg("mono16", np.full((2, 5), value, ">u2"), bigendian=1), Image.__msgtype__)
    assert np.all(big == 41)
    with pytest.raises(ValueError, match="unsupported image encoding"):
        decode_image_msg(msg("yuv422", rgb), Image.__msgtype__)
    with pytest.raises(ValueError, match="truncated|expected step"):
        decode_image_msg(Image(header=Header(stamp=Time(sec=0, nanosec=0), frame_id="c"), height=2, width=5,
                               encoding="rgb8", is_bigendian=0, step=15, data=np.zeros(10, np.uint8)),
                         Image.__msgtype__)
