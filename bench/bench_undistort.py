"""Cost of undistorting raw camera images (issue 14 item 8): what ``camera_input: raw`` adds per frame.

For each camera size and distortion model, a raw camera (K, D, P) is resolved the way the node and the bag
tools do (:func:`depth_sfm_ros.geometry.camera_model.resolve_input`), then on one uint8 RGB image it times:

* ``maps_ms``: building the remap tables (once per calibration; cached, so a repeated CameraInfo costs nothing),
* ``remap_ms``: ``InputGeometry.prepare(image)`` per frame (bilinear ``cv2.remap`` at the camera's size),
* ``resize_ms``: the resize to the network's input that every frame pays anyway (for comparison).

Prints a table and one JSON line prefixed ``RESULT``.

    OMP_NUM_THREADS=1 python bench/bench_undistort.py [--iters 50] [--net 192x128]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import cv2
import numpy as np

from depth_sfm_ros.geometry.camera_model import CameraModel, clear_map_cache, resolve_input

SIZES = ((640, 480), (1280, 720), (1920, 1080))
# Typical coefficients of each model (a wide-angle lens): D as ROS CameraInfo carries it.
DISTORTIONS = {
    "plumb_bob": [-0.28, 0.09, 0.001, -0.001, 0.0],
    "rational_polynomial": [-0.25, 0.08, 0.001, -0.002, 0.01, 0.05, -0.02, 0.004],
    "equidistant": [0.1, -0.03, 0.005, -0.001],
}


def camera(width: int, height: int, model: str) -> CameraModel:
    f = 0.6 * width
    K = np.array([[f, 0.0, width / 2 - 0.5], [0.0, f, height / 2 - 0.5], [0.0, 0.0, 1.0]])
    P = np.hstack([K * [[0.9], [0.9], [1.0]] + [[0, 0, 0.05 * width], [0, 0, 0.05 * height], [0, 0, 0]],
                   np.zeros((3, 1))])
    return CameraModel.from_fields(width, height, K, DISTORTIONS[model], model, P=P)


def median_ms(fn, iters: int) -> float:
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--net", default="192x128", help="network input WxH (the bundled model's: 192x128)")
    args = parser.parse_args(argv)
    net_w, net_h = (int(v) for v in args.net.lower().split("x"))
    rng = np.random.default_rng(0)
    rows = []
    for width, height in SIZES:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        resize_ms = median_ms(lambda: cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_AREA), args.iters)
        for model in DISTORTIONS:
            clear_map_cache()
            t0 = time.perf_counter()
            geometry = resolve_input(camera(width, height, model), rectified=False)
            geometry.prepare(image)  # the first frame builds the maps
            maps_ms = (time.perf_counter() - t0) * 1e3
            remap_ms = median_ms(lambda: geometry.prepare(image), args.iters)
            rows.append({"size": f"{width}x{height}", "model": model, "maps_ms": round(maps_ms, 2),
                         "remap_ms": round(remap_ms, 2), "resize_ms": round(resize_ms, 2)})
    print(f"{'size':<10} {'model':<20} {'maps (once) ms':>15} {'remap / frame ms':>17} {'resize / frame ms':>18}")
    for r in rows:
        print(f"{r['size']:<10} {r['model']:<20} {r['maps_ms']:>15.2f} {r['remap_ms']:>17.2f} {r['resize_ms']:>18.2f}")
    print("RESULT " + json.dumps({"bench": "undistort", "machine": f"{platform.machine()} {platform.processor()}",
                                  "cv2_threads": cv2.getNumThreads(), "iters": args.iters, "net": args.net,
                                  "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
