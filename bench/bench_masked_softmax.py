"""Benchmark: masked softmax / log_softmax (softmax(x, where=mask)) against torch and our plain op.

Peers in the same process on the same inputs: torch.softmax(x.masked_fill(~mask, -inf)) (what
attention code writes), torch._masked_softmax where it exists, and logitkit's unmasked softmax (the
cost of the mask). Every op allocates its output; the "out=" column reuses a preallocated one
("ratio out=" divides the peer's allocating time by it: torch's masked_fill allocates anyway).
Median of --repeat runs after one warm-up; ratio = peer time / logitkit time (> 1: logitkit faster).

    python bench/bench_masked_softmax.py [--shapes 4096x32000,65536x128] [--repeat 7] [--threads N]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import logitkit
from _bench import median_time


def cases(rows, cols, rng):
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    mask = rng.random((rows, cols), dtype=np.float32) < 0.8
    xt, not_mt = torch.from_numpy(x), ~torch.from_numpy(mask)
    out = np.empty_like(x)
    ninf = float("-inf")
    for log in (False, True):
        ours = logitkit.log_softmax if log else logitkit.softmax
        tfn = torch.log_softmax if log else torch.softmax
        peers = {f"torch.{tfn.__name__}(masked_fill(-inf))": lambda tfn=tfn: tfn(xt.masked_fill(not_mt, ninf), 1)}
        if not log and hasattr(torch, "_masked_softmax"):
            peers["torch._masked_softmax"] = lambda: torch._masked_softmax(xt, not_mt, 1, 0)
        peers[f"logitkit.{ours.__name__} (no mask)"] = lambda ours=ours: ours(x)
        yield (
            f"{ours.__name__} where=",
            lambda ours=ours: ours(x, where=mask),
            lambda ours=ours: ours(x, where=mask, out=out),
            peers,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="4096x32000,65536x128")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="threads for both libraries (0: their defaults)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        logitkit.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"logitkit isa={logitkit.isa()} threads={logitkit.get_num_threads()}; torch {torch.__version__} "
          f"threads={torch.get_num_threads()}; float32; mask density 0.8; median of {args.repeat}")
    print(f"{'shape':>12} {'op':<22} {'logitkit ms':>11} {'out= ms':>8}  {'peer':<38} {'peer ms':>8} {'ratio':>6} {'ratio out=':>10}")
    for shape in args.shapes.split(","):
        rows, cols = (int(v) for v in shape.split("x"))
        for name, ours, ours_out, peers in cases(rows, cols, rng):
            t = median_time(ours, args.repeat)
            t_out = median_time(ours_out, args.repeat)
            for peer, fn in peers.items():
                tp = median_time(fn, args.repeat)
                print(f"{shape:>12} {name:<22} {t * 1e3:11.2f} {t_out * 1e3:8.2f}  {peer:<38} {tp * 1e3:8.2f} "
                      f"{tp / t:6.2f} {tp / t_out:10.2f}")


if __name__ == "__main__":
    main()
