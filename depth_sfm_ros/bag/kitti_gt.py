"""Ground truth from a KITTI-format folder (``--gt-kitti DIR``), matched to bag images by position.

Layout (see docs/architecture.md, "Synthetic data"): ``depth/000000.png`` uint16 = metres * 256
(0 = invalid), ``dynamic_mask/000000.png`` (non-zero = dynamic), ``poses.txt`` (12 numbers of
``T_world_cam`` per line). Frame ``i`` of the folder belongs to the ``i``-th image of the bag's
image topic (counting every image, before ``--start`` / ``--every``). Each part is optional.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from depth_sfm_ros.geometry import Pose


class KittiGroundTruth:
    """Lazy access to a KITTI-format ground-truth folder.

    Raises ValueError when ``root`` is not a directory, when it holds none of the three parts, or
    when ``poses.txt`` is malformed.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise ValueError(f"--gt-kitti {self.root}: not a directory")
        self.depth_dir = self.root / "depth" if (self.root / "depth").is_dir() else None
        self.mask_dir = self.root / "dynamic_mask" if (self.root / "dynamic_mask").is_dir() else None
        self.poses: list[Pose] | None = None
        poses_file = self.root / "poses.txt"
        if poses_file.is_file():
            self.poses = []
            for line_no, line in enumerate(poses_file.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    values = np.array([float(v) for v in line.split()])
                except ValueError:
                    raise ValueError(f"{poses_file}:{line_no}: not numbers: {line[:80]!r}") from None
                if values.size != 12:
                    raise ValueError(f"{poses_file}:{line_no}: expected 12 numbers (3x4 T_world_cam), "
                                     f"got {values.size}")
                self.poses.append(Pose(values.reshape(3, 4)))
        if self.depth_dir is None and self.mask_dir is None and self.poses is None:
            raise ValueError(f"--gt-kitti {self.root}: has none of depth/, dynamic_mask/, poses.txt")

    @property
    def streams(self) -> list[str]:
        """The ground-truth streams present: of "depth", "mask", "pose"."""
        return [name for name, present in (("depth", self.depth_dir), ("mask", self.mask_dir),
                                           ("pose", self.poses)) if present is not None]

    def _png(self, folder: Path | None, index: int) -> np.ndarray | None:
        import cv2
        if folder is None:
            return None
        path = folder / f"{index:06d}.png"
        if not path.is_file():
            return None
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"{path}: cannot read the PNG")
        return image

    def depth_m(self, index: int) -> np.ndarray | None:
        """(H, W) float32 metres, NaN where invalid; None when the file is absent."""
        raw = self._png(self.depth_dir, index)
        if raw is None:
            return None
        if raw.dtype != np.uint16 or raw.ndim != 2:
            raise ValueError(f"{self.depth_dir}/{index:06d}.png: KITTI depth must be one-channel uint16, "
                             f"got {raw.dtype} {raw.shape}")
        depth = raw.astype(np.float32) / np.float32(256.0)
        depth[raw == 0] = np.nan
        return depth

    def dynamic_mask(self, index: int) -> np.ndarray | None:
        """(H, W) bool, True = dynamic; None when the file is absent."""
        raw = self._png(self.mask_dir, index)
        if raw is None:
            return None
        return raw > 0 if raw.ndim == 2 else np.any(raw > 0, axis=2)

    def pose(self, index: int) -> Pose | None:
        """T_world_cam of frame ``index`` or None."""
        if self.poses is None or not 0 <= index < len(self.poses):
            return None
        return self.poses[index]
