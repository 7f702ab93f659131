"""`depth-sfm demo` end to end at a small size, with the bundled default model."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest

from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR

FRAMES, WIDTH, HEIGHT = 24, 320, 96


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = subprocess.run([sys.executable, "-m", "depth_sfm_ros.cli", "demo", "--out", str(out), "--frames", str(FRAMES),
                           "--width", str(WIDTH), "--height", str(HEIGHT)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_bundled_default_model_is_small_and_documented():
    from depth_sfm_ros.runtime.model_card import read_model_card

    card = read_model_card(DEFAULT_MODEL_DIR)
    total_mb = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir()) / 2**20
    assert total_mb <= 30.0, f"default model is {total_mb:.1f} MB"  # issue target: ideally <= 20 MB
    assert card.intrinsics_normalized is not None
    assert card.training_config, "the model card must carry the training config"
    held_out = card.metrics.get("held_out")
    assert held_out and math.isfinite(held_out["depth"]["abs_rel"]), "the model card must carry held-out metrics"
    assert (DEFAULT_MODEL_DIR / "weights.safetensors").is_file(), "the PyTorch weights ship for fine-tuning / adapt"
    # the real-camera numbers (bench/real_eval.py) are in the card: on held-out real frames the depth beats a
    # median-scaled constant depth
    kitchen = card.metrics["real"]["sequences"]["7scenes_redkitchen"]["parts"]["heldout"]["depth"]
    assert kitchen["model"]["abs_rel"] < kitchen["constant"]["abs_rel"]
    assert card.has_mask == (DEFAULT_MODEL_DIR / "mask.onnx").is_file()


def test_bundled_model_runs_the_depth_test_time_flip():
    """The bundled card says depth_flip_average and its depth.onnx is mirror-equivariant on a real frame (the plain
    network is not: tested in test_models / test_export)."""
    from pathlib import Path

    import cv2
    import numpy as np
    import onnxruntime as ort

    from depth_sfm_ros.runtime.model_card import read_model_card

    card = read_model_card(DEFAULT_MODEL_DIR)
    assert card.model_config["depth_flip_average"] is True
    frame = cv2.imread(str(Path(__file__).parent / "fixtures" / "real" / "7scenes_redkitchen_000004.png"))
    image = cv2.resize(frame[:, :, ::-1], (card.input_width, card.input_height), interpolation=cv2.INTER_AREA)
    image = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
    session = ort.InferenceSession(str(DEFAULT_MODEL_DIR / "depth.onnx"), providers=["CPUExecutionProvider"])
    disparity = session.run(["disparity"], {"image": image})[0]
    of_mirror = session.run(["disparity"], {"image": np.ascontiguousarray(image[..., ::-1])})[0]
    np.testing.assert_allclose(of_mirror[..., ::-1], disparity, atol=1e-5)


def test_demo_writes_report_bag_and_sane_metrics(demo_out):
    out, stdout = demo_out
    eval_dir = out / "eval"
    for name in ["metrics.json", "report.md", "report.html", "strip.png", "trajectory.png", "errors.png"]:
        assert (eval_dir / name).is_file(), name
    assert (out / "drive_bag" / "metadata.yaml").is_file()
    assert (eval_dir / "output_bag" / "metadata.yaml").is_file()
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    assert metrics["frames"] == FRAMES
    depth = metrics["depth"]
    assert 0.0 < depth["abs_rel"] < 1.0 and 0.0 <= depth["a1"] <= 1.0
    assert set(depth["regions"]) >= {"static", "dynamic"}
    assert metrics["odometry"]["ate_m"] is not None and metrics["odometry"]["ate_m"] >= 0
    if (DEFAULT_MODEL_DIR / "mask.onnx").is_file():
        assert 0.0 <= metrics["mask"]["iou"] <= 1.0
    else:  # a model without a mask network: no mask scores, not zeros
        assert metrics.get("mask") is None and "no mask metrics" in stdout and "mask     IoU" not in stdout
    assert metrics["speed"]["fps"] > 0
    # the printed table shows the same numbers
    assert f"{depth['abs_rel']:.3f}" in stdout and "report" in stdout


def test_default_model_beats_the_untrained_network_on_the_demo_drive(demo_out, tmp_path):
    """The same architecture with random weights, scored on the same frames with the same pipeline."""
    torch = pytest.importorskip("torch")
    from depth_sfm_ros.bag.eval_bag import evaluate_bag, node_pipeline_config
    from depth_sfm_ros.models import build_models
    from depth_sfm_ros.runtime.export import export_bundle
    from depth_sfm_ros.runtime.model_card import read_model_card

    out, _ = demo_out
    card = read_model_card(DEFAULT_MODEL_DIR)
    torch.manual_seed(0)
    untrained_dir = tmp_path / "untrained"
    export_bundle(build_models(card.model_config), card.model_config, untrained_dir,
                  intrinsics_normalized=card.intrinsics_normalized, verify=False)

    def abs_rel(model_dir, name):
        # scale "none" and a wide depth range: median scaling (in the metrics) then compares shape only
        config = replace(node_pipeline_config(model_dir, scale_mode="none"), min_depth_m=1e-6, max_depth_m=1e6)
        metrics = evaluate_bag(out / "drive_bag", tmp_path / name, pipeline_config=config, report=False)
        return metrics["depth"]["abs_rel"]

    trained, untrained = abs_rel(DEFAULT_MODEL_DIR, "trained"), abs_rel(untrained_dir, "untrained")
    assert trained < untrained, f"default model abs_rel {trained:.3f} is not below the untrained network's {untrained:.3f}"
