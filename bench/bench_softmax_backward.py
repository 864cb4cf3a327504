"""Benchmark: softmax/log_softmax backward (plain and masked) against torch.

Peers run in the same process on the same inputs: torch._softmax_backward_data /
torch._log_softmax_backward_data, the kernels torch.autograd runs for softmax(x).backward(dy).
Both sides are timed allocating their output and writing into a preallocated one ("out=",
torch.ops.aten.*.out for torch).
Median of --repeat runs after one warm-up; ratio = torch time / logitkit time (> 1: logitkit
faster). The masked forward is in bench_masked_softmax.py.

    python bench/bench_softmax_backward.py [--shapes 4096x32000,65536x128] [--repeat 7] [--threads N]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import logitkit
from _bench import median_time


def cases(rows, cols, rng):
    """(name, ours, ours with out=, {peer: (peer, peer with out= or None)})."""
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    dy = rng.standard_normal((rows, cols), dtype=np.float32)
    mask = rng.random((rows, cols), dtype=np.float32) < 0.8
    y = logitkit.softmax(x)
    ly = logitkit.log_softmax(x)
    ym = logitkit.softmax(x, where=mask)
    lym = logitkit.log_softmax(x, where=mask)
    dyt, yt, lyt, ymt, lymt = (torch.from_numpy(a) for a in (dy, y, ly, ym, lym))
    not_mt = ~torch.from_numpy(mask)
    out = np.empty_like(x)
    tout = torch.empty_like(yt)
    f32 = torch.float32
    # The autograd peers time only the backward: the graph of y = softmax(x) is built once.
    xs = torch.from_numpy(x).requires_grad_()
    ys, lys = torch.softmax(xs, 1), torch.log_softmax(xs, 1)
    sbd, lsbd = torch.ops.aten._softmax_backward_data, torch.ops.aten._log_softmax_backward_data
    yield (
        "softmax_backward",
        lambda: logitkit.softmax_backward(y, dy),
        lambda: logitkit.softmax_backward(y, dy, out=out),
        {"torch._softmax_backward_data": (lambda: sbd(dyt, yt, 1, f32),
                                          lambda: sbd.out(dyt, yt, 1, f32, grad_input=tout)),
         "torch.autograd.grad(softmax(x), x, dy)": (lambda: torch.autograd.grad(ys, xs, dyt, retain_graph=True), None)},
    )
    yield (
        "log_softmax_backward",
        lambda: logitkit.log_softmax_backward(ly, dy),
        lambda: logitkit.log_softmax_backward(ly, dy, out=out),
        {"torch._log_softmax_backward_data": (lambda: lsbd(dyt, lyt, 1, f32),
                                              lambda: lsbd.out(dyt, lyt, 1, f32, out=tout)),
         "torch.autograd.grad(log_softmax(x), x, dy)": (lambda: torch.autograd.grad(lys, xs, dyt, retain_graph=True), None)},
    )
    # torch has no masked backward; for softmax the plain one on the masked y is the same math.
    yield (
        "softmax_backward where=",
        lambda: logitkit.softmax_backward(ym, dy, where=mask),
        lambda: logitkit.softmax_backward(ym, dy, where=mask, out=out),
        {"torch._softmax_backward_data(masked y)": (lambda: sbd(dyt, ymt, 1, f32),
                                                    lambda: sbd.out(dyt, ymt, 1, f32, grad_input=tout))},
    )
    # log_softmax needs dy zeroed at excluded positions first (their outputs are constants).
    yield (
        "log_softmax_backward where=",
        lambda: logitkit.log_softmax_backward(lym, dy, where=mask),
        lambda: logitkit.log_softmax_backward(lym, dy, where=mask, out=out),
        {"torch masked_fill(dy) + _log_softmax_backward_data": (
            lambda: lsbd(dyt.masked_fill(not_mt, 0.0), lymt, 1, f32),
            lambda: lsbd.out(dyt.masked_fill(not_mt, 0.0), lymt, 1, f32, out=tout))},
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
          f"threads={torch.get_num_threads()}; float32; median of {args.repeat}")
    print(f"{'shape':>12} {'op':<28} {'ours ms':>8} {'out= ms':>8}  {'peer':<52} {'peer ms':>8} {'out= ms':>8} "
          f"{'ratio':>6} {'ratio out=':>10}")
    for shape in args.shapes.split(","):
        rows, cols = (int(v) for v in shape.split("x"))
        for name, ours, ours_out, peers in cases(rows, cols, rng):
            t = median_time(ours, args.repeat)
            t_out = median_time(ours_out, args.repeat)
            for peer, (fn, fn_out) in peers.items():
                tp = median_time(fn, args.repeat)
                if fn_out is None:  # the peer has no out= form
                    print(f"{shape:>12} {name:<28} {t * 1e3:8.2f} {t_out * 1e3:8.2f}  {peer:<52} {tp * 1e3:8.2f} "
                          f"{'-':>8} {tp / t:6.2f} {'-':>10}")
                    continue
                tp_out = median_time(fn_out, args.repeat)
                print(f"{shape:>12} {name:<28} {t * 1e3:8.2f} {t_out * 1e3:8.2f}  {peer:<52} {tp * 1e3:8.2f} "
                      f"{tp_out * 1e3:8.2f} {tp / t:6.2f} {tp_out / t_out:10.2f}")


if __name__ == "__main__":
    main()
