"""Inference speed of every available backend for depth + pose + mask (one full frame step).

For each resolution (default 416x128 and 640x192) the model is exported to ONNX at that size (and
its checkpoint saved for the torch backend), then each backend runs ``infer(cur, prev)``:
torch eager FP32 (CPU, and CUDA when present), torch FP16 + CUDA graphs (GPU), ONNX Runtime CPU /
CUDA, TensorRT FP16 (when installed). Reports frames/s, p50 / p99 latency and the speed-up over
eager FP32 torch on the same device kind in the same run; prints a table and one JSON line.

Model: ``--model`` (a checkpoint, or a model dir containing one), else an UNTRAINED network with the
architecture of the bundled default model ``depth_sfm_ros/data/default_model`` (its model card), or
with ``--encoder``'s: speed does not depend on the weights.

    python bench/bench_inference.py --iters 30
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from depth_sfm_ros.runtime.model_dir import DEFAULT_MODEL_DIR

log = logging.getLogger("bench_inference")
RESOLUTIONS = ((416, 128), (640, 192))


def _parse_resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 640x192, got {text!r}") from None
    if w < 32 or h < 32 or w % 32 or h % 32:
        raise argparse.ArgumentTypeError(f"width and height must be multiples of 32, got {text!r}")
    return w, h


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="checkpoint (.pt) or model dir with one (default: an untrained network with the bundled "
                             "default model's architecture)")
    parser.add_argument("--encoder", default=None,
                        help="instead: an untrained network with this encoder (lite, resnet18, ...)")
    parser.add_argument("--iters", type=int, default=30, help="timed iterations per backend (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed warm-up iterations")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="CPU threads for both torch and onnxruntime (same for a fair comparison)")
    parser.add_argument("--resolutions", type=_parse_resolution, nargs="+", default=list(RESOLUTIONS),
                        metavar="WxH", help="input sizes (default 416x128 640x192)")
    parser.add_argument("--machine", default=None, help="free text describing the machine, copied into the report")


def _bundle_source(args: argparse.Namespace):
    """(bundle, model_config, description) to export at each resolution.

    ``--model``: its checkpoint, trained weights. Without it: the bundled default model's architecture
    (from its model card; the bundle ships ONNX files at one size, no checkpoint), or ``--encoder``'s
    when ``--encoder`` is given or there is no bundled model, with untrained weights: the speed of a
    network does not depend on its weights.
    """
    import torch

    from depth_sfm_ros import models

    if args.model:
        from depth_sfm_ros.runtime.backends import find_checkpoint

        checkpoint = find_checkpoint(Path(args.model))
        if checkpoint is None:
            raise SystemExit(f"bench_inference: {args.model} has no checkpoint (*.pt) to export at each resolution")
        bundle, config = models.build_from_checkpoint(checkpoint)
        return bundle, dict(config), f"checkpoint {checkpoint}"
    torch.manual_seed(0)
    if args.encoder is None and (DEFAULT_MODEL_DIR / "model_card.yaml").is_file():
        from depth_sfm_ros.runtime.model_card import read_model_card

        config = models.validate_model_config(read_model_card(DEFAULT_MODEL_DIR).model_config)
        what = "the bundled default model's architecture, untrained weights (speed only)"
    else:
        encoder = args.encoder or "lite"
        config = models.validate_model_config(
            {"encoder": encoder, "pose_encoder": "lite" if encoder == "lite" else "resnet18"})
        what = f"untrained {encoder} network (speed only)"
    return models.build_models(config), config, what


def _candidates(torch_cuda: bool, ort_cuda: bool, has_trt: bool) -> list[dict]:
    """Backend configurations to time; ``baseline`` names the row each one is compared with."""
    rows = [{"label": "torch eager fp32 cpu", "name": "torch", "device": "cpu", "kind": "cpu"},
            {"label": "onnxruntime cpu", "name": "onnxruntime", "device": "cpu", "kind": "cpu"}]
    if torch_cuda:
        rows += [{"label": "torch eager fp32 cuda", "name": "torch", "device": "cuda", "kind": "cuda",
                  "cuda_graphs": False},
                 {"label": "torch fp16 + cuda graphs", "name": "torch", "device": "cuda", "kind": "cuda",
                  "fp16": True, "cuda_graphs": True}]
    if ort_cuda:
        rows.append({"label": "onnxruntime cuda", "name": "onnxruntime", "device": "cuda", "kind": "cuda"})
    if has_trt and torch_cuda:
        rows.append({"label": "tensorrt fp16", "name": "tensorrt", "device": "cuda", "kind": "cuda", "fp16": True})
    return rows


def _time_backend(backend, iters: int, warmup: int, height: int, width: int) -> dict:
    rng = np.random.default_rng(0)
    frames = [rng.random((1, 3, height, width), dtype=np.float32) for _ in range(2)]
    for i in range(warmup):
        backend.infer(frames[i % 2], frames[(i + 1) % 2])
    latencies = []
    for i in range(iters):
        start = time.perf_counter()
        out = backend.infer(frames[i % 2], frames[(i + 1) % 2])
        _ = float(out.depth[0, 0]) + float(out.pose_vec[0])  # results are on the host
        latencies.append(time.perf_counter() - start)
    ms = np.array(latencies) * 1e3
    return {"fps": float(1e3 / ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def run(args: argparse.Namespace) -> int:
    import importlib.util

    import onnxruntime as ort
    import torch

    from depth_sfm_ros import models
    from depth_sfm_ros.runtime.backends import create_backend
    from depth_sfm_ros.runtime.export import export_bundle

    if args.iters < 1 or args.warmup < 0 or args.threads < 1:
        raise SystemExit("bench_inference: need --iters >= 1, --warmup >= 0, --threads >= 1")
    torch.set_num_threads(args.threads)
    bundle, config, source = _bundle_source(args)
    torch_cuda = torch.cuda.is_available()
    ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    has_trt = importlib.util.find_spec("tensorrt") is not None
    machine = args.machine or (f"{platform.machine()} {os.cpu_count()} CPU cores, "
                               f"{torch.cuda.get_device_name(0) if torch_cuda else 'no GPU'}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        for width, height in args.resolutions:
            model_dir = Path(tmp) / f"{width}x{height}"
            export_bundle(bundle, config, model_dir, height=height, width=width, verify=False,
                          intrinsics_normalized=[0.58, 1.92, 0.5, 0.5])
            models.save_checkpoint(model_dir / "checkpoint.pt", bundle, config, None, 0, 0)
            baselines: dict[str, float] = {}
            for row in _candidates(torch_cuda, ort_cuda, has_trt):
                try:
                    backend = create_backend(model_dir, name=row["name"], device=row["device"],
                                             fp16=row.get("fp16", False), threads=args.threads,
                                             cuda_graphs=row.get("cuda_graphs", True))
                    timing = _time_backend(backend, args.iters, args.warmup, height, width)
                    backend.close()
                except Exception as exc:  # report, keep benchmarking the others
                    log.warning("%s at %dx%d failed: %s", row["label"], width, height, exc)
                    results.append({"resolution": f"{width}x{height}", "backend": row["label"], "error": str(exc)})
                    continue
                if row["label"].startswith("torch eager fp32"):
                    baselines[row["kind"]] = timing["mean_ms"]
                base = baselines.get(row["kind"])
                timing["speedup_vs_torch_eager_fp32"] = (base / timing["mean_ms"]) if base else None
                results.append({"resolution": f"{width}x{height}", "backend": row["label"], **timing})
    print(f"bench_inference: depth+pose+mask per frame, {source}; {machine}; threads={args.threads}, "
          f"iters={args.iters}, warmup={args.warmup}; torch {torch.__version__}, onnxruntime {ort.__version__}")
    print(f"{'resolution':<11} {'backend':<26} {'frames/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'speed-up':>9}")
    for r in results:
        if "error" in r:
            print(f"{r['resolution']:<11} {r['backend']:<26} error: {r['error']}")
            continue
        speedup = f"{r['speedup_vs_torch_eager_fp32']:.2f}x" if r["speedup_vs_torch_eager_fp32"] else "-"
        print(f"{r['resolution']:<11} {r['backend']:<26} {r['fps']:>9.1f} {r['p50_ms']:>9.1f} {r['p99_ms']:>9.1f} "
              f"{speedup:>9}")
    print("(speed-up: mean latency of eager FP32 torch on the same device kind / this backend's)")
    print(json.dumps({"benchmark": "bench_inference", "machine": machine, "source": source, "threads": args.threads,
                      "iters": args.iters, "results": results}))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
