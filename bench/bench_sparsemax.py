"""Benchmark of logitkit sparsemax / entmax15 / entmax_bisect and their backward passes against the
entmax package (PyPI ``entmax`` on torch CPU), in the same process on the same float32 input.

Forward: logitkit writes into a preallocated out=; the entmax functions allocate (as they must).
Backward: logitkit's VJP given (y, dy) against torch.autograd.grad through the entmax function,
the graph built once outside the timed region (only the backward is timed).
Each entry is the median of repeated calls after a warm-up; the entmax package takes seconds per
call at the large shape, so it gets fewer repetitions (--peer-reps).

    python bench/bench_sparsemax.py                       # 4096x32000 and 65536x128
    python bench/bench_sparsemax.py --quick               # 512x32000 and 8192x128
    python bench/bench_sparsemax.py --shapes 256x32000 --ops sparsemax entmax15_backward
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import logitkit as lk

try:
    import entmax
    import torch
except ImportError as exc:  # the peer is the point of this benchmark
    raise SystemExit(f"needs the entmax package and torch (pip install 'logitkit[bench]'): {exc}") from None


def median_seconds(fn, reps: int) -> float:
    """Median of `reps` timed calls after a warm-up call; a warm-up slower than a second (the
    entmax package at large shapes) is kept as the first sample instead of being thrown away."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = [first] if first > 1.0 else []
    for _ in range(reps - len(times)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def forward_cases(x, y, xt):
    """name -> (logitkit call, entmax call)."""
    return {
        "sparsemax": (lambda: lk.sparsemax(x, out=y), lambda: entmax.sparsemax(xt, -1)),
        "entmax15": (lambda: lk.entmax15(x, out=y), lambda: entmax.entmax15(xt, -1)),
        "entmax_bisect(1.5)": (lambda: lk.entmax_bisect(x, 1.5, out=y), lambda: entmax.entmax_bisect(xt, 1.5)),
        "entmax_bisect(1.3)": (lambda: lk.entmax_bisect(x, 1.3, out=y), lambda: entmax.entmax_bisect(xt, 1.3)),
    }


def backward_cases(x, dy, dx, xt, dyt):
    """name -> builder of (logitkit VJP, torch.autograd.grad through entmax); builders run the
    forward passes (untimed) only when their row is selected."""
    specs = [
        ("sparsemax_backward", lk.sparsemax, lambda y, g: lk.sparsemax_backward(y, g, out=dx),
         lambda t: entmax.sparsemax(t, -1)),
        ("entmax15_backward", lk.entmax15, lambda y, g: lk.entmax15_backward(y, g, out=dx),
         lambda t: entmax.entmax15(t, -1)),
        ("entmax_bisect_backward(1.3)", lambda a: lk.entmax_bisect(a, 1.3),
         lambda y, g: lk.entmax_bisect_backward(y, g, 1.3, out=dx), lambda t: entmax.entmax_bisect(t, 1.3)),
    ]

    def builder(fwd, bwd, peer):
        def build():
            y = fwd(x)
            leaf = xt.clone().requires_grad_(True)
            yt = peer(leaf)
            return (lambda: bwd(y, dy)), (lambda: torch.autograd.grad(yt, leaf, dyt, retain_graph=True))
        return build

    return {name: builder(fwd, bwd, peer) for name, fwd, bwd, peer in specs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=None, help="e.g. 4096x32000 65536x128")
    ap.add_argument("--ops", nargs="+", default=None, help="subset of op names to run")
    ap.add_argument("--quick", action="store_true", help="smaller shapes")
    ap.add_argument("--reps", type=int, default=7, help="repetitions for logitkit")
    ap.add_argument("--peer-reps", type=int, default=2, help="repetitions for the entmax package")
    args = ap.parse_args()
    shapes = args.shapes or (["512x32000", "8192x128"] if args.quick else ["4096x32000", "65536x128"])

    print(f"logitkit {lk.__version__} isa={lk.isa()} threads={lk.get_num_threads()}; "
          f"torch {torch.__version__} threads={torch.get_num_threads()}; cpus={os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'shape':>11}  {'op':<28} {'logitkit ms':>12} {'entmax ms':>11} {'ratio':>7}")
    rng = np.random.default_rng(0)
    for text in shapes:
        shape = tuple(int(v) for v in text.split("x"))
        x = (rng.standard_normal(shape) * 2).astype(np.float32)  # logits with a few-unit spread
        dy = rng.standard_normal(shape).astype(np.float32)
        y, dx = np.empty_like(x), np.empty_like(x)
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
        builders = {name: (lambda pair=pair: pair) for name, pair in forward_cases(x, y, xt).items()}
        builders.update(backward_cases(x, dy, dx, xt, dyt))
        for name, build in builders.items():
            if args.ops and name.split("(")[0] not in args.ops and name not in args.ops:
                continue
            ours, theirs = build()
            t_ours = median_seconds(ours, args.reps)
            t_theirs = median_seconds(theirs, args.peer_reps)
            print(f"{text:>11}  {name:<28} {t_ours * 1e3:12.2f} {t_theirs * 1e3:11.1f} {t_theirs / t_ours:6.1f}x",
                  flush=True)
            del ours, theirs


if __name__ == "__main__":
    main()
