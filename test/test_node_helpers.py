"""The node's ROS-free helpers (no rclpy, no message types): LatestSlot / CameraInfoCache / SpeedCache
(ros/sync.py), counters and throttling (ros/diagnostics.py), odometry frames and point colours
(ros/outputs.py). They run where ROS is not installed; the per-frame policy (twist, CameraInfo wait) is in
test_frame_policy.py, the message layer in test_msgs.py / test_ros_conversions.py."""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from depth_sfm_ros.geometry import Intrinsics, Pose, backproject_np
from depth_sfm_ros.geometry.camera_model import CameraModel
from depth_sfm_ros.ros import outputs
from depth_sfm_ros.ros.diagnostics import BAD_INPUT_KINDS, LogThrottle, NodeStats, RateMeter
from depth_sfm_ros.ros.sync import CameraInfoCache, LatestSlot

RNG = np.random.default_rng(0)


def test_latest_slot_keeps_only_the_newest():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was never taken: dropped
    assert slot.take(0.1) == 2
    assert slot.take(0.05) is None
    slot.close()
    assert slot.take(None) is None and slot.put(3) is False


def _camera(fx: float, fy: float = 100.0) -> CameraModel:
    """A pinhole 20 x 10 camera model (what the CameraInfo cache holds)."""
    return CameraModel.from_intrinsics(Intrinsics(fx=fx, fy=fy, cx=10.0, cy=5.0, width=20, height=10))


def test_camera_info_cache_matches_by_stamp():
    cache = CameraInfoCache(capacity=3)
    assert cache.lookup(0, 0.01).status == "none"
    assert not cache.received
    Ks = [_camera(fx=100.0 + i) for i in range(4)]
    for i, K in enumerate(Ks):
        cache.add(i * 100_000_000, K)  # 0.0, 0.1, 0.2, 0.3 s; the first falls out (capacity 3)
    assert cache.received
    match = cache.lookup(200_001_000, 0.005)
    assert match.status == "synced" and match.camera is Ks[2]
    match = cache.lookup(260_000_000, 0.005)
    assert match.status == "unsynced" and match.camera is Ks[3]
    assert match.offset_s == pytest.approx(0.04)
    assert cache.lookup(0, 0.001).status == "unsynced"


def test_camera_info_cache_waits_for_a_late_camera_info():
    cache = CameraInfoCache()
    K = _camera(fx=100.0)
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
    K = _camera(fx=100.0)
    for i in range(3):
        cache.add(i * 100_000_000, K)
    t0 = time.monotonic()  # not full yet: the stream has not shown it is constant, so it waits
    assert cache.lookup(300_000_000, 0.001, wait_s=0.1).status == "unsynced"
    assert time.monotonic() - t0 >= 0.09
    cache.add(300_000_000, K)
    t0 = time.monotonic()  # full of one camera: the newest at once, whatever its own CameraInfo would say
    match = cache.lookup(400_000_000, 0.001, wait_s=5.0)
    assert match.status == "constant" and match.camera is K and time.monotonic() - t0 < 0.05
    assert match.offset_s == pytest.approx(0.1)
    assert cache.lookup(300_000_000, 0.001, wait_s=5.0).status == "synced"  # a match still wins
    zoomed = _camera(fx=150.0, fy=150.0)
    cache.add(400_000_000, zoomed)  # calibration changing: wait for the matching one again
    t0 = time.monotonic()
    match = cache.lookup(500_000_000, 0.001, wait_s=0.1)
    assert match.status == "unsynced" and match.camera is zoomed and time.monotonic() - t0 >= 0.09


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
