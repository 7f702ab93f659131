"""Fuzzed input (hypothesis, derandomized): message conversions, bag message builders / parsers
and the Pipeline's input checks end in a correct result or a clear ValueError / TypeError.

The properties live in bench/fuzz_inputs.py (one definition); here each runs with a few cases
(the bench runs > 10,000, see docs/reliability.md). A violation fails with hypothesis' shrunk
falsifying example.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("hypothesis")
pytest.importorskip("sensor_msgs")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import fuzz_inputs  # noqa: E402

from depth_sfm_ros.bag import rosbags_io  # noqa: E402

EXAMPLES = {"pipeline_input": 40, "ros_compressed": 60}


@pytest.mark.parametrize("name", list(fuzz_inputs.PROPERTIES_BY_NAME))
def test_property_holds(name, tmp_path):
    if name == "pipeline_input":
        fuzz_inputs.pipeline_fixture(tmp_path)
    row = fuzz_inputs.run_property(fuzz_inputs.PROPERTIES_BY_NAME[name], EXAMPLES.get(name, 150),
                                   stop_on_violation=True)
    assert row["violations"] == [], row
    # the generators reach both sides: accepted inputs and refused ones
    assert row["outcomes"].get("rejected", 0) > 0, row
    assert sum(n for k, n in row["outcomes"].items() if k != "rejected") > 0, row


def test_checks_detect_a_silently_wrong_array():
    """The reference comparison is not vacuous: a decoder that ignores the byte order is caught."""
    fields = {"encoding": "mono16", "height": 1, "width": 2, "step": 4, "data": b"\x01\x02\x03\x04",
              "is_bigendian": 1}
    want = fuzz_inputs.reference_decode(fields["data"], 1, 2, 4, "mono16", True)
    assert want.tolist() == [[0x0102, 0x0304]]
    wrong = np.frombuffer(fields["data"], dtype="<u2").reshape(1, 2)
    with pytest.raises(fuzz_inputs.Violation, match="values differ"):
        fuzz_inputs.same_array(wrong, want, "little-endian decode of big-endian data")
    with pytest.raises(fuzz_inputs.Violation, match="accepted an invalid input"):
        fuzz_inputs.expect_clear_error(lambda: None, "a check that never raises")


@pytest.mark.parametrize("height,width,step", [(0, 0, 0), (0, 3, 9), (4, 0, 0)])
def test_bag_parser_refuses_empty_images(height, width, step):
    """Found by the fuzzer: msg_to_image returned (0, W) / (H, 0) arrays for empty Image messages."""
    msg = fuzz_inputs._rosbags_image({"encoding": "rgb8", "height": height, "width": width, "step": step,
                                      "data": b"\x00" * 5, "is_bigendian": 0})
    with pytest.raises(ValueError, match="empty Image"):
        rosbags_io.msg_to_image(msg)
