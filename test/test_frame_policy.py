"""The node's per-frame policy without ROS (ros/frame_policy.py): image checks in the callback, the mailbox,
CameraInfo wait and fallback, real camera models (undistortion of raw distorted cameras, P of rectified
topics, unsupported models), the external speed, odometry twist and covariance over dt, the node's stage
times and the counters. Messages are plain namespaces with the sensor_msgs fields (what the duck-typed
message layer reads); the Pipeline is the real one over a stub backend (no networks, no torch, no rclpy)."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from depth_sfm_ros import msgs
from depth_sfm_ros.geometry import Intrinsics, Pose, twist_in_current_frame
from depth_sfm_ros.geometry.camera_model import CameraModel, map_cache_info, resolve_input
from depth_sfm_ros.ros import params
from depth_sfm_ros.ros.frame_policy import FramePolicy, odometry_twist
from depth_sfm_ros.runtime.backends import Backend, BackendOutput
from depth_sfm_ros.runtime.model_card import ModelCard
from depth_sfm_ros.runtime.motion_gate import MotionGateConfig
from depth_sfm_ros.runtime.pipeline import Pipeline, PipelineConfig

NET_H, NET_W = 32, 64
CAM_H, CAM_W = 48, 96
K_CAM = Intrinsics(fx=80.0, fy=80.0, cx=47.5, cy=23.5, width=CAM_W, height=CAM_H)
STEP_M = 0.5  # the stub's forward motion per frame (network units = metres with scale_mode fixed 1)
SHA = "0" * 64


class StubBackend(Backend):
    """Constant depth 10, a fixed forward step with a small yaw, no mask."""

    name = "stub"

    def __init__(self) -> None:
        self.card = ModelCard(input_height=NET_H, input_width=NET_W, min_depth=0.1, max_depth=100.0, encoder="stub",
                              files={"depth.onnx": SHA, "pose.onnx": SHA}, intrinsics_normalized=[0.8, 1.6, 0.5, 0.5])

    def _infer(self, image_cur, image_prev):
        depth = np.full((NET_H, NET_W), 10.0, np.float32)
        pose = None if image_prev is None else np.array([0.0, 0.0, STEP_M, 0.0, 0.05, 0.0])
        return BackendOutput(disparity=depth * 0.0 + 0.1, depth=depth, pose_vec=pose, dynamic_prob=None)


def _params(**overrides) -> params.NodeParams:
    values = {"scale_mode": "fixed", "fixed_scale": 1.0, "still_detection": False, "camera_info_wait_s": 0.02,
              "log_throttle_s": 0.0, "base_frame": "", **overrides}
    return params.validate(values, check_model_files=False)


class RecordingPipeline(Pipeline):
    """The real Pipeline, keeping a copy of what each call was given (image, intrinsics)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[np.ndarray, Intrinsics | None]] = []

    def process(self, image, encoding, stamp_s, intrinsics=None, **kwargs):
        self.calls.append((np.array(image, copy=True), intrinsics))
        return super().process(image, encoding, stamp_s, intrinsics, **kwargs)


def _policy(image_topic: str = "/cam/image_raw", **overrides) -> tuple[FramePolicy, list[tuple[str, str]]]:
    p = _params(**overrides)
    config = PipelineConfig(scale_mode=p.scale_mode, fixed_scale=p.fixed_scale, min_depth_m=0.1, max_depth_m=80.0,
                            motion_gate=MotionGateConfig(enabled=False))
    lines: list[tuple[str, str]] = []
    logger = SimpleNamespace(info=lambda text: lines.append(("info", text)),
                             warning=lambda text: lines.append(("warning", text)))
    return FramePolicy(p, RecordingPipeline(config, backend=StubBackend()), logger,
                       camera_info_topic="/cam/camera_info", external_odometry_topic="/wheel/odom",
                       image_topic=image_topic), lines


def _header(stamp_ns: int, frame_id: str = "cam") -> SimpleNamespace:
    return SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id)


def _image(stamp_ns: int, width: int = CAM_W, height: int = CAM_H, encoding: str = "rgb8", seed: int = 0,
           **fields) -> SimpleNamespace:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    msg = SimpleNamespace(header=_header(stamp_ns), height=height, width=width, encoding=encoding, is_bigendian=0,
                          step=width * 3, data=pixels.tobytes())
    msg.__dict__.update(fields)
    return msg


