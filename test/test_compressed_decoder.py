"""One compressed-image decoder: the node (rclpy messages), the bag evaluator (rosbags messages) and export
get the same pixels and encoding from the same bytes (issue: offline numbers must be the node's numbers)."""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from depth_sfm_ros.bag.reader import decode_image, decode_mask
from depth_sfm_ros.msgs import ImageDecodeError, compressed_msg_to_numpy, decode_compressed
from depth_sfm_ros.runtime.image_io import ImagePreprocessor

RNG = np.random.default_rng(3)
COMPRESSED = "sensor_msgs/msg/CompressedImage"


def _png(image: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.reshape(-1)


CASES = {
    "colour": (RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8), "bgr8"),
    "grey": (RNG.integers(0, 256, (12, 16), dtype=np.uint8), "mono8"),
    "grey16": (RNG.integers(0, 65536, (12, 16), dtype=np.uint16), "mono16"),
    "alpha": (RNG.integers(0, 256, (12, 16, 4), dtype=np.uint8), "bgra8"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bag_reader_decodes_like_the_node(case: str) -> None:
    pixels, encoding = CASES[case]
    msg = SimpleNamespace(data=_png(pixels), format="png")
    image, got = decode_image(msg, COMPRESSED)
    assert got == encoding
    np.testing.assert_array_equal(image, pixels)  # png is lossless: OpenCV's own channel order, untouched
    pytest.importorskip("sensor_msgs.msg")
    from sensor_msgs.msg import CompressedImage

    node_image, node_encoding = compressed_msg_to_numpy(CompressedImage(format="png", data=msg.data.tobytes()))
    assert node_encoding == got
    np.testing.assert_array_equal(node_image, image)


def test_sixteen_bit_images_reach_the_network_with_their_full_range() -> None:
    """A 16-bit grey PNG used to decode to 8 bits offline (IMREAD_COLOR) but mono16 in the node."""
    pixels, _ = CASES["grey16"]
    image, encoding = decode_image(SimpleNamespace(data=_png(pixels), format="png"), COMPRESSED)
    pre = ImagePreprocessor(16, 12)
    expected = pre(pixels, "mono16").copy()
    np.testing.assert_array_equal(pre(image, encoding), expected)


def test_compressed_masks_and_errors() -> None:
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 3:5] = 255
    got = decode_mask(SimpleNamespace(data=_png(mask), format="png"), COMPRESSED)
    assert got.dtype == bool and got.sum() == 4
    with pytest.raises(ImageDecodeError) as info:
        decode_compressed(np.zeros(0, np.uint8))
    assert info.value.kind == "empty"
    with pytest.raises(ImageDecodeError) as info:
        decode_compressed(b"not an image at all", "jpeg")
    assert info.value.kind == "decode_failed" and "jpeg" in str(info.value)
