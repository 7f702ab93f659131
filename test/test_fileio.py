"""depth_sfm_ros.fileio.atomic_write: all or nothing."""
from __future__ import annotations

import doctest
import stat

import pytest

from depth_sfm_ros import fileio
from depth_sfm_ros.fileio import atomic_write


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "model_card.yaml"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target, "w", encoding="utf-8") as handle:
            handle.write("half of the new")
            raise RuntimeError("boom")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_card.yaml"]


def test_a_clean_write_replaces_the_file_with_the_asked_permissions(tmp_path):
    target = tmp_path / "engine.plan"
    target.write_bytes(b"old")
    with atomic_write(target, file_mode=0o644) as handle:
        handle.write(b"new engine")
    assert target.read_bytes() == b"new engine"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["engine.plan"]


def test_bad_mode_and_missing_directory_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "x", "a"):
            pass
    with pytest.raises(FileNotFoundError):
        with atomic_write(tmp_path / "missing" / "x"):
            pass


def test_docstring_example():
    assert doctest.testmod(fileio).failed == 0
