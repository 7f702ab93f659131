"""weights.safetensors: the PyTorch weights an exported model ships for fine-tuning (no pickle)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from depth_sfm_ros.models import build_models, validate_model_config  # noqa: E402
from depth_sfm_ros.models.weights_file import (WEIGHTS_FILE, WeightsFileError, bundle_from_weights,  # noqa: E402
                                               load_bundle_weights, save_bundle_weights)

CONFIG = {"encoder": "lite", "pose_encoder": "lite_small", "use_motion_net": True, "height": 64, "width": 96}


def _bundle(seed: int = 0):
    torch.manual_seed(seed)
    bundle = build_models(CONFIG)
    with torch.no_grad():  # non-trivial BN statistics, so a lost buffer would show
        for module in bundle.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return bundle.eval()


@pytest.mark.parametrize("half", [True, False])
def test_round_trip_gives_the_same_networks(tmp_path: Path, half: bool) -> None:
    bundle = _bundle()
    path = save_bundle_weights(bundle, CONFIG, tmp_path / WEIGHTS_FILE, half=half)
    loaded, cfg = bundle_from_weights(path)
    assert cfg["pose_encoder"] == "lite_small" and loaded.motion is not None
    x = torch.rand(1, 3, 64, 96)
    tol = 5e-3 if half else 0.0
    with torch.no_grad():
        a, b = bundle.depth(x), loaded.depth(x)
        a, b = (a[0], b[0]) if isinstance(a, (list, tuple)) else (a, b)
        assert torch.allclose(a, b, atol=tol, rtol=tol)
        assert torch.allclose(bundle.pose(x, x.flip(-1)), loaded.pose(x, x.flip(-1)), atol=tol * 0.1 + 1e-7)
    # the file holds FP16 floats when asked (half the size), FP32 otherwise; read back as FP32 either way
    state, _ = load_bundle_weights(path)
    assert all(t.dtype != torch.float16 for net in state.values() for t in net.values())
    other = save_bundle_weights(bundle, CONFIG, tmp_path / "other.safetensors", half=not half)
    assert (path.stat().st_size < other.stat().st_size) == half


def test_model_directory_is_accepted(tmp_path: Path) -> None:
    save_bundle_weights(_bundle(), CONFIG, tmp_path / WEIGHTS_FILE)
    _, cfg = load_bundle_weights(tmp_path)
    assert cfg["encoder"] == "lite"


def test_damaged_and_foreign_files_are_refused(tmp_path: Path) -> None:
    import safetensors.torch as st

    path = save_bundle_weights(_bundle(), CONFIG, tmp_path / WEIGHTS_FILE)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFileError, match="corrupt or truncated"):
        load_bundle_weights(tmp_path / "cut.safetensors")
    st.save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"), metadata={"format": "other"})
    with pytest.raises(WeightsFileError, match="not a depth_sfm_ros weights file"):
        load_bundle_weights(tmp_path / "foreign.safetensors")
    st.save_file({"depth.x": torch.zeros(2), "pose.y": torch.zeros(2)}, str(tmp_path / "misfit.safetensors"),
                 metadata={"format": "depth_sfm_ros/weights/v1", "model_config": json.dumps(CONFIG)})
    with pytest.raises(WeightsFileError, match="do not fit"):
        bundle_from_weights(tmp_path / "misfit.safetensors")
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_bundle_weights(tmp_path / "missing.safetensors")


def test_pickle_is_never_executed(tmp_path: Path) -> None:
    """A torch pickle renamed to .safetensors is rejected as unreadable, not unpickled."""
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"x": Evil()}, tmp_path / "evil.safetensors")
    with pytest.raises(WeightsFileError):
        load_bundle_weights(tmp_path / "evil.safetensors")
    assert not marker.exists()


def test_init_weights_from_an_exported_model_dir(tmp_path: Path) -> None:
    """model.init_weights accepts an exported model directory (its weights.safetensors)."""
    from depth_sfm_training.trainer import load_init_weights

    source = _bundle(seed=1)
    save_bundle_weights(source, CONFIG, tmp_path / WEIGHTS_FILE, half=False)
    target = _bundle(seed=2)
    report = load_init_weights(target, validate_model_config(CONFIG), tmp_path)
    assert report["depth"] == "loaded" and report["pose"] == "loaded" and report["motion"] == "loaded"
    for a, b in zip(source.depth.parameters(), target.depth.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="pose_encoder"):
        other = validate_model_config({**CONFIG, "pose_encoder": "lite"})
        load_init_weights(build_models(other), other, tmp_path)
