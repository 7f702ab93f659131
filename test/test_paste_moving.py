"""``paste_moving``: label-free moving objects pasted into training samples that have a dynamic mask (issue 13):
the mask gains exactly the pasted shapes, the sources see them displaced by velocity x frame offset, and nothing
else of the sample changes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_datasets import H, W, write_synthetic_folder

from depth_sfm_training.datasets import PasteMovingObjects, build_dataset
from depth_sfm_training.datasets.paste import MovingObject, draw_shape, footprint, paste_objects, paste_rng

OFFSETS = (0, -1, 1)
SH, SW = 40, 56  # hand-made samples: large enough that a slow object mostly stays inside the frame


def random_sample(seed: int = 0, with_mask: bool = True, frames: int = 3) -> dict:
    """A sample of the dataset contract with noise images (every pasted pixel differs from what it covers)."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(frames, 3, SH, SW, generator=g)
    mask = torch.zeros(frames, 1, SH, SW)
    if with_mask:
        mask[:, :, 2:6, 3:9] = 1.0  # an existing moving object
    return {"images": (raw * 0.8 + 0.1).clamp(0, 1), "images_raw": raw, "K": torch.eye(3),
            "dynamic_mask": mask, "has_dynamic_mask": with_mask,
            "instance_ids": torch.zeros(frames, 1, SH, SW, dtype=torch.int64), "has_instances": False,
            "depth_gt": torch.full((1, SH, SW), 5.0), "has_depth_gt": True, "index": 0, "sequence": "s", "frame": 0}


def paster(**options) -> PasteMovingObjects:
    return PasteMovingObjects(OFFSETS, **{"prob": 1.0, **options})


