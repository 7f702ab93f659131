"""The node and the offline evaluator give identical depth for the same bag, raw and compressed.

The node's side is its per-frame path without DDS: each bag message, as the message the node would
receive (the bag's CDR bytes deserialised by rclpy, or the rosbags message where rclpy is missing), goes
through :class:`~depth_sfm_ros.ros.frame_policy.FramePolicy` (header check, mailbox, decode, CameraInfo,
Pipeline) exactly as ``depth_sfm_node``'s callbacks and worker call it. The offline side is
``eval-bag`` (:func:`~depth_sfm_ros.bag.eval_bag.evaluate_bag`) with the same configuration. Over real
DDS the same comparison runs in test_eval_bag_realtime.py. A raw camera with lens distortion (D != 0, P set
or not) and the same bag read as rectified give the same numbers on both sides too: one camera policy.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from test_eval_bag_support import HEIGHT, WIDTH, synthetic_sequence, write_bag

pytest.importorskip("onnxruntime")

NUM_FRAMES = 6


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from depth_sfm_ros.runtime.tiny_model import export_tiny_model_dir
    return export_tiny_model_dir(tmp_path_factory.mktemp("model") / "tiny", height=HEIGHT, width=WIDTH)


def _node_params(model_dir: Path):
    """The node's parameters for the tiny model (its depth, ~0.2 network units, lies below the default range)."""
    from depth_sfm_ros.ros import params
    return params.validate({"model": str(model_dir), "backend": "onnxruntime", "device": "cpu", "scale_mode": "none",
                            "min_depth_m": 0.01, "camera_info_wait_s": 0.0})


def _as_received(flavour: str, msgtype: str, cdr: bytes, bag_msg):
    """The message as the node's callback gets it: rclpy's deserialisation of the bag's CDR bytes."""
    if flavour == "rosbags":
        return bag_msg
    from rclpy.serialization import deserialize_message

    from depth_sfm_ros.bag.realtime import _rclpy_type
    return deserialize_message(bytes(cdr), _rclpy_type(msgtype))


def _node_depth(bag: Path, params, flavour: str, image_topic: str) -> dict[int, tuple[np.ndarray, object]]:
    """stamp_ns -> (depth_m, FrameResult) through the node's frame path (its image topic remapped to the bag's)."""
    from depth_sfm_ros.bag.reader import MessageSource
    from depth_sfm_ros.ros.frame_policy import FramePolicy
    from depth_sfm_ros.ros.pipeline_factory import create_pipeline

    policy = FramePolicy(params, create_pipeline(params), logging.getLogger("parity"), image_topic=image_topic)
    source = MessageSource(bag)
    messages = [(topic, msgtype, cdr, msg) for topic, msgtype, _, cdr, msg
                in source.raw_messages({image_topic, "/camera/camera_info"})]
    for topic, msgtype, cdr, msg in messages:  # CameraInfo first: a synced camera, no waiting
        if topic == "/camera/camera_info":
            policy.add_camera_info(_as_received(flavour, msgtype, cdr, msg))
    out = {}
    for topic, msgtype, cdr, msg in messages:
        if topic != image_topic:
            continue
        assert policy.offer(_as_received(flavour, msgtype, cdr, msg), compressed=topic.endswith("/compressed"))
        frame = policy.take(0.0)
        output = policy.process(frame)
        out[frame.stamp_ns] = (output.result.depth_m.copy(), output.result)
    policy.pipeline.close()
    return out


