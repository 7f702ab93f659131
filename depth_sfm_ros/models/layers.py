"""Small building blocks shared by the networks, and the disparity -> depth conversion.

Everything here exports to ONNX opset 17 with standard ops (Conv, Slice + Concat padding, Elu, Relu,
Sigmoid, Resize(nearest), BatchNormalization folded into Conv, GlobalAveragePool).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "ImageNormalize", "disp_to_depth", "Conv3x3", "ConvBlock",
    "upsample2x", "check_image", "check_divisible", "reflection_pad1", "ReflectionPad1",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def disp_to_depth(disp: torch.Tensor, min_depth: float, max_depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid disparity in (0, 1) -> (scaled_disp, depth), monodepth2's convention.

    ``scaled_disp = 1/max_depth + (1/min_depth - 1/max_depth) * disp`` and ``depth = 1 / scaled_disp``,
    so depth lies in [min_depth, max_depth] (network units; metres once scale is recovered).
    Works on any shape; the outputs have the input's shape.

    >>> [round(float(x), 3) for x in disp_to_depth(torch.tensor([0.0, 1.0]), 0.1, 100.0)[1]]
    [100.0, 0.1]
    """
    if not (0.0 < min_depth < max_depth):
        raise ValueError(f"need 0 < min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}")
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1.0 / scaled_disp


def check_image(image: torch.Tensor, name: str, channels: int = 3) -> None:
    """Raise a clear error unless ``image`` is a float tensor (B, channels, H, W)."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() != 4 or image.shape[1] != channels:
        raise ValueError(f"{name} must have shape (B, {channels}, H, W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(f"{name} must be a float tensor (RGB in [0, 1]), got {image.dtype}")


def check_divisible(image: torch.Tensor, name: str, multiple: int = 32, min_size: int = 32) -> None:
    """Raise unless H and W of ``image`` (B, C, H, W) are multiples of ``multiple`` and >= ``min_size``.

    The U-Net decoders need min_size 64: their 1/32 feature map must be at least 2x2 to reflect-pad.
    """
    h, w = int(image.shape[-2]), int(image.shape[-1])
    if h % multiple or w % multiple or h < min_size or w < min_size:
        raise ValueError(f"{name}: height and width must be multiples of {multiple} and >= {min_size}, got {h}x{w}")


class ImageNormalize(nn.Module):
    """RGB in [0, 1] (B, 3*n, H, W) -> ImageNet-normalised, per 3-channel image (baked into ONNX)."""

    def __init__(self, num_images: int = 1) -> None:
        super().__init__()
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        mean = torch.tensor(IMAGENET_MEAN * num_images).reshape(1, 3 * num_images, 1, 1)
        std = torch.tensor(IMAGENET_STD * num_images).reshape(1, 3 * num_images, 1, 1)
        # Buffers, not persistent: they are constants, not learned state, and stay out of checkpoints.
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("inv_std", 1.0 / std, persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) * self.inv_std


def reflection_pad1(x: torch.Tensor) -> torch.Tensor:
    """Reflection padding by one pixel on each side (B, C, H, W) -> (B, C, H+2, W+2).

    Same values as ``nn.ReflectionPad2d(1)``, written with Slice + Concat because the TorchScript
    ONNX exporter turns ReflectionPad2d into a shape-computing subgraph that it cannot fold and that
    older TensorRT parsers reject (they want constant pads). Needs H, W >= 2.
    """
    x = torch.cat([x[:, :, 1:2], x, x[:, :, -2:-1]], dim=2)
    return torch.cat([x[:, :, :, 1:2], x, x[:, :, :, -2:-1]], dim=3)


class ReflectionPad1(nn.Module):
    """Module form of :func:`reflection_pad1`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reflection_pad1(x)


class Conv3x3(nn.Module):
    """3x3 convolution with reflection padding (monodepth2), stride 1, same size output."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        self.pad = ReflectionPad1()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """Conv3x3 (reflection padding) followed by ELU: the decoder's unit."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.act = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling (B, C, H, W) -> (B, C, 2H, 2W) (ONNX Resize, exact)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")
