"""Benchmark: logitkit cross_entropy (class indices) against torch (CPU) in the same run: forward,
and forward + gradient (allocating, and in place over the logits), with the bandwidth each reaches
against the copy bandwidth measured in the same run.

    python bench/bench_cross_entropy.py [--repeat 5] [--shapes 4096x32000,512x128256] [--threads N]

Forward: one read of the logits (4 bytes per float32 element), judged against the read part of a
copy. With the gradient: one read and one write (8 bytes per element, as the issue counts it;
12 with soft targets, which are read too), judged against `np.copyto` into a preallocated array
of the same size. softcap: torch composes 30 tanh(x / 30) before its cross-entropy. torch: F.cross_entropy,
and F.cross_entropy + .backward() (what a training step pays).
"""

from __future__ import annotations

import numpy as np
import torch

import logitkit
from _bench import median_time, parse_args


def main():
    args = parse_args(__doc__, "4096x32000,512x128256")
    print(f"{'case':<28}{'shape':>12}{'logitkit ms':>13}{'torch ms':>10}{'ratio':>7}{'GB/s':>7}{'of copy':>9}")
    rng = np.random.default_rng(0)
    for rows, cols in args.shape_list:
        spec = f"{rows}x{cols}"
        x = rng.standard_normal((rows, cols), dtype=np.float32) * 3
        t = rng.integers(0, cols, rows)
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)
        dst = np.empty_like(x)
        copy_s = median_time(lambda: np.copyto(dst, x), args.repeat)
        copy_gbs = 2 * x.nbytes / 1e9 / copy_s
        scratch = x.copy()

        def torch_train():
            xr = xt.detach().requires_grad_()
            torch.nn.functional.cross_entropy(xr, tt).backward()
            return xr.grad

        def in_place():
            np.copyto(scratch, x)  # timed separately below and subtracted
            return logitkit.cross_entropy(scratch, t, return_grad=True, out_grad=scratch)

        y = rng.random((rows, cols), dtype=np.float32)
        y /= y.sum(-1, keepdims=True)
        yt = torch.from_numpy(y)

        def torch_softcap():
            xr = xt.detach().requires_grad_()
            torch.nn.functional.cross_entropy(30.0 * torch.tanh(xr / 30.0), tt).backward()
            return xr.grad

        def torch_soft():
            xr = xt.detach().requires_grad_()
            torch.nn.functional.cross_entropy(xr, yt).backward()
            return xr.grad

        refill_s = median_time(lambda: np.copyto(scratch, x), args.repeat)
        cases = [
            ("forward", lambda: logitkit.cross_entropy(x, t), lambda: torch.nn.functional.cross_entropy(xt, tt), 1),
            ("forward + grad", lambda: logitkit.cross_entropy(x, t, return_grad=True, out_grad=dst), torch_train, 2),
            ("forward + grad in place", in_place, torch_train, 2),
            ("softcap 30 + grad", lambda: logitkit.cross_entropy(x, t, softcap=30.0, return_grad=True, out_grad=dst),
             torch_softcap, 2),
            ("soft targets + grad", lambda: logitkit.cross_entropy(x, y, return_grad=True, out_grad=dst), torch_soft,
             3),
        ]
        for name, ours, peer, passes in cases:
            a = median_time(ours, args.repeat)
            if name.endswith("in place"):
                a -= refill_s
            b = median_time(peer, args.repeat)
            gbs = passes * x.nbytes / 1e9 / a
            print(f"{name:<28}{spec:>12}{a * 1e3:13.2f}{b * 1e3:10.1f}{b / a:7.1f}{gbs:7.1f}{gbs / copy_gbs:9.2f}")
        print(f"{'(copy, same run)':<28}{spec:>12}{copy_s * 1e3:13.2f}{'':>10}{'':>7}{copy_gbs:7.1f}")


if __name__ == "__main__":
    main()