@pytest.mark.parametrize("flavour", ["rclpy", "rosbags"])
@pytest.mark.parametrize("storage,compressed", [("mcap", False), ("sqlite3", True)])
def test_node_path_and_eval_bag_give_identical_depth(tmp_path: Path, model_dir: Path, storage: str,
                                                    compressed: bool, flavour: str):
    if flavour == "rclpy":
        pytest.importorskip("rclpy")
        pytest.importorskip("sensor_msgs.msg")
    from depth_sfm_ros.bag.eval_bag import evaluate_bag
    from depth_sfm_ros.ros.pipeline_factory import pipeline_config

    params = _node_params(model_dir)
    bag = write_bag(tmp_path / "bag", synthetic_sequence(NUM_FRAMES), storage, compressed=compressed)
    image_topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    offline: dict[int, tuple[np.ndarray, object]] = {}
    evaluate_bag(bag, tmp_path / "out", image_topic=image_topic, pipeline_config=pipeline_config(params),
                 report=False, on_frame=lambda frame, result: offline.__setitem__(frame.stamp_ns,
                                                                                  (result.depth_m.copy(), result)))
    node = _node_depth(bag, params, flavour, image_topic)
    assert sorted(node) == sorted(offline) and len(node) == NUM_FRAMES
    for stamp in sorted(node):
        (depth_node, r_node), (depth_offline, r_offline) = node[stamp], offline[stamp]
        assert np.isfinite(depth_node).any()
        np.testing.assert_array_equal(depth_node, depth_offline)  # bit for bit, NaN where NaN
        assert r_node.intrinsics == r_offline.intrinsics  # K (node) and P (bag tools) agree on a rectified camera
        np.testing.assert_array_equal(r_node.T_odom_cam.matrix, r_offline.T_odom_cam.matrix)
        assert (r_node.reset_code, r_node.motion_state) == (r_offline.reset_code, r_offline.motion_state)


def _write_distorted_bag(path: Path, seq, camera, image_topic: str) -> Path:
    """The drive's frames as a camera's images on ``image_topic`` with ``camera``'s calibration (a driver's
    CameraInfo: K, D, P), and ground-truth depth / mask recorded in the images' geometry."""
    from depth_sfm_ros.bag import rosbags_io as io

    with io.BagWriter(path, storage="mcap") as bag:
        for frame in seq:
            stamp = frame.stamp_ns
            bag.write("/camera/camera_info", io.camera_model_to_msg(camera, stamp, "camera"), stamp)
            bag.write(image_topic, io.image_to_msg(frame.image_rgb, "rgb8", stamp, "camera"), stamp)
            bag.write("/gt/depth", io.image_to_msg(frame.depth_m.astype(np.float32), "32FC1", stamp, "camera"), stamp)
            bag.write("/gt/dynamic_mask", io.image_to_msg(frame.dynamic_mask.astype(np.uint8) * 255, "mono8", stamp,
                                                          "camera"), stamp)
    return path


@pytest.mark.parametrize("model_name,with_p,image_topic", [("plumb_bob", True, "/camera/image_raw"),
                                                           ("equidistant", False, "/camera/image_raw"),
                                                           ("rational_polynomial", True, "/camera/image_raw"),
                                                           ("plumb_bob", True, "/camera/image_rect")])
