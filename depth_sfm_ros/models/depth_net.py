"""DepthNet: monocular disparity with a ResNet or light encoder and a monodepth2-style decoder.

Output rule (one rule, used everywhere): ``forward`` always returns a **tuple** of sigmoid
disparities, element ``s`` at 1/2^s resolution (B, 1, H/2^s, W/2^s). It returns all
``num_scales`` of them when ``all_scales`` is true; by default ``all_scales`` is
``self.training and not self.export_mode``, i.e. training gets every scale, eval and export get
a 1-tuple with the full-resolution disparity. ``outputs[0]`` is therefore always full resolution.
Convert with :func:`depth_sfm_ros.models.layers.disp_to_depth` (min/max depth are attributes).

Inference rule (one rule for export, runtime, validation and evaluation): :meth:`DepthNet.predict`, the
full-resolution disparity, averaged with the mirrored prediction of the mirrored image when ``flip_average``
(model_config ``depth_flip_average``; monodepth's test-time flip).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .encoders import ENCODER_NAMES, build_encoder
from .layers import Conv3x3, ConvBlock, ImageNormalize, check_divisible, check_image, disp_to_depth, upsample2x

__all__ = ["DepthDecoder", "DepthNet", "DECODER_CHANNELS"]

# Decoder widths per encoder family: monodepth2's for ResNets, narrower for the light net.
DECODER_CHANNELS: dict[str, tuple[int, ...]] = {
    "resnet": (16, 32, 64, 128, 256),
    "lite": (16, 24, 40, 64, 96),
}


class DepthDecoder(nn.Module):
    """U-Net decoder: per level i = 4..0, ConvBlock, x2 nearest upsample, concat skip f_i, ConvBlock.

    Heads: Conv3x3 (+ sigmoid when ``sigmoid``) on levels s < num_scales give maps at 1/2^s of the
    input. ``out_channels`` > 1 gives several maps per scale (MotionNet uses 4, without sigmoid).
    """

    def __init__(self, num_ch_enc: Sequence[int], num_ch_dec: Sequence[int] = DECODER_CHANNELS["resnet"],
                 num_scales: int = 4, out_channels: int = 1, sigmoid: bool = True) -> None:
        super().__init__()
        if len(num_ch_enc) != 5 or len(num_ch_dec) != 5:
            raise ValueError(f"decoder needs 5 encoder and 5 decoder widths, got {num_ch_enc}, {num_ch_dec}")
        if not 1 <= num_scales <= 4:
            raise ValueError(f"num_scales must be in 1..4, got {num_scales}")
        self.num_scales = int(num_scales)
        self.sigmoid = bool(sigmoid)
        self.upconv0 = nn.ModuleList()
        self.upconv1 = nn.ModuleList()
        for i in range(5):
            in_ch = num_ch_enc[-1] if i == 4 else num_ch_dec[i + 1]
            self.upconv0.append(ConvBlock(in_ch, num_ch_dec[i]))
            skip = num_ch_enc[i - 1] if i > 0 else 0
            self.upconv1.append(ConvBlock(num_ch_dec[i] + skip, num_ch_dec[i]))
        self.heads = nn.ModuleList([Conv3x3(num_ch_dec[s], out_channels) for s in range(self.num_scales)])

    def forward(self, features: list[torch.Tensor], all_scales: bool = True) -> tuple[torch.Tensor, ...]:
        """features: five maps at 1/2 ... 1/32 -> tuple of (B, out_channels, H/2^s, W/2^s), finest first."""
        x = features[-1]
        outputs: dict[int, torch.Tensor] = {}
        for i in range(4, -1, -1):
            x = upsample2x(self.upconv0[i](x))
            if i > 0:
                x = torch.cat([x, features[i - 1]], dim=1)
            x = self.upconv1[i](x)
            if i < self.num_scales and (all_scales or i == 0):
                out = self.heads[i](x)
                outputs[i] = torch.sigmoid(out) if self.sigmoid else out
        return tuple(outputs[s] for s in sorted(outputs))


class DepthNet(nn.Module):
    """Monocular depth network.

    forward(image (B, 3, H, W) float RGB in [0, 1], H and W multiples of 32, all_scales=None)
      -> tuple of disparities (B, 1, H/2^s, W/2^s) in (0, 1); see the module docstring for the rule.
    ImageNet normalisation happens inside (so it is part of the ONNX graph).
    """

    def __init__(self, encoder: str = "resnet18", num_scales: int = 4, min_depth: float = 0.1,
                 max_depth: float = 100.0, weights_path: str | None = None, flip_average: bool = False) -> None:
        super().__init__()
        if encoder not in ENCODER_NAMES:
            raise ValueError(f"unknown encoder {encoder!r}; choose one of {list(ENCODER_NAMES)}")
        if not (0.0 < float(min_depth) < float(max_depth)):
            raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
        self.encoder_name = encoder
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.num_scales = int(num_scales)
        self.flip_average = bool(flip_average)
        self.export_mode = False
        self.normalize = ImageNormalize(1)
        self.encoder = build_encoder(encoder, num_input_images=1, weights_path=weights_path)
        widths = DECODER_CHANNELS["lite" if encoder == "lite" else "resnet"]
        self.decoder = DepthDecoder(self.encoder.num_ch_enc, widths, num_scales=self.num_scales)

    def forward(self, image: torch.Tensor, all_scales: bool | None = None) -> tuple[torch.Tensor, ...]:
        check_image(image, "image")
        check_divisible(image, "DepthNet input", min_size=64)
        if all_scales is None:
            all_scales = self.training and not self.export_mode
        return self.decoder(self.encoder(self.normalize(image)), all_scales=all_scales)

    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Inference disparity (B, 1, H, W) in (0, 1) of image (B, 3, H, W), in whatever mode the module is in.

        With ``flip_average`` the image and its mirror image go through the net as one batch of 2B and the
        result is (d(x) + mirror(d(mirror(x)))) / 2: mirror-equivariant by construction, and the two
        predictions' independent errors (texture copying, a left/right bias) partly cancel.
        """
        if not self.flip_average:
            return self(image, all_scales=False)[0]
        batch = image.shape[0]
        disp = self(torch.cat([image, torch.flip(image, dims=[3])], dim=0), all_scales=False)[0]
        return 0.5 * (disp[:batch] + torch.flip(disp[batch:], dims=[3]))

    def to_depth(self, disp: torch.Tensor) -> torch.Tensor:
        """Disparity in (0, 1) -> depth in [min_depth, max_depth] (network units), same shape."""
        return disp_to_depth(disp, self.min_depth, self.max_depth)[1]
