"""``depth-sfm to-bag`` (training/to_bag.py): real-format fixtures -> rosbag2 (mcap / sqlite3), read back with the
project's bag reader, trained on through the ``rosbag`` dataset, and evaluated end to end with ``eval-bag`` and
the bundled default model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from depth_sfm_ros.bag.reader import BagFrameReader, topic_selection
from depth_sfm_ros.bag.rosbags_io import bag_topics, compressed_msg_to_image, msg_to_image, read_messages
from depth_sfm_ros.cli import main as cli_main
from depth_sfm_ros.geometry import Pose
from depth_sfm_training.datasets import FrameRange, build_dataset
from depth_sfm_training.datasets.real import (DavisSequence, EurocSequence, KittiOdometryFolderSequence,
                                              SevenScenesSequence, TumRgbdSequence)
from depth_sfm_training.to_bag import (DEFAULT_START_STAMP_NS, bag_directory, frame_stamps_ns, parse_options,
                                       write_sequence_bag)
from test_real_datasets import DAVIS, KITTI, SEVEN, write_euroc, write_tum

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "depth_sfm_ros" / "data" / "default_model"


def read_frames(bag: Path, image_topic: str = "/camera/image_raw") -> tuple[BagFrameReader, list]:
    reader = BagFrameReader(bag, topic_selection(image_topic, "/camera/camera_info", "/gt/depth", "/gt/dynamic_mask",
                                                 "/gt/odom", None))
    return reader, list(reader)


def assert_relative_poses(frames: list, seq, first: int = 0) -> None:
    """The bag's odometry = the dataset's poses relative to the first posed frame."""
    T_first_world = np.linalg.inv(seq.T_world_cam(first))
    for k, frame in enumerate(frames):
        np.testing.assert_allclose(frame.gt_T_world_cam.matrix, T_first_world @ seq.T_world_cam(k), atol=1e-5)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_seven_scenes_bag_has_images_camera_info_depth_and_poses(tmp_path, storage):
    seq = SevenScenesSequence(SEVEN)
    result = write_sequence_bag(seq, tmp_path / "bag", storage=storage)
    assert result.num_frames == 4 and result.storage == storage
    assert result.topic_counts == {"/camera/image_raw": 4, "/camera/camera_info": 4, "/gt/depth": 4, "/gt/odom": 4}
    assert (tmp_path / "bag" / "metadata.yaml").is_file()
    assert list((tmp_path / "bag").glob("*.mcap" if storage == "mcap" else "*.db3"))
    reader, frames = read_frames(tmp_path / "bag")
    assert reader.missing == {"gt_mask": "/gt/dynamic_mask"} and len(frames) == 4
    for k, frame in enumerate(frames):
        assert frame.stamp_ns == DEFAULT_START_STAMP_NS + round(k * 1e9 / 30)  # 7-Scenes: no stamps, 30 Hz
        assert frame.encoding == "rgb8" and frame.frame_id == "camera_optical_frame"
        np.testing.assert_array_equal(frame.image, seq.image_rgb(k))
        assert frame.camera.intrinsics_K() == seq.intrinsics(k) and not frame.camera.has_distortion
        depth = seq.depth_m(k)
        np.testing.assert_array_equal(np.isnan(frame.gt_depth_m), depth == 0)  # no measurement -> NaN (REP 118)
        np.testing.assert_allclose(frame.gt_depth_m[depth > 0], depth[depth > 0])
    assert_relative_poses(frames, seq)
    odom = [msg for _, _, msg in read_messages(tmp_path / "bag", ["/gt/odom"])]
    assert odom[0].header.frame_id == "odom" and odom[0].child_frame_id == "camera_optical_frame"
    assert np.allclose([odom[0].twist.twist.linear.x, odom[0].twist.twist.linear.y], 0)  # zero at frame 0
    T01 = Pose(np.linalg.inv(seq.T_world_cam(0)) @ seq.T_world_cam(1))
    lin = odom[1].twist.twist.linear
    np.testing.assert_allclose([lin.x, lin.y, lin.z], T01.R.T @ T01.t * 30, rtol=1e-3, atol=1e-6)
    depth_msg = next(msg for _, _, msg in read_messages(tmp_path / "bag", ["/gt/depth"]))
    assert depth_msg.encoding == "32FC1"
    raw = msg_to_image(depth_msg)
    np.testing.assert_array_equal(np.isnan(raw), seq.depth_m(0) == 0)  # NaN, not 0, as REP 118 wants
    infos = [msg for _, _, msg in read_messages(tmp_path / "bag", ["/camera/camera_info"])]
    assert infos[0].width == 80 and infos[0].height == 60 and not np.any(infos[0].d)
    np.testing.assert_allclose(np.asarray(infos[0].k).reshape(3, 3), seq.intrinsics(0).K)


def test_grey_kitti_goes_in_as_mono8_with_poses(tmp_path):
    seq = KittiOdometryFolderSequence(KITTI)
    write_sequence_bag(seq, tmp_path / "bag", fps=5.0)
    assert bag_topics(tmp_path / "bag")["/camera/image_raw"][1] == 4 and "/gt/depth" not in bag_topics(tmp_path / "bag")
    _, frames = read_frames(tmp_path / "bag")
    for k, frame in enumerate(frames):
        assert frame.encoding == "mono8" and frame.image.shape == (24, 80)
        np.testing.assert_array_equal(frame.image, seq.image_rgb(k)[..., 0])
        assert frame.stamp_ns == DEFAULT_START_STAMP_NS + k * 200_000_000  # --fps 5
    assert_relative_poses(frames, seq)
    steps = np.linalg.norm(np.diff([f.gt_T_world_cam.t for f in frames], axis=0), axis=1)
    assert np.all(steps > 0.8)  # metres, as recorded


def test_davis_clip_bag_has_masks_and_no_depth_or_poses(tmp_path):
    seq = DavisSequence(DAVIS, "dog")
    write_sequence_bag(seq, tmp_path / "bag")
    assert set(bag_topics(tmp_path / "bag")) == {"/camera/image_raw", "/camera/camera_info", "/gt/dynamic_mask"}
    _, frames = read_frames(tmp_path / "bag")
    assert [f.stamp_ns - DEFAULT_START_STAMP_NS for f in frames] == [0, 41_666_667, 83_333_333]  # DAVIS 24 fps
    for k, frame in enumerate(frames):
        np.testing.assert_array_equal(frame.gt_dynamic_mask, seq.dynamic_mask(k))
        assert frame.gt_depth_m is None and frame.gt_T_world_cam is None
    assert frames[0].camera.intrinsics_K() == seq.intrinsics(0)  # the assumed 60 deg intrinsics go into CameraInfo


def test_tum_bag_uses_the_dataset_stamps_and_skips_depth_without_a_match(tmp_path, caplog):
    seq = TumRgbdSequence(write_tum(tmp_path / "rgbd_dataset_freiburg1_xyz"))
    with caplog.at_level("WARNING"):
        result = write_sequence_bag(seq, tmp_path / "bag", fps=99.0)
    assert "--fps 99 ignored" in caplog.text
    assert result.topic_counts["/gt/depth"] == 3  # frame 2 has no depth within 20 ms
    _, frames = read_frames(tmp_path / "bag")
    assert [f.stamp_ns for f in frames] == [seq.stamp_ns(k) for k in range(4)] == [
        1305031102_175304000, 1305031102_208637000, 1305031102_241970000, 1305031102_275303000]
    assert frames[2].gt_depth_m is None and np.all(frames[1].gt_depth_m == 2.0)
    assert_relative_poses(frames, seq)


def test_euroc_bag_is_undistorted_mono8_with_dataset_stamps_and_poses(tmp_path):
    seq = EurocSequence(write_euroc(tmp_path / "MH_01_easy"))
    write_sequence_bag(seq, tmp_path / "bag", storage="sqlite3")
    _, frames = read_frames(tmp_path / "bag")
    assert [f.stamp_ns for f in frames] == [seq.stamp_ns(k) for k in range(3)]
    assert frames[0].encoding == "mono8"
    np.testing.assert_array_equal(frames[1].image, seq.image_rgb(1)[..., 0])  # the undistorted image
    assert frames[0].camera.intrinsics_K() == seq.intrinsics(0)  # and its intrinsics, D = 0
    assert_relative_poses(frames, seq)


def test_compressed_images_and_frame_range(tmp_path):
    seq = FrameRange(SevenScenesSequence(SEVEN), 1, 3)
    result = write_sequence_bag(seq, tmp_path / "bag", compressed=True)
    assert "/camera/image_raw" not in result.topic_counts and result.topic_counts["/camera/image_raw/compressed"] == 2
    msgs = [msg for _, _, msg in read_messages(tmp_path / "bag", ["/camera/image_raw/compressed"])]
    np.testing.assert_array_equal(compressed_msg_to_image(msgs[0]), seq.image_rgb(0))  # png: lossless
    _, frames = read_frames(tmp_path / "bag", "/camera/image_raw/compressed")
    assert len(frames) == 2
    np.testing.assert_allclose(frames[0].gt_T_world_cam.matrix, np.eye(4), atol=1e-9)  # odom starts at frame 1
    np.testing.assert_array_equal(frames[0].gt_depth_m > 0, seq.depth_m(0) > 0)
    # the training dataset finds <topic>/compressed when the raw topic is absent
    ds = build_dataset({"type": "rosbag", "data_path": str(tmp_path / "bag"), "image_topic": "/camera/image_raw",
                        "camera_info_topic": "/camera/camera_info", "frame_offsets": [0, 1],
                        "cache_dir": str(tmp_path / "cache")})
    assert len(ds) == 1 and np.allclose(ds[0]["images"][0].numpy().transpose(1, 2, 0) * 255, seq.image_rgb(0))


def test_rosbag_training_dataset_reads_a_converted_bag(tmp_path):
    """What ``depth-sfm train --config rosbag_own_robot.yaml data.path=BAG`` builds."""
    seq = KittiOdometryFolderSequence(KITTI)
    write_sequence_bag(seq, tmp_path / "bag")
    ds = build_dataset({"type": "rosbag", "data_path": str(tmp_path / "bag"), "image_topic": "/camera/image_raw",
                        "camera_info_topic": "/camera/camera_info", "height": 24, "width": 80,
                        "cache_dir": str(tmp_path / "cache")})
    assert len(ds) == 2  # 4 frames, offsets [0, -1, 1]
    sample = ds[0]
    np.testing.assert_allclose(sample["K"].numpy(), seq.intrinsics(0).K, rtol=1e-5)
    np.testing.assert_allclose(sample["images"][0, 0].numpy() * 255, seq.image_rgb(1)[..., 0], atol=1e-3)


def test_stamps_and_options_errors(tmp_path):
    seq = SevenScenesSequence(SEVEN)
    assert frame_stamps_ns(seq, 10.0, 0)[0] == [0, 100_000_000, 200_000_000, 300_000_000]
    with pytest.raises(ValueError, match="fps must be in"):
        frame_stamps_ns(seq, 0.0)

    class Backwards(FrameRange):
        def stamp_ns(self, i):
            return 100 - i

    with pytest.raises(ValueError, match="time stamps must increase"):
        frame_stamps_ns(Backwards(seq, 0, 3))
    assert parse_options(["clips=[dog, camel]", "undistort=true", "camera=fr1"]) == {
        "clips": ["dog", "camel"], "undistort": True, "camera": "fr1"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_options(["clips"])
    assert bag_directory("x/red.mcap", None) == (Path("x/red"), "mcap")
    assert bag_directory("x/red.db3", None) == (Path("x/red"), "sqlite3")
    assert bag_directory("red", "sqlite3") == (Path("red"), "sqlite3")
    with pytest.raises(ValueError, match="ends in .mcap but --storage is sqlite3"):
        bag_directory("red.mcap", "sqlite3")
    with pytest.raises(ValueError, match="encoding must be one of"):
        write_sequence_bag(seq, tmp_path / "b", encoding="bgr8")
    write_sequence_bag(seq, tmp_path / "b")
    with pytest.raises(FileExistsError, match="exists already"):
        write_sequence_bag(seq, tmp_path / "b")


def test_cli_to_bag_and_its_errors(tmp_path, capsys):
    rc = cli_main(["to-bag", "--dataset", "davis", "--path", str(DAVIS), "--sequence", "car-shadow",
                   "--frames", "1", "3", "--out", str(tmp_path / "clip.mcap"), "--fps", "10"])
    out = capsys.readouterr().out
    assert rc == 0 and "wrote 2 frames of car-shadow" in out and f"depth-sfm eval-bag {tmp_path / 'clip'}" in out
    assert bag_topics(tmp_path / "clip")["/gt/dynamic_mask"][1] == 2 and list((tmp_path / "clip").glob("*.mcap"))
    _, frames = read_frames(tmp_path / "clip")
    np.testing.assert_array_equal(frames[0].image, DavisSequence(DAVIS, "car-shadow").image_rgb(1))
    rc = cli_main(["to-bag", "--dataset", "davis", "--path", str(DAVIS), "--option", "clips=[dog]", "--compressed",
                   "--out", str(tmp_path / "dog.db3")])
    assert rc == 0 and "--image-topic /camera/image_raw/compressed" in capsys.readouterr().out
    assert list((tmp_path / "dog").glob("*.db3"))
    for args, message in [
        (["--dataset", "davis", "--path", str(DAVIS)], "2 sequences (car-shadow, dog); pick one with --sequence"),
        (["--dataset", "davis", "--path", str(DAVIS), "--sequence", "cat"], "no sequence named 'cat'"),
        (["--dataset", "nope", "--path", str(DAVIS)], "dataset type must be one of"),
        (["--dataset", "seven_scenes", "--path", str(SEVEN), "--frames", "3", "1"], "frames must be"),
        (["--dataset", "seven_scenes", "--path", str(SEVEN), "--option", "hfov=3"], "unknown keys"),
        (["--dataset", "seven_scenes", "--path", str(tmp_path / "none")], "does not exist"),
        (["--dataset", "seven_scenes", "--path", str(SEVEN), "--out", str(tmp_path / "clip")], "exists already"),
    ]:
        argv = ["to-bag", *args] + ([] if "--out" in args else ["--out", str(tmp_path / "err")])
        assert cli_main(argv) == 2, args
        assert message in capsys.readouterr().err, args


@pytest.fixture(scope="module")
def seven_bag(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "redkitchen"
    assert cli_main(["to-bag", "--dataset", "seven_scenes", "--path", str(SEVEN), "--out", f"{path}.mcap"]) == 0
    return path


def test_eval_bag_with_the_default_model_scores_against_the_dataset_depth(tmp_path, seven_bag):
    """End to end: the converted bag through eval-bag's Pipeline (bundled default model, ONNX Runtime)."""
    pytest.importorskip("onnxruntime")
    from depth_sfm_ros.bag.eval_bag import evaluate_bag
    from depth_sfm_ros import metrics as M

    seq = SevenScenesSequence(SEVEN)
    seen = []
    metrics = evaluate_bag(seven_bag, tmp_path / "eval", model=DEFAULT_MODEL, backend="onnxruntime", device="cpu",
                           max_depth_m=10.0, on_frame=lambda frame, result: seen.append((frame, result)))
    assert metrics["frames"] == 4 and [f.index for f, _ in seen] == [0, 1, 2, 3]
    assert [f.stamp_ns for f, _ in seen] == [DEFAULT_START_STAMP_NS + round(k * 1e9 / 30) for k in range(4)]
    assert metrics["depth"]["n_images"] == 4 and 0 < metrics["depth"]["abs_rel"] < 2
    assert "mask" not in metrics and all(f.gt_T_world_cam is not None for f, _ in seen)  # GT poses paired
    # eval-bag scored against this dataset's depth: recompute the median-scaled abs_rel from the loader
    acc = M.DepthMetricsAccumulator()
    from depth_sfm_ros.bag.scoring import resize_depth
    for k, (frame, result) in enumerate(seen):
        gt = seq.depth_m(k)
        gt = np.where(gt > 0, gt, np.nan).astype(np.float32)
        np.testing.assert_array_equal(np.isnan(frame.gt_depth_m), np.isnan(gt))
        pred = resize_depth(result.depth_m, gt.shape)
        acc.add(M.compute_depth_metrics(pred, gt, None, 1e-3, 10.0))
    assert metrics["depth"]["abs_rel"] == pytest.approx(acc.result()["all"]["abs_rel"], rel=1e-4)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["frames"] == 4


