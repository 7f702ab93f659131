"""``depth-sfm synth``: render a synthetic sequence and write it as a KITTI folder and/or rosbag2.

Example::

    depth-sfm synth --out /tmp/street --seed 3 --frames 200 --format kitti,mcap --compressed
    depth-sfm synth --out /tmp/train_7 --seed 7 --randomize train --scene mixed --width 640

Output: ``OUT/kitti/``, ``OUT/bag_mcap/``, ``OUT/bag_sqlite3/`` (bag directories must not exist).
Frames are rendered once and streamed to all writers, so memory stays constant. Randomised
profiles (``--randomize train|heldout``) also write what they drew to ``OUT/randomization.yaml``
and, with the kitti format, ``OUT/kitti/randomization.yaml`` beside calib.txt.
"""
from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from queue import Queue
from typing import Iterator

from .randomization import PROFILES, SCENE_CHOICES

FORMATS = ("kitti", "mcap", "sqlite3")
RANDOMIZATION_FILE = "randomization.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output directory (created)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (same seed -> identical data)")
    parser.add_argument("--frames", type=int, default=200, help="number of frames")
    parser.add_argument("--width", type=int, default=640, help="image width in pixels")
    parser.add_argument("--height", type=int, default=None,
                        help="image height in pixels (default: 192 with --randomize none, otherwise the profile's "
                             "aspect ratio picks it from the width)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate (Hz)")
    parser.add_argument("--format", default=",".join(FORMATS),
                        help=f"comma-separated subset of {','.join(FORMATS)} (default: all)")
    parser.add_argument("--compressed", action="store_true",
                        help="also write /camera/image_raw/compressed (sensor_msgs/CompressedImage) to bags")
    parser.add_argument("--compressed-format", choices=("png", "jpeg"), default="png")
    parser.add_argument("--randomize", choices=PROFILES, default="none",
                        help="domain randomisation profile: none = the classic street (unchanged output), "
                             "train = training ranges, heldout = ranges never used in training")
    parser.add_argument("--scene", choices=SCENE_CHOICES, default="street",
                        help="scene family (intersection / indoor / mixed need --randomize train|heldout; "
                             "mixed: the seed picks the family)")
    parser.add_argument("--camera-frame-id", default="camera_optical_frame")
    parser.add_argument("--odom-frame-id", default="odom")


def _write_yaml(path: Path, record: dict) -> None:
    import yaml

    with open(path, "w") as fh:
        yaml.safe_dump(record, fh, sort_keys=False)


def _parse_formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if not formats or unknown:
        raise ValueError(f"--format must be a comma list of {FORMATS}, got {text!r}")
    return list(dict.fromkeys(formats))


def _tee(source: Iterator, consumers: int, errors: list) -> list[Iterator]:
    """Split one iterator into ``consumers`` iterators consumed by separate threads (bounded queues).
    An exception of the source is appended to ``errors`` and ends all iterators."""
    queues: list[Queue] = [Queue(maxsize=4) for _ in range(consumers)]
    done = object()

    def pump() -> None:
        try:
            for item in source:
                for q in queues:
                    q.put(item)
        except BaseException as exc:  # reported by run()
            errors.append(exc)
        finally:
            for q in queues:
                q.put(done)

    threading.Thread(target=pump, daemon=True).start()

    def drain(q: Queue) -> Iterator:
        while (item := q.get()) is not done:
            yield item

    return [drain(q) for q in queues]


def run(args: argparse.Namespace) -> int:
    from .kitti import write_kitti_folder
    from .render import SynthConfig, SyntheticScene
    from .rosbag import write_rosbag

    try:
        formats = _parse_formats(args.format)
        config = SynthConfig(seed=args.seed, width=args.width, height=args.height, num_frames=args.frames,
                             fps=args.fps, randomize=args.randomize, scene=args.scene)
    except ValueError as exc:
        print(f"depth-sfm synth: {exc}")
        return 2
    out: Path = args.out
    targets = {"kitti": out / "kitti", "mcap": out / "bag_mcap", "sqlite3": out / "bag_sqlite3"}
    for fmt in formats:
        if fmt != "kitti" and targets[fmt].exists():
            print(f"depth-sfm synth: {targets[fmt]} exists already; rosbag2 writers never overwrite")
            return 2
    out.mkdir(parents=True, exist_ok=True)
    scene = SyntheticScene(config)
    record = scene.randomization_record()
    if record is not None:
        _write_yaml(out / RANDOMIZATION_FILE, record)
    t0 = time.perf_counter()
    errors: list[BaseException] = []
    streams = _tee((scene.render_frame(i) for i in range(config.num_frames)), len(formats), errors)
    results: dict[str, object] = {}

    def write(fmt: str, frames: Iterator) -> None:
        try:
            if fmt == "kitti":
                meta = {"seed": config.seed, "fps": config.fps, "dynamic_ids": [int(i) for i in scene.dynamic_ids],
                        "lead_id": scene.lead_id}
                if record is not None:
                    meta.update(randomize=config.randomize, scene=record["scene"])
                results[fmt] = write_kitti_folder(frames, scene.intrinsics, targets[fmt], meta=meta)
                if record is not None:
                    _write_yaml(targets[fmt] / RANDOMIZATION_FILE, record)
            else:
                results[fmt] = write_rosbag(frames, scene.intrinsics, targets[fmt], storage=fmt,
                                            compressed=args.compressed, compressed_format=args.compressed_format,
                                            camera_frame_id=args.camera_frame_id, odom_frame_id=args.odom_frame_id)
        except BaseException as exc:  # reported below; keep draining so the producer never blocks
            errors.append(exc)
            for _ in frames:
                pass

    threads = [threading.Thread(target=write, args=(fmt, stream)) for fmt, stream in zip(formats, streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t0
    if errors:
        print(f"depth-sfm synth: failed: {errors[0]}")
        return 1
    K = scene.intrinsics
    print(f"rendered {config.num_frames} frames {K.width}x{K.height} (seed {config.seed}) in {elapsed:.1f} s; "
          f"fx={K.fx:.2f} fy={K.fy:.2f} cx={K.cx:.2f} cy={K.cy:.2f}")
    if record is not None:
        cam = record["camera"]
        print(f"  randomize {config.randomize}: scene {record['scene']} {record['layout']['indoor_layout']}".rstrip()
              + f", hfov {cam['hfov_deg']:.1f} deg, camera height {cam['camera_height_m']:.2f} m, pitch "
              f"{cam['pitch_down_deg']:.1f} deg, roll {cam['roll_deg']:.1f} deg  ({out / RANDOMIZATION_FILE})")
    for fmt in formats:
        result = results[fmt]
        if fmt == "kitti":
            print(f"  kitti   {result.path}  {result.num_frames} frames  ({', '.join(result.files)})")
        else:
            topics = ", ".join(f"{t} ({n})" for t, n in result.topic_counts.items())
            print(f"  {fmt:<7} {result.path}  {result.num_frames} frames  topics: {topics}")
    return 0
