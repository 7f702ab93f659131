"""The node and the offline evaluator give identical depth for the same bag, raw and compressed.

The node's side is its per-frame path without DDS: each bag message, as the message the node would
receive (the bag's CDR bytes deserialised by rclpy, or the rosbags message where rclpy is missing), goes
through :class:`~depth_sfm_ros.ros.frame_policy.FramePolicy` (header check, mailbox, decode, CameraInfo,
Pipeline) exactly as ``depth_sfm_node``'s callbacks and worker call it. The offline side is
``eval-bag`` (:func:`~depth_sfm_ros.bag.eval_bag.evaluate_bag`) with the same configuration. Over real
DDS the same comparison runs in test_eval_bag_realtime.py.
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
    """stamp_ns -> (depth_m, FrameResult) through the node's frame path."""
    from depth_sfm_ros.bag.reader import MessageSource
    from depth_sfm_ros.ros.frame_policy import FramePolicy
    from depth_sfm_ros.ros.pipeline_factory import create_pipeline

    policy = FramePolicy(params, create_pipeline(params), logging.getLogger("parity"))
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