def test_cli_eval_bag_on_a_converted_sqlite3_bag(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    assert cli_main(["to-bag", "--dataset", "kitti_odom_folder", "--path", str(KITTI), "--out",
                     str(tmp_path / "kitti"), "--storage", "sqlite3"]) == 0
    rc = cli_main(["eval-bag", str(tmp_path / "kitti"), "--out", str(tmp_path / "eval"), "--no-progress",
                   "--backend", "onnxruntime", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["frames"] == 4 and "odometry" in metrics and "depth" not in metrics
    assert any("no depth" in n or "/gt/depth" in n for n in metrics["notes"])


def test_kitti_raw_and_odometry_bags_use_their_time_files(tmp_path):
    """The existing KITTI loaders (training/datasets/kitti.py) convert too, with KITTI's own time stamps."""
    from test_datasets import write_kitti_odometry, write_kitti_raw

    raw = write_kitti_raw(tmp_path / "raw", frames=3)
    drive = raw / "2011_09_26" / "2011_09_26_drive_0001_sync"
    (drive / "image_02" / "timestamps.txt").write_text(
        "2011-09-26 13:02:25.964389445\n2011-09-26 13:02:26.068102658\n2011-09-26 13:02:26.171758079\n")
    assert cli_main(["to-bag", "--dataset", "kitti_raw", "--path", str(raw), "--option", "depth_source=velodyne",
                     "--out", str(tmp_path / "raw_bag")]) == 0
    _, frames = read_frames(tmp_path / "raw_bag")
    assert [f.stamp_ns for f in frames] == [1317042145_964389445, 1317042146_068102658, 1317042146_171758079]
    assert all(f.gt_depth_m is not None and np.isfinite(f.gt_depth_m).any() for f in frames)  # projected LiDAR
    odom = write_kitti_odometry(tmp_path / "odom")
    (odom / "sequences" / "09" / "times.txt").write_text("0.0\n0.1036\n0.2073\n0.3109\n")
    assert cli_main(["to-bag", "--dataset", "kitti_odom", "--path", str(odom),
                     "--out", str(tmp_path / "odom_bag")]) == 0
    _, frames = read_frames(tmp_path / "odom_bag")
    assert [f.stamp_ns for f in frames] == [0, 103_600_000, 207_300_000, 310_900_000]
    assert frames[-1].gt_T_world_cam is not None
