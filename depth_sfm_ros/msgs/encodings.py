"""The one table of ROS image encodings: wire layout (dtype, channels) and, for the encodings a camera
image may have, where R, G and B come from.

Everything that reads or writes image bytes uses it: the message decoders and encoders
(:mod:`depth_sfm_ros.msgs.image`), the runtime's preprocessing (:mod:`depth_sfm_ros.runtime.image_io`) and,
through them, the node, the bag tools, export and the demo.

>>> IMAGE_ENCODINGS["mono16"]
(dtype('uint16'), 1)
>>> input_encoding("16uc1").name, input_encoding(" RGB8").rgb_source
('16UC1', (0, 1, 2))
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EncodingSpec:
    """One row of the table.

    name: the ROS encoding string (``sensor_msgs/image_encodings.hpp`` spelling).
    dtype: numpy dtype of one channel value (native byte order).
    channels: values per pixel; one-channel images are (H, W), others (H, W, C).
    rgb_source: for a camera image, the channel that gives R, G and B (mono: (0, 0, 0)); None for an
        encoding that is not a camera picture the networks take (32FC1 depth, 8UC3).
    """

    name: str
    dtype: np.dtype
    channels: int
    rgb_source: tuple[int, int, int] | None


_U8, _U16, _F32 = np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)

# THE table. Order: the camera encodings in the order error messages list them, then the others.
_TABLE: tuple[EncodingSpec, ...] = (
    EncodingSpec("rgb8", _U8, 3, (0, 1, 2)),
    EncodingSpec("bgr8", _U8, 3, (2, 1, 0)),
    EncodingSpec("rgba8", _U8, 4, (0, 1, 2)),
    EncodingSpec("bgra8", _U8, 4, (2, 1, 0)),
    EncodingSpec("mono8", _U8, 1, (0, 0, 0)),
    EncodingSpec("8UC1", _U8, 1, (0, 0, 0)),
    EncodingSpec("mono16", _U16, 1, (0, 0, 0)),
    EncodingSpec("16UC1", _U16, 1, (0, 0, 0)),
    EncodingSpec("8UC3", _U8, 3, None),
    EncodingSpec("32FC1", _F32, 1, None),
)

ENCODING_SPECS: dict[str, EncodingSpec] = {spec.name: spec for spec in _TABLE}
"""encoding name (exact spelling) -> :class:`EncodingSpec`."""

IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {spec.name: (spec.dtype, spec.channels) for spec in _TABLE}
"""encoding -> (dtype, channels): the wire layout of every encoding an Image message may carry here."""

INPUT_ENCODINGS: tuple[str, ...] = tuple(spec.name for spec in _TABLE if spec.rgb_source is not None)
"""The camera encodings the Pipeline takes (rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, mono16, 16UC1)."""

_INPUT_BY_KEY = {name.lower(): ENCODING_SPECS[name] for name in INPUT_ENCODINGS}


def input_encoding(encoding: str) -> EncodingSpec:
    """The spec of a camera-image encoding, matched case-insensitively and stripped (the Pipeline's
    documented leniency: ``"RGB8"``, ``"16uc1"``); ValueError naming the supported ones otherwise."""
    if not isinstance(encoding, str):
        raise ValueError(f"image encoding must be a string, got {type(encoding).__name__}")
    spec = _INPUT_BY_KEY.get(encoding.strip().lower())
    if spec is None:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {', '.join(INPUT_ENCODINGS)}")
    return spec
