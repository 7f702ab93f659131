"""``static_pairs``: training samples in which nothing moves, known without a label (issue 13): every source is
the target seen through a pure camera rotation (or a still camera), the dynamic mask is zero, and the pose that
replaces ``T_src_tgt_gt`` is the one the project's own view synthesis needs to undo the rotation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_datasets import write_synthetic_folder

from depth_sfm_ros.geometry.ops import inverse_warp
from depth_sfm_training.datasets import build_dataset
from depth_sfm_training.datasets.static_pairs import StaticPairs, rotation_homography, static_pair_rng

OFFSETS = (0, -1, 1)
SH, SW = 48, 64


def smooth_sample(seed: int = 0, with_mask: bool = True) -> dict:
    """A sample of the dataset contract whose images are smooth (bilinear resampling is then nearly exact)."""
    rows, cols = np.mgrid[0:SH, 0:SW].astype(np.float32)
    phase = np.random.default_rng(seed).uniform(0, 6, 3)
    target = np.stack([0.5 + 0.4 * np.sin(cols / 9 + phase[c]) * np.cos(rows / 7 - phase[c])
                       for c in range(3)]).astype(np.float32)
    images = torch.from_numpy(np.stack([target, np.roll(target, 3, 2), np.roll(target, -3, 2)]))
    mask = torch.zeros(3, 1, SH, SW)
    if with_mask:
        mask[:, :, 10:20, 10:30] = 1.0
    K = torch.tensor([[50.0, 0, (SW - 1) / 2], [0, 50.0, (SH - 1) / 2], [0, 0, 1]])
    ids = torch.zeros(3, 1, SH, SW, dtype=torch.int64)
    ids[:, :, 10:20, 10:30] = 7
    return {"images": images * 0.9, "images_raw": images, "K": K, "dynamic_mask": mask,
            "has_dynamic_mask": with_mask, "instance_ids": ids, "has_instances": True,
            "T_src_tgt_gt": torch.eye(4).repeat(2, 1, 1) + 0.1, "depth_gt": torch.full((1, SH, SW), 4.0),
            "has_depth_gt": True, "index": 0, "sequence": "s", "frame": 0}


def static(**options) -> StaticPairs:
    return StaticPairs(OFFSETS, **{"prob": 1.0, "noise_std": 0.0, **options})


def test_the_mask_becomes_zero_and_known_even_on_samples_without_one():
    for with_mask in (True, False):
        out = static()(smooth_sample(with_mask=with_mask), np.random.default_rng(0))
        assert out["has_dynamic_mask"] and out["dynamic_mask"].shape == (3, 1, SH, SW)
        assert not out["dynamic_mask"].any()
        # the target and everything that belongs to it are kept
        sample = smooth_sample(with_mask=with_mask)
        for key in ("K", "depth_gt"):
            assert torch.equal(out[key], sample[key])
        assert torch.equal(out["images"][0], sample["images"][0])
        assert torch.equal(out["images_raw"][0], sample["images_raw"][0])


def test_a_still_source_is_the_target_itself_plus_noise():
    out = static(still_fraction=1.0)(smooth_sample(), np.random.default_rng(1))
    for s in (1, 2):
        assert torch.allclose(out["images_raw"][s], out["images_raw"][0], atol=1e-6)
        assert torch.equal(out["T_src_tgt_gt"][s - 1], torch.eye(4))
        assert torch.equal(out["instance_ids"][s], out["instance_ids"][0])
    noisy = static(still_fraction=1.0, noise_std=0.05)(smooth_sample(), np.random.default_rng(1))
    difference = (noisy["images_raw"][1] - noisy["images_raw"][0]).abs()
    assert 0.0 < difference.mean() < 0.06  # sensor noise only; the two sources draw their own
    assert not torch.equal(noisy["images_raw"][1], noisy["images_raw"][2])


def test_view_synthesis_with_the_returned_pose_undoes_the_rotation_at_any_depth():
    out = static(still_fraction=0.0, max_rotation_deg=4.0)(smooth_sample(), np.random.default_rng(2))
    target = out["images_raw"][0:1]
    for s in (1, 2):
        T = out["T_src_tgt_gt"][s - 1]
        assert torch.allclose(T[:3, 3], torch.zeros(3)) and not torch.allclose(T, torch.eye(4))
        assert (out["images_raw"][s] - target[0]).abs().mean() > 0.02  # the source really is rotated
        for depth_m in (0.5, 30.0):  # a pure rotation: the warp does not depend on the depth
            warp = inverse_warp(out["images_raw"][s:s + 1], torch.full((1, 1, SH, SW), depth_m), T[None],
                                out["K"][None])
            inside = warp.valid[0, 0] > 0
            inside[:4], inside[-4:], inside[:, :4], inside[:, -4:] = False, False, False, False
            assert inside.float().mean() > 0.5
            error = (warp.image[0] - target[0]).abs().mean(0)[inside]
            assert error.mean() < 0.01, f"source {s}, depth {depth_m}: {error.mean():.4f}"
    # offsets -1 and +1 turn opposite ways, as a turning camera does
    R_prev, R_next = out["T_src_tgt_gt"][0, :3, :3], out["T_src_tgt_gt"][1, :3, :3]
    assert torch.allclose(R_prev @ R_next, torch.eye(3), atol=1e-6)


def test_instance_ids_move_with_the_image():
    out = static(still_fraction=0.0, max_rotation_deg=4.0)(smooth_sample(), np.random.default_rng(3))
    H = rotation_homography(out["K"].numpy(), out["T_src_tgt_gt"][0, :3, :3].numpy())
    centre_tgt = np.array([19.5, 14.5, 1.0])  # (u, v) centre of the id-7 box in the target
    u, v, w = H @ centre_tgt
    ids_src = out["instance_ids"][1, 0].numpy()
    rows, cols = np.nonzero(ids_src == 7)
    assert set(np.unique(ids_src)) <= {0, 7}
    assert abs(cols.mean() - u / w) < 1.0 and abs(rows.mean() - v / w) < 1.0


def test_prob_zero_leaves_the_sample_and_prob_draws_are_seeded():
    sample = smooth_sample()
    assert StaticPairs(OFFSETS, prob=0.0)(sample, np.random.default_rng(0)) is sample
    half = StaticPairs(OFFSETS, prob=0.5)
    decisions = [half(sample, static_pair_rng(0, 0, i)) is not sample for i in range(200)]
    assert 70 < sum(decisions) < 130
    again = [half(sample, static_pair_rng(0, 0, i)) is not sample for i in range(200)]
    assert decisions == again


@pytest.mark.parametrize("options, message", [
    ({"prob": 1.5}, "prob"), ({"still_fraction": -0.1}, "still_fraction"), ({"max_rotation_deg": 30}, "rotation"),
    ({"noise_std": 0.5}, "noise_std"), ({"prob": "a lot"}, "finite number"), ({"noise_std": float("nan")}, "finite"),
])
def test_bad_parameters_raise(options, message):
    with pytest.raises(ValueError, match=message):
        StaticPairs(OFFSETS, **options)


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="unknown static_pairs keys"):
        StaticPairs.from_config({"probability": 0.3}, OFFSETS)
    with pytest.raises(ValueError, match="mapping"):
        StaticPairs.from_config(0.3, OFFSETS)
    with pytest.raises(ValueError, match="target"):
        StaticPairs((-1, 0), prob=0.5)
    with pytest.raises(ValueError, match="expected images"):
        static()({**smooth_sample(), "images": torch.zeros(2, 3, SH, SW)}, np.random.default_rng(0))


def test_the_key_through_build_dataset_training_only(tmp_path):
    synth = write_synthetic_folder(tmp_path / "synth", frames=4)
    base = {"type": "synthetic", "data_path": str(synth), "augment": True, "jitter": None, "flip_prob": 0.0,
            "seed": 5}
    plain = build_dataset(base)
    still = build_dataset({**base, "static_pairs": {"prob": 1.0, "still_fraction": 1.0, "noise_std": 0.0}})
    assert plain[0]["dynamic_mask"].any()  # the renderer's masks: something moves in the plain samples
    for index in range(len(plain)):
        q = still[index]
        assert not q["dynamic_mask"].any() and q["has_dynamic_mask"]
        assert torch.allclose(q["images_raw"][1], q["images_raw"][0], atol=1e-6)
        assert torch.equal(q["images_raw"][0], plain[index]["images_raw"][0])
    # prob 0 and evaluation samples (augment off) are bit-identical to the plain ones
    for options in ({"static_pairs": {"prob": 0.0}}, {"augment": False, "static_pairs": {"prob": 1.0}}):
        other = build_dataset({**base, **options})
        reference = plain if other.augment else build_dataset({**base, "augment": False})
        assert all(torch.equal(other[i]["images_raw"], reference[i]["images_raw"]) for i in range(len(other)))
    with pytest.raises(ValueError, match="static_pairs"):
        build_dataset({**base, "static_pairs": {"prob": 3}})


def test_the_config_enables_it_on_the_training_mixture_only():
    from depth_sfm_training.config import CONFIG_DIR, load_config
    from depth_sfm_training.trainer import dataset_config_from

    config = load_config(CONFIG_DIR / "real_mixture_mask_static.yaml")
    train = dataset_config_from(config, "train")
    assert train["type"] == "mixture" and train["augment"] and train["dynamic_mask_dir"]
    pairs = StaticPairs.from_config(train["static_pairs"], train["frame_offsets"])
    assert pairs.prob == 0.25 and pairs.max_rotation_deg == 2.0
    assert "static_pairs" not in dataset_config_from(config, "val")
    assert config["train"]["freeze"] == ["depth", "pose"] and config["data"]["use_dynamic_masks"]