def _camera_info(stamp_ns: int, intrinsics: Intrinsics = K_CAM) -> SimpleNamespace:
    P = np.zeros((3, 4))
    P[:, :3] = intrinsics.K
    return SimpleNamespace(header=_header(stamp_ns), width=intrinsics.width, height=intrinsics.height,
                           distortion_model="plumb_bob", d=np.zeros(5), k=intrinsics.K.ravel(), r=np.eye(3).ravel(),
                           p=P.ravel())


def _run(policy: FramePolicy, msg, compressed: bool = False):
    """offer -> take -> process -> finish, as the node's callback and worker do."""
    if not policy.offer(msg, compressed):
        return None
    frame = policy.take(0.0)
    output = policy.process(frame)
    if output is not None:
        policy.finish(output, ("~/depth", "~/odometry"))
    return output


def _values(policy: FramePolicy) -> dict[str, str]:
    return dict(policy.stats.key_values())


def test_bad_images_are_counted_in_the_callback_and_never_queued():
    policy, lines = _policy()
    assert not policy.offer(_image(1, encoding="32FC1"), False)
    assert not policy.offer(_image(2, data=b"\x00" * 10), False)
    assert not policy.offer(_image(3, step=CAM_W * 3 - 1), False)
    assert not policy.offer(SimpleNamespace(header=_header(4), format="jpeg", data=b""), True)
    assert policy.take(0.0) is None
    values = _values(policy)
    assert [values[f"bad_input.{k}"] for k in ("unsupported_encoding", "truncated", "bad_step", "empty")] == ["1"] * 4
    assert values["frames_received"] == "4" and values["frames_processed"] == "0"
    assert sum("[unsupported_encoding, 1 so far]" in text for _, text in lines) == 1


def test_an_overwritten_frame_counts_as_dropped():
    policy, _ = _policy()
    assert policy.offer(_image(1_000_000_000), False) and policy.offer(_image(1_100_000_000), False)
    assert policy.take(0.0).stamp_ns == 1_100_000_000
    assert _values(policy)["frames_dropped"] == "1"


def test_camera_info_fallback_then_synced_then_scaled_by_the_pipeline():
    policy, lines = _policy(fx=70.0)  # fallback intrinsics from the parameters while no CameraInfo came
    first = _run(policy, _image(1_000_000_000))
    assert first.result.intrinsics == Intrinsics(fx=70.0, fy=70.0, cx=(CAM_W - 1) / 2, cy=(CAM_H - 1) / 2,
                                                 width=CAM_W, height=CAM_H).scaled(NET_W, NET_H)
    assert _values(policy)["bad_input.missing_camera_info"] == "1"
    assert [text for _, text in lines if "no CameraInfo" in text] == [
        "no CameraInfo on '/cam/camera_info' yet: using the fx/fy/cx/cy parameters"]
    # a full-resolution CameraInfo for a half-size image: the Pipeline scales it (binned stream)
    full = K_CAM.scaled(2 * CAM_W, 2 * CAM_H)
    policy.add_camera_info(_camera_info(1_100_000_000, full))
    second = _run(policy, _image(1_100_000_000))
    assert second.result.intrinsics == full.scaled(NET_W, NET_H)
    # an image whose CameraInfo is far away in time: the newest is used and counted
    third = _run(policy, _image(1_200_000_000))
    assert third is not None and _values(policy)["bad_input.camera_info_unsynced"] == "1"
    # a bad CameraInfo is refused in the callback
    bad = _camera_info(1_300_000_000, full)
    bad.k = np.zeros(9)
    policy.add_camera_info(bad)
    assert _values(policy)["bad_input.bad_camera_info"] == "1"


def test_external_speed_by_stamp_and_bad_odometry():
    policy, lines = _policy(scale_mode="external", external_odometry_wait_s=0.0)

    def odometry(stamp_ns, vx):
        return SimpleNamespace(header=_header(stamp_ns), twist=SimpleNamespace(
            twist=SimpleNamespace(linear=SimpleNamespace(x=vx, y=0.0, z=0.0))))

    policy.add_external_odometry(odometry(1_000_000_000, float("nan")))
    assert _values(policy)["bad_input.bad_external_odometry"] == "1"
    assert policy._external_speed(1_000_000_000) is None  # nothing within the tolerance: scale kept, counted
    assert _values(policy)["bad_input.no_external_speed"] == "1"
    assert any("no odometry on '/wheel/odom'" in text for _, text in lines)
    policy.add_external_odometry(odometry(1_010_000_000, 3.0))
    assert policy._external_speed(1_000_000_000) == 3.0


