"""Cityscapes sequences in the official layout, with the ego-car hood cropped off.

::

    <root>/leftImg8bit_sequence/<split>/<city>/<city>_<seq:06d>_<frame:06d>_leftImg8bit.png
    <root>/camera/<split>/<city>/<city>_<seq>_<frame>_camera.json     {"intrinsic": {fx, fy, u0, v0},
                                                                        "extrinsic": {"baseline": m, ...}}
    <root>/disparity_sequence/<split>/<city>/..._disparity.png  or  <root>/disparity/<split>/<city>/...
        (optional; uint16, disparity = (p - 1) / 256 for p > 0, depth = baseline * fx / disparity)

The camera file exists only for some frames of a sequence (the annotated one); any camera file
of the same ``<city>_<seq>`` is used, since the intrinsics do not change within a sequence.
Frames of one ``<city>_<seq>`` are split into runs of consecutive frame numbers.
The bottom ``1 - keep_fraction`` (default 25 %, the car's hood) is cropped from images, depth
and intrinsics (the top-left origin does not move, so only the height changes).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from depth_sfm_ros.geometry import Intrinsics

from .base import FrameSequence
from .io import read_png_uint16, read_rgb

_NAME = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit\.png$")


def read_cityscapes_camera(path: str | Path, width: int, height: int) -> tuple[Intrinsics, float | None]:
    """(intrinsics of the full frame, stereo baseline in metres or None) from a camera json."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        intr = data["intrinsic"]
        K = Intrinsics(fx=float(intr["fx"]), fy=float(intr["fy"]), cx=float(intr["u0"]), cy=float(intr["v0"]),
                       width=width, height=height)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a Cityscapes camera file with intrinsic fx, fy, u0, v0 ({exc})") from exc
    baseline = data.get("extrinsic", {}).get("baseline")
    return K, (float(baseline) if baseline is not None else None)


class CityscapesSequence(FrameSequence):
    """A run of consecutive Cityscapes frames, hood cropped."""

    def __init__(self, root: Path, split: str, city: str, seq: str, frames: list[tuple[int, Path]],
                 camera_file: Path, keep_fraction: float = 0.75) -> None:
        if not 0 < keep_fraction <= 1:
            raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
        self.root, self.split, self.city, self.seq = root, split, city, seq
        self.frames = frames
        first = read_rgb(frames[0][1])
        full_h, full_w = first.shape[:2]
        K_full, self.baseline_m = read_cityscapes_camera(camera_file, full_w, full_h)
        self.keep_rows = int(round(full_h * keep_fraction))
        self._K = K_full.cropped(0, 0, full_w, self.keep_rows)
        self.name = f"{split}/{city}/{city}_{seq}_{frames[0][0]:06d}"
        self.has_depth = self.baseline_m is not None and any(self._disparity_path(i) for i in range(len(frames)))

    def __len__(self) -> int:
        return len(self.frames)

    def frame_id(self, i: int) -> str:
        return f"{self.city}_{self.seq}_{self.frames[i][0]:06d}"

    def image_rgb(self, i: int) -> np.ndarray:
        return read_rgb(self.frames[i][1])[:self.keep_rows]

    def intrinsics(self, i: int) -> Intrinsics:
        return self._K

    def _disparity_path(self, i: int) -> Path | None:
        name = f"{self.frame_id(i)}_disparity.png"
        for folder in ("disparity_sequence", "disparity"):
            path = self.root / folder / self.split / self.city / name
            if path.is_file():
                return path
        return None

    def depth_m(self, i: int) -> np.ndarray | None:
        path = self._disparity_path(i)
        if path is None or self.baseline_m is None:
            return None
        raw = read_png_uint16(path).astype(np.float32)[:self.keep_rows]
        disparity = np.where(raw > 0, (raw - 1.0) / 256.0, 0.0)
        with np.errstate(divide="ignore"):
            depth = np.where(disparity > 0, self.baseline_m * self._K.fx / np.maximum(disparity, 1e-6), 0.0)
        return depth.astype(np.float32)


def cityscapes_sequences(root: str | Path, split: str = "train", keep_fraction: float = 0.75,
                         min_length: int = 1) -> list[CityscapesSequence]:
    """All runs of consecutive frames of a split (``train``, ``val``, ``test``)."""
    root = Path(root)
    image_dir = root / "leftImg8bit_sequence" / split
    if not image_dir.is_dir():
        raise FileNotFoundError(f"Cityscapes images not found: {image_dir}")
    groups: dict[tuple[str, str], list[tuple[int, Path]]] = {}
    for path in sorted(image_dir.glob("*/*_leftImg8bit.png")):
        match = _NAME.match(path.name)
        if match is None:
            continue
        groups.setdefault((match["city"], match["seq"]), []).append((int(match["frame"]), path))
    if not groups:
        raise FileNotFoundError(f"no <city>_<seq>_<frame>_leftImg8bit.png files under {image_dir}")
    sequences = []
    for (city, seq), frames in sorted(groups.items()):
        camera_dir = root / "camera" / split / city
        cameras = sorted(camera_dir.glob(f"{city}_{seq}_*_camera.json"))
        if not cameras:
            raise FileNotFoundError(f"no camera json for {city}_{seq} in {camera_dir}")
        frames.sort()
        run = [frames[0]]
        for item in frames[1:] + [(None, None)]:
            if item[0] is not None and item[0] == run[-1][0] + 1:
                run.append(item)
                continue
            if len(run) >= min_length:
                sequences.append(CityscapesSequence(root, split, city, seq, run, cameras[0], keep_fraction))
            run = [item]
    return sequences
