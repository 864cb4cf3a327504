"""Benchmark: logitkit stablemax / log_stablemax / their backward against NumPy and torch
(CPU) in the same run; prints median times and ratios (peer time / logitkit time).

    python bench/bench_stablemax.py [--repeat 5] [--shapes 4096x32000,65536x128]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import logitkit
from _bench import median_time


def numpy_stablemax(x):
    with np.errstate(divide="ignore"):  # 1/(1 - x) is evaluated (and discarded) for x == 1 too
        s = np.where(x >= 0, x + 1, 1 / (1 - x))
    return s / s.sum(-1, keepdims=True)


def torch_stablemax(x):
    s = torch.where(x >= 0, x + 1, 1 / (1 - x))
    return s / s.sum(-1, keepdim=True)


def torch_log_stablemax(x):
    return torch.log(torch_stablemax(x))


def torch_backward(fwd, xt, dyt):
    """Backward only: the graph is built once and re-walked (retain_graph)."""
    xg = xt.clone().requires_grad_(True)
    y = fwd(xg)
    return lambda: torch.autograd.grad(y, xg, dyt, retain_graph=True)


def torch_fwd_bwd(fwd, xt, dyt):
    def run():
        xg = xt.clone().requires_grad_(True)
        return torch.autograd.grad(fwd(xg), xg, dyt)

    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--shapes", default="4096x32000,65536x128")
    ap.add_argument("--threads", type=int, default=logitkit.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logitkit.set_num_threads(args.threads)
    print(f"isa={logitkit.isa()} threads={args.threads} torch={torch.__version__} float32, median of {args.repeat}")
    print(f"{'op':<22}{'shape':>14}{'logitkit ms':>13}  peers (ms, ratio = peer / logitkit)")
    rng = np.random.default_rng(0)
    for spec in args.shapes.split(","):
        rows, cols = (int(v) for v in spec.split("x"))
        x = (rng.standard_normal((rows, cols), dtype=np.float32) * 3).astype(np.float32)
        dy = rng.standard_normal((rows, cols), dtype=np.float32)
        xt, dyt = torch.from_numpy(x), torch.from_numpy(dy)
        out = np.empty_like(x)
        cases = [
            ("stablemax", lambda: logitkit.stablemax(x, out=out),
             {"numpy": lambda: numpy_stablemax(x), "torch": lambda: torch_stablemax(xt)}),
            ("log_stablemax", lambda: logitkit.log_stablemax(x, out=out),
             {"numpy": lambda: np.log(numpy_stablemax(x)), "torch": lambda: torch_log_stablemax(xt)}),
            ("stablemax_backward", lambda: logitkit.stablemax_backward(x, dy, out=out),
             {"torch bwd": torch_backward(torch_stablemax, xt, dyt),
              "torch fwd+bwd": torch_fwd_bwd(torch_stablemax, xt, dyt)}),
            ("log_stablemax_bwd", lambda: logitkit.log_stablemax_backward(x, dy, out=out),
             {"torch bwd": torch_backward(torch_log_stablemax, xt, dyt),
              "torch fwd+bwd": torch_fwd_bwd(torch_log_stablemax, xt, dyt)}),
        ]
        for name, ours, peers in cases:
            t = median_time(ours, args.repeat)
            cells = []
            for peer, fn in peers.items():
                tp = median_time(fn, args.repeat)
                cells.append(f"{peer} {tp * 1e3:.1f} ({tp / t:.2f}x)")
            print(f"{name:<22}{spec:>14}{t * 1e3:>13.2f}  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
