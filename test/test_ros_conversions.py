"""msg <-> numpy conversions and the ROS-free helpers of the node (no DDS: messages only)."""
from __future__ import annotations

import math
import threading
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from depth_sfm_ros.geometry import Intrinsics, Pose, backproject_np  # noqa: E402
from depth_sfm_ros.ros import conversions, outputs  # noqa: E402
from depth_sfm_ros.ros.conversions import IMAGE_ENCODINGS, ImageDecodeError  # noqa: E402
from depth_sfm_ros.ros.diagnostics import BAD_INPUT_KINDS, LogThrottle, NodeStats, RateMeter  # noqa: E402
from depth_sfm_ros.ros.sync import CameraInfoCache, LatestSlot, StreamMonitor, intrinsics_for_image  # noqa: E402

RNG = np.random.default_rng(0)


def _random_image(encoding: str, h: int = 5, w: int = 7) -> np.ndarray:
    dtype, channels = IMAGE_ENCODINGS[encoding]
    shape = (h, w) if channels == 1 else (h, w, channels)
    if dtype == np.float32:
        return RNG.normal(size=shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("encoding", sorted(IMAGE_ENCODINGS))
def test_image_round_trip_every_encoding(encoding):
    image = _random_image(encoding)
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = conversions.numpy_to_image_msg(image, encoding, header)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step * msg.height == len(msg.data)
    assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 345
    back = conversions.image_msg_to_numpy(msg)
    assert back.dtype == image.dtype and back.shape == image.shape
    np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize("encoding", ["rgb8", "mono16", "32FC1", "bgra8"])
def test_row_padding_is_skipped(encoding):
    image = _random_image(encoding, 4, 6)
    row = image.reshape(4, -1).view(np.uint8).reshape(4, -1)
    pad = 5
    padded = np.concatenate([row, np.full((4, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=4, width=6, encoding=encoding, step=padded.shape[1], data=padded.tobytes())
    back = conversions.image_msg_to_numpy(msg)
    np.testing.assert_array_equal(back, image)
    assert back.flags.c_contiguous


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_big_endian_data_is_byte_swapped(encoding):
    image = _random_image(encoding, 3, 4)
    big = image.astype(image.dtype.newbyteorder(">"))
    msg = Image(height=3, width=4, encoding=encoding, is_bigendian=1, step=4 * image.dtype.itemsize,
                data=big.tobytes())
    back = conversions.image_msg_to_numpy(msg)
    assert back.dtype == image.dtype  # native order again
    np.testing.assert_array_equal(back, image)
    little = conversions.image_msg_to_numpy(Image(height=3, width=4, encoding=encoding, is_bigendian=0,
                                                  step=msg.step, data=big.tobytes()))
    assert not np.array_equal(little, image)  # the flag matters


def test_view_by_default_copy_on_request():
    msg = conversions.numpy_to_image_msg(_random_image("mono8"), "mono8")
    view = conversions.image_msg_to_numpy(msg)
    copy = conversions.image_msg_to_numpy(msg, copy=True)
    msg.data[0] = (msg.data[0] + 1) % 256
    assert view[0, 0] == msg.data[0] and copy[0, 0] != msg.data[0]


@pytest.mark.parametrize("kind,fields", [
    ("truncated", dict(height=4, width=6, encoding="rgb8", step=18, data=bytes(18 * 4 - 1))),
    ("truncated", dict(height=4, width=6, encoding="rgb8", step=18, data=bytes(18 * 5))),
    ("empty", dict(height=0, width=0, encoding="rgb8", step=0, data=b"")),
    ("empty", dict(height=4, width=6, encoding="rgb8", step=18, data=b"")),
    ("bad_step", dict(height=4, width=6, encoding="rgb8", step=12, data=bytes(48))),
    ("unsupported_encoding", dict(height=4, width=6, encoding="yuv422", step=12, data=bytes(48))),
])
def test_bad_images_raise_a_named_error(kind, fields):
    with pytest.raises(ImageDecodeError) as info:
        conversions.image_msg_to_numpy(Image(**fields))
    assert info.value.kind == kind
    assert str(info.value)  # a readable message


def test_numpy_to_image_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match="rgb8"):
        conversions.numpy_to_image_msg(np.zeros((4, 4), np.uint8), "rgb8")
    with pytest.raises(ValueError, match="dtype"):
        conversions.numpy_to_image_msg(np.zeros((4, 4), np.float64), "32FC1")
    with pytest.raises(ValueError, match="unsupported"):
        conversions.numpy_to_image_msg(np.zeros((4, 4), np.uint8), "nv12")


def test_works_on_rosbags_style_messages():
    """rosbags messages carry data as a numpy uint8 array: the same decoder reads them."""
    image = _random_image("bgr8")

    class BagImage:
        height, width, encoding, is_bigendian, step = 5, 7, "bgr8", 0, 21
        data = image.reshape(-1).copy()

    np.testing.assert_array_equal(conversions.image_msg_to_numpy(BagImage()), image)


@pytest.mark.parametrize("ext,image,encoding", [
    (".png", RNG.integers(0, 255, (6, 8, 3), endpoint=True).astype(np.uint8), "bgr8"),
    (".png", RNG.integers(0, 255, (6, 8), endpoint=True).astype(np.uint8), "mono8"),
    (".png", RNG.integers(0, 65535, (6, 8), endpoint=True).astype(np.uint16), "mono16"),
])
def test_compressed_decoding(ext, image, encoding):
    ok, buf = cv2.imencode(ext, image)
    assert ok
    decoded, got_encoding = conversions.compressed_msg_to_numpy(CompressedImage(format="png", data=buf.tobytes()))
    assert got_encoding == encoding
    np.testing.assert_array_equal(decoded, image)
    ok, jpg = cv2.imencode(".jpg", np.full((16, 16, 3), 100, np.uint8))
    decoded, got_encoding = conversions.compressed_msg_to_numpy(CompressedImage(format="jpeg", data=jpg.tobytes()))
    assert got_encoding == "bgr8" and abs(int(decoded.mean()) - 100) <= 2


def test_compressed_garbage_and_empty():
    with pytest.raises(ImageDecodeError) as info:
        conversions.compressed_msg_to_numpy(CompressedImage(format="jpeg", data=b"not an image at all"))
    assert info.value.kind == "decode_failed"
    with pytest.raises(ImageDecodeError) as info:
        conversions.compressed_msg_to_numpy(CompressedImage(format="jpeg", data=b""))
    assert info.value.kind == "empty"


def test_camera_info_round_trip_and_validation():
    K = Intrinsics(fx=250.0, fy=251.0, cx=159.5, cy=47.25, width=320, height=96)
    header = Header(frame_id="cam")
    msg = conversions.intrinsics_to_camera_info(K, header)
    assert (msg.width, msg.height, msg.header.frame_id) == (320, 96, "cam")
    np.testing.assert_allclose(np.reshape(msg.p, (3, 4))[:, :3], K.K)
    assert len(msg.d) == 5 and not any(msg.d)
    assert conversions.camera_info_to_intrinsics(msg) == K
    with pytest.raises(ValueError, match="camera matrix"):
        conversions.camera_info_to_intrinsics(CameraInfo(width=320, height=96))  # K all zeros
    msg.width = 0
    with pytest.raises(ValueError, match="size"):
        conversions.camera_info_to_intrinsics(msg)


def test_pointcloud2_layout_and_round_trip():
    xyz = RNG.normal(size=(10, 3)).astype(np.float32)
    xyz[3] = np.nan
    rgb = RNG.integers(0, 255, size=(10, 3), endpoint=True).astype(np.uint8)
    msg = conversions.xyzrgb_to_pointcloud2(xyz, rgb, Header(frame_id="cam"))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"]
    assert [f.offset for f in msg.fields] == [0, 4, 8, 12]
    assert all(f.datatype == 7 and f.count == 1 for f in msg.fields)  # FLOAT32
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 9, 16, 144)
    assert msg.is_dense and not msg.is_bigendian and len(msg.data) == 144
    cloud = conversions.pointcloud2_to_numpy(msg)
    keep = np.arange(10) != 3
    np.testing.assert_array_equal(np.stack([cloud["x"], cloud["y"], cloud["z"]], 1), xyz[keep])
    np.testing.assert_array_equal(conversions.unpack_rgb(cloud["rgb"]), rgb[keep])
    # packed as 0x00RRGGBB, the layout rviz's RGB8 transformer reads
    bits = cloud["rgb"].view("<u4")
    assert bits[0] == (int(rgb[0, 0]) << 16) | (int(rgb[0, 1]) << 8) | int(rgb[0, 2])
    with pytest.raises(ValueError, match="uint8"):
        conversions.xyzrgb_to_pointcloud2(xyz, rgb.astype(np.int32))


def test_stamps():
    header = Header()
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000, 123_456_789
    assert conversions.stamp_to_nanoseconds(header.stamp) == 1_700_000_000_123_456_789
    assert conversions.stamp_to_seconds(header.stamp) == pytest.approx(1_700_000_000.123456789, abs=1e-6)


# --- ROS-free helpers of the node ------------------------------------------------------------

def test_latest_slot_keeps_only_the_newest():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was never taken: dropped
    assert slot.take(0.1) == 2
    assert slot.take(0.05) is None
    slot.close()
    assert slot.take(None) is None and slot.put(3) is False


def test_camera_info_cache_matches_by_stamp():
    cache = CameraInfoCache(capacity=3)
    assert cache.lookup(0, 0.01).status == "none"
    assert not cache.received
    Ks = [Intrinsics(fx=100.0 + i, fy=100.0, cx=10.0, cy=5.0, width=20, height=10) for i in range(4)]
    for i, K in enumerate(Ks):
        cache.add(i * 100_000_000, K)  # 0.0, 0.1, 0.2, 0.3 s; the first falls out (capacity 3)
    assert cache.received
    match = cache.lookup(200_001_000, 0.005)
    assert match.status == "synced" and match.intrinsics is Ks[2]
    match = cache.lookup(260_000_000, 0.005)
    assert match.status == "unsynced" and match.intrinsics is Ks[3]
    assert match.offset_s == pytest.approx(0.04)
    assert cache.lookup(0, 0.001).status == "unsynced"


def test_camera_info_cache_waits_for_a_late_camera_info():
    cache = CameraInfoCache()
    K = Intrinsics(fx=100.0, fy=100.0, cx=10.0, cy=5.0, width=20, height=10)
    cache.add(0, K)
    timer = threading.Timer(0.05, cache.add, args=(500_000_000, K))
    timer.start()
    t0 = time.monotonic()
    match = cache.lookup(500_000_000, 0.001, wait_s=5.0)
    assert match.status == "synced" and time.monotonic() - t0 < 4.0
    t0 = time.monotonic()
    assert cache.lookup(900_000_000, 0.001, wait_s=0.1).status == "unsynced"
    assert 0.09 <= time.monotonic() - t0 < 2.0


def test_camera_info_cache_does_not_wait_when_the_camera_is_fixed():
    cache = CameraInfoCache(capacity=4)  # fewer than CONSTANT_AFTER: a full cache is enough
    K = Intrinsics(fx=100.0, fy=100.0, cx=10.0, cy=5.0, width=20, height=10)
    for i in range(3):
        cache.add(i * 100_000_000, K)
    t0 = time.monotonic()  # not full yet: the stream has not shown it is constant, so it waits
    assert cache.lookup(300_000_000, 0.001, wait_s=0.1).status == "unsynced"
    assert time.monotonic() - t0 >= 0.09
    cache.add(300_000_000, K)
    t0 = time.monotonic()  # full of one camera: the newest at once, whatever its own CameraInfo would say
    match = cache.lookup(400_000_000, 0.001, wait_s=5.0)
    assert match.status == "constant" and match.intrinsics is K and time.monotonic() - t0 < 0.05
    assert match.offset_s == pytest.approx(0.1)
    assert cache.lookup(300_000_000, 0.001, wait_s=5.0).status == "synced"  # a match still wins
    zoomed = Intrinsics(fx=150.0, fy=150.0, cx=10.0, cy=5.0, width=20, height=10)
    cache.add(400_000_000, zoomed)  # intrinsics changing: wait for the matching one again
    t0 = time.monotonic()
    match = cache.lookup(500_000_000, 0.001, wait_s=0.1)
    assert match.status == "unsynced" and match.intrinsics is zoomed and time.monotonic() - t0 >= 0.09


def test_intrinsics_follow_a_resized_image():
    K = Intrinsics(fx=200.0, fy=200.0, cx=99.5, cy=49.5, width=200, height=100)
    assert intrinsics_for_image(K, 200, 100) is K
    half = intrinsics_for_image(K, 100, 50)
    assert (half.fx, half.cx, half.width) == (100.0, 49.5, 100)


def test_stream_monitor_events():
    monitor = StreamMonitor()
    assert monitor.check(10, 5, 100) == []
    assert monitor.check(10, 5, 200) == []
    assert monitor.check(20, 10, 300) == ["size_change"]
    assert monitor.check(20, 10, 50) == ["stamp_backwards"]
    assert monitor.check(10, 5, 10) == ["size_change", "stamp_backwards"]


def test_node_stats_counters_rates_and_levels():
    now = [0.0]
    stats = NodeStats(clock=lambda: now[0])
    assert stats.level(1.0)[0] == 1
    for i in range(11):
        now[0] = i * 0.1
        stats.frame_received()
        stats.frame_processed(20.0 + i, {"infer": 3.0}, scale=2.5, scale_valid=True, reset=i == 0)
    stats.frame_dropped(2)
    assert stats.count_bad("truncated") == 1
    assert stats.count_bad("truncated") == 2
    with pytest.raises(KeyError):
        stats.count_bad("cosmic_rays")
    values = dict(stats.key_values())
    assert float(values["input_rate_hz"]) == pytest.approx(10.0)
    assert values["frames_dropped"] == "2" and values["frames_processed"] == "11"
    assert values["bad_input.truncated"] == "2" and values["odometry_resets"] == "1"
    assert float(values["latency_ms_p50"]) == pytest.approx(25.0)
    assert values["scale"] == "2.5" and values["scale_valid"] == "true" and values["timing_ms.infer"] == "3.00"
    assert all(f"bad_input.{k}" in values for k in BAD_INPUT_KINDS)
    assert stats.level(1.0) == (0, "running")
    now[0] = 10.0
    assert stats.level(1.0)[0] == 1


def test_rate_meter_and_log_throttle():
    meter = RateMeter(window_s=1.0)
    for t in (0.0, 0.5, 1.0, 3.0):
        meter.tick(t)
    assert meter.rate_hz(3.0) == 0.0  # one tick left in the window
    now = [0.0]
    throttle = LogThrottle(5.0, clock=lambda: now[0])
    assert throttle.allow("a") and throttle.allow("b") and not throttle.allow("a")
    now[0] = 5.1
    assert throttle.allow("a")


def test_odometry_pose_in_ros_frames():
    """A forward-looking camera that moves 1 m along its optical z is 1 m along base x (REP 103)."""
    T_base_cam = Pose.from_Rt(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float), [0.5, 0.0, 1.2])
    T_camodom_cam = Pose.from_vec([0, 0, 1.0, 0, 0, 0])
    T_odom_base = outputs.odometry_pose(T_camodom_cam, T_base_cam, child_is_base=True)
    np.testing.assert_allclose(T_odom_base.matrix, Pose.from_vec([1.0, 0, 0, 0, 0, 0]).matrix, atol=1e-12)
    # turning right in the image (yaw about optical -y) is a negative yaw about base z
    T_turn = Pose.from_vec([0, 0, 0, 0, 0.1, 0])  # +0.1 rad about optical y (down) = right turn
    yaw = outputs.odometry_pose(T_turn, T_base_cam, True).to_vec()[3:]
    np.testing.assert_allclose(yaw, [0, 0, -0.1], atol=1e-12)
    T_odom_cam = outputs.odometry_pose(T_camodom_cam, T_base_cam, child_is_base=False)
    np.testing.assert_allclose(T_odom_cam.t, [1.5, 0.0, 1.2])  # the camera, seen from the start base pose


def test_body_twist():
    a = Pose.from_vec([1, 2, 3, 0, 0, 0.2])
    b = a @ Pose.from_vec([0.5, 0, 0, 0, 0, 0.1])
    linear, angular = outputs.body_twist(a, b, 0.5)
    np.testing.assert_allclose(linear, [1.0, 0, 0], atol=1e-12)
    np.testing.assert_allclose(angular, [0, 0, 0.2], atol=1e-12)
    assert not np.any(outputs.body_twist(a, b, 0.0)[0])


def test_colored_points_decimation_and_colours():
    K = Intrinsics(fx=10.0, fy=10.0, cx=3.5, cy=2.5, width=8, height=6)
    depth = np.full((6, 8), 2.0, np.float32)
    depth[0, 0] = np.nan
    image = np.zeros((12, 16, 3), np.uint8)
    image[..., 0] = 200  # red, at twice the depth size
    xyz, rgb = outputs.colored_points(depth, K, image, decimation=2)
    assert xyz.shape == (3 * 4 - 1, 3) and xyz.dtype == np.float32
    np.testing.assert_allclose(xyz, backproject_np(depth, K)[::2, ::2].reshape(-1, 3)[1:])
    assert np.all(rgb == [200, 0, 0])
    with pytest.raises(ValueError):
        outputs.colored_points(depth, K, None, 0)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
def test_to_rgb8(encoding):
    rgb = np.array([[[10, 20, 30]]], np.uint8)
    image = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "rgba8": np.concatenate([rgb, [[[255]]]], -1),
             "bgra8": np.concatenate([rgb[..., ::-1], [[[255]]]], -1), "mono8": rgb[..., 0],
             "mono16": rgb[..., 0].astype(np.uint16) << 8}[encoding]
    out = outputs.to_rgb8(image, encoding)
    expected = [10, 10, 10] if encoding.startswith("mono") else [10, 20, 30]
    assert out.shape == (1, 1, 3) and out[0, 0].tolist() == expected


