"""A plain folder of images with a calibration YAML, and the project's synthetic KITTI-like folder.

Image folder::

    <root>/*.png|jpg (sorted by name = time order)   <root>/calib.yaml (or ``calib=`` path):
    ``fx, fy, cx, cy[, width, height]`` or a ROS camera_info YAML

Synthetic folder (docs/architecture.md, written and read by depth_sfm_ros.synth.kitti)::

    image_2/000000.png  depth/000000.png (uint16 m*256, 0 invalid)  dynamic_mask/000000.png (255 = dynamic)
    instance/000000.png (ids, 0 = background)  poses.txt (T_world_cam, KITTI 12 numbers)  calib.txt (P2: ...)
    times.txt
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from depth_sfm_ros.geometry import Intrinsics

from .base import FrameSequence, ImageFileSequence
from .io import list_images, read_intrinsics_yaml, read_rgb


class ImageFolderSequence(ImageFileSequence):
    """Images of one folder, sorted by name, with intrinsics from a YAML file."""

    def __init__(self, root: str | Path, calib: str | Path | None = None) -> None:
        self.root = Path(root)
        self.images = list_images(self.root)
        if not self.images:
            raise FileNotFoundError(f"no images (.png, .jpg) in {self.root}")
        first = read_rgb(self.images[0])
        calib_path = Path(calib) if calib is not None else self.root / "calib.yaml"
        self._K = read_intrinsics_yaml(calib_path, width=first.shape[1], height=first.shape[0])
        self.name = self.root.name


class SyntheticFolderSequence(FrameSequence):
    """The synthetic KITTI-like folder with GT depth, poses, dynamic and instance masks.

    Reads through :class:`depth_sfm_ros.synth.kitti.KittiFolder` (the writer's own reader, so the
    format has one implementation). A missing ``instance/`` or ``dynamic_mask/`` folder gives no
    masks (None) rather than all-zero masks. The last few decoded frames are kept, because a
    sample asks for image, masks and depth of the same frame separately.
    """

    has_depth = True
    has_poses = True
    _CACHE_FRAMES = 4

    def __init__(self, root: str | Path) -> None:
        from depth_sfm_ros.synth.kitti import KittiFolder

        self.root = Path(root)
        self.folder = KittiFolder(self.root)
        self._K = self.folder.intrinsics
        self._has_instances = (self.root / "instance").is_dir()
        self._has_dynamic = (self.root / "dynamic_mask").is_dir()
        self._cache: dict = {}
        self.name = self.root.name

    def __len__(self) -> int:
        return len(self.folder)

    def frame_id(self, i: int) -> str:
        return self.folder.image_paths[i].stem

    def _frame(self, i: int):
        if i not in self._cache:
            if len(self._cache) >= self._CACHE_FRAMES:
                self._cache.pop(next(iter(self._cache)))
            self._cache[i] = self.folder.frame(i)
        return self._cache[i]

    def __getstate__(self) -> dict:  # DataLoader workers: do not ship decoded frames
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def image_rgb(self, i: int) -> np.ndarray:
        return self._frame(i).image_rgb

    def intrinsics(self, i: int) -> Intrinsics:
        return self._K

    def depth_m(self, i: int) -> np.ndarray | None:
        depth = self._frame(i).depth_m
        return np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)

    def T_world_cam(self, i: int) -> np.ndarray | None:
        return self._frame(i).T_world_cam.matrix

    def instance_ids(self, i: int) -> np.ndarray | None:
        return self._frame(i).instance_ids.astype(np.int64) if self._has_instances else None

    def dynamic_mask(self, i: int) -> np.ndarray | None:
        return self._frame(i).dynamic_mask if self._has_dynamic else None
