"""The message layer (depth_sfm_ros.msgs) on rclpy messages: decoders and the rclpy builders (no DDS: messages
only). The same decoders on rosbags messages and without ROS: test_msgs.py; the node's ROS-free helpers:
test_node_helpers.py."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from depth_sfm_ros.geometry import Intrinsics  # noqa: E402
from depth_sfm_ros import msgs  # noqa: E402
from depth_sfm_ros.msgs import IMAGE_ENCODINGS, ImageDecodeError, rclpy_msgs  # noqa: E402

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
    msg = rclpy_msgs.numpy_to_image_msg(image, encoding, header)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.step * msg.height == len(msg.data)
    assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 345
    back = msgs.image_msg_to_numpy(msg)
    assert back.dtype == image.dtype and back.shape == image.shape
    np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize("encoding", ["rgb8", "mono16", "32FC1", "bgra8"])
def test_row_padding_is_skipped(encoding):
    image = _random_image(encoding, 4, 6)
    row = image.reshape(4, -1).view(np.uint8).reshape(4, -1)
    pad = 5
    padded = np.concatenate([row, np.full((4, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=4, width=6, encoding=encoding, step=padded.shape[1], data=padded.tobytes())
    back = msgs.image_msg_to_numpy(msg)
    np.testing.assert_array_equal(back, image)
    assert back.flags.c_contiguous


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_big_endian_data_is_byte_swapped(encoding):
    image = _random_image(encoding, 3, 4)
    big = image.astype(image.dtype.newbyteorder(">"))
    msg = Image(height=3, width=4, encoding=encoding, is_bigendian=1, step=4 * image.dtype.itemsize,
                data=big.tobytes())
    back = msgs.image_msg_to_numpy(msg)
    assert back.dtype == image.dtype  # native order again
    np.testing.assert_array_equal(back, image)
    little = msgs.image_msg_to_numpy(Image(height=3, width=4, encoding=encoding, is_bigendian=0,
                                                  step=msg.step, data=big.tobytes()))
    assert not np.array_equal(little, image)  # the flag matters


def test_view_by_default_copy_on_request():
    msg = rclpy_msgs.numpy_to_image_msg(_random_image("mono8"), "mono8")
    view = msgs.image_msg_to_numpy(msg)
    copy = msgs.image_msg_to_numpy(msg, copy=True)
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
        msgs.image_msg_to_numpy(Image(**fields))
    assert info.value.kind == kind
    assert str(info.value)  # a readable message


def test_numpy_to_image_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match="rgb8"):
        rclpy_msgs.numpy_to_image_msg(np.zeros((4, 4), np.uint8), "rgb8")
    with pytest.raises(ValueError, match="dtype"):
        rclpy_msgs.numpy_to_image_msg(np.zeros((4, 4), np.float64), "32FC1")
    with pytest.raises(ValueError, match="unsupported"):
        rclpy_msgs.numpy_to_image_msg(np.zeros((4, 4), np.uint8), "nv12")


def test_works_on_rosbags_style_messages():
    """rosbags messages carry data as a numpy uint8 array: the same decoder reads them."""
    image = _random_image("bgr8")

    class BagImage:
        height, width, encoding, is_bigendian, step = 5, 7, "bgr8", 0, 21
        data = image.reshape(-1).copy()

    np.testing.assert_array_equal(msgs.image_msg_to_numpy(BagImage()), image)


@pytest.mark.parametrize("ext,image,encoding", [
    (".png", RNG.integers(0, 255, (6, 8, 3), endpoint=True).astype(np.uint8), "bgr8"),
    (".png", RNG.integers(0, 255, (6, 8), endpoint=True).astype(np.uint8), "mono8"),
    (".png", RNG.integers(0, 65535, (6, 8), endpoint=True).astype(np.uint16), "mono16"),
])
def test_compressed_decoding(ext, image, encoding):
    ok, buf = cv2.imencode(ext, image)
    assert ok
    decoded, got_encoding = msgs.compressed_msg_to_numpy(CompressedImage(format="png", data=buf.tobytes()))
    assert got_encoding == encoding
    np.testing.assert_array_equal(decoded, image)
    ok, jpg = cv2.imencode(".jpg", np.full((16, 16, 3), 100, np.uint8))
    decoded, got_encoding = msgs.compressed_msg_to_numpy(CompressedImage(format="jpeg", data=jpg.tobytes()))
    assert got_encoding == "bgr8" and abs(int(decoded.mean()) - 100) <= 2


def test_compressed_garbage_and_empty():
    with pytest.raises(ImageDecodeError) as info:
        msgs.compressed_msg_to_numpy(CompressedImage(format="jpeg", data=b"not an image at all"))
    assert info.value.kind == "decode_failed"
    with pytest.raises(ImageDecodeError) as info:
        msgs.compressed_msg_to_numpy(CompressedImage(format="jpeg", data=b""))
    assert info.value.kind == "empty"


def test_camera_info_round_trip_and_validation():
    K = Intrinsics(fx=250.0, fy=251.0, cx=159.5, cy=47.25, width=320, height=96)
    header = Header(frame_id="cam")
    msg = rclpy_msgs.intrinsics_to_camera_info(K, header)
    assert (msg.width, msg.height, msg.header.frame_id) == (320, 96, "cam")
    np.testing.assert_allclose(np.reshape(msg.p, (3, 4))[:, :3], K.K)
    assert len(msg.d) == 5 and not any(msg.d)
    assert msgs.camera_info_to_model(msg).intrinsics_K() == K
    assert list(msg.r) == np.eye(3).ravel().tolist() and msg.distortion_model == "plumb_bob"
    with pytest.raises(ValueError, match="focal lengths"):
        msgs.camera_info_to_model(CameraInfo(width=320, height=96))  # K all zeros
    # a raw driver's whole calibration goes into the message and back
    from depth_sfm_ros.geometry.camera_model import CameraModel

    raw = CameraModel.from_fields(320, 96, K.K, [0.1, -0.02, 0.001, 0.0], "equidistant",
                                  P=np.hstack([K.K * [[0.8], [0.8], [1.0]], np.zeros((3, 1))]))
    raw_msg = rclpy_msgs.camera_model_to_camera_info(raw, header)
    assert raw_msg.distortion_model == "equidistant" and list(raw_msg.d) == [0.1, -0.02, 0.001, 0.0]
    assert msgs.camera_info_to_model(raw_msg) == CameraModel.from_fields(320, 96, K.K, raw.D, "equidistant", P=raw.P,
                                                                          frame_id="cam")
    msg.width = 0
    with pytest.raises(ValueError, match="size"):
        msgs.camera_info_to_model(msg)


def test_pointcloud2_layout_and_round_trip():
    xyz = RNG.normal(size=(10, 3)).astype(np.float32)
    xyz[3] = np.nan
    rgb = RNG.integers(0, 255, size=(10, 3), endpoint=True).astype(np.uint8)
    msg = rclpy_msgs.xyzrgb_to_pointcloud2(xyz, rgb, Header(frame_id="cam"))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"]
    assert [f.offset for f in msg.fields] == [0, 4, 8, 12]
    assert all(f.datatype == 7 and f.count == 1 for f in msg.fields)  # FLOAT32
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 9, 16, 144)
    assert msg.is_dense and not msg.is_bigendian and len(msg.data) == 144
    cloud = msgs.pointcloud2_to_numpy(msg)
    keep = np.arange(10) != 3
    np.testing.assert_array_equal(np.stack([cloud["x"], cloud["y"], cloud["z"]], 1), xyz[keep])
    np.testing.assert_array_equal(msgs.unpack_rgb(cloud["rgb"]), rgb[keep])
    # packed as 0x00RRGGBB, the layout rviz's RGB8 transformer reads
    bits = cloud["rgb"].view("<u4")
    assert bits[0] == (int(rgb[0, 0]) << 16) | (int(rgb[0, 1]) << 8) | int(rgb[0, 2])
    with pytest.raises(ValueError, match="uint8"):
        rclpy_msgs.xyzrgb_to_pointcloud2(xyz, rgb.astype(np.int32))


def test_stamps():
    header = Header()
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000, 123_456_789
    assert msgs.stamp_to_nanoseconds(header.stamp) == 1_700_000_000_123_456_789
    assert msgs.stamp_to_seconds(header.stamp) == pytest.approx(1_700_000_000.123456789, abs=1e-6)
