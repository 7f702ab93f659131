"""The real-camera benchmark (training/real_benchmark.py, bench/real_eval.py): its scores and baselines."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")

from depth_sfm_ros.geometry import Pose  # noqa: E402
from depth_sfm_training.real_benchmark import (DEFAULT_REAL_ROOT, clean, depth_scores, odometry_scores,  # noqa: E402
                                               per_row_prior)

REPO = Path(__file__).resolve().parents[1]


class _Sequence:
    """A sequence of depth maps (a floor-like vertical gradient) and camera poses moving along z."""

    has_depth = True

    def __init__(self, n: int = 6, h: int = 24, w: int = 32, speed_m: float = 0.1) -> None:
        rows = np.linspace(6.0, 1.5, h, dtype=np.float32)[:, None]
        cols = np.arange(w)[None, :]
        # a floor-like gradient with a smooth near box that moves across the frames (no per-row layout holds)
        self.depths = [(np.broadcast_to(rows, (h, w)) * np.where(np.abs(cols - 4 * i - 8) < 6, 0.4, 1.0))
                       .astype(np.float32) for i in range(n)]
        self.poses = [Pose(np.eye(4)) for _ in range(n)]
        self.speed_m = speed_m

    def depth_m(self, i: int) -> np.ndarray:
        return self.depths[i]

    def T_world_cam(self, i: int) -> np.ndarray:
        T = np.eye(4)
        T[2, 3] = self.speed_m * i
        return T


def _result(depth_m: np.ndarray, z_m: float = 0.0, still: bool = False) -> SimpleNamespace:
    T = np.eye(4)
    T[2, 3] = z_m
    return SimpleNamespace(depth_m=depth_m, T_odom_cam=Pose(T), still=still, dynamic_mask=None)


def test_depth_scores_rank_a_perfect_model_above_both_baselines() -> None:
    seq = _Sequence()
    prior = per_row_prior(seq, range(len(seq.depths)), (0.1, 10.0))
    assert prior.shape == (24,) and prior[0] > prior[-1]  # far at the top, near at the bottom
    # a perfect prediction up to scale (the protocol median-scales each image)
    results = [_result(0.5 * d) for d in seq.depths]
    scores = depth_scores(results, seq, 0, (0.1, 10.0), prior)
    assert scores["model"]["abs_rel"] < 1e-6
    assert min(scores["constant"]["abs_rel"], scores["per_row"]["abs_rel"]) > 0.1
    assert scores["depth_scale"] == pytest.approx(2.0, rel=0.05)
    # the constant baseline equals its definition: median(gt) everywhere
    gt = seq.depths[0]
    expected = float(np.mean(np.abs(np.median(gt) - gt) / gt))
    single = depth_scores(results[:1], seq, 0, (0.1, 10.0), prior)
    assert single["constant"]["abs_rel"] == pytest.approx(expected, rel=1e-6)


def test_odometry_scores_path_ratio_speed_and_still_fraction() -> None:
    seq = _Sequence(n=10, speed_m=0.1)
    fps = 10.0
    # the model moves 0.05 units per frame; at scale 2 that is the true 0.1 m per frame
    results = [_result(seq.depths[i], z_m=0.05 * i) for i in range(10)]
    out = odometry_scores(results, seq, 0, fps, scale=2.0)
    assert out["path_ratio"] == pytest.approx(1.0, rel=1e-6)
    assert out["speed_mps"] == pytest.approx(1.0, rel=1e-6) and out["gt_speed_mps"] == pytest.approx(1.0)
    assert out["ate_m"] == pytest.approx(0.0, abs=1e-6) and out["still_fraction"] == 0.0
    # a still camera whose odometry stands still: zero speed, every frame still, no alignment possible
    still = [_result(seq.depths[0], still=True) for _ in range(10)]
    out = odometry_scores(still, _Sequence(n=10, speed_m=0.0), 0, fps, scale=2.0)
    assert out["speed_mps"] == 0.0 and out["still_fraction"] == 1.0 and math.isnan(out["ate_m"])


def test_clean_makes_reports_strict_json() -> None:
    report = clean({"a": math.nan, "b": [np.float32(1.5), np.int64(2), math.inf], "c": {"d": None}})
    assert json.loads(json.dumps(report, allow_nan=False)) == {"a": None, "b": [1.5, 2, None], "c": {"d": None}}


@pytest.mark.skipif(not DEFAULT_REAL_ROOT.is_dir(),
                    reason=f"real sequences not found at {DEFAULT_REAL_ROOT} (../shared/real exists on development "
                           "machines and in CI, not in a user's clone)")
def test_bench_real_eval_runs_on_the_shared_sequences() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "real_eval.py"), "--max-frames", "3"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    seven = report["sequences"]["7scenes_redkitchen"]["parts"]
    assert set(seven) == {"all", "heldout", "still"}
    for part in seven.values():
        assert part["depth"]["constant"]["abs_rel"] > 0 and part["depth"]["per_row"]["abs_rel"] > 0
    assert report["sequences"]["kitti_odometry_51"]["parts"]["all"]["odometry"]["gt_speed_mps"] > 5.0
    assert len(report["sequences"]["davis_moving_camera"]["clips"]) == 6
    assert "| 7scenes_redkitchen | heldout |" in proc.stdout


def test_bench_real_eval_scores_any_dataset_on_committed_fixtures() -> None:
    """--dataset TYPE --path DIR: the same scores on a user's dataset (here the 7-Scenes fixture)."""
    fixture = REPO / "test" / "fixtures" / "real_formats" / "seven_scenes"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "real_eval.py"), "--dataset", "seven_scenes",
                           "--path", str(fixture), "--depth-range", "0.1", "10"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    (row,) = report["sequences"].values()
    row = row["parts"]["all"]
    assert row["frames"] == 4
    assert 0 < row["depth"]["model"]["abs_rel"] < 2 and 0 < row["depth"]["constant"]["abs_rel"] < 2
    assert row["odometry"]["gt_speed_mps"] > 0


