"""The bench scripts run from a clean checkout with their defaults (mechanics only: no timing is asserted;
speed is measured by running them, see README "Benchmarks")."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_inference_default_model_source_runs_and_prints_its_json_line():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_inference.py"), "--iters", "1", "--warmup", "0",
                          "--resolutions", "128x64", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["source"].startswith("the bundled default model's architecture")
    backends = {r["backend"] for r in result["results"]}
    assert {"torch eager fp32 cpu", "onnxruntime cpu"} <= backends
    assert all(r["resolution"] == "128x64" and r["fps"] > 0 for r in result["results"])


@pytest.mark.ros
def test_bench_dds_roundtrip_runs_and_every_image_is_answered():
    pytest.importorskip("rclpy")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_dds_roundtrip.py"), "--count", "5",
                          "--sizes", "64x32", "320x240"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    assert [r["size"] for r in result["rows"]] == ["64x32", "320x240"]
    assert all(r["answered"] == r["sent"] == 5 and r["p50_ms"] > 0 for r in result["rows"])


@pytest.mark.ros
def test_bench_node_runs_both_sides_and_the_transport_floor():
    pytest.importorskip("rclpy")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_node.py"), "--frames", "4", "--repeats", "1",
                          "--width", "192", "--height", "64", "--floor-count", "5"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    assert result["node"]["received"] == result["bare"]["received"] == 4
    assert result["transport_floor_p50_ms"] > 0
    assert "transport floor" in out.stdout


@pytest.mark.ros
def test_bench_online_adapt_node_mode_runs_both_sides_and_says_when_no_step_happened():
    """--node mechanics on a few frames (too few for an adaptation step: the run must say it measured nothing)."""
    pytest.importorskip("rclpy")
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, str(REPO / "bench" / "bench_online_adapt.py"), "--node", "--frames", "4",
                          "--warmup", "2", "--repeats", "1", "--rate", "10"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    result = json.loads(out.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    assert [b["side"] for b in result["blocks"]] == ["off", "on"]
    assert result["off"]["received"] == result["on"]["received"] == 4
    assert result["on"]["samples"] > 0 and result["on"]["pipeline_p50_ms"] > 0
    if result["adapt_steps_during_on_blocks"] == 0:
        assert out.returncode == 1 and not result["measured"] and "NO adaptation step happened" in out.stdout
    else:
        assert out.returncode == 0 and result["measured"]


def _train_ablation():
    """bench/train_ablation.py as a module (bench/ is no package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_ablation", REPO / "bench" / "train_ablation.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


TINY_ABLATION = ["--steps", "1", "--height", "64", "--width", "128", "--rows", "flow3d", "--train-seeds", "3",
                 "--train-frames", "6", "--test-frames", "6", "--batch-size", "2"]


@pytest.mark.slow
def test_train_ablation_two_seeds_heldout_randomisation_and_mask_precision_recall(tmp_path, capsys):
    """--seeds 0,1: every trained row twice, mean ± spread in the table, both seeds in the JSON; --test-randomize
    heldout renders the held-out sequence from the renderer's held-out ranges; mask precision / recall beside IoU;
    --davis without a DAVIS folder says so once and shows '-'."""
    bench = _train_ablation()
    assert bench.main(TINY_ABLATION + ["--seeds", "0,1", "--test-randomize", "heldout", "--data-dir",
                                       str(tmp_path / "data"), "--out", str(tmp_path / "results"), "--davis",
                                       "--davis-root", str(tmp_path / "no_davis")]) == 0
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    header, payload = out[0], json.loads(out[-1])
    assert "held-out ranges" in header and "± half the max-min range" in header
    assert f"no DAVIS clips at {tmp_path / 'no_davis'}" in header and captured.err.count("no DAVIS clips") == 1
    head = next(line for line in out if line.startswith("| method |"))
    assert "| mask_iou | mask_precision | mask_recall | DAVIS IoU |" in head
    row = next(line for line in out if line.startswith("| flow3d |")).strip("|").split("|")
    cells = dict(zip([c.strip() for c in head.strip("|").split("|")], [c.strip() for c in row]))
    assert "±" in cells["abs_rel"] and "±" in cells["mask_iou"] and cells["DAVIS IoU"] == "-"
    trivial = next(line for line in out if line.startswith("| trivial: constant depth |"))
    assert "±" not in trivial  # deterministic baselines: one number
    assert (tmp_path / "data" / "test_heldout" / "poses.txt").is_file()
    assert payload["test_randomization"]["profile"] == "heldout"
    flow3d = payload["results"]["flow3d"]
    assert set(flow3d["per_seed"]) == {"0", "1"} and set(payload["training"]["flow3d"]["per_seed"]) == {"0", "1"}
    seeds = flow3d["per_seed"].values()
    for seed in seeds:
        assert 0.0 <= seed["mask_iou"] <= 1.0 and 0.0 <= seed["mask_recall"] <= 1.0
        assert seed["mask_precision"] is None or 0.0 <= seed["mask_precision"] <= 1.0  # None: nothing marked
    a, b = (s["abs_rel"] for s in seeds)
    assert a != b  # the training seed reaches the trainer
    assert flow3d["abs_rel"] == pytest.approx((a + b) / 2)
    assert flow3d["spread"]["abs_rel"] == pytest.approx(abs(a - b) / 2)
    assert "davis_iou" not in flow3d
    assert len(list((tmp_path / "results").glob("train_ablation_*.md"))) == 1


@pytest.mark.slow
def test_train_ablation_davis_column_on_the_committed_davis_fixture(tmp_path, capsys):
    """--davis on the DAVIS-format fixtures (two clips, 3 frames each at 80x45; --davis-max-frames 2 takes a
    linked subset): the row's ONNX export runs through real_benchmark.davis_scores, DAVIS IoU in the table."""
    davis = REPO / "test" / "fixtures" / "real_formats" / "davis"
    if not (davis / "JPEGImages").is_dir():
        pytest.skip(f"no DAVIS fixture at {davis}")
    bench = _train_ablation()
    assert bench.main(TINY_ABLATION + ["--davis", "--davis-root", str(davis), "--davis-max-frames", "2",
                                       "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    payload = json.loads(out[-1])
    assert "DAVIS IoU: each clip's IoU pooled over its frames" in out[0]
    assert "DAVIS IoU" in next(line for line in out if line.startswith("| method |"))
    flow3d = payload["results"]["flow3d"]
    clips = flow3d["per_seed"]["0"]["davis_clips"]
    assert set(clips) == {"car-shadow", "dog"}
    assert all(c["frames"] == 2 and c["scored_frames"] == 1 for c in clips.values())
    assert 0.0 <= flow3d["davis_iou"] <= 1.0
    assert payload["davis"]["root"] == str(tmp_path / "data" / "davis_first2")


@pytest.mark.slow
def test_train_ablation_teacher_masks_train_every_row_on_the_teachers_folder(tmp_path, capsys, monkeypatch):
    """--teacher-masks: the teacher writes one PNG per training frame under the data dir (bundled model as its
    depth), every row trains with use_dynamic_masks true and that folder as dynamic_mask_dir (checked on the
    trainer's own config and dataset), the header and the JSON say so; a second run reuses the masks; a --set that
    contradicts it is refused."""
    import depth_sfm_training.trainer as trainer_module

    seen = []

    class RecordingTrainer(trainer_module.Trainer):
        def __init__(self, config, *a, **kw):
            super().__init__(config, *a, **kw)
            seen.append((self.config, self.train_set))

    monkeypatch.setattr(trainer_module, "Trainer", RecordingTrainer)
    bench = _train_ablation()
    argv = TINY_ABLATION[:TINY_ABLATION.index("--rows")] + ["--rows", "flow3d,auto_weight_less_dynamic"] + \
        TINY_ABLATION[TINY_ABLATION.index("--rows") + 2:] + ["--teacher-masks", "--data-dir", str(tmp_path / "data")]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    header, payload = out[0], json.loads(out[-1])
    teacher_dir = tmp_path / "data" / "teacher_masks"
    frames = sorted(p.stem for p in (tmp_path / "data" / "train" / "seed3" / "image_2").glob("*.png"))
    assert len(frames) == 6
    assert sorted(p.stem for p in (teacher_dir / "seed3").glob("*.png")) == frames  # one mask per training frame
    assert "training dynamic masks: teacher (label-free motion teacher, 6 frames" in header
    assert payload["mask_source"] == "teacher" and payload["args"]["teacher_masks"] is True
    teacher = payload["teacher_masks"]
    assert teacher["dir"] == str(teacher_dir) and teacher["frames"] == teacher["written_now"] == 6
    assert teacher["teacher_depth"].endswith("default_model") and teacher["label_free"] is True
    assert len(seen) == 2  # both rows
    for config, train_set in seen:
        assert config["data"]["use_dynamic_masks"] is True
        assert config["data"]["extra"]["dynamic_mask_dir"] == str(teacher_dir)
        assert train_set.dynamic_masks.root == teacher_dir
    for row in ("flow3d", "auto_weight_less_dynamic"):
        info = payload["training"][row]["per_seed"]["0"]
        assert info["mask_source"] == "teacher" and info["teacher_mask_frames_checked"] == 6
    # a reused data dir keeps the masks; a contradicting --set is refused before anything runs
    assert bench.main(TINY_ABLATION + ["--teacher-masks", "--data-dir", str(tmp_path / "data")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["teacher_masks"]["written_now"] == 0
    with pytest.raises(SystemExit):
        bench.parse_args(TINY_ABLATION + ["--teacher-masks", "--set", "data.use_dynamic_masks=false"])
    assert "contradicts it" in capsys.readouterr().err


def test_depth_tta_probe_scores_every_variant_next_to_the_constant(tmp_path):
    """bench/depth_tta_probe.py on the bundled model, synthetic sequences only (no real root), 2 frames each: one
    row per sequence with the three variants and the constant, and the variants really differ."""
    out = subprocess.run([sys.executable, str(REPO / "bench" / "depth_tta_probe.py"), "--real-root", str(tmp_path),
                          "--synthetic-frames", "2", "--every", "2", "--grayscale"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no 7-Scenes" in out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["grayscale"] is True
    assert [row["sequence"].split(" (")[0] for row in report["rows"]] == [
        "synthetic demo drive", "synthetic held-out indoor", "synthetic held-out indoor", "synthetic held-out mixed",
        "synthetic held-out street"]
    for row in report["rows"]:
        values = [row[k] for k in ("single", "flip", "flip_shift", "constant")]
        assert all(0.0 < v < 2.0 for v in values), row
        assert len({round(v, 6) for v in values[:3]}) == 3, row  # each augmentation changes the prediction


def test_motion_teacher_eval_scores_the_teacher_and_a_student_on_the_same_frames(tmp_path):
    """bench/motion_teacher_eval.py on synthetic held-out drives only (no real root), tiny: the teacher's rows have
    IoU / precision / recall / static share; a student (a checkpoint with a fresh motion net, whose probability
    starts near 0.05) marks nothing at threshold 0.5 and everything at 0.01: the threshold reaches the mask."""
    from depth_sfm_ros.models import build_models
    from depth_sfm_ros.models.checkpoint import save_checkpoint

    base = [sys.executable, str(REPO / "bench" / "motion_teacher_eval.py"), "--real-root", str(tmp_path / "none"),
            "--synth-dir", str(tmp_path / "synth"), "--synth-frames", "4", "--synth-width", "160", "--every", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(base + ["--depth-model", "none"], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["davis_mean_iou"] is None and report["teacher"]["min_residual_px"] > 0
    assert sorted(report["rows"]) == ["synthetic/indoor_102", "synthetic/intersection_101", "synthetic/street_100"]
    for row in report["rows"].values():
        assert row["frames"] == 2 and {"iou", "precision", "recall", "static_marked"} <= set(row)

    config = {"encoder": "lite", "pose_encoder": "lite_small", "use_motion_net": True, "height": 64, "width": 96}
    checkpoint = save_checkpoint(tmp_path / "student.pt", build_models(config), config, None, step=1, epoch=0)
    marked = {}
    for threshold in ("0.5", "0.01"):
        out = subprocess.run(base + ["--student", str(checkpoint), "--threshold", threshold], capture_output=True,
                             text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        assert report["student"] == str(checkpoint) and report["teacher"] is None
        marked[threshold] = [row["marked"] for row in report["rows"].values()]
    assert max(marked["0.5"]) == 0.0 and min(marked["0.01"]) == 1.0
