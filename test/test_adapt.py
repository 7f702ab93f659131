"""``depth-sfm adapt``: fine-tuning an exported model on one recording (issue 16, item 1).

A tiny model (lite encoders, 64x128, with a motion net like the bundled model) is trained for two steps with
the project's Trainer and exported with weights.safetensors; the recording is a rosbag2 written by the
synthetic writer (another seed and size than the model's data) or a folder of images with calib.yaml.
Everything runs through ``depth_sfm_ros.cli.main(["adapt", ...])``.
"""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from depth_sfm_training import adapt as adapt_mod
from depth_sfm_training.config import CONFIG_DIR, load_config
from depth_sfm_training.trainer import Trainer

H, W = 64, 128
REC_FRAMES = 14  # hold out 30 %: frames [9, 14) (3 samples), train on [0, 9) (7 samples)


def _train_config(data: Path, *overrides: str) -> dict:
    return load_config(CONFIG_DIR / "baseline_monodepth2.yaml", [
        "model.encoder=lite", "model.pose_encoder=lite", "model.use_motion_net=true", f"data.height={H}",
        f"data.width={W}", "data.dataset=synthetic", f"data.path={data}", "data.val_path=null", "train.batch_size=2",
        "train.num_workers=0", "log.progress_bar=false", "log.tensorboard=false", "log.image_log_every=0",
        "log.checkpoint_every=0", "log.val_every=0", "device=cpu", *overrides])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """The start model (2 Trainer steps, exported), its training folder (the replay set), a bag recording and
    the same recording as an image folder with calib.yaml."""
    from depth_sfm_ros.runtime.export import export_bundle
    from depth_sfm_ros.synth import SynthConfig, render_sequence
    from depth_sfm_ros.synth.kitti import write_kitti_folder
    from depth_sfm_ros.synth.rosbag import write_rosbag
    from depth_sfm_training.datasets.io import write_png

    root = tmp_path_factory.mktemp("adapt")
    pre = render_sequence(SynthConfig(seed=1, width=W, height=H, num_frames=8))
    write_kitti_folder(pre.frames, pre.intrinsics, root / "pre")
    trainer = Trainer(_train_config(root / "pre", "train.max_steps=2"), None)
    trainer.fit()
    export_bundle(trainer.bundle, trainer.model_config, root / "start", train_config=trainer.config,
                  intrinsics_normalized=trainer.intrinsics_normalized, depth_flip_average=True)

    rec = render_sequence(SynthConfig(seed=7, width=160, height=96, num_frames=REC_FRAMES))
    write_rosbag(rec.frames, rec.intrinsics, root / "recording_bag", storage="mcap")
    folder = root / "recording_images"
    folder.mkdir()
    for i, frame in enumerate(rec.frames):
        write_png(folder / f"{i:04d}.png", frame.image_rgb)
    K = rec.intrinsics
    (folder / "calib.yaml").write_text(yaml.safe_dump({"fx": K.fx, "fy": K.fy, "cx": K.cx, "cy": K.cy,
                                                       "width": K.width, "height": K.height}))
    return {"root": root, "pre": root / "pre", "start": root / "start", "bag": root / "recording_bag",
            "folder": folder}


def _spy(monkeypatch) -> list:
    """Record the AdaptResult of the CLI run (the datasets the run really trained and scored on)."""
    results = []
    real = adapt_mod.adapt_recording

    def spy(options, stream=None):
        results.append(real(options, stream))
        return results[-1]

    monkeypatch.setattr(adapt_mod, "adapt_recording", spy)
    return results


