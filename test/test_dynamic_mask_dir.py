"""``dynamic_mask_dir``: per-frame binary dynamic-object masks from a folder (a label-free motion teacher's, a
segmenter's) replace a sequence's own dynamic masks (here a synthetic folder's ground truth) in training samples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_datasets import H, W, write_synthetic_folder

from depth_sfm_training.datasets import DynamicMaskFolder, build_dataset
from depth_sfm_training.datasets.io import write_png
from depth_sfm_training.datasets.transforms import resize_nearest

FRAMES = 4


def gt_mask() -> np.ndarray:
    """The ground-truth dynamic mask write_synthetic_folder stores for every frame."""
    mask = np.zeros((H, W), bool)
    mask[8:12, 4:10] = True
    return mask


def teacher_mask(k: int) -> np.ndarray:
    """A per-frame mask that differs from the ground truth and from frame to frame (and is not flip-symmetric)."""
    mask = np.zeros((H, W), bool)
    mask[1:5, 1 + 2 * k:6 + 2 * k] = True
    mask[13, 20] = True
    return mask


def write_teacher_masks(root: Path, sequence: str = "synth", frames=range(FRAMES)) -> Path:
    for k in frames:
        # 8-bit 255 on even frames, 16-bit 1000 on odd ones: any value > 0 is moving
        value, dtype = (255, np.uint8) if k % 2 == 0 else (1000, np.uint16)
        write_png(root / sequence / f"{k:06d}.png", teacher_mask(k).astype(dtype) * dtype(value))
    return root


@pytest.fixture()
def synth(tmp_path):
    return write_synthetic_folder(tmp_path / "synth", frames=FRAMES)


def masks_of(sample) -> np.ndarray:
    return sample["dynamic_mask"][:, 0].numpy()


def test_folder_reads_binary_masks_and_refuses_a_missing_root(synth, tmp_path):
    from depth_sfm_training.datasets.folder import SyntheticFolderSequence

    folder = DynamicMaskFolder(write_teacher_masks(tmp_path / "teacher"))
    seq = SyntheticFolderSequence(synth)
    for k in range(FRAMES):
        mask = folder.load(seq, k)
        assert mask.dtype == np.bool_ and np.array_equal(mask, teacher_mask(k))
    (tmp_path / "teacher" / "synth" / "000002.png").unlink()
    assert folder.load(seq, 2) is None
    assert folder.path(seq, 2) == tmp_path / "teacher" / "synth" / "000002.png"
    with pytest.raises(FileNotFoundError, match="dynamic mask folder .*nowhere"):
        DynamicMaskFolder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="dynamic mask folder .*nowhere"):
        build_dataset({"type": "synthetic", "data_path": str(synth), "dynamic_mask_dir": str(tmp_path / "nowhere")})


def test_folder_masks_replace_the_ground_truth(synth, tmp_path):
    teacher = write_teacher_masks(tmp_path / "teacher")
    gt = build_dataset({"type": "synthetic", "data_path": str(synth)})
    ds = build_dataset({"type": "synthetic", "data_path": str(synth), "dynamic_mask_dir": str(teacher)})
    assert len(ds) == len(gt) == FRAMES - 2
    for index in range(len(ds)):
        s = ds[index]
        frames = ds.frames_of(index)[1]
        assert s["has_dynamic_mask"] and s["dynamic_mask"].dtype == torch.float32
        assert np.array_equal(masks_of(s), np.stack([teacher_mask(k) for k in frames]).astype(np.float32))
        assert np.array_equal(masks_of(gt[index]), np.stack([gt_mask()] * 3).astype(np.float32))
        assert torch.equal(s["images"], gt[index]["images"]) and torch.equal(s["instance_ids"], gt[index]["instance_ids"])
    # a frame range re-numbers positions but the files keep the recording's frame ids
    ranged = build_dataset({"type": "synthetic", "data_path": str(synth), "frames": [1, 4],
                            "dynamic_mask_dir": str(teacher)})
    assert ranged.frames_of(0)[1] == [1, 0, 2]  # positions 1, 0, 2 of the range = frames 2, 1, 3
    assert np.array_equal(masks_of(ranged[0]), np.stack([teacher_mask(k) for k in (2, 1, 3)]).astype(np.float32))


def test_a_missing_file_means_no_mask_for_that_sample(synth, tmp_path):
    teacher = write_teacher_masks(tmp_path / "teacher", frames=[0, 1, 2])  # no file for frame 3
    ds = build_dataset({"type": "synthetic", "data_path": str(synth), "dynamic_mask_dir": str(teacher)})
    assert ds.frames_of(1)[1] == [2, 1, 3]
    assert ds[0]["has_dynamic_mask"]
    s = ds[1]  # its source frame 3 has no file: no mask, not the ground truth
    assert not s["has_dynamic_mask"]
    assert s["dynamic_mask"].shape == (3, 1, H, W) and not s["dynamic_mask"].any()


def test_flip_crop_and_resize_apply_as_to_the_sequence_masks(synth, tmp_path):
    teacher = write_teacher_masks(tmp_path / "teacher")
    flipped = build_dataset({"type": "synthetic", "data_path": str(synth), "dynamic_mask_dir": str(teacher),
                             "augment": True, "flip_prob": 1.0, "jitter": None})
    frames = flipped.frames_of(0)[1]
    assert np.array_equal(masks_of(flipped[0]),
                          np.stack([teacher_mask(k)[:, ::-1] for k in frames]).astype(np.float32))
    # the same masks as files and as the sequence's own give the same samples under crop -> resize -> flip
    same = tmp_path / "same_as_gt"
    for k in range(FRAMES):
        write_png(same / "synth" / f"{k:06d}.png", gt_mask().astype(np.uint8) * 255)
    cfg = {"type": "synthetic", "data_path": str(synth), "crop": [2, 3, 20, 12], "height": 7, "width": 11,
           "augment": True, "flip_prob": 1.0, "jitter": None}
    from_gt, from_folder = build_dataset(cfg)[0], build_dataset({**cfg, "dynamic_mask_dir": str(same)})[0]
    assert from_gt["dynamic_mask"].shape == (3, 1, 7, 11) and from_gt["dynamic_mask"].any()
    assert torch.equal(from_gt["dynamic_mask"], from_folder["dynamic_mask"])
    assert torch.equal(from_gt["K"], from_folder["K"])


def test_bad_files_raise_naming_the_file(synth, tmp_path):
    teacher = write_teacher_masks(tmp_path / "teacher")
    write_png(teacher / "synth" / "000002.png", np.ones((H - 1, W), np.uint8))  # wrong size
    ds = build_dataset({"type": "synthetic", "data_path": str(synth), "dynamic_mask_dir": str(teacher)})
    assert 2 in ds.frames_of(0)[1]
    with pytest.raises(ValueError, match=r"synth frame 2: mask/depth shape \(15, 24\).*000002\.png"):
        ds[0]
    write_png(teacher / "synth" / "000002.png", np.zeros((H, W, 3), np.uint8))  # not single-channel
    with pytest.raises(ValueError, match=r"000002\.png: expected a single-channel PNG"):
        ds[0]


def test_the_key_through_the_trainer_config_and_mixtures(synth, tmp_path):
    from depth_sfm_training.config import load_config
    from depth_sfm_training.trainer import dataset_config_from

    teacher = write_teacher_masks(tmp_path / "teacher")
    config = load_config(None, ["data.dataset=synthetic", f"data.path={synth}", "data.split=null",
                                "data.height=32", "data.width=64", "data.augment=false", "data.val_path=null",
                                f"data.extra={{dynamic_mask_dir: '{teacher}'}}"])
    ds = build_dataset(dataset_config_from(config, "train"))
    frames = ds.frames_of(0)[1]
    expected = np.stack([resize_nearest(teacher_mask(k).astype(np.uint8), 64, 32) for k in frames])
    assert ds[0]["has_dynamic_mask"] and np.array_equal(masks_of(ds[0]), expected.astype(np.float32))

    # a mixture component carries its own folder; the other keeps its ground truth
    def mixture(**top) -> dict:
        return {"type": "mixture", "data_path": str(tmp_path), "height": H, "width": W, **top,
                "components": [{"type": "synthetic", "path": "synth", "dynamic_mask_dir": str(teacher)},
                               {"type": "synthetic", "path": "synth"}]}

    mix = build_dataset(mixture())
    n = len(mix.datasets[0])
    assert np.array_equal(masks_of(mix[0]), np.stack([teacher_mask(k) for k in frames]).astype(np.float32))
    assert np.array_equal(masks_of(mix[n]), np.stack([gt_mask()] * 3).astype(np.float32))
    # set on the mixture it is inherited; a component's null switches it off there
    inherited = build_dataset({**mixture(dynamic_mask_dir=str(teacher)),
                               "components": [{"type": "synthetic", "path": "synth"},
                                              {"type": "synthetic", "path": "synth", "dynamic_mask_dir": None}]})
    assert np.array_equal(masks_of(inherited[0]), masks_of(mix[0]))
    assert np.array_equal(masks_of(inherited[n]), masks_of(mix[n]))


def test_unknown_keys_still_raise(synth, tmp_path):
    teacher = write_teacher_masks(tmp_path / "teacher")
    with pytest.raises(ValueError, match="unknown keys"):
        build_dataset({"type": "synthetic", "data_path": str(synth), "dynamic_masks_dir": str(teacher)})
    with pytest.raises(ValueError, match="unknown keys"):
        build_dataset({"type": "mixture", "data_path": str(tmp_path), "height": H, "width": W,
                       "dynamic_mask_folder": str(teacher), "components": [{"type": "synthetic", "path": "synth"}]})
    with pytest.raises(ValueError, match="unknown keys"):
        build_dataset({"type": "mixture", "data_path": str(tmp_path), "height": H, "width": W,
                       "components": [{"type": "synthetic", "path": "synth", "dynamic_mask": str(teacher)}]})
