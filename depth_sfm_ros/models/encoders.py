"""Image encoders returning five feature maps at 1/2, 1/4, 1/8, 1/16 and 1/32 of the input size.

* :class:`ResNetEncoder` - ResNet-18/34/50 written here (no torchvision) with torchvision's
  parameter names (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``downsample.0``), so a locally saved
  torchvision ImageNet ``state_dict`` loads with :meth:`ResNetEncoder.load_torchvision_weights`.
  ``num_input_images > 1`` stacks frames on the channel axis (PoseNet, MotionNet); the first
  convolution's ImageNet weights are then repeated per frame and divided by the frame count
  (monodepth2), so the pretrained response to identical frames is unchanged.
* :class:`LiteEncoder` - a light encoder for embedded real time (Lite-Mono class): a conv stem,
  then stages of depthwise dilated 3x3 convolutions with inverted-bottleneck pointwise layers and
  a cheap global-context block (global average -> 1x1 -> 1x1, added back). Plain ONNX ops only.

Inputs are already normalised (the networks normalise); shapes (B, 3 * num_input_images, H, W),
H and W multiples of 32. ``encoder.num_ch_enc`` lists the channels of the five outputs.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn

__all__ = [
    "RESNET_ENCODERS", "ENCODER_NAMES", "ResNetEncoder", "LiteEncoder", "WeightsLoadReport", "build_encoder",
]

log = logging.getLogger(__name__)

# name -> (block type, blocks per stage)
RESNET_ENCODERS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
# Light encoders by name: (channels of the five maps, dilated blocks of stages 2-5).
LITE_ENCODERS = {
    "lite": ((32, 48, 80, 144, 224), (2, 3, 4, 3)),        # ~2.0M parameters (depth net of the default model)
    "lite_small": ((24, 32, 64, 96, 160), (1, 2, 2, 2)),   # ~0.7M with two input frames (a small PoseNet)
}
ENCODER_NAMES = tuple(RESNET_ENCODERS) + tuple(LITE_ENCODERS)


class BasicBlock(nn.Module):
    """torchvision ``BasicBlock``: two 3x3 convs, identity or 1x1 projection shortcut."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision ``Bottleneck`` (ResNet v1.5: stride on the 3x3 conv), expansion 4."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


@dataclass
class WeightsLoadReport:
    """What :meth:`ResNetEncoder.load_torchvision_weights` did: keys absent from / unknown to the encoder."""

    path: str
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)  # the classifier ``fc.*`` is dropped silently


def _check_input(x: torch.Tensor, channels: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"encoder input must be (B, {channels}, H, W), got {shape}")
    if x.shape[-2] % 32 or x.shape[-1] % 32:
        raise ValueError(f"encoder input height and width must be multiples of 32, got {tuple(x.shape[-2:])}")