def test_odometry_twist_is_in_the_current_frame_with_covariance_over_dt():
    a = Pose.from_vec([1, 2, 3, 0, 0, 0.2])
    b = a @ Pose.from_vec([0.5, 0, 0, 0, 0, 0.1])
    covariance = tuple(float(i) for i in range(36))
    linear, angular, twist_cov = odometry_twist(a, b, 0.5, covariance)
    expected_linear, expected_angular = twist_in_current_frame(a.inverse() @ b, 0.5)  # as the bag writers record
    np.testing.assert_allclose(linear, expected_linear, atol=1e-12)
    np.testing.assert_allclose(linear, [np.cos(0.1), -np.sin(0.1), 0.0], atol=1e-12)  # the step seen from b
    np.testing.assert_allclose(angular, [0, 0, 0.2], atol=1e-12)
    assert twist_cov == tuple(v / 0.25 for v in covariance)
    linear, angular, twist_cov = odometry_twist(a, b, 0.0, covariance)
    assert not np.any(linear) and not np.any(angular) and twist_cov == (-1.0,) + (0.0,) * 35


def test_published_odometry_of_a_frame_sequence():
    policy, _ = _policy(position_variance=0.01, orientation_variance=0.02)
    outputs = [_run(policy, _image(1_000_000_000 + i * 100_000_000, seed=i)) for i in range(3)]
    first, second, third = (o.odometry for o in outputs)
    assert first.twist_covariance[0] == -1.0 and not np.any(first.linear_mps)
    assert first.child_frame_id == "cam"  # base_frame '' -> the camera frame
    # the child moved by T_prev_cur between frames 0.1 s apart: its twist in its own (current) frame
    T_prev_cur = second.T_odom_child.inverse() @ third.T_odom_child
    linear, angular = twist_in_current_frame(T_prev_cur, 0.1)
    np.testing.assert_allclose(third.linear_mps, linear, atol=1e-9)
    np.testing.assert_allclose(third.angular_radps, angular, atol=1e-9)
    assert third.pose_covariance == policy.params.pose_covariance and third.pose_covariance[0] == 0.01
    assert third.twist_covariance == pytest.approx(tuple(v / 0.1 ** 2 for v in third.pose_covariance))
    values = _values(policy)
    assert values["frames_processed"] == "3" and values["odometry_resets"] == "1"
    for stage in ("node_queued", "node_decode", "node_camera_info_wait", "node_pipeline", "node_publish", "infer"):
        assert float(values[f"timing_ms.{stage}"]) >= 0.0, stage


