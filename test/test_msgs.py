"""The one message layer (depth_sfm_ros.msgs) without ROS: the encoding table, the duck-typed decoders on
``rosbags`` messages and plain namespaces, the encoders, CameraInfo fields (ROS 2 and ROS 1 names) and the
K / P rules, stamps, odometry and point clouds. Where rclpy's message packages are installed, the same
bytes in an rclpy message decode to the same pixels (the node and the bag tools read alike). The rclpy
builders are tested in test_ros_conversions.py."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from depth_sfm_ros import msgs
from depth_sfm_ros.geometry import Intrinsics, Pose
from depth_sfm_ros.msgs import rosbags_msgs
from depth_sfm_ros.runtime import image_io

RNG = np.random.default_rng(11)


def _random_image(encoding: str, h: int = 5, w: int = 7) -> np.ndarray:
    dtype, channels = msgs.IMAGE_ENCODINGS[encoding]
    shape = (h, w) if channels == 1 else (h, w, channels)
    if dtype == np.float32:
        return RNG.normal(size=shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def _namespace_image(encoding: str, data: bytes, h: int, w: int, step: int, big: int = 0) -> SimpleNamespace:
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=big, step=step, data=data)


# --- the table ------------------------------------------------------------------------------
def test_one_encoding_table_for_messages_and_the_runtime():
    assert image_io.SUPPORTED_ENCODINGS == msgs.INPUT_ENCODINGS
    assert set(msgs.INPUT_ENCODINGS) < set(msgs.IMAGE_ENCODINGS)
    for name in msgs.INPUT_ENCODINGS:  # the runtime's lookup is the table's row
        assert image_io.encoding_spec(name) is msgs.ENCODING_SPECS[name]
        assert image_io.encoding_spec(name.upper()) is msgs.ENCODING_SPECS[name]
    assert msgs.ENCODING_SPECS["32FC1"].rgb_source is None
    with pytest.raises(ValueError, match="unsupported image encoding '32FC1'"):
        msgs.input_encoding("32FC1")


# --- Image ----------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", sorted(msgs.IMAGE_ENCODINGS))
def test_rosbags_round_trip_every_encoding(encoding):
    image = _random_image(encoding)
    msg = rosbags_msgs.image_to_msg(image, encoding, 1_000_000_123, "cam")
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (5, 7, encoding, 0)
    assert msg.step * msg.height == msg.data.size and isinstance(msg.data, np.ndarray)
    back = msgs.image_msg_to_numpy(msg)
    assert back.dtype == image.dtype and back.shape == image.shape
    np.testing.assert_array_equal(back, image)
    # the CDR round trip of a bag keeps it
    raw = rosbags_msgs.typestore().serialize_cdr(msg, rosbags_msgs.MSG_IMAGE)
    again = rosbags_msgs.typestore().deserialize_cdr(raw, rosbags_msgs.MSG_IMAGE)
    np.testing.assert_array_equal(msgs.image_msg_to_numpy(again), image)


@pytest.mark.parametrize("encoding", ["rgb8", "mono16", "32FC1", "bgra8"])
def test_row_padding_and_byte_order(encoding):
    image = _random_image(encoding, 4, 6)
    itemsize = image.dtype.itemsize
    big = image.astype(image.dtype.newbyteorder(">")) if itemsize > 1 else image
    row = big.reshape(4, -1).view(np.uint8).reshape(4, -1)
    padded = np.concatenate([row, np.full((4, 5), 0xAB, np.uint8)], axis=1)
    msg = _namespace_image(encoding, padded.tobytes(), 4, 6, padded.shape[1], big=int(itemsize > 1))
    back = msgs.image_msg_to_numpy(msg)
    assert back.dtype == image.dtype and back.flags.c_contiguous  # native order, compact
    np.testing.assert_array_equal(back, image)
    as_array = SimpleNamespace(**{**msg.__dict__, "data": padded.reshape(-1)})  # rosbags: data is an ndarray
    np.testing.assert_array_equal(msgs.image_msg_to_numpy(as_array), image)


def test_view_or_copy():
    data = np.arange(12, dtype=np.uint8)
    msg = _namespace_image("mono8", data, 3, 4, 4)
    view, copy = msgs.image_msg_to_numpy(msg), msgs.image_msg_to_numpy(msg, copy=True)
    data[0] = 99
    assert view[0, 0] == 99 and copy[0, 0] == 0


@pytest.mark.parametrize("kind,fields", [
    ("truncated", dict(h=4, w=6, encoding="rgb8", step=18, data=bytes(18 * 4 - 1))),
    ("truncated", dict(h=4, w=6, encoding="rgb8", step=18, data=bytes(18 * 5))),  # trailing bytes: as the node
    ("empty", dict(h=0, w=0, encoding="rgb8", step=0, data=b"")),
    ("empty", dict(h=4, w=6, encoding="rgb8", step=18, data=b"")),
    ("bad_step", dict(h=4, w=6, encoding="rgb8", step=12, data=bytes(48))),
    ("unsupported_encoding", dict(h=4, w=6, encoding="yuv422", step=12, data=bytes(48))),
])
def test_bad_layouts_raise_a_named_error(kind, fields):
    msg = _namespace_image(fields["encoding"], fields["data"], fields["h"], fields["w"], fields["step"])
    with pytest.raises(msgs.ImageDecodeError) as info:
        msgs.image_msg_to_numpy(msg)
    assert info.value.kind == kind and str(info.value)
    assert isinstance(info.value, ValueError)


def test_layout_checked_once_then_decoded():
    """The node checks the layout in the callback (cheap, header only) and decodes with it later."""
    image = _random_image("bgr8")
    msg = rosbags_msgs.image_to_msg(image, "bgr8", 1, "cam")
    layout = msgs.image_layout(msg, allowed=msgs.INPUT_ENCODINGS)
    assert (layout.height, layout.width, layout.encoding, layout.big_endian) == (5, 7, "bgr8", False)
    np.testing.assert_array_equal(msgs.decode_image(msg, layout), image)
    depth = rosbags_msgs.image_to_msg(np.zeros((2, 2), np.float32), "32FC1", 1, "cam")
    msgs.image_layout(depth)  # a valid Image ...
    with pytest.raises(msgs.ImageDecodeError, match="supported: rgb8, bgr8") as info:
        msgs.image_layout(depth, allowed=msgs.INPUT_ENCODINGS)  # ... that is no camera image
    assert info.value.kind == "unsupported_encoding"


def test_encoder_checks():
    fields = msgs.encode_image(np.zeros((3, 4, 1), np.uint16), "mono16")  # (H, W, 1) is a mono image too
    assert (fields.height, fields.width, fields.step, fields.data.size) == (3, 4, 8, 24)
    with pytest.raises(ValueError, match="rgb8 needs an array of shape"):
        msgs.encode_image(np.zeros((4, 4), np.uint8), "rgb8")
    with pytest.raises(ValueError, match="dtype"):
        msgs.encode_image(np.zeros((4, 4), np.float64), "32FC1")
    with pytest.raises(ValueError, match="unsupported"):
        msgs.encode_image(np.zeros((4, 4), np.uint8), "nv12")
    with pytest.raises(ValueError, match="empty"):
        msgs.encode_image(np.zeros((0, 4), np.uint8), "mono8")


def test_rclpy_and_rosbags_messages_decode_alike():
    """The same CDR bytes as an rclpy message (what the node receives) and as a rosbags message (what the
    bag tools read) give the same pixels: one decoder."""
    deserialize = pytest.importorskip("rclpy.serialization").deserialize_message
    sensor_msgs = pytest.importorskip("sensor_msgs.msg")
    store = rosbags_msgs.typestore()
    image = _random_image("mono16", 6, 9)
    bag_msg = rosbags_msgs.image_to_msg(image, "mono16", 5, "cam")
    node_msg = deserialize(bytes(store.serialize_cdr(bag_msg, rosbags_msgs.MSG_IMAGE)), sensor_msgs.Image)
    np.testing.assert_array_equal(msgs.image_msg_to_numpy(node_msg), msgs.image_msg_to_numpy(bag_msg))
    rgb = _random_image("rgb8", 6, 9)
    bag_png = rosbags_msgs.compressed_image_to_msg(rgb, 5, "cam")
    node_png = deserialize(bytes(store.serialize_cdr(bag_png, rosbags_msgs.MSG_COMPRESSED_IMAGE)),
                           sensor_msgs.CompressedImage)
    (a, enc_a), (b, enc_b) = msgs.compressed_msg_to_numpy(node_png), msgs.compressed_msg_to_numpy(bag_png)
    assert enc_a == enc_b == "bgr8"
    np.testing.assert_array_equal(a, b)
    info = deserialize(bytes(store.serialize_cdr(rosbags_msgs.camera_info_to_msg(
        Intrinsics(fx=50.0, fy=51.0, cx=4.0, cy=2.5, width=9, height=6), 5, "cam"), rosbags_msgs.MSG_CAMERA_INFO)),
        sensor_msgs.CameraInfo)
    assert msgs.decode_camera_info(info).stamp_ns == 5 and msgs.camera_info_to_model(info).K[1, 1] == 51.0


# --- CompressedImage --------------------------------------------------------------------------
def test_compressed_round_trip_and_errors():
    rgb = _random_image("rgb8", 6, 8)
    msg = rosbags_msgs.compressed_image_to_msg(rgb, 7, "cam", fmt="png")
    assert msg.format == "rgb8; png compressed bgr8"
    image, encoding = msgs.compressed_msg_to_numpy(msg)
    assert encoding == "bgr8"
    np.testing.assert_array_equal(image[:, :, ::-1], rgb)
    np.testing.assert_array_equal(msgs.compressed_msg_to_rgb8(msg), rgb)
    grey16 = RNG.integers(0, 65536, (5, 4), dtype=np.uint16)
    png16 = SimpleNamespace(format="png", data=cv2.imencode(".png", grey16)[1].reshape(-1))
    np.testing.assert_array_equal(msgs.compressed_msg_to_rgb8(png16)[:, :, 0],
                                  (grey16.astype(np.float32) * np.float32(1 / 65535) * 255 + 0.5).astype(np.uint8))
    for data, kind in ((b"", "empty"), (b"garbage", "decode_failed")):
        with pytest.raises(msgs.ImageDecodeError) as info:
            msgs.compressed_msg_to_numpy(SimpleNamespace(format="jpeg", data=data))
        assert info.value.kind == kind
    with pytest.raises(ValueError, match="png"):
        msgs.encode_compressed(rgb, fmt="gif")


# --- CameraInfo -------------------------------------------------------------------------------
K_CAM = Intrinsics(fx=250.0, fy=251.0, cx=159.5, cy=47.25, width=320, height=96)


def test_camera_info_fields_and_the_camera_model():
    msg = rosbags_msgs.camera_info_to_msg(K_CAM, 1_700_000_000_123_456_789, "cam_optical")
    info = msgs.decode_camera_info(msg)
    assert (info.width, info.height, info.distortion_model, info.frame_id) == (320, 96, "plumb_bob", "cam_optical")
    assert info.stamp_ns == 1_700_000_000_123_456_789
    assert info.K.shape == (3, 3) and info.P.shape == (3, 4) and info.R.shape == (3, 3) and info.D.shape == (5,)
    np.testing.assert_array_equal(info.K, K_CAM.K)
    model = msgs.camera_info_to_model(msg)
    assert model.intrinsics_K() == K_CAM == model.intrinsics_P() and model.frame_id == "cam_optical"
    # a raw driver's calibration (P != K, D != 0) is carried whole: which matrix applies is the camera policy's
    P = np.zeros((3, 4))
    P[:, :3] = K_CAM.K * [[0.9], [0.9], [1.0]]
    distorted = SimpleNamespace(**{**msg.__dict__, "p": P.ravel(), "d": np.array([-0.1, 0.01, 0, 0, 0])})
    model = msgs.camera_info_to_model(distorted)
    assert model.has_distortion and model.intrinsics_K() == K_CAM
    assert model.intrinsics_P().fx == pytest.approx(0.9 * K_CAM.fx)
    # written back whole (a camera driver's CameraInfo), it reads as the same model
    again = msgs.camera_info_to_model(rosbags_msgs.camera_model_to_msg(model, 7, "cam_optical"))
    assert again == model
    fields = msgs.camera_model_fields(model)
    assert fields["d"].tolist() == [-0.1, 0.01, 0, 0, 0] and fields["p"].reshape(3, 4)[0, 0] == pytest.approx(0.9 * 250)


def test_camera_info_ros1_field_names_and_bad_values():
    ros1 = SimpleNamespace(width=320, height=96, K=list(K_CAM.K.ravel()), D=[], R=list(np.eye(3).ravel()),
                           P=[0.0] * 12, distortion_model="plumb_bob",
                           header=SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=4), frame_id="cam"))
    info = msgs.decode_camera_info(ros1)
    assert info.stamp_ns == 3_000_000_004 and info.D.size == 0
    model = msgs.camera_info_to_model(ros1)
    assert model.P is None and model.intrinsics_K() == K_CAM  # P unset
    with pytest.raises(ValueError, match="K / P"):
        msgs.decode_camera_info(SimpleNamespace(width=1, height=1))
    zeros = SimpleNamespace(width=320, height=96, k=np.zeros(9), p=np.zeros(12))
    with pytest.raises(ValueError, match="focal lengths"):
        msgs.camera_info_to_model(zeros)
    with pytest.raises(ValueError, match="size"):
        msgs.camera_info_to_model(SimpleNamespace(width=0, height=96, k=K_CAM.K.ravel(), p=np.zeros(12)))
    nan_p = SimpleNamespace(width=320, height=96, k=K_CAM.K.ravel(), p=np.full(12, np.nan))
    with pytest.raises(ValueError, match="NaN"):
        msgs.camera_info_to_model(nan_p)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1", "mono16", "16UC1"])
def test_image_to_rgb8_is_the_runtime_conversion(encoding):
    """The one 8-bit RGB conversion (pictures, point colours, the training frame caches) agrees with the
    runtime's [0, 1] scaling of the same image, 16-bit values rounded."""
    from depth_sfm_ros.msgs.encodings import IMAGE_ENCODINGS
    from depth_sfm_ros.runtime.image_io import to_rgb_float

    dtype, channels = IMAGE_ENCODINGS[encoding]
    shape = (3, 5) if channels == 1 else (3, 5, channels)
    image = RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    rgb = msgs.image_to_rgb8(image, encoding)
    assert rgb.shape == (3, 5, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, np.round(to_rgb_float(image, encoding).astype(np.float64) * 255))
    if encoding == "rgb8":
        assert rgb is image  # no copy
    with pytest.raises(ValueError, match="unsupported image encoding"):
        msgs.image_to_rgb8(np.zeros((3, 5), np.float32), "32FC1")


