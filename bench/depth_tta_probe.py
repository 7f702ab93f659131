#!/usr/bin/env python3
"""Test-time augmentation probe: does an inference-side ensemble of the depth net help, and where?

Runs one depth network (a training checkpoint, or an exported model directory's ``weights.safetensors``) in
PyTorch on every ``--every``-th frame of the 7-Scenes kitchen (``../shared/real``; all frames and the held-out
frames 300-399) and of a few synthetic sequences rendered here (the demo drive and scenes drawn from the
renderer's held-out randomisation), and scores median-scaled abs_rel of:

* ``single``      the network's full-resolution disparity, as trained;
* ``flip``        the mean with the mirrored prediction of the mirrored image (``model.depth_flip_average``, what
                  the bundled model ships; ``DepthNet.predict``);
* ``flip_shift``  ``flip`` averaged with ``flip`` of the image shifted by (+s, +s) and (-s, -s) network pixels
                  (edge-replicated, shifted back): 3x the cost of ``flip``. Not in the exported models (see
                  docs/default_model.md for why); this probe is how it was judged.

next to the median-scaled constant depth on the same pixels. The network input is the whole image resized to the
model's size (``cv2.INTER_AREA``, as the node's preprocessing); ``--grayscale`` feeds every image as its luminance
in three channels (what a mono camera gives the node). Prints a table and one JSON line.

    python bench/depth_tta_probe.py --model depth_sfm_ros/data/default_model --every 5
    python bench/depth_tta_probe.py --every 5 --grayscale          # the same frames as a mono camera sees them
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

VARIANTS = ("single", "flip", "flip_shift")
SEVEN_SCENES_HELD_OUT_FROM = 300  # training/datasets/real.py REAL_DEV_SPLITS: frames 300-399 are never trained on


def load_depth_net(model: Path):
    """DepthNet (eval mode, flip switched off: the variants apply it themselves) of a checkpoint or model dir."""
    from depth_sfm_ros.models import build_from_checkpoint
    from depth_sfm_ros.models.weights_file import bundle_from_weights

    bundle = bundle_from_weights(model)[0] if model.is_dir() or model.suffix == ".safetensors" \
        else build_from_checkpoint(model)[0]
    net = bundle.depth.eval()
    net.flip_average = False
    return net


def predictions(net, image_rgb: np.ndarray, size: tuple[int, int], shift_px: int) -> dict[str, np.ndarray]:
    """{variant: depth (h, w) in network units} of one image at the network's input ``size`` (h, w)."""
    import cv2
    import torch
    import torch.nn.functional as F

    h, w = size
    x = torch.from_numpy(cv2.resize(image_rgb, (w, h), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None]
    x = x.float() / 255.0

    def flip(t):
        return 0.5 * (net(t, all_scales=False)[0] + torch.flip(net(torch.flip(t, dims=[3]), all_scales=False)[0],
                                                                  dims=[3]))

    def shifted_flip(t, d):
        pad = abs(d)
        padded = F.pad(t, (pad, pad, pad, pad), mode="replicate")
        out = flip(padded[..., pad + d:pad + d + h, pad + d:pad + d + w])
        out = F.pad(out, (pad, pad, pad, pad), mode="replicate")
        return out[..., pad - d:pad - d + h, pad - d:pad - d + w]

    with torch.no_grad():
        single, flipped = net(x, all_scales=False)[0], flip(x)
        flip_shift = (flipped + shifted_flip(x, shift_px) + shifted_flip(x, -shift_px)) / 3.0
    return {name: net.to_depth(disp)[0, 0].numpy()
            for name, disp in (("single", single), ("flip", flipped), ("flip_shift", flip_shift))}


def abs_rel(pred: np.ndarray, gt: np.ndarray, max_depth_m: float) -> float:
    """Median-scaled abs_rel of ``pred`` (any size, bilinearly resized to the GT's) on GT pixels in (0.1 m,
    ``max_depth_m``): the project's one depth metric (``depth_sfm_ros.metrics``), as ``bench/real_eval.py`` uses it."""
    from depth_sfm_ros.bag.scoring import resize_depth
    from depth_sfm_ros.metrics import compute_depth_metrics

    return float(compute_depth_metrics(resize_depth(pred, gt.shape), gt, None, 0.1, max_depth_m)["abs_rel"])


def sequences(real_root: Path, every: int, synthetic_frames: int = 30):
    """Yield (name, [(image_rgb, depth_m)], max_depth_m) of the probe's sequences."""
    from depth_sfm_ros.synth import SynthConfig, render_sequence

    kitchen = real_root / "7scenes_redkitchen"
    if kitchen.is_dir():
        from depth_sfm_training.datasets.real import SevenScenesSequence

        seq = SevenScenesSequence(kitchen)
        frames = [(i, seq.image_rgb(i), seq.depth_m(i)) for i in range(0, len(seq), every)]
        yield "7scenes all", [(im, d) for _, im, d in frames], 10.0
        yield "7scenes held out", [(im, d) for i, im, d in frames if i >= SEVEN_SCENES_HELD_OUT_FROM], 10.0
    else:
        print(f"no 7-Scenes at {kitchen}: synthetic sequences only", file=sys.stderr)
    synthetic = [("synthetic demo drive (seed 2026)",
                  SynthConfig(seed=2026, width=640, num_frames=synthetic_frames + 10), 80.0)]
    for seed, scene in ((901, "indoor"), (902, "indoor"), (903, "mixed"), (904, "street")):
        synthetic.append((f"synthetic held-out {scene} (seed {seed})",
                          SynthConfig(seed=seed, width=320, num_frames=synthetic_frames, randomize="heldout",
                                      scene=scene),
                          10.0 if scene == "indoor" else 80.0))
    for name, config, max_depth in synthetic:
        frames = render_sequence(config).frames[::max(1, every // 2)]
        yield name, [(f.image_rgb, f.depth_m) for f in frames], max_depth


def main(argv: list[str] | None = None) -> int:
    from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR
    from depth_sfm_training.real_benchmark import DEFAULT_REAL_ROOT

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR,
                        help="training checkpoint (.pt) or exported model dir with weights.safetensors")
    parser.add_argument("--real-root", type=Path, default=DEFAULT_REAL_ROOT)
    parser.add_argument("--every", type=int, default=5, help="every N-th real frame (synthetic: every N/2-th)")
    parser.add_argument("--shift", type=int, default=8, help="flip_shift's shift in network pixels")
    parser.add_argument("--synthetic-frames", type=int, default=30, help="frames per synthetic held-out sequence")
    parser.add_argument("--grayscale", action="store_true", help="feed the images as grey (mono camera)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if min(args.every, args.shift, args.synthetic_frames) < 1:
        parser.error("--every, --shift and --synthetic-frames must be >= 1")
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    net, size = load_depth_net(args.model), _input_size(args.model)
    rows = []
    for name, frames, max_depth in sequences(args.real_root, args.every, args.synthetic_frames):
        scores = {v: [] for v in (*VARIANTS, "constant")}
        for image, gt in frames:
            if args.grayscale:
                image = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
            for variant, depth in predictions(net, image, size, args.shift).items():
                scores[variant].append(abs_rel(depth, gt, max_depth))
            scores["constant"].append(abs_rel(np.ones_like(gt), gt, max_depth))
        rows.append({"sequence": name, "frames": len(frames), **{k: float(np.mean(v)) for k, v in scores.items()}})
    print("| sequence | frames | " + " | ".join(VARIANTS) + " | constant |")
    print("|---|---|" + "---|" * (len(VARIANTS) + 1))
    for row in rows:
        print(f"| {row['sequence']} | {row['frames']} | "
              + " | ".join(f"{row[k]:.3f}" for k in (*VARIANTS, "constant")) + " |")
    print(json.dumps({"model": str(args.model), "shift_px": args.shift, "every": args.every,
                      "grayscale": args.grayscale,
                      "machine": platform.machine(), "rows": rows}))
    return 0


def _input_size(model: Path) -> tuple[int, int]:
    """(height, width) the model was trained / exported at."""
    from depth_sfm_ros.models import load_checkpoint
    from depth_sfm_ros.models.weights_file import load_bundle_weights

    cfg = load_bundle_weights(model)[1] if model.is_dir() or model.suffix == ".safetensors" \
        else load_checkpoint(model)["model_config"]
    return int(cfg["height"]), int(cfg["width"])


if __name__ == "__main__":
    sys.exit(main())