def test_a_distorted_camera_gives_the_same_numbers_offline_and_in_the_node(tmp_path: Path, model_dir: Path,
                                                                           model_name: str, with_p: bool,
                                                                           image_topic: str):
    """Raw topic: both sides undistort the same way (intrinsics = P, or OpenCV's optimal matrix without P) and
    eval-bag scores ground truth put into the same geometry; a rectified topic: both take P, no remap."""
    from depth_sfm_ros.bag.eval_bag import evaluate_bag
    from depth_sfm_ros.geometry.camera_model import CameraModel, resolve_input
    from depth_sfm_ros.ros.pipeline_factory import pipeline_config

    params = _node_params(model_dir)
    seq = synthetic_sequence(NUM_FRAMES)
    K = seq.intrinsics.K
    D = {"plumb_bob": [-0.3, 0.1, 0.002, -0.001, 0.0], "equidistant": [0.1, -0.03, 0.005, -0.001],
         "rational_polynomial": [-0.25, 0.08, 0.001, -0.002, 0.01, 0.05, -0.02, 0.004]}[model_name]
    P = np.hstack([K * [[0.85], [0.85], [1.0]] + [[0, 0, 1.5], [0, 0, -0.5], [0, 0, 0]], np.zeros((3, 1))])
    camera = CameraModel.from_fields(WIDTH, HEIGHT, K, D, model_name, P=P if with_p else None, frame_id="camera")
    rectified = image_topic.endswith("image_rect")
    geometry = resolve_input(camera, rectified=rectified)
    assert geometry.remaps != rectified
    bag = _write_distorted_bag(tmp_path / "bag", seq, camera, image_topic)
    offline: dict[int, tuple] = {}

    def keep(frame, result) -> None:
        offline[frame.stamp_ns] = (result.depth_m.copy(), result, frame.image.copy(), frame.gt_depth_m.copy(),
                                   frame.gt_dynamic_mask.copy())

    metrics = evaluate_bag(bag, tmp_path / "out", image_topic=image_topic, pipeline_config=pipeline_config(params),
                           report=False, on_frame=keep)
    node = _node_depth(bag, params, "rosbags", image_topic)
    assert sorted(node) == sorted(offline) and len(node) == NUM_FRAMES
    expected_K = geometry.intrinsics
    if with_p:
        np.testing.assert_array_equal(expected_K.K, P[:, :3])
    for i, stamp in enumerate(sorted(node)):
        (depth_node, r_node), (depth_offline, r_offline, image, gt_depth, gt_mask) = node[stamp], offline[stamp]
        np.testing.assert_array_equal(depth_node, depth_offline)  # bit for bit, NaN where NaN
        assert r_node.intrinsics == r_offline.intrinsics == expected_K.scaled(*depth_node.shape[::-1])
        np.testing.assert_array_equal(r_node.T_odom_cam.matrix, r_offline.T_odom_cam.matrix)
        # the frame eval-bag scored: image and ground truth in the geometry of the depth
        np.testing.assert_array_equal(image, geometry.prepare(seq[i].image_rgb))
        np.testing.assert_array_equal(gt_depth, geometry.prepare_labels(seq[i].depth_m.astype(np.float32), np.nan))
        np.testing.assert_array_equal(gt_mask, geometry.prepare_labels(seq[i].dynamic_mask, 0))
    assert any(geometry.message in note for note in metrics["notes"]) and metrics["depth"]["n_images"] == NUM_FRAMES

    with pytest.raises(ValueError, match="camera_input"):
        evaluate_bag(bag, tmp_path / "out2", image_topic=image_topic, pipeline_config=pipeline_config(params),
                     report=False, camera_input="undistorted")


def test_an_unsupported_camera_model_gives_no_depth_offline_either(tmp_path: Path, model_dir: Path):
    """A raw topic of a distortion model that cannot be undistorted: the node publishes nothing for it
    (counted as unsupported_camera_model) and eval-bag refuses every frame with the same reason."""
    from depth_sfm_ros.bag.eval_bag import evaluate_bag
    from depth_sfm_ros.bag.reader import MessageSource
    from depth_sfm_ros.geometry.camera_model import CameraModel
    from depth_sfm_ros.ros.frame_policy import FramePolicy
    from depth_sfm_ros.ros.pipeline_factory import create_pipeline, pipeline_config

    params = _node_params(model_dir)
    seq = synthetic_sequence(3)
    camera = CameraModel.from_fields(WIDTH, HEIGHT, seq.intrinsics.K, [0.9], "fov", frame_id="camera")
    bag = _write_distorted_bag(tmp_path / "bag", seq, camera, "/camera/image_raw")
    with pytest.raises(RuntimeError, match="no frame could be evaluated.*'fov' is not supported"):
        evaluate_bag(bag, tmp_path / "out", pipeline_config=pipeline_config(params), report=False)
    policy = FramePolicy(params, create_pipeline(params), logging.getLogger("parity"), image_topic="/camera/image_raw")
    messages = list(MessageSource(bag).messages({"/camera/image_raw", "/camera/camera_info"}))
    for topic, _, _, msg in messages:
        if topic == "/camera/camera_info":
            policy.add_camera_info(msg)
    outputs = []
    for topic, _, _, msg in messages:
        if topic == "/camera/image_raw":
            assert policy.offer(msg, compressed=False)
            outputs.append(policy.process(policy.take(0.0)))
    policy.pipeline.close()
    assert outputs == [None] * 3 and policy.stats.bad_input["unsupported_camera_model"] == 3
