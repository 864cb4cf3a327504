"""Helpers shared by the bench_*.py scripts (run as `python bench/bench_x.py`: this directory is
then on sys.path)."""

from __future__ import annotations

import argparse
import time

import numpy as np

import logitkit


def median_time(fn, repeat: int) -> float:
    """Median seconds of `repeat` calls after one warm-up call (allocations, page faults, thread
    start, lazy imports)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def parse_args(doc: str, default_shapes: str) -> argparse.Namespace:
    """--repeat, --shapes (RxC,...), --threads; sets logitkit's and torch's thread counts and
    prints the run's header line."""
    import torch

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--shapes", default=default_shapes)
    ap.add_argument("--threads", type=int, default=logitkit.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logitkit.set_num_threads(args.threads)
    print(f"isa={logitkit.isa()} threads={args.threads} torch={torch.__version__} float32, median of {args.repeat}")
    args.shape_list = [tuple(int(v) for v in spec.split("x")) for spec in args.shapes.split(",") if spec]
    return args