# --- stamps, odometry, point clouds -------------------------------------------------------------
def test_stamps():
    stamp = rosbags_msgs.time_msg(1_700_000_000_123_456_789)
    assert msgs.stamp_to_nanoseconds(stamp) == 1_700_000_000_123_456_789
    assert msgs.stamp_to_seconds(stamp) == pytest.approx(1_700_000_000.123456789, abs=1e-6)
    with pytest.raises(ValueError, match=">= 0"):
        msgs.nanoseconds_to_sec_nanosec(-1)


def test_odometry_round_trip_and_speed():
    T = Pose.from_vec([1.0, -2.0, 0.5, 0.1, 0.2, -0.3])
    msg = rosbags_msgs.odometry_to_msg(T, 10, "odom", "base", linear_mps=[3.0, 4.0, 0.0], angular_radps=[0, 0, 1])
    np.testing.assert_allclose(msgs.odometry_msg_to_pose(msg).matrix, T.matrix, atol=1e-12)
    assert msgs.odometry_speed_mps(msg) == 5.0
    tf = rosbags_msgs.transform_stamped_to_msg(T, 10, "odom", "base")
    np.testing.assert_allclose(msgs.transform_msg_to_pose(tf).matrix, T.matrix, atol=1e-12)
    msg.twist.twist.linear.x = float("inf")
    with pytest.raises(ValueError, match="finite"):
        msgs.odometry_speed_mps(msg)


