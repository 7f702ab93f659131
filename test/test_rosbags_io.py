"""rosbag2 helpers: message builders/parsers per encoding and real bag round trips (mcap, sqlite3)."""
from __future__ import annotations

import numpy as np
import pytest

from depth_sfm_ros.bag import rosbags_io as rio
from depth_sfm_ros.geometry import Intrinsics, Pose
from depth_sfm_ros.synth import SynthConfig, read_rosbag, render_sequence, write_rosbag

STAMP_NS = 1_700_000_123_456_789_012
RNG = np.random.default_rng(0)


def _cdr_round_trip(msg):
    """Serialise to CDR and back, as a bag or DDS would."""
    store = rio.typestore()
    return store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


@pytest.mark.parametrize("encoding,array", [
    ("rgb8", RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)),
    ("bgr8", RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)),
    ("rgba8", RNG.integers(0, 256, (4, 6, 4), dtype=np.uint8)),
    ("mono8", RNG.integers(0, 256, (5, 7), dtype=np.uint8)),
    ("mono16", RNG.integers(0, 65536, (5, 7), dtype=np.uint16)),
    ("16UC1", RNG.integers(0, 65536, (3, 9), dtype=np.uint16)),
    ("32FC1", np.array([[1.5, np.nan, 80.25], [0.001, np.inf, -2.0]], dtype=np.float32)),
])
def test_image_builders_round_trip(encoding, array):
    msg = rio.image_to_msg(array, encoding, STAMP_NS, "cam")
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (array.shape[0], array.shape[1], encoding, 0)
    assert msg.step == array.shape[1] * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    back = rio.msg_to_image(_cdr_round_trip(msg))
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)  # NaN positions compare equal too
    assert rio.time_to_ns(msg.header.stamp) == STAMP_NS and msg.header.frame_id == "cam"


def test_image_parser_handles_row_padding_and_big_endian():
    depth_mm = np.array([[1, 2, 3], [400, 500, 65535]], dtype=np.uint16)
    rows = depth_mm.astype(">u2").view(np.uint8).reshape(2, 6)
    padded = np.concatenate([rows, np.full((2, 2), 0xAB, np.uint8)], axis=1)  # step 8 > 6
    msg = rio.image_to_msg(depth_mm, "16UC1", 0, "cam")
    msg.is_bigendian, msg.step, msg.data = 1, 8, padded.reshape(-1)
    np.testing.assert_array_equal(rio.msg_to_image(msg), depth_mm)
    msg.step = 4  # shorter than a row
    with pytest.raises(ValueError, match="step"):
        rio.msg_to_image(msg)


def test_image_builder_rejects_bad_input():
    with pytest.raises(ValueError, match="dtype"):
        rio.image_to_msg(np.zeros((4, 4), np.float64), "32FC1", 0, "cam")
    with pytest.raises(ValueError, match="shape"):
        rio.image_to_msg(np.zeros((4, 4), np.uint8), "rgb8", 0, "cam")
    with pytest.raises(ValueError, match="unsupported"):
        rio.image_to_msg(np.zeros((4, 4), np.uint8), "yuv422", 0, "cam")
    with pytest.raises(ValueError, match=">= 0"):
        rio.image_to_msg(np.zeros((4, 4), np.uint8), "mono8", -1, "cam")


def test_compressed_image_png_is_lossless_and_jpeg_close():
    image = (np.indices((24, 32)).sum(0)[..., None] * np.array([3, 5, 7])).astype(np.uint8)
    png = _cdr_round_trip(rio.compressed_image_to_msg(image, STAMP_NS, "cam", fmt="png"))
    assert png.format == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(rio.compressed_msg_to_image(png), image)
    jpeg = rio.compressed_image_to_msg(image, STAMP_NS, "cam", fmt="jpeg")
    assert "jpeg" in jpeg.format
    assert np.abs(rio.compressed_msg_to_image(jpeg).astype(int) - image).mean() < 6
    with pytest.raises(ValueError, match="png"):
        rio.compressed_image_to_msg(image, 0, "cam", fmt="webp")


def test_camera_info_round_trip():
    K = Intrinsics(fx=371.2, fy=368.64, cx=319.5, cy=95.5, width=640, height=192)
    msg = _cdr_round_trip(rio.camera_info_to_msg(K, STAMP_NS, "cam_optical"))
    assert msg.distortion_model == "plumb_bob" and msg.header.frame_id == "cam_optical"
    np.testing.assert_allclose(np.asarray(msg.p).reshape(3, 4)[:, :3], K.K)
    assert rio.msg_to_camera_model(msg).intrinsics_P() == K == rio.msg_to_camera_model(msg).intrinsics_K()
    msg.p = np.zeros(12)  # P unset
    assert rio.msg_to_camera_model(msg).P is None