def _weights(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    from depth_sfm_ros.models.weights_file import load_bundle_weights

    return load_bundle_weights(path)[0]


def test_adapt_a_bag_exports_a_loadable_model_with_the_before_after_report(data, tmp_path, monkeypatch, capsys):
    from depth_sfm_ros.cli import main
    from depth_sfm_ros.models.weights_file import bundle_from_weights
    from depth_sfm_ros.runtime.backends import create_backend
    from depth_sfm_ros.runtime.model_card import read_model_card

    results = _spy(monkeypatch)
    out = tmp_path / "adapted"
    threads = torch.get_num_threads()
    rc = main(["adapt", str(data["bag"]), "--out", str(out), "--model", str(data["start"]), "--steps", "3",
               "--replay", str(data["pre"]), "--holdout-fraction", "0.3", "--batch-size", "2", "--device", "cpu",
               "--workers", "0", "--threads", "1"])
    result = results[0]
    assert torch.get_num_threads() == threads and result.adaptation["torch_threads"] == 1  # restored afterwards
    assert rc == (0 if result.helped else adapt_mod.EXIT_WORSE)
    captured = capsys.readouterr()
    assert "adapt: step 3/3  loss" in captured.err and "left ~" in captured.err      # the progress line
    assert "before" in captured.out and "after" in captured.out

    # the output directory runs in ONNX Runtime through the project's backend factory and gives depth
    backend = create_backend(out, "onnxruntime", device="cpu")
    frame = np.random.default_rng(0).random((1, 3, H, W), dtype=np.float32)
    res = backend.infer(frame, frame)
    assert res.depth.shape == (H, W) and np.isfinite(res.depth).all() and (res.depth > 0).all()
    assert res.pose_vec is not None and res.dynamic_prob is not None  # pose.onnx and mask.onnx too

    # the card records where the model comes from and the held-out photometric losses before / after
    card = read_model_card(out)
    ad = card.metrics["adaptation"]
    assert ad["start_model"]["path"] == str(data["start"].resolve())
    assert ad["recording"]["path"] == str(data["bag"].resolve()) and ad["recording"]["dataset"] == "rosbag"
    assert ad["recording"]["frames"] == REC_FRAMES and ad["steps"] == 3 and ad["stopped_by"] == "steps"
    assert ad["train_frames"] == [0, 9] and ad["heldout_frames"] == [9, REC_FRAMES]
    assert ad["replay"]["kind"] == "synthetic folder" and ad["replay"]["samples"] == 6
    hp = ad["heldout_photometric"]
    assert hp["before"] == pytest.approx(result.before) and hp["after"] == pytest.approx(result.after)
    assert hp["before"] > 0 and hp["after"] > 0 and hp["before"] != hp["after"]
    assert hp["relative_change"] == pytest.approx((hp["after"] - hp["before"]) / hp["before"])
    assert ad["verdict"] == ("helped" if hp["after"] < hp["before"] else "worse")
    assert card.model_config["height"] == H and card.model_config["width"] == W
    assert card.model_config["depth_flip_average"] is True  # the start model's test-time flip is kept
    assert card.training_config["model"]["init_weights"] == str(data["start"].resolve())
    # the numbers are the start model's and the exported model's: recomputed from their weight files
    for model_dir, expected, tol in ((data["start"], hp["before"], 1e-5), (out, hp["after"], 2e-2)):
        bundle, cfg = bundle_from_weights(model_dir)
        losses = adapt_mod.heldout_photometric_losses(bundle, result.heldout_set, cfg, torch.device("cpu"),
                                                      indices=result.heldout_indices)
        assert np.mean(losses) == pytest.approx(expected, rel=tol)

    # no training sample touches a held-out frame (targets and sources), and the held-out part is the last 30 %
    mixture = result.trainer.train_set
    assert len(mixture.datasets) == 2                              # the recording + the replay set
    recording = mixture.datasets[0]
    trained = {seq.start + f for i in range(len(recording)) for seq, frames in [recording.frames_of(i)]
               for f in frames}
    scored = {seq.start + f for i in range(len(result.heldout_set))
              for seq, frames in [result.heldout_set.frames_of(i)] for f in frames}
    assert trained == set(range(0, 9)) and scored == set(range(9, REC_FRAMES))
    assert trained.isdisjoint(scored)

    # depth and pose weights changed; the motion net (no loss trains it) is exported as it was
    start, adapted = _weights(data["start"]), _weights(out)
    for net in ("depth", "pose"):
        diffs = [float((start[net][k] - adapted[net][k]).abs().max()) for k in start[net]
                 if start[net][k].is_floating_point()]
        assert max(diffs) > 1e-4, net
    assert all(torch.equal(start["motion"][k], adapted["motion"][k]) for k in start["motion"])


def test_time_budget_stops_after_the_first_step_and_still_exports(data, tmp_path, monkeypatch, capsys):
    """An image folder, the default synthetic replay rendered into a fresh cache, --minutes 0.0001: one step,
    then the export; a worse held-out loss is reported loudly and marked in the card (exit code 3)."""
    from depth_sfm_ros.cli import main
    from depth_sfm_ros.runtime.model_card import read_model_card

    real = adapt_mod.heldout_photometric_losses
    calls = []

    def worse_after(*args, **kwargs):  # the second scoring (the adapted model) comes out 50 % worse
        losses = real(*args, **kwargs)
        calls.append(losses)
        return [x * 1.5 for x in losses] if len(calls) == 2 else losses

    monkeypatch.setattr(adapt_mod, "heldout_photometric_losses", worse_after)
    out, cache = tmp_path / "adapted", tmp_path / "replay_cache"
    rc = main(["adapt", str(data["folder"]), "--out", str(out), "--model", str(data["start"]), "--minutes", "0.0001",
               "--steps", "50", "--replay-frames", "4", "--replay-cache", str(cache), "--holdout-fraction", "0.3",
               "--batch-size", "2", "--device", "cpu", "--workers", "0"])
    assert rc == adapt_mod.EXIT_WORSE
    err = capsys.readouterr().err
    assert "(time budget reached)" in err and "MADE THE MODEL WORSE" in err
    card = read_model_card(out)
    ad = card.metrics["adaptation"]
    assert ad["steps"] == 1 and ad["stopped_by"] == "time" and ad["budget"] == {"steps": 50, "minutes": 0.0001}
    assert ad["verdict"] == "worse" and "NOT" in ad["warning"]
    assert ad["recording"]["dataset"] == "folder" and ad["train_frames"] == [0, 9]
    assert {"depth.onnx", "pose.onnx", "mask.onnx", "weights.safetensors"} <= set(card.files)
    # the default replay set was rendered into the cache: four seeded sequences of 4 frames
    assert ad["replay"]["kind"] == "synthetic (default)"
    seqs = sorted(p.name for p in (cache / "v1_4frames").iterdir())
    assert len(seqs) == len(adapt_mod.DEFAULT_REPLAY_SEQUENCES)
    assert all(len(list((cache / "v1_4frames" / s / "image_2").glob("*.png"))) == 4 for s in seqs)


def test_a_model_without_weights_is_refused_clearly(data, tmp_path, capsys):
    from depth_sfm_ros.cli import main

    no_weights = tmp_path / "no_weights"
    shutil.copytree(data["start"], no_weights)
    (no_weights / "weights.safetensors").unlink()
    rc = main(["adapt", str(data["bag"]), "--out", str(tmp_path / "o"), "--model", str(no_weights), "--steps", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "has no weights.safetensors" in err and "depth-sfm export --checkpoint" in err
    assert not (tmp_path / "o").exists()
    if not (adapt_mod.bundled_model_dir() / "weights.safetensors").is_file():  # the bundled model, until it ships them
        rc = main(["adapt", str(data["bag"]), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert rc == 2 and "bundled default model" in err and "ships with weights.safetensors soon" in err
    # the start model's own directory is not an output
    rc = main(["adapt", str(data["bag"]), "--out", str(data["start"]), "--model", str(data["start"])])
    assert rc == 2 and "start model's directory" in capsys.readouterr().err


def test_fit_on_step_hook_stops_cleanly_with_a_final_checkpoint(data, tmp_path):
    from depth_sfm_ros.models import load_checkpoint

    trainer = Trainer(_train_config(data["pre"], "train.max_steps=5"), tmp_path)
    seen = []
    result = trainer.fit(on_step=lambda step, values: seen.append((step, values["total"])) or step >= 2)
    assert [s for s, _ in seen] == [1, 2] and result.step == 2 and result.stopped_early
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2
    never = Trainer(_train_config(data["pre"], "train.max_steps=1"), None).fit(on_step=lambda step, values: False)
    assert never.step == 1 and not never.stopped_early


def test_budget_progress_time_limit_and_time_left():
    now = [100.0]
    stream = io.StringIO()
    progress = adapt_mod.BudgetProgress(max_steps=100, time_limit_s=10.0, stream=stream, clock=lambda: now[0],
                                        every_s=0.0)
    stops = []
    for step in range(1, 5):
        now[0] += 3.0  # 3 s per step: the budget of 10 s is crossed by step 4 (12 s)
        stops.append(progress(step, {"total": 1.0 / step}))
    assert stops == [False, False, False, True]
    lines = stream.getvalue().splitlines()
    assert "left ~0:10" not in lines[0] and "left ~0:07" in lines[0]   # step 1: no rate yet, the budget decides
    assert "0.33 step/s" in lines[1] and "left ~0:04" in lines[1]     # min(98 steps / 0.33, 10 - 6 s)
    assert lines[3].endswith("(time budget reached)")
    steps_only = adapt_mod.BudgetProgress(max_steps=10, time_limit_s=None, stream=io.StringIO(), clock=lambda: now[0],
                                          every_s=0.0)
    now[0] += 1.0
    steps_only(1, {"total": 1.0})
    now[0] += 2.0
    assert steps_only(2, {"total": 1.0}) is False and "left ~0:16" in steps_only.stream.getvalue()  # 8 steps x 2 s


def test_split_and_mixture_arithmetic():
    split = adapt_mod.split_recording(100, 0.15)
    assert split.train == (0, 85) and split.heldout == (85, 100)
    assert adapt_mod.split_recording(10, 0.05).heldout == (7, 10)      # at least one sample (3 frames) held out
    assert adapt_mod.split_recording(40, 0.15, stride=3).heldout == (33, 40)
    with pytest.raises(adapt_mod.AdaptError, match="too few"):
        adapt_mod.split_recording(5, 0.15)
    with pytest.raises(adapt_mod.AdaptError, match="holdout-fraction"):
        adapt_mod.split_recording(100, 0.0)
    assert adapt_mod.mixture_repeats(100, 20, 0.25) == (1, 2)   # replay 40 of 140 samples
    assert adapt_mod.mixture_repeats(10, 100, 0.25) == (30, 1)  # recording 300 of 400 samples
    assert adapt_mod.mixture_repeats(10, 0, 0.25) == (1, 1)


def test_auto_threads_leaves_busy_cores_alone():
    assert adapt_mod.auto_threads(cpus=2, load=3.5) == 1     # a training run beside it: one thread
    assert adapt_mod.auto_threads(cpus=2, load=1.2) == 1
    assert adapt_mod.auto_threads(cpus=2, load=0.3) == 2
    assert adapt_mod.auto_threads(cpus=16, load=2.4) == 14
    assert adapt_mod.auto_threads(cpus=8, load=0.0) == 8


def test_the_adapt_config_keeps_the_start_model_architecture(tmp_path):
    # a start model whose mask net has the pose-sized encoder must be rebuilt with it (init_weights loads strictly)
    from depth_sfm_ros.models import validate_model_config
    from depth_sfm_training.adapt import AdaptOptions, build_adapt_config
    from depth_sfm_training.trainer import model_config_from

    start = validate_model_config({"encoder": "lite", "pose_encoder": "lite_small", "motion_encoder": "lite_small",
                                   "height": 128, "width": 192})
    components = [{"type": "synthetic", "path": str(tmp_path)}]
    config = build_adapt_config(AdaptOptions(recording="r.mcap", out=str(tmp_path / "out")), tmp_path, start,
                                components, max_steps=3)
    rebuilt = validate_model_config(model_config_from(config))
    for key in ("encoder", "pose_encoder", "motion_encoder", "height", "width", "use_motion_net"):
        assert rebuilt[key] == start[key], key