def test_math_sanity_of_default_camera_to_base():
    from depth_sfm_ros.ros.params import PARAMETERS_BY_NAME
    from depth_sfm_ros.geometry import euler_to_matrix

    R = euler_to_matrix(*PARAMETERS_BY_NAME["camera_to_base_rpy"].default)
    np.testing.assert_allclose(R @ [0, 0, 1], [1, 0, 0], atol=1e-12)  # optical z -> base x (forward)
    np.testing.assert_allclose(R @ [1, 0, 0], [0, -1, 0], atol=1e-12)  # optical x (right) -> -y
    np.testing.assert_allclose(R @ [0, 1, 0], [0, 0, -1], atol=1e-12)  # optical y (down) -> -z
    assert math.isclose(float(np.linalg.det(R)), 1.0)


def test_speed_cache_matches_by_stamp_and_refuses_bad_speeds():
    from depth_sfm_ros.ros.sync import SpeedCache

    cache = SpeedCache(capacity=3)
    assert cache.speed_at(0, 1.0) is None
    for i, speed in enumerate([1.0, 2.0, 3.0, 4.0]):  # the oldest falls out
        cache.add(i * 100_000_000, speed)
    assert cache.speed_at(290_000_000, 0.02) == 4.0
    assert cache.speed_at(120_000_000, 0.05) == 2.0
    assert cache.speed_at(0, 0.05) is None  # 1.0 was evicted; 2.0 is 0.1 s away
    assert cache.speed_at(1_000_000_000, 0.05) is None
    for bad in (float("nan"), float("inf"), -0.1):
        with pytest.raises(ValueError, match="finite and >= 0"):
            cache.add(400_000_000, bad)
    assert cache.speed_at(400_000_000, 0.0) is None  # nothing stored
    cache.clear()
    assert cache.speed_at(300_000_000, 1.0) is None
    # an image whose odometry comes just after it: waited for, up to wait_s
    threading.Timer(0.05, cache.add, (500_000_000, 5.0)).start()
    t0 = time.monotonic()
    assert cache.speed_at(500_000_000, 0.01, wait_s=2.0) == 5.0
    assert time.monotonic() - t0 < 1.0
    # a newer odometry already arrived (none at the image stamp): no wait
    t0 = time.monotonic()
    assert cache.speed_at(450_000_000, 0.01, wait_s=2.0) is None and time.monotonic() - t0 < 0.5
