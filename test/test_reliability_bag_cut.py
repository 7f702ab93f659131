"""A bag cut off anywhere (a recorder killed, a partial download): BagFrameReader yields an exact
prefix of the recorded frames and says where it stopped, or refuses the bag with a BagError;
never a wrong image, never another exception. The cut position is drawn by hypothesis
(derandomized), for mcap and sqlite3 bags; test_eval_bag_reader.py covers fixed cuts and corrupt
chunk bytes."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from depth_sfm_ros.bag.reader import BagError, BagFrameReader, topic_selection
from test_eval_bag_support import synthetic_sequence, write_bag

N_FRAMES = 6
CASES = 12  # per storage; bench-size runs: raise max_examples locally


@pytest.fixture(scope="module")
def seq():
    return synthetic_sequence(N_FRAMES)


@pytest.fixture(scope="module")
def bags(tmp_path_factory, seq) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cut_src")
    return {storage: write_bag(root / storage, seq, storage, streams=("camera_info",)) for storage in ("mcap", "sqlite3")}


def _data_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_cut_bag_yields_an_exact_prefix_or_a_clear_error(tmp_path_factory, bags, seq, storage):
    source = bags[storage]
    data = _data_file(source).read_bytes()
    outcomes = {"refused": 0, "complete": 0, "prefix": 0}

    @settings(max_examples=CASES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(cut=st.integers(0, len(data) - 1), drop_metadata=st.booleans())
    def check(cut: int, drop_metadata: bool) -> None:
        bag = tmp_path_factory.mktemp("cut")  / "bag"
        shutil.copytree(source, bag)
        _data_file(bag).write_bytes(data[:cut])
        if drop_metadata:
            (bag / "metadata.yaml").unlink()  # as after a killed recorder
        try:
            reader = BagFrameReader(bag, topic_selection("/camera/image_raw", camera_info="/camera/camera_info"))
            frames = list(reader)
        except BagError as exc:
            assert str(exc).strip(), "BagError without a message"
            outcomes["refused"] += 1
            return
        assert [f.index for f in frames] == list(range(len(frames))), "not a prefix of the recording"
        for frame in frames:
            np.testing.assert_array_equal(frame.image, seq[frame.index].image_rgb)
            assert frame.stamp_ns == seq[frame.index].stamp_ns
        if len(frames) < N_FRAMES:
            assert reader.error is not None, f"{len(frames)} of {N_FRAMES} frames read and no error reported"
            assert reader.error.frames_read == len(frames)
            assert reader.error.describe().strip()
            outcomes["prefix"] += 1
        else:
            outcomes["complete"] += 1

    check()
    print(f"\n{storage}: {outcomes}")
    assert outcomes["refused"] + outcomes["prefix"] > 0, outcomes  # the cuts did damage something