def test_odometry_and_tf_round_trip():
    T = Pose.from_vec([1.0, -2.0, 3.5, 0.1, -0.4, 0.7])
    odom = _cdr_round_trip(rio.odometry_to_msg(T, STAMP_NS, "odom", "camera_optical_frame",
                                               linear_mps=[8.0, 0, 0.1], angular_radps=[0, 0.02, 0]))
    assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "camera_optical_frame")
    np.testing.assert_allclose(rio.odometry_msg_to_pose(odom).matrix, T.matrix, atol=1e-12)
    assert odom.twist.twist.linear.x == 8.0 and odom.twist.twist.angular.y == 0.02
    tf = _cdr_round_trip(rio.tf_message([rio.transform_stamped_to_msg(T, STAMP_NS, "odom", "cam"),
                                         rio.transform_stamped_to_msg(T.inverse(), STAMP_NS, "cam", "odom")]))
    assert [t.child_frame_id for t in tf.transforms] == ["cam", "odom"]
    np.testing.assert_allclose(rio.transform_msg_to_pose(tf.transforms[1]).matrix, T.inverse().matrix, atol=1e-12)
    with pytest.raises(TypeError):
        rio.odometry_to_msg(T.matrix, 0, "odom", "cam")


@pytest.fixture(scope="module")
def small_sequence():
    return render_sequence(SynthConfig(seed=11, width=64, height=32, num_frames=3))


@pytest.mark.parametrize("storage,suffix", [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_synthetic_bag_round_trip(tmp_path, small_sequence, storage, suffix):
    from rosbags.highlevel import AnyReader
    seq = small_sequence
    path = tmp_path / f"bag_{storage}"
    result = write_rosbag(seq.frames, seq.intrinsics, path, storage=storage, compressed=True,
                          camera_frame_id="cam_opt", odom_frame_id="odom")
    assert result.num_frames == 3 and any(p.suffix == suffix for p in path.iterdir())
    expected_types = {"/camera/image_raw": rio.MSG_IMAGE, "/camera/image_raw/compressed": rio.MSG_COMPRESSED_IMAGE,
                      "/camera/camera_info": rio.MSG_CAMERA_INFO, "/gt/depth": rio.MSG_IMAGE,
                      "/gt/dynamic_mask": rio.MSG_IMAGE, "/gt/odom": rio.MSG_ODOMETRY}
    stamps = [f.stamp_ns for f in seq.frames]
    with AnyReader([path]) as reader:  # messages definitions come from the bag itself
        assert {c.topic: c.msgtype for c in reader.connections} == expected_types
        for conn, bag_ns, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            assert rio.time_to_ns(msg.header.stamp) == bag_ns and bag_ns in stamps
        assert reader.message_count == 3 * len(expected_types)
    assert {t: n for t, (_, n) in rio.bag_topics(path).items()} == {t: 3 for t in expected_types}
    frames = read_rosbag(path)
    assert [f.stamp_ns for f in frames] == stamps
    T0_inv = seq[0].T_world_cam.inverse()
    for got, want in zip(frames, seq.frames):
        np.testing.assert_array_equal(got.image_rgb, want.image_rgb)
        np.testing.assert_array_equal(got.depth_m, want.depth_m)
        np.testing.assert_array_equal(got.dynamic_mask, want.dynamic_mask)
        assert got.intrinsics == seq.intrinsics
        np.testing.assert_allclose(got.T_odom_cam.matrix, (T0_inv @ want.T_world_cam).matrix, atol=1e-9)
        assert set(got.frame_ids.values()) == {"cam_opt"} | ({"odom"} if "/gt/odom" in got.frame_ids else set())
        assert got.frame_ids["/gt/odom"] == "odom" and got.frame_ids["odom_child"] == "cam_opt"
    np.testing.assert_allclose(frames[0].T_odom_cam.matrix, np.eye(4), atol=1e-12)
    odoms = [m for _, _, m in rio.read_messages(path, ["/gt/odom"])]
    dt_s = (stamps[1] - stamps[0]) * 1e-9
    T_0_1 = seq[0].T_world_cam.inverse() @ seq[1].T_world_cam
    v = odoms[1].twist.twist.linear  # camera velocity in the camera frame: mostly +z (forward)
    np.testing.assert_allclose([v.x, v.y, v.z], T_0_1.R.T @ T_0_1.t / dt_s, atol=1e-9)
    assert 5.0 < v.z < 12.0 and odoms[0].twist.twist.linear.z == 0.0
    compressed = [rio.compressed_msg_to_image(m) for _, _, m in
                  rio.read_messages(path, ["/camera/image_raw/compressed"])]
    np.testing.assert_array_equal(compressed[1], seq[1].image_rgb)


def test_bag_writer_refuses_existing_path_and_bad_storage(tmp_path):
    with pytest.raises(ValueError, match="storage"):
        rio.BagWriter(tmp_path / "x", storage="db")
    with pytest.raises(FileExistsError):
        rio.BagWriter(tmp_path, storage="mcap")
    with rio.BagWriter(tmp_path / "b", storage="sqlite3") as bag:
        bag.write("/t", rio.image_to_msg(np.zeros((2, 2), np.uint8), "mono8", 5, "c"), 5)
        with pytest.raises(TypeError, match="carries"):
            bag.write("/t", rio.tf_message([]), 6)
    with pytest.raises(FileNotFoundError):
        list(rio.read_messages(tmp_path / "missing"))