def _ping_pong_seven_scenes(out: Path, order: tuple[int, ...] = (0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1)) -> Path:
    """A 12-frame 7-Scenes folder from the committed 4-frame fixture, played forward and back (adapt holds out
    the last 15 % but at least one 3-frame sample, and trains on at least a batch of 4 samples)."""
    import shutil

    fixture = REPO / "test" / "fixtures" / "real_formats" / "seven_scenes"
    out.mkdir()
    shutil.copy(fixture / "camera-intrinsics.txt", out / "camera-intrinsics.txt")
    for i, src in enumerate(order):
        for kind in ("color.jpg", "depth.png", "pose.txt"):
            shutil.copy(fixture / f"frame-{src:06d}.{kind}", out / f"frame-{i:06d}.{kind}")
    return out


def test_bench_real_eval_adapt_columns_on_committed_fixtures(tmp_path) -> None:
    """--adapt-steps: adapt the bundled model on the sequence (written to a rosbag2), score the start and the adapted
    model on adapt's held-out frames: the before / after columns exist, are finite and come from two models."""
    path = _ping_pong_seven_scenes(tmp_path / "seven_scenes")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "real_eval.py"), "--dataset", "seven_scenes",
                           "--path", str(path), "--depth-range", "0.1", "10", "--threads", "1", "--adapt-steps", "2",
                           "--adapt-replay", "none", "--out", str(tmp_path / "results")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["adapt"] == {"minutes": None, "steps": 2, "replay": "none"}
    (seq,) = report["sequences"].values()
    ad = seq["adaptation"]
    # 12 frames: adapt trains on [0, 9) and holds out [9, 12), the frames scored before / after
    assert ad["recording_frames"] == [0, 12] and ad["train_frames"] == [0, 9] and ad["heldout_frames"] == [9, 12]
    assert ad["steps"] == 2 and ad["stopped_by"] == "steps" and ad["replay"] == "none"
    for key in ("abs_rel_before", "abs_rel_after", "abs_rel_change", "photometric_before", "photometric_after",
                "minutes"):
        assert isinstance(ad[key], float) and math.isfinite(ad[key]), key
    assert 0 < ad["abs_rel_before"] < 2 and 0 < ad["abs_rel_after"] < 2 and ad["photometric_before"] > 0
    assert ad["abs_rel_change"] == pytest.approx((ad["abs_rel_after"] - ad["abs_rel_before"]) / ad["abs_rel_before"])
    # the same scoring as the table's rows, on the held-out frames, for both models
    for name in ("before", "after"):
        assert ad[name]["frames"] == 3 and ad[name]["heldout"]
        assert ad[name]["depth"]["model"]["n_images"] == 3
    assert ad["before"]["depth"]["constant"] == ad["after"]["depth"]["constant"]  # same frames, same pixels
    assert ad["abs_rel_before"] == pytest.approx(ad["before"]["depth"]["model"]["abs_rel"])
    # the after-model is another model: other weights, other depth
    assert ad["adapted_weights_sha256"] != ad["start_weights_sha256"]
    assert ad["before"]["depth"]["model"] != ad["after"]["depth"]["model"]
    assert "| abs_rel before | after | change |" in proc.stdout
    (md,) = (tmp_path / "results").glob("real_eval_*.md")
    text = md.read_text()
    assert "budget 2 steps" in text and f"| {next(iter(report['sequences']))} | 0-8 | 9-11 |" in text


def test_benchmark_uses_the_node_default_mask_threshold() -> None:
    """The mask numbers must be the node's: the benchmark's threshold is the shipped params file's."""
    import yaml

    from depth_sfm_training.real_benchmark import NODE_MASK_THRESHOLD

    params = yaml.safe_load((REPO / "config" / "depth_sfm.yaml").read_text())
    node = next(iter(params.values()))["ros__parameters"]
    assert node["mask_threshold"] == NODE_MASK_THRESHOLD
