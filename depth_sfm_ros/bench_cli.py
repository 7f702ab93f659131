"""``depth-sfm bench NAME [args...]``: run one of the scripts in the source tree's ``bench/`` folder.

The benchmarks live beside the tests (they are measurements, not library code), so this works from
a source checkout (``pip install -e .``), not from a colcon install or a wheel.
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def available() -> list[str]:
    if not BENCH_DIR.is_dir():
        return []
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = available()
    parser.add_argument("name", help="benchmark to run: " + (", ".join(names) if names else "(bench/ not found)"))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark script")


def run(args: argparse.Namespace) -> int:
    names = available()
    if not names:
        print(f"depth-sfm bench: no bench/ folder at {BENCH_DIR}; benchmarks run from a source checkout",
              file=sys.stderr)
        return 2
    if args.name not in names:
        print(f"depth-sfm bench: unknown benchmark {args.name!r}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    script = BENCH_DIR / f"{args.name}.py"
    saved_argv = sys.argv
    sys.argv = [str(script), *args.args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        sys.argv = saved_argv
    return 0
