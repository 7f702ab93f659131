"""Seeded synthetic sequences with ground truth (depth, ego-motion, dynamic masks, instances).

Public API::

    from depth_sfm_ros.synth import SynthConfig, render_sequence, iter_frames, SyntheticScene
    seq = render_sequence(SynthConfig(seed=1, num_frames=50))       # all frames in memory
    SynthConfig(seed=1, randomize="train", scene="mixed")           # domain randomisation (see randomization.py)
    for frame in iter_frames(SynthConfig(seed=1, num_frames=1000)):  # lazy, one frame at a time
        ...
    SyntheticScene(config).render_frame(i)                           # random access, deterministic
    write_kitti_folder(frames, intrinsics, out_dir); read_kitti_folder(out_dir)
    write_rosbag(frames, intrinsics, bag_dir, storage="mcap" | "sqlite3"); read_rosbag(bag_dir)

numpy only (no torch, no rclpy); the writers need OpenCV (PNG) and rosbags (rosbag2), imported lazily.
"""
from .kitti import KittiFolder, read_kitti_folder, write_kitti_folder
from .randomization import HELDOUT_RANGES, TRAIN_RANGES, RandomizationRanges, ranges_table_markdown
from .render import SynthConfig, SyntheticFrame, SyntheticScene, SyntheticSequence, iter_frames, render_sequence
from .rosbag import BagFrame, SynthBagTopics, read_rosbag, write_rosbag

__all__ = ["SynthConfig", "SyntheticFrame", "SyntheticScene", "SyntheticSequence", "iter_frames", "render_sequence",
           "KittiFolder", "read_kitti_folder", "write_kitti_folder", "BagFrame", "SynthBagTopics", "read_rosbag",
           "write_rosbag", "RandomizationRanges", "TRAIN_RANGES", "HELDOUT_RANGES", "ranges_table_markdown"]
