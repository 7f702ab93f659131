"""MotionNet: per-pixel residual 3D motion and dynamic-object probability from two images.

Seed 000's "3D flow net" idea, made usable at run time: the network sees only the two images
(no depth, pose or segmentation), so the ROS node can publish the dynamic mask live.

forward(image_prev (B, 3, H, W), image_cur (B, 3, H, W)) -> (motion_field, dynamic_prob)

* ``dynamic_prob`` (B, 1, H, W) = sigmoid(mask logits) in (0, 1): probability that the pixel of
  ``image_cur`` belongs to an independently moving object. The logit bias starts at -3
  (p ~ 0.05), i.e. the scene starts out static.
* ``motion_field`` (B, 3, H, W): residual 3D motion of each pixel of ``image_cur`` in the source camera
  frame, **relative to the pixel's depth** (unit-free: 0.05 = 5 % of the point's distance), so it means
  the same at any monocular scale. ``motion_field = MOTION_SCALE * raw``; its head starts at zero (a
  static scene). A trainer uses ``F = motion_field * depth_cur`` (network depth units) in
  ``p_prev = T_prev_cur @ backproject(depth_cur) + F``; the photometric loss and a sparsity prior train it.
  The flow is NOT gated by ``dynamic_prob``: the mask head is distilled from the flow
  (``|motion_field| > threshold``, a label-free target; see ``depth_sfm_training.losses.flow3d``), so that the
  node gets the mask from the two images alone.

A light encoder keeps it real-time: ``encoder="lite_motion"`` (the default; depthwise dilated stages, ~0.38M
parameters in total) or ``"lite_small"`` (~0.93M; the same encoder as a ``lite_small`` PoseNet, so that a trainer
can start it from a trained pose encoder, which has learned two-frame motion features from all the training
video: ``model.motion_encoder_init: pose`` in the training config).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .depth_net import DepthDecoder
from .encoders import LITE_ENCODERS, LiteEncoder
from .layers import ImageNormalize, check_divisible, check_image

__all__ = ["MotionNet", "MOTION_SCALE", "MOTION_ENCODERS"]

MOTION_SCALE = 0.1  # motion_field per unit of the raw head output, as a fraction of depth
MASK_BIAS_INIT = -3.0
# encoder name -> (channels of the five maps, dilated blocks of stages 2-5) of its LiteEncoder
MOTION_ENCODERS = {
    "lite_motion": ((16, 24, 40, 64, 96), (1, 1, 2, 1)),
    "lite_small": LITE_ENCODERS["lite_small"],
}


class MotionNet(nn.Module):
    """Two-frame motion / dynamic-mask network (see the module docstring for the outputs)."""

    def __init__(self, encoder: str = "lite_motion",
                 decoder_channels: tuple[int, ...] = (16, 16, 24, 32, 48)) -> None:
        super().__init__()
        if encoder not in MOTION_ENCODERS:
            raise ValueError(f"MotionNet encoder must be one of {list(MOTION_ENCODERS)}, got {encoder!r}")
        channels, blocks = MOTION_ENCODERS[encoder]
        self.encoder_name = encoder
        self.normalize = ImageNormalize(2)
        self.encoder = LiteEncoder(num_input_images=2, channels=channels, blocks=blocks)
        self.decoder = DepthDecoder(self.encoder.num_ch_enc, decoder_channels, num_scales=1, out_channels=4,
                                    sigmoid=False)
        head = self.decoder.heads[0].conv
        with torch.no_grad():
            head.weight[:3].zero_()  # no residual motion at the start: the rigid warp alone
            head.bias[:3].zero_()
            head.bias[3].fill_(MASK_BIAS_INIT)

    def forward(self, image_prev: torch.Tensor, image_cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_image(image_prev, "image_prev")
        check_image(image_cur, "image_cur")
        if image_prev.shape != image_cur.shape:
            raise ValueError(f"image_prev {tuple(image_prev.shape)} and image_cur {tuple(image_cur.shape)} differ")
        check_divisible(image_cur, "MotionNet input", min_size=64)
        x = self.normalize(torch.cat([image_cur, image_prev], dim=1))
        raw = self.decoder(self.encoder(x), all_scales=False)[0]  # (B, 4, H, W)
        return MOTION_SCALE * raw[:, :3], torch.sigmoid(raw[:, 3:4])