def changed(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(S, H, W) bool: pixels where any channel differs."""
    return (a != b).any(dim=1).numpy()


def shift_between(mask_a: np.ndarray, mask_b: np.ndarray) -> tuple[int, int]:
    """The integer (rows, cols) shift taking mask_a onto mask_b (asserting one exists, no clipping)."""
    (ra, ca), (rb, cb) = np.argwhere(mask_a).min(0), np.argwhere(mask_b).min(0)
    d = (int(rb - ra), int(cb - ca))
    assert np.array_equal(np.roll(mask_a, d, axis=(0, 1)), mask_b)
    return d


# ------------------------------------------------------------------------------------------ shapes, footprints
def test_drawn_shapes_have_the_drawn_area_and_fit():
    rng = np.random.default_rng(0)
    for area in (1, 7, 40, 300):
        shape = draw_shape(rng, area, 30, 40)
        assert shape.dtype == np.bool_ and shape.shape[0] <= 30 and shape.shape[1] <= 40
        assert shape.sum() == min(area, shape.size)
    tiny = draw_shape(rng, 500, 4, 5)  # more than the frame holds: the whole box
    assert tiny.shape == (4, 5) and tiny.all()


def hand_object(velocity=(1.0, 2.0), scale_rate=0.0) -> MovingObject:
    shape = np.array([[1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]], bool)  # an L
    texture = np.stack([np.full((3, 4), v, np.float32) for v in (0.1, 0.2, 0.3)])
    return MovingObject(shape=shape, texture=texture, texture_raw=texture + 0.5, top_left=(10, 20),
                        velocity=velocity, scale_rate=scale_rate)


def test_footprint_is_the_shape_in_the_target_and_displaced_by_velocity_times_offset():
    obj = hand_object()
    expected = np.zeros((SH, SW), bool)
    expected[10:13, 20:24] = obj.shape
    for offset in (0, -1, 1, 2):
        mask, rows, cols = footprint(obj, offset, SH, SW)
        assert np.array_equal(mask, np.roll(expected, (offset, 2 * offset), axis=(0, 1)))
        assert obj.shape[rows, cols].all() and len(rows) == obj.shape.sum()
    # a scale change leaves the target alone and grows / shrinks the sources about the centre
    grow = hand_object(velocity=(0.0, 0.0), scale_rate=0.4)
    assert np.array_equal(footprint(grow, 0, SH, SW)[0], expected)
    assert footprint(grow, 1, SH, SW)[0].sum() > expected.sum() > footprint(grow, -1, SH, SW)[0].sum()
    # an object that leaves the frame is clipped
    mask, rows, cols = footprint(hand_object(velocity=(0.0, 40.0)), 1, SH, SW)
    assert mask.sum() == len(rows) == 0


def test_paste_objects_writes_texture_mask_depth_and_new_instance_ids():
    sample = random_sample()
    sample["has_instances"] = True
    sample["instance_ids"][:, :, 30:, :] = 4
    obj = hand_object()
    out = paste_objects(sample, [obj], OFFSETS)
    for s, offset in enumerate(OFFSETS):
        where = footprint(obj, offset, SH, SW)[0]
        assert np.array_equal(changed(out["images_raw"], sample["images_raw"])[s], where)
        assert torch.all(out["images"][s][:, torch.from_numpy(where)] == torch.tensor([[0.1], [0.2], [0.3]]))
        assert torch.all(out["images_raw"][s][:, torch.from_numpy(where)] == torch.tensor([[0.6], [0.7], [0.8]]))
        assert np.array_equal(out["dynamic_mask"][s, 0].numpy(), sample["dynamic_mask"][s, 0].numpy() + where)
        assert np.array_equal(out["instance_ids"][s, 0].numpy() == 5, where)
    target = footprint(obj, 0, SH, SW)[0]
    assert np.array_equal(out["depth_gt"][0].numpy() == 0, target)
    assert set(out) == set(sample) and out["K"] is sample["K"]
    assert sample["dynamic_mask"].sum() == 3 * 24  # the input is not modified


# ------------------------------------------------------------------------------------------ PasteMovingObjects
def test_prob_one_adds_the_pasted_shapes_to_the_mask_and_changes_the_images_exactly_there():
    for index in range(6):
        sample = random_sample(index)
        out = paster(max_objects=3)(sample, paste_rng(0, 0, index))
        old, new = sample["dynamic_mask"][:, 0].numpy() > 0, out["dynamic_mask"][:, 0].numpy() > 0
        assert (new >= old).all() and new[0].sum() > old[0].sum()
        assert set(np.unique(out["dynamic_mask"].numpy())) == {0.0, 1.0}
        for key in ("images", "images_raw"):
            diff = changed(out[key], sample[key])
            # pasted pixels (outside the old mask; under it the mask was already 1) and only those change
            assert not (diff & ~new).any()
            assert diff[0].sum() >= 0.9 * (new[0] & ~old[0]).sum()
        # the network input shows the jittered version of the loss image's object: same donor place in both
        pasted = torch.from_numpy(new[0] & ~old[0])
        assert torch.allclose(out["images"][0][:, pasted], (out["images_raw"][0][:, pasted] * 0.8 + 0.1).clamp(0, 1))
        assert not out["depth_gt"][0][pasted].any()
        assert torch.equal(out["instance_ids"], sample["instance_ids"])  # no instance masks: untouched


def test_sources_see_opposite_displacements_velocity_times_offset():
    paste = paster(max_objects=1, area_range=(0.02, 0.03), speed_px_range=(2.0, 5.0), scale_change=0.0)
    checked = 0
    for index in range(20):
        sample = random_sample(index, with_mask=False)
        sample["has_dynamic_mask"] = True  # an all-static mask: the gain is the object alone
        out = paste(sample, paste_rng(3, 0, index))
        masks = out["dynamic_mask"][:, 0].numpy() > 0
        if len({int(m.sum()) for m in masks}) != 1:  # partly outside a source frame: the shift is not visible
            continue
        back, ahead = shift_between(masks[0], masks[1]), shift_between(masks[0], masks[2])  # offsets -1, +1
        assert back == (-ahead[0], -ahead[1]) and 2 - 1 <= np.hypot(*ahead) <= 5 + 1
        # the same texture, moved: every source pixel of the object shows the target's pixel it came from
        rows, cols = np.nonzero(masks[0])
        for s, (dr, dc) in ((1, back), (2, ahead)):
            assert torch.equal(out["images_raw"][s][:, rows + dr, cols + dc], out["images_raw"][0][:, rows, cols])
            assert torch.equal(out["images"][s][:, rows + dr, cols + dc], out["images"][0][:, rows, cols])
        checked += 1
    assert checked >= 10


def test_prob_zero_and_samples_without_a_mask_are_untouched():
    sample = random_sample()
    assert paster(prob=0.0)(sample, paste_rng(0, 0, 0)) is sample
    no_mask = random_sample(with_mask=False)
    assert paster()(no_mask, paste_rng(0, 0, 0)) is no_mask


def test_deterministic_per_seed_epoch_index():
    paste, sample = paster(), random_sample()
    a, b = paste(sample, paste_rng(1, 2, 3)), paste(sample, paste_rng(1, 2, 3))
    assert all(torch.equal(a[k], b[k]) for k in ("images", "images_raw", "dynamic_mask", "depth_gt"))
    others = [paste(sample, paste_rng(*key)) for key in ((1, 2, 4), (1, 3, 3), (2, 2, 3))]
    assert all(not torch.equal(a["dynamic_mask"], o["dynamic_mask"]) for o in others)


@pytest.mark.parametrize("options, message", [
    ({"prob": 1.5}, "prob must be in"),
    ({"prob": "yes"}, "prob must be a finite number"),
    ({"max_objects": 0}, "max_objects must be an integer >= 1"),
    ({"max_objects": 2.5}, "max_objects must be an integer"),
    ({"max_objects": True}, "max_objects must be an integer"),
    ({"area_range": [0.0, 0.1]}, "area_range must be"),
    ({"area_range": [0.1, 0.05]}, "area_range must be"),
    ({"area_range": [0.1, 0.9]}, "area_range must be"),
    ({"area_range": 0.05}, r"area_range must be \[min, max\]"),
    ({"speed_px_range": [0, 4]}, "speed_px_range must be"),
    ({"speed_px_range": [3, 2]}, "speed_px_range must be"),
    ({"speed_px_range": [1, float("nan")]}, "speed_px_range must be a finite number"),
    ({"scale_change": 0.5}, "scale_change must be in"),
    ({"scale_change": -0.1}, "scale_change must be in"),
])
def test_bad_parameters_raise(options, message):
    with pytest.raises(ValueError, match=message):
        PasteMovingObjects(OFFSETS, **options)


def test_bad_configs_and_mismatched_samples_raise():
    with pytest.raises(ValueError, match=r"unknown paste_moving keys: \['speed'\]"):
        PasteMovingObjects.from_config({"speed": [1, 2]}, OFFSETS)
    with pytest.raises(ValueError, match="paste_moving must be a mapping"):
        PasteMovingObjects.from_config(True, OFFSETS)
    with pytest.raises(ValueError, match="frame_offsets with the target"):
        PasteMovingObjects((-1, 0, 1))
    with pytest.raises(ValueError, match=r"expected images / images_raw \(2, 3, H, W\)"):
        PasteMovingObjects((0, 1), prob=1.0)(random_sample(), paste_rng(0, 0, 0))
    assert PasteMovingObjects.from_config({}, OFFSETS).area_range == (0.01, 0.08)


# ------------------------------------------------------------------------------------------ through the datasets
@pytest.fixture()
def synth(tmp_path):
    return write_synthetic_folder(tmp_path / "synth", frames=4)


def synthetic(synth: Path, **options) -> dict:
    return {"type": "synthetic", "data_path": str(synth), "augment": True, "jitter": None, "flip_prob": 0.0,
            "seed": 5, **options}


def same_samples(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
                                    for k in a)


def test_the_key_through_build_dataset(synth):
    plain = build_dataset(synthetic(synth))
    pasted = build_dataset(synthetic(synth, paste_moving={"prob": 1.0, "area_range": [0.05, 0.08]}))
    assert isinstance(pasted.paste, PasteMovingObjects) and plain.paste is None
    for index in range(len(plain)):
        p, q = plain[index], pasted[index]
        assert q["has_dynamic_mask"] and (q["dynamic_mask"] >= p["dynamic_mask"]).all()
        assert q["dynamic_mask"][0].sum() > p["dynamic_mask"][0].sum()
        assert not (changed(q["images_raw"], p["images_raw"]) & ~(q["dynamic_mask"][:, 0].numpy() > 0)).any()
        assert torch.equal(q["K"], p["K"]) and torch.equal(q["T_src_tgt_gt"], p["T_src_tgt_gt"])
    assert same_samples(pasted[0], pasted[0])  # deterministic
    pasted.set_epoch(1)
    assert not torch.equal(pasted[0]["dynamic_mask"], build_dataset(synthetic(
        synth, paste_moving={"prob": 1.0, "area_range": [0.05, 0.08]}))[0]["dynamic_mask"])
    # prob 0: every sample bit-identical (the paste draws are a stream of their own)
    zero = build_dataset(synthetic(synth, jitter=[0.2, 0.2, 0.2, 0.1], flip_prob=0.5, paste_moving={"prob": 0.0}))
    jittered = build_dataset(synthetic(synth, jitter=[0.2, 0.2, 0.2, 0.1], flip_prob=0.5))
    assert all(same_samples(zero[i], jittered[i]) for i in range(len(zero)))


def test_ignored_without_augment_and_on_samples_without_a_mask(synth, tmp_path):
    options = {"paste_moving": {"prob": 1.0}}
    assert same_samples(build_dataset(synthetic(synth, augment=False, **options))[0],
                        build_dataset(synthetic(synth, augment=False))[0])
    no_masks = tmp_path / "no_masks"  # a dynamic-mask folder without files: no sample has a mask
    (no_masks / "synth").mkdir(parents=True)
    bare = build_dataset(synthetic(synth, dynamic_mask_dir=str(no_masks), **options))
    assert not bare[0]["has_dynamic_mask"]
    assert same_samples(bare[0], build_dataset(synthetic(synth, dynamic_mask_dir=str(no_masks)))[0])
    with pytest.raises(ValueError, match="paste_moving prob"):  # checked even where it would not be applied
        build_dataset(synthetic(synth, augment=False, paste_moving={"prob": 2}))


def test_the_key_in_mixtures_and_through_the_trainer_config(synth, tmp_path):
    from depth_sfm_training.config import load_config
    from depth_sfm_training.trainer import dataset_config_from

    def mixture(**top) -> dict:
        return {"type": "mixture", "data_path": str(tmp_path), "height": H, "width": W, "augment": True,
                "jitter": None, "flip_prob": 0.0, "seed": 5, **top,
                "components": [{"type": "synthetic", "path": "synth", "paste_moving": {"prob": 1.0}},
                               {"type": "synthetic", "path": "synth"}]}

    plain = build_dataset(synthetic(synth))
    mix = build_dataset(mixture())
    n = len(mix.datasets[0])
    assert mix.datasets[0].paste is not None and mix.datasets[1].paste is None
    assert not torch.equal(mix[0]["dynamic_mask"], plain[0]["dynamic_mask"])
    assert torch.equal(mix[n]["dynamic_mask"], plain[0]["dynamic_mask"])
    # set on the mixture it is inherited; a component's null switches it off there
    inherited = build_dataset({**mixture(paste_moving={"prob": 1.0}),
                               "components": [{"type": "synthetic", "path": "synth"},
                                              {"type": "synthetic", "path": "synth", "paste_moving": None}]})
    assert torch.equal(inherited[0]["dynamic_mask"], mix[0]["dynamic_mask"])
    assert torch.equal(inherited[n]["dynamic_mask"], plain[0]["dynamic_mask"])
    with pytest.raises(ValueError, match="unknown keys"):
        build_dataset({**mixture(), "paste_moving_objects": {}})

    config = load_config(None, ["data.dataset=synthetic", f"data.path={synth}", "data.split=null",
                                "data.augment=true", f"data.val_path={synth}",
                                "data.extra={paste_moving: {prob: 1.0, speed_px_range: [1, 3]}}"])
    train = build_dataset(dataset_config_from(config, "train"))
    assert train.paste is not None and train.paste.speed_px_range == (1.0, 3.0)
    val = build_dataset(dataset_config_from(config, "val"))
    assert not val.augment  # the validation set carries the key but never pastes
    assert same_samples(val[0], build_dataset({**dataset_config_from(config, "val"), "paste_moving": None})[0])


def test_the_shipped_config_enables_it_on_the_training_mixture_only():
    from depth_sfm_training.config import CONFIG_DIR, load_config
    from depth_sfm_training.trainer import dataset_config_from

    config = load_config(CONFIG_DIR / "real_mixture_mask_paste.yaml")
    train = dataset_config_from(config, "train")
    assert train["type"] == "mixture" and train["augment"] and train["dynamic_mask_dir"]
    assert len(train["components"]) == 5  # the teacher config's components are kept
    paste = PasteMovingObjects.from_config(train["paste_moving"], train["frame_offsets"])
    assert paste.prob == 0.5 and paste.speed_px_range == (2.0, 12.0)
    assert "paste_moving" not in dataset_config_from(config, "val")
    assert config["train"]["freeze"] == ["depth", "pose"] and config["data"]["use_dynamic_masks"]
