"""BagFrameReader on real bags: rosbag2 mcap / sqlite3 and ROS 1, raw and compressed images,
16UC1 / 32FC1 depth, pose as Odometry / PoseStamped / TF, stamp pairing, damaged files."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from depth_sfm_ros.bag import rosbags_io
from depth_sfm_ros.bag.reader import BagError, BagFrameReader, BagTopicError, bag_topics, topic_selection
from test_eval_bag_support import synthetic_sequence, write_bag

ALL = dict(camera_info="/camera/camera_info", gt_depth="/gt/depth", gt_mask="/gt/dynamic_mask", gt_pose="/gt/odom")


@pytest.fixture(scope="module")
def seq():
    return synthetic_sequence(10)


@pytest.mark.parametrize("storage,compressed,depth_encoding", [
    ("mcap", False, "32FC1"), ("sqlite3", True, "16UC1"), ("ros1", False, "16UC1"), ("ros1", True, "32FC1")])
def test_frames_carry_the_ground_truth_of_their_stamp(tmp_path: Path, seq, storage, compressed, depth_encoding):
    bag = write_bag(tmp_path / "bag", seq, storage, compressed=compressed, depth_encoding=depth_encoding)
    image_topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    reader = BagFrameReader(bag, topic_selection(image_topic, **ALL))
    frames = list(reader)
    assert [f.index for f in frames] == list(range(len(seq)))
    assert reader.error is None and reader.missing == {}
    depth_tol = 1e-6 if depth_encoding == "32FC1" else 0.51e-3  # 16UC1 is whole millimetres (+ float32)
    for frame, truth in zip(frames, seq):
        assert frame.stamp_ns == truth.stamp_ns
        # compressed images decode as the node decodes them (OpenCV's bgr8); raw ones keep their encoding
        assert frame.encoding == ("bgr8" if compressed else "rgb8") and frame.image.shape == truth.image_rgb.shape
        rgb = frame.image[:, :, ::-1] if compressed else frame.image
        np.testing.assert_array_equal(rgb, truth.image_rgb)  # PNG is lossless
        assert frame.camera.intrinsics_K() == seq.intrinsics and not frame.camera.has_distortion
        sky = np.isnan(truth.depth_m) | (truth.depth_m > 65.535)
        np.testing.assert_array_equal(np.isnan(frame.gt_depth_m)[~sky], False)
        np.testing.assert_allclose(frame.gt_depth_m[~sky], truth.depth_m[~sky], atol=depth_tol)
        np.testing.assert_array_equal(frame.gt_dynamic_mask, truth.dynamic_mask)
        np.testing.assert_allclose(frame.gt_T_world_cam.matrix, truth.T_world_cam.matrix, atol=1e-9)


def test_pairing_uses_header_stamps_not_receive_time(tmp_path: Path, seq):
    """GT depth received 0.3 s after its image, in swapped pairs, still pairs with its image by header
    stamp; a GT stamp that is off by more than the tolerance pairs with nothing."""
    path = tmp_path / "late"
    io = rosbags_io
    swapped = [seq[i ^ 1] for i in range(len(seq))]  # 1, 0, 3, 2, ...
    with io.BagWriter(path, storage="mcap") as bag:
        for frame, gt_frame in zip(seq, swapped):
            bag.write("/camera/image_raw", io.image_to_msg(frame.image_rgb, "rgb8", frame.stamp_ns, "cam"),
                      frame.stamp_ns)
            stamp = gt_frame.stamp_ns + (50_000_000 if gt_frame.index == 4 else 0)  # frame 4's GT is 50 ms off
            bag.write("/gt/depth", io.image_to_msg(gt_frame.depth_m, "32FC1", stamp, "cam"),
                      frame.stamp_ns + 300_000_000)
    frames = list(BagFrameReader(path, topic_selection("/camera/image_raw", gt_depth="/gt/depth")))
    assert len(frames) == len(seq)
    for frame, truth in zip(frames, seq):
        if frame.index == 4:
            assert frame.gt_depth_m is None
        else:
            np.testing.assert_array_equal(frame.gt_depth_m, truth.depth_m)
    assert all(f.camera is None and f.gt_T_world_cam is None for f in frames)


def test_start_duration_every_select_frames(tmp_path: Path, seq):
    bag = write_bag(tmp_path / "bag", seq, "mcap", streams=())
    select = topic_selection("/camera/image_raw")
    # 10 Hz: start 0.2 s -> frames 2.., duration 0.5 s -> up to frame 7, every 2 -> 2, 4, 6
    frames = list(BagFrameReader(bag, select, start_s=0.2, duration_s=0.5, every=2))
    assert [f.index for f in frames] == [2, 4, 6]
    with pytest.raises(ValueError, match="every"):
        BagFrameReader(bag, select, every=0)


@pytest.mark.parametrize("pose_type,topic", [("pose", "/gt/pose"), ("tf", "/tf")])
def test_pose_from_pose_stamped_and_tf(tmp_path: Path, seq, pose_type, topic):
    bag = write_bag(tmp_path / "bag", seq, "sqlite3", pose_type=pose_type, streams=("odom",))
    frames_tf = ("odom", "camera") if pose_type == "tf" else None
    frames = list(BagFrameReader(bag, topic_selection("/camera/image_raw", gt_pose=topic, gt_tf_frames=frames_tf)))
    for frame, truth in zip(frames, seq):
        np.testing.assert_allclose(frame.gt_T_world_cam.matrix, truth.T_world_cam.matrix, atol=1e-9)
    if pose_type == "tf":
        with pytest.raises(BagError, match="TF"):
            BagFrameReader(bag, topic_selection("/camera/image_raw", gt_pose=topic))


def test_wrong_image_topic_lists_the_bag_topics(tmp_path: Path, seq):
    bag = write_bag(tmp_path / "bag", seq, "mcap", streams=("depth",))
    with pytest.raises(BagTopicError) as info:
        BagFrameReader(bag, topic_selection("/camera/image_rect"))
    text = str(info.value)
    assert "/camera/image_rect" in text
    assert "/camera/image_raw  sensor_msgs/msg/Image  (10 msgs)" in text and "/gt/depth" in text


def test_missing_optional_topics_are_recorded(tmp_path: Path, seq):
    bag = write_bag(tmp_path / "bag", seq, "mcap", streams=("depth",))
    reader = BagFrameReader(bag, topic_selection("/camera/image_raw", **ALL))
    frames = list(reader)
    assert reader.missing == {"camera_info": "/camera/camera_info", "gt_mask": "/gt/dynamic_mask",
                              "gt_pose": "/gt/odom"}
    assert all(f.gt_depth_m is not None and f.gt_dynamic_mask is None and f.camera is None for f in frames)


def test_truncated_mcap_yields_the_intact_frames_and_says_where_it_stopped(tmp_path: Path):
    seq = synthetic_sequence(20)
    bag = write_bag(tmp_path / "bag", seq, "mcap")
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    cut = tmp_path / "cut"
    shutil.copytree(bag, cut)
    (cut / mcap.name).write_bytes(data[: int(len(data) * 0.6)])
    topics = bag_topics(cut)
    intact = topics["/camera/image_raw"][1]
    assert 0 < intact < len(seq)
    reader = BagFrameReader(cut, topic_selection("/camera/image_raw", **ALL))
    frames = list(reader)
    assert reader.error is not None
    assert "truncated" in reader.error.error and reader.error.messages_read > 0
    assert reader.error.frames_read == len(frames) == intact
    assert reader.error.last_stamp_s == pytest.approx(frames[-1].stamp_s, abs=0.1)
    for frame in frames:  # what was read is right
        np.testing.assert_array_equal(frame.image, seq[frame.index].image_rgb)
    assert "truncated or corrupt" in reader.error.describe()


def test_corrupt_bytes_inside_an_mcap_chunk_stop_reading_there(tmp_path: Path):
    seq = synthetic_sequence(10)
    bag = write_bag(tmp_path / "bag", seq, "mcap", streams=())
    mcap = next(bag.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    # overwrite the length field of the 6th image message record inside the (uncompressed) chunk
    record = bytes(rosbags_io.typestore().serialize_cdr(
        rosbags_io.image_to_msg(seq[5].image_rgb, "rgb8", seq[5].stamp_ns, "camera"), "sensor_msgs/msg/Image"))
    at = bytes(data).index(record)
    data[at - 31: at - 22] = b"\x05" + (2**40).to_bytes(8, "little")  # opcode + absurd length
    (bag / mcap.name).unlink()
    (bag / mcap.name).write_bytes(bytes(data))
    (bag / "metadata.yaml").unlink()  # as after a killed recorder
    reader = BagFrameReader(bag, topic_selection("/camera/image_raw"))
    frames = list(reader)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert reader.error is not None and "implausible" in reader.error.error


def test_unreadable_bags_fail_clearly(tmp_path: Path, seq):
    with pytest.raises(BagError, match="no such bag"):
        bag_topics(tmp_path / "nothing")
    bag = write_bag(tmp_path / "bag", seq, "sqlite3", streams=())
    db = next(bag.glob("*.db3"))
    db.write_bytes(db.read_bytes()[:600])
    with pytest.raises(BagError, match="cannot open the bag"):
        BagFrameReader(bag, topic_selection("/camera/image_raw"))
    ros1 = write_bag(tmp_path / "r1", seq, "ros1", streams=())
    ros1.write_bytes(ros1.read_bytes()[:5000])
    with pytest.raises(BagError, match="reindex"):
        bag_topics(ros1)


def test_camera_info_sent_once_stays_in_use(tmp_path: Path, seq):
    path = tmp_path / "once"
    io = rosbags_io
    with io.BagWriter(path, storage="mcap") as bag:
        bag.write("/camera/camera_info", io.camera_info_to_msg(seq.intrinsics, seq[0].stamp_ns, "cam"), seq[0].stamp_ns)
        for frame in seq:
            bag.write("/camera/image_raw", io.image_to_msg(frame.image_rgb, "rgb8", frame.stamp_ns, "cam"),
                      frame.stamp_ns)
    reader = BagFrameReader(path, topic_selection("/camera/image_raw", camera_info="/camera/camera_info"),
                            lookahead_s=0.05)  # old stamps are pruned after every frame
    assert [f.camera.intrinsics_K() for f in reader] == [seq.intrinsics] * len(seq)