def test_continuity_reset_codes_from_the_pipeline_are_counted_once():
    policy, _ = _policy()
    _run(policy, _image(2_000_000_000))
    _run(policy, _image(2_100_000_000, width=CAM_W // 2, height=CAM_H // 2))
    backwards = _run(policy, _image(1_000_000_000, width=CAM_W // 2, height=CAM_H // 2))
    repeated = _run(policy, _image(1_000_000_000, width=CAM_W // 2, height=CAM_H // 2))
    assert backwards.result.reset_code == "stamp_backwards" and repeated.result.reset_code == "stamp_repeated"
    values = _values(policy)
    assert values["bad_input.size_change"] == "1" and values["bad_input.stamp_backwards"] == "1"
    assert values["odometry_resets"] == "4"
    assert repeated.odometry.twist_covariance[0] == -1.0  # odometry restarted: no twist


def test_compressed_frames_decode_with_the_message_layer():
    import cv2

    policy, _ = _policy()
    pixels = np.random.default_rng(1).integers(0, 256, (CAM_H, CAM_W, 3), dtype=np.uint8)
    msg = SimpleNamespace(header=_header(1_000_000_000), format="png", data=cv2.imencode(".png", pixels)[1].tobytes())
    output = _run(policy, msg, compressed=True)
    assert output.encoding == "bgr8"
    np.testing.assert_array_equal(output.image, pixels)
    assert _run(policy, SimpleNamespace(header=_header(1_100_000_000), format="png", data=b"garbage"), True) is None
    assert _values(policy)["bad_input.decode_failed"] == "1"


def test_missing_frame_id_and_failed_frames_are_counted_and_logged():
    policy, lines = _policy()
    msg = _image(1_000_000_000)
    msg.header.frame_id = ""
    assert _run(policy, msg) is None
    assert _values(policy)["bad_input.missing_frame_id"] == "1"
    for attempt in range(2):
        try:
            raise RuntimeError(f"backend broke {attempt}")
        except RuntimeError as exc:
            policy.frame_failed(exc)
    failed = [text for _, text in lines if text.startswith("frame failed: ")]
    assert len(failed) == 2 and "Traceback" in failed[0] and failed[1].startswith("frame failed: backend broke 1")
    assert _values(policy)["bad_input.pipeline_error"] == "2"


def test_a_python_logger_works_as_the_node_logger(caplog):
    p = _params()
    policy = FramePolicy(p, Pipeline(PipelineConfig(motion_gate=MotionGateConfig(enabled=False)),
                                     backend=StubBackend()), logging.getLogger("test_frame_policy"))
    with caplog.at_level(logging.INFO, logger="test_frame_policy"):
        assert not policy.offer(_image(1, encoding="yuv422"), False)
    assert "unsupported image encoding 'yuv422'" in caplog.text


# --- real camera models (geometry.camera_model through the node's frame path) ----------------------------------
P_RECT = [[52.0, 0.0, 46.0, 0.0], [0.0, 53.0, 24.5, 0.0], [0.0, 0.0, 1.0, 0.0]]  # image_proc's rectified camera
RAW_CAMERAS = {  # distortion model -> (D, P): a raw driver's calibration of the CAM_W x CAM_H camera
    "plumb_bob": ([-0.28, 0.09, 0.002, -0.0015, -0.01], P_RECT),
    "equidistant": ([0.08, -0.02, 0.004, -0.001], P_RECT),
    "equidistant_no_p": ([0.08, -0.02, 0.004, -0.001], None),
}


def _raw_camera(name: str, width: int = CAM_W, height: int = CAM_H) -> CameraModel:
    D, P = RAW_CAMERAS[name]
    K = [[60.0, 0.0, 47.2], [0.0, 61.0, 23.8], [0.0, 0.0, 1.0]]
    model = CameraModel.from_fields(CAM_W, CAM_H, K, D, name.replace("_no_p", ""), P=P, frame_id="cam")
    return model if (width, height) == model.size else model.scaled(width, height)


def _model_info(stamp_ns: int, model: CameraModel) -> SimpleNamespace:
    """A CameraInfo carrying ``model`` as a camera driver publishes it (ROS 2 field names)."""
    return SimpleNamespace(header=_header(stamp_ns), **msgs.camera_model_fields(model))


def _pixels(msg) -> np.ndarray:
    return np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)


@pytest.mark.parametrize("name", sorted(RAW_CAMERAS))
def test_a_raw_distorted_camera_is_undistorted_and_depth_published_in_the_rectified_geometry(name):
    """image_raw + a CameraInfo with D != 0: the Pipeline gets exactly resolve_input(...).prepare(raw) and the
    rectified intrinsics (P, or OpenCV's optimal matrix when P is unset), the frame output carries that image
    (point colours), and ~/depth/camera_info is D = 0, R = I, K = the rectified camera at the depth size."""
    model = _raw_camera(name)
    expected = resolve_input(model, rectified=False)
    policy, lines = _policy()
    builds_before = map_cache_info()["builds"]
    policy.add_camera_info(_model_info(1_000_000_000, model))
    msg = _image(1_000_000_000)
    output = _run(policy, msg)
    image, intrinsics = policy.pipeline.calls[0]
    assert expected.remaps and np.array_equal(image, expected.prepare(_pixels(msg)))
    assert not np.array_equal(image, _pixels(msg))
    assert intrinsics == expected.intrinsics
    if RAW_CAMERAS[name][1] is not None:
        np.testing.assert_array_equal(intrinsics.K, np.array(P_RECT)[:, :3])
    else:
        assert intrinsics != model.intrinsics_K()
    np.testing.assert_array_equal(output.image, image)
    assert output.result.intrinsics == expected.intrinsics.scaled(NET_W, NET_H)
    info = msgs.camera_info_fields(output.result.intrinsics)  # what the node publishes as ~/depth/camera_info
    assert (info["width"], info["height"]) == (NET_W, NET_H) and not np.any(info["d"])
    np.testing.assert_array_equal(info["r"], np.eye(3).ravel())
    np.testing.assert_allclose(info["k"].reshape(3, 3), expected.intrinsics.scaled(NET_W, NET_H).K)
    np.testing.assert_array_equal(info["p"].reshape(3, 4)[:, :3], info["k"].reshape(3, 3))
    # the next frame: same calibration, no new decision, no new remap tables
    policy.add_camera_info(_model_info(1_100_000_000, model))
    second = _run(policy, _image(1_100_000_000, seed=1))
    assert second.result.intrinsics == output.result.intrinsics
    assert map_cache_info()["builds"] - builds_before <= 1
    decisions = [text for _, text in lines if "undistorting every image" in text]
    assert len(decisions) == 1 and "camera 'cam' (/cam/camera_info)" in decisions[0]
    values = _values(policy)
    assert values["frames_processed"] == "2" and float(values["timing_ms.node_undistort"]) >= 0.0


def test_a_full_size_distorted_camera_info_is_scaled_to_a_binned_image():
    full = _raw_camera("plumb_bob", 2 * CAM_W, 2 * CAM_H)
    policy, _ = _policy()
    policy.add_camera_info(_model_info(1_000_000_000, full))
    msg = _image(1_000_000_000)
    _run(policy, msg)
    expected = resolve_input(full.scaled(CAM_W, CAM_H), rectified=False)
    image, intrinsics = policy.pipeline.calls[0]
    assert intrinsics == expected.intrinsics and np.array_equal(image, expected.prepare(_pixels(msg)))


def test_a_rectified_topic_uses_p_without_remapping_and_camera_input_overrides_the_name():
    model = _raw_camera("plumb_bob")
    rect, _ = _policy(image_topic="/cam/image_rect")
    rect.add_camera_info(_model_info(1_000_000_000, model))
    msg = _image(1_000_000_000)
    _run(rect, msg)
    image, intrinsics = rect.pipeline.calls[0]
    assert np.array_equal(image, _pixels(msg)) and intrinsics == model.intrinsics_P()
    # the parameter wins over the topic's name, both ways
    forced_rect, _ = _policy(image_topic="/cam/image_raw", camera_input="rectified")
    forced_raw, _ = _policy(image_topic="/cam/image_rect_color", camera_input="raw")
    for policy in (forced_rect, forced_raw):
        policy.add_camera_info(_model_info(1_000_000_000, model))
        _run(policy, _image(1_000_000_000))
    assert forced_rect.pipeline.calls[0][1] == model.intrinsics_P()
    assert not np.array_equal(forced_raw.pipeline.calls[0][0], _pixels(msg))
    assert forced_raw.pipeline.calls[0][1] == resolve_input(model, rectified=False).intrinsics
    # a camera whose P is unset on a rectified topic: K, and the log line says so
    no_p = CameraModel.from_fields(CAM_W, CAM_H, K_CAM.K, [-0.2, 0.0, 0.0, 0.0, 0.0], "plumb_bob")
    policy, lines = _policy(image_topic="/cam/image_rect")
    policy.add_camera_info(_model_info(1_000_000_000, no_p))
    _run(policy, _image(1_000_000_000))
    assert policy.pipeline.calls[0][1] == K_CAM
    assert any("P is unset" in text for _, text in lines)


def test_an_unsupported_distortion_model_publishes_no_depth_and_the_node_goes_on():
    fov = CameraModel.from_fields(CAM_W, CAM_H, K_CAM.K, [0.9], "fov", P=P_RECT, frame_id="cam")
    policy, lines = _policy(log_throttle_s=60.0)
    for i in range(3):
        policy.add_camera_info(_model_info(1_000_000_000 + i * 100_000_000, fov))
        assert _run(policy, _image(1_000_000_000 + i * 100_000_000)) is None
    values = _values(policy)
    assert values["bad_input.unsupported_camera_model"] == "3" and values["frames_processed"] == "0"
    assert policy.pipeline.calls == []  # never silently K (or anything else)
    warnings = [text for kind, text in lines if kind == "warning"]
    assert len(warnings) == 1 and "'fov' is not supported" in warnings[0] and "image_rect" in warnings[0]
    # a supported calibration (re-calibrated camera): depth again
    policy.add_camera_info(_model_info(1_300_000_000, _raw_camera("plumb_bob")))
    assert _run(policy, _image(1_300_000_000)) is not None
    # the same unsupported camera's rectified images are fine: P, no model needed
    rect, _ = _policy(image_topic="/cam/image_rect")
    rect.add_camera_info(_model_info(1_000_000_000, fov))
    assert _run(rect, _image(1_000_000_000)) is not None and rect.pipeline.calls[0][1] == fov.intrinsics_P()
    # a calibration that cannot be a camera (equidistant needs 4 coefficients) is a bad CameraInfo
    bad = _model_info(1_400_000_000, _raw_camera("plumb_bob"))
    bad.distortion_model = "equidistant"
    policy.add_camera_info(bad)
    assert _values(policy)["bad_input.bad_camera_info"] == "1"
