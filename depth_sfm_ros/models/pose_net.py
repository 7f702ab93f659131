"""Ego-motion (PoseNet) and per-object motion (ObjPoseNet) networks.

Pose vectors are ``[tx, ty, tz, rx, ry, rz]`` (axis-angle, radians; translation in network depth
units). Raw outputs are multiplied by 0.01 (SfMLearner / monodepth2) so training starts near the
identity. ``geometry.ops.pose_vec_to_matrix`` turns them into 4x4 matrices.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .encoders import build_encoder
from .layers import ImageNormalize, check_divisible, check_image

__all__ = ["PoseNet", "ObjPoseNet", "POSE_SCALE"]

POSE_SCALE = 0.01
# PoseNet encoders and the width of their pose decoder's hidden convolutions.
POSE_DECODER_HIDDEN = {"resnet18": 256, "lite": 256, "lite_small": 128}
POSE_ENCODERS = tuple(POSE_DECODER_HIDDEN)


class PoseDecoder(nn.Module):
    """monodepth2 pose decoder: 1x1 squeeze, two 3x3 convs, 1x1 to 6, spatial mean, x POSE_SCALE."""

    def __init__(self, in_channels: int, hidden: int = 256) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, hidden, 1)
        self.conv1 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.out = nn.Conv2d(hidden, 6, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.act(self.squeeze(feature))
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return POSE_SCALE * self.out(x).mean(dim=(2, 3))


class PoseNet(nn.Module):
    """forward(image_tgt, image_src, *context) -> (B, 6) pose vector of ``T_src_tgt``.

    Images are (B, 3, H, W) RGB in [0, 1], H and W multiples of 32. The frames are stacked on the
    channel axis in the order (tgt, src, *context) and each is ImageNet-normalised inside.
    ``num_input_frames`` > 2 adds ``num_input_frames - 2`` context frames as extra input only.
    At run time tgt = current and src = previous frame, so the output is ``T_prev_cur``.
    """

    def __init__(self, encoder: str = "resnet18", num_input_frames: int = 2, weights_path: str | None = None) -> None:
        super().__init__()
        if encoder not in POSE_ENCODERS:
            raise ValueError(f"PoseNet encoder must be one of {list(POSE_ENCODERS)}, got {encoder!r}")
        if int(num_input_frames) != num_input_frames or num_input_frames < 2:
            raise ValueError(f"num_input_frames must be an integer >= 2, got {num_input_frames!r}")
        self.encoder_name = encoder
        self.num_input_frames = int(num_input_frames)
        self.normalize = ImageNormalize(self.num_input_frames)
        self.encoder = build_encoder(encoder, num_input_images=self.num_input_frames, weights_path=weights_path)
        self.decoder = PoseDecoder(self.encoder.num_ch_enc[-1], hidden=POSE_DECODER_HIDDEN[encoder])

    def forward(self, image_tgt: torch.Tensor, image_src: torch.Tensor, *context: torch.Tensor) -> torch.Tensor:
        frames = (image_tgt, image_src) + tuple(context)
        if len(frames) != self.num_input_frames:
            raise ValueError(f"PoseNet was built for {self.num_input_frames} frames, got {len(frames)}")
        names = ["image_tgt", "image_src"] + [f"context[{i}]" for i in range(len(context))]
        for name, frame in zip(names, frames):
            check_image(frame, name)
            if frame.shape != image_tgt.shape:
                raise ValueError(f"{name} has shape {tuple(frame.shape)}, image_tgt {tuple(image_tgt.shape)}")
        check_divisible(image_tgt, "PoseNet input")
        x = self.normalize(torch.cat(frames, dim=1))
        return self.decoder(self.encoder(x)[-1])


class ObjPoseNet(nn.Module):
    """Per-instance object motion (seed 001, Obj-PoseNet).

    forward(image_intermediate (B, 3, H, W), image_tgt (B, 3, H, W), instance_masks (B, K, H, W))
      -> (B, K, 6) pose vectors of each object's own rigid motion.

    ``image_intermediate`` is the reference frame forward-projected into the target view by ego-motion
    (``geometry.ops.forward_warp``), so what is left between it and ``image_tgt`` inside a mask is the
    object's motion. For each instance k a small shared encoder (seven stride-2 convs, SfMLearner
    style) sees both normalised images multiplied by mask k plus the mask itself (7 channels); the
    K instances are batched together. Instances with an empty mask (padding) return exactly zero
    (identity). Masks are {0, 1} or soft weights in [0, 1]; H and W multiples of 32 like the other nets.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128, 256, 256, 256)) -> None:
        super().__init__()
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f"channels must be positive, got {channels}")
        self.normalize = ImageNormalize(2)
        layers: list[nn.Module] = []
        in_ch = 7
        for i, out_ch in enumerate(channels):
            k = 7 if i == 0 else 5 if i == 1 else 3
            layers += [nn.Conv2d(in_ch, out_ch, k, 2, k // 2), nn.ReLU(inplace=True)]
            in_ch = out_ch
        self.encoder = nn.Sequential(*layers)
        self.out = nn.Conv2d(in_ch, 6, 1)

    def forward(self, image_intermediate: torch.Tensor, image_tgt: torch.Tensor,
                instance_masks: torch.Tensor) -> torch.Tensor:
        check_image(image_intermediate, "image_intermediate")
        check_image(image_tgt, "image_tgt")
        if image_intermediate.shape != image_tgt.shape:
            raise ValueError(f"image_intermediate {tuple(image_intermediate.shape)} and image_tgt "
                             f"{tuple(image_tgt.shape)} must have the same shape")
        b, _, h, w = image_tgt.shape
        if (not isinstance(instance_masks, torch.Tensor) or instance_masks.dim() != 4
                or instance_masks.shape[0] != b or instance_masks.shape[2:] != (h, w)):
            shape = tuple(instance_masks.shape) if isinstance(instance_masks, torch.Tensor) else type(instance_masks)
            raise ValueError(f"instance_masks must be (B={b}, K, H={h}, W={w}), got {shape}")
        check_divisible(image_tgt, "ObjPoseNet input")
        k = instance_masks.shape[1]
        if k == 0:
            return image_tgt.new_zeros(b, 0, 6)
        masks = instance_masks.to(image_tgt.dtype).reshape(b * k, 1, h, w)
        images = self.normalize(torch.cat([image_intermediate, image_tgt], dim=1))  # (B, 6, H, W)
        images = images.unsqueeze(1).expand(b, k, 6, h, w).reshape(b * k, 6, h, w)
        x = torch.cat([images * masks, masks], dim=1)
        pose = POSE_SCALE * self.out(self.encoder(x)).mean(dim=(2, 3))  # (B*K, 6)
        present = (masks.flatten(1).amax(dim=1, keepdim=True) > 0).to(pose.dtype)
        return (pose * present).reshape(b, k, 6)