class ResNetEncoder(nn.Module):
    """ResNet-18/34/50 feature extractor with torchvision parameter names.

    forward(x (B, 3 * num_input_images, H, W)) -> [f1 (B, c0, H/2, W/2), f2 (H/4), f3 (H/8), f4 (H/16), f5 (H/32)]
    with ``num_ch_enc`` = [64, 64, 128, 256, 512] (18/34) or [64, 256, 512, 1024, 2048] (50).
    """

    def __init__(self, name: str = "resnet18", num_input_images: int = 1, weights_path: str | None = None) -> None:
        super().__init__()
        if name not in RESNET_ENCODERS:
            raise ValueError(f"unknown ResNet encoder {name!r}; choose one of {sorted(RESNET_ENCODERS)}")
        if int(num_input_images) != num_input_images or num_input_images < 1:
            raise ValueError(f"num_input_images must be a positive integer, got {num_input_images!r}")
        self.name = name
        self.num_input_images = int(num_input_images)
        kind, layers = RESNET_ENCODERS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3 * self.num_input_images, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in_planes = 64
        self.layer1 = self._make_layer(block, 64, layers[0], 1)
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.num_ch_enc = [64] + [p * block.expansion for p in (64, 128, 256, 512)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.weights_report: WeightsLoadReport | None = None
        if weights_path is not None:
            self.weights_report = self.load_torchvision_weights(weights_path)

    def _make_layer(self, block: type, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [block(self._in_planes, planes, stride)]
        self._in_planes = planes * block.expansion
        layers += [block(self._in_planes, planes, 1) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_input(x, 3 * self.num_input_images)
        f1 = self.relu(self.bn1(self.conv1(x)))
        f2 = self.layer1(self.maxpool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer3(f3)
        f5 = self.layer4(f4)
        return [f1, f2, f3, f4, f5]

    def load_torchvision_weights(self, weights_path: str | os.PathLike) -> WeightsLoadReport:
        """Load a torchvision ResNet ``state_dict`` saved with ``torch.save`` (read with weights_only=True).

        The classifier (``fc.*``) is ignored; for multi-frame input the first conv is repeated per
        frame and divided by the frame count. Shape mismatches raise ValueError naming the key;
        missing / other unexpected keys are logged and returned.
        """
        path = os.fspath(weights_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ImageNet weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # weights_only refuses arbitrary pickles; torch raises several types
            raise ValueError(f"cannot read {path} as a weights-only torch state_dict: {exc}") from exc
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{path} does not hold a state_dict (a dict of tensors)")
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        if "conv1.weight" in state and self.num_input_images > 1:
            w = state["conv1.weight"]
            state["conv1.weight"] = torch.cat([w] * self.num_input_images, dim=1) / self.num_input_images
        own = self.state_dict()
        for key, value in state.items():
            if key in own and own[key].shape != value.shape:
                raise ValueError(f"{path}: parameter {key!r} has shape {tuple(value.shape)}, the {self.name} "
                                 f"encoder expects {tuple(own[key].shape)} (wrong ResNet depth?)")
        result = self.load_state_dict(state, strict=False)
        report = WeightsLoadReport(path, list(result.missing_keys), list(result.unexpected_keys))
        if report.missing_keys or report.unexpected_keys:
            log.warning("loaded %s into %s: %d missing keys %s, %d unexpected keys %s", path, self.name,
                        len(report.missing_keys), report.missing_keys[:5], len(report.unexpected_keys),
                        report.unexpected_keys[:5])
        else:
            log.info("loaded ImageNet weights %s into %s", path, self.name)
        return report


class DilatedBlock(nn.Module):
    """Depthwise dilated 3x3 conv + BN, then inverted bottleneck (1x1 expand, ReLU, 1x1 reduce, BN), residual."""

    def __init__(self, channels: int, dilation: int, expansion: int = 3) -> None:
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, 1, dilation, dilation=dilation, groups=channels, bias=False)
        self.bn_dw = nn.BatchNorm2d(channels)
        self.expand = nn.Conv2d(channels, channels * expansion, 1)
        self.act = nn.ReLU(inplace=True)
        self.reduce = nn.Conv2d(channels * expansion, channels, 1, bias=False)
        self.bn_out = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn_dw(self.dw(x))
        out = self.bn_out(self.reduce(self.act(self.expand(out))))
        return x + out


class GlobalContext(nn.Module):
    """Cheap global context (GCNet-like, average pooled): x + W2 relu(W1 mean_hw(x))."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)
        nn.init.zeros_(self.fc2.weight)  # starts as identity
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.pool(x))))


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class LiteEncoder(nn.Module):
    """Light encoder: forward(x (B, 3 * num_input_images, H, W)) -> five maps at H/2 ... H/32.

    ``channels`` are the output channels of the five maps (``num_ch_enc``); ``blocks`` the number
    of dilated blocks in stages 2-5 (dilations cycle 1, 2, 3 to grow the receptive field cheaply);
    the last two stages end with a global-context block. The defaults give ~2.0M parameters.
    """

    def __init__(self, num_input_images: int = 1, channels: Sequence[int] = (32, 48, 80, 144, 224),
                 blocks: Sequence[int] = (2, 3, 4, 3)) -> None:
        super().__init__()
        if int(num_input_images) != num_input_images or num_input_images < 1:
            raise ValueError(f"num_input_images must be a positive integer, got {num_input_images!r}")
        if len(channels) != 5 or len(blocks) != 4 or min(channels) < 8 or min(blocks) < 0:
            raise ValueError(f"LiteEncoder needs 5 channel counts >= 8 and 4 block counts >= 0, "
                             f"got {channels}, {blocks}")
        self.name = "lite"
        self.num_input_images = int(num_input_images)
        self.num_ch_enc = [int(c) for c in channels]
        c = self.num_ch_enc
        self.stem = nn.Sequential(_conv_bn_relu(3 * self.num_input_images, c[0], 2), _conv_bn_relu(c[0], c[0], 1))
        stages = []
        for i in range(4):
            layers: list[nn.Module] = [_conv_bn_relu(c[i], c[i + 1], 2)]
            layers += [DilatedBlock(c[i + 1], dilation=1 + j % 3) for j in range(int(blocks[i]))]
            if i >= 2:
                layers.append(GlobalContext(c[i + 1]))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        _check_input(x, 3 * self.num_input_images)
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features


def build_encoder(name: str, num_input_images: int = 1, weights_path: str | None = None) -> nn.Module:
    """Encoder by name: "resnet18" | "resnet34" | "resnet50" | "lite" | "lite_small"."""
    if name in LITE_ENCODERS:
        if weights_path is not None:
            raise ValueError(f"weights_path (torchvision ImageNet weights) applies to ResNet encoders only, not {name!r}")
        channels, blocks = LITE_ENCODERS[name]
        encoder = LiteEncoder(num_input_images=num_input_images, channels=channels, blocks=blocks)
        encoder.name = name
        return encoder
    if name in RESNET_ENCODERS:
        return ResNetEncoder(name, num_input_images=num_input_images, weights_path=weights_path)
    raise ValueError(f"unknown encoder {name!r}; choose one of {list(ENCODER_NAMES)}")