def test_pointcloud_pack_and_decode():
    xyz = RNG.normal(size=(6, 3)).astype(np.float32)
    xyz[2] = np.nan
    rgb = RNG.integers(0, 256, (6, 3), dtype=np.uint8)
    cloud = msgs.pack_xyzrgb(xyz, rgb)
    assert cloud.shape == (5,) and cloud.dtype == msgs.POINT_XYZRGB_DTYPE
    fields = [SimpleNamespace(name=n, offset=msgs.POINT_XYZRGB_DTYPE.fields[n][1], datatype=7, count=1)
              for n in msgs.POINT_XYZRGB_DTYPE.names]
    msg = SimpleNamespace(height=1, width=5, fields=fields, is_bigendian=False, point_step=16, row_step=80,
                          data=cloud.view(np.uint8).tobytes())
    back = msgs.pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(back["z"], xyz[np.arange(6) != 2, 2])
    np.testing.assert_array_equal(msgs.unpack_rgb(back["rgb"]), rgb[np.arange(6) != 2])


def test_camera_info_fields_plug_into_the_camera_model():
    from depth_sfm_ros.geometry.camera_model import CameraModel

    msg = rosbags_msgs.camera_info_to_msg(K_CAM, 5, "cam")
    model = CameraModel.from_camera_info_fields(msgs.decode_camera_info(msg))
    assert model.size == (320, 96) and model.frame_id == "cam" and not model.has_distortion
    assert model.intrinsics_K() == K_CAM == model.intrinsics_P()
