"""A tiny, untrained depth + pose + mask model in the exact exported-model format.

Used by the runtime tests and by ``bench/bench_inference.py`` when no real model dir exists.
It is real (torch.onnx.export of small conv nets, a real model_card.yaml) but untrained: its
outputs are meaningless as depth, so use it to test mechanics and speed, never accuracy.

torch is imported inside the functions (this module is importable without torch).
"""
from __future__ import annotations

from pathlib import Path


# KITTI-like normalised intrinsics (fx/W, fy/H, cx/W, cy/H)
DEFAULT_INTRINSICS = [0.58, 1.92, 0.5, 0.5]


def build_tiny_nets(width: int = 16, seed: int = 0, min_depth: float = 0.1, max_depth: float = 100.0):
    """(depth_net, pose_net, mask_net) torch modules with the exported-model call signatures.

    depth_net(image (1,3,H,W)) -> (disparity, depth) each (1,1,H,W); pose_net(image_prev, image_cur) -> (1,6);
    mask_net(image_prev, image_cur) -> (1,1,H,W). ImageNet normalisation is inside each net.
    """
    import torch
    from torch import nn

    from ..models.layers import disp_to_depth

    torch.manual_seed(seed)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def body(in_ch: int, out_ch: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(in_ch, width, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv2d(width, out_ch, 3, padding=1))

    class Depth(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", mean.clone())
            self.register_buffer("std", std.clone())
            self.body = body(3, 1)

        def forward(self, image):
            x = self.body((image - self.mean) / self.std)
            disparity = torch.sigmoid(nn.functional.interpolate(x, size=image.shape[-2:], mode="bilinear",
                                                                align_corners=False))
            return disparity, disp_to_depth(disparity, min_depth, max_depth)[1]

    class Pose(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", mean.repeat(1, 2, 1, 1))
            self.register_buffer("std", std.repeat(1, 2, 1, 1))
            self.body = body(6, 6)

        def forward(self, image_prev, image_cur):
            x = self.body((torch.cat([image_prev, image_cur], 1) - self.mean) / self.std)
            return 0.01 * x.mean(dim=(2, 3))

    class Mask(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", mean.repeat(1, 2, 1, 1))
            self.register_buffer("std", std.repeat(1, 2, 1, 1))
            self.body = body(6, 1)

        def forward(self, image_prev, image_cur):
            x = self.body((torch.cat([image_prev, image_cur], 1) - self.mean) / self.std)
            return torch.sigmoid(nn.functional.interpolate(x, size=image_cur.shape[-2:], mode="bilinear",
                                                           align_corners=False))

    return Depth().eval(), Pose().eval(), Mask().eval()


def write_card(out_dir: Path, height: int, width: int, min_depth: float, max_depth: float, encoder: str,
               intrinsics: list[float] | None = None) -> Path:
    """model_card.yaml (through runtime.model_card) for the ONNX files present in ``out_dir``."""
    from .model_card import ONNX_FILES, ModelCard, sha256_file, utc_now_iso, write_model_card

    files = {name: sha256_file(out_dir / name) for name in ONNX_FILES if (out_dir / name).is_file()}
    card = ModelCard(input_height=int(height), input_width=int(width), min_depth=float(min_depth),
                     max_depth=float(max_depth), encoder=encoder, files=files,
                     intrinsics_normalized=list(intrinsics or DEFAULT_INTRINSICS), export_time=utc_now_iso(),
                     scale_convention="relative")
    return write_model_card(card, out_dir)


def export_model_dir(out_dir: str | Path, depth_net, pose_net, mask_net, height: int, width: int,
                     min_depth: float = 0.1, max_depth: float = 100.0, encoder: str = "tiny",
                     intrinsics: list[float] | None = None) -> Path:
    """torch.onnx.export the three nets into ``out_dir`` in the exported-model format (+ model card)."""
    import warnings

    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = torch.rand(1, 3, height, width)
    common = {"opset_version": 17, "dynamo": False, "do_constant_folding": True}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter (no onnxscript needed)
        torch.onnx.export(depth_net, (image,), str(out_dir / "depth.onnx"), input_names=["image"],
                          output_names=["disparity", "depth"], **common)
        torch.onnx.export(pose_net, (image, image), str(out_dir / "pose.onnx"),
                          input_names=["image_prev", "image_cur"], output_names=["pose"], **common)
        if mask_net is not None:
            torch.onnx.export(mask_net, (image, image), str(out_dir / "mask.onnx"),
                              input_names=["image_prev", "image_cur"], output_names=["dynamic_prob"], **common)
    write_card(out_dir, height, width, min_depth, max_depth, encoder, intrinsics)
    return out_dir


def export_tiny_model_dir(out_dir: str | Path, height: int = 64, width: int = 192, net_width: int = 16,
                          seed: int = 0) -> Path:
    """Build the tiny nets and export them (see :func:`export_model_dir`)."""
    depth, pose, mask = build_tiny_nets(width=net_width, seed=seed)
    return export_model_dir(out_dir, depth, pose, mask, height, width, encoder=f"tiny{net_width}")
