"""Benchmark: logitkit nll_loss (loss and gradient) against torch (CPU) in the same run; prints
median times, ratios (peer time / logitkit time) and the gradient's write bandwidth against the
machine's fill bandwidth (the roof).

    python bench/bench_nll_loss.py [--repeat 5] [--shapes 4096x32000,65536x128] [--threads N]

The loss alone reads one element per row (latency-bound, microseconds); with return_grad the cost
is writing the N x C gradient, a memset with one value per row: memory-bound, judged against
`np.ndarray.fill(0)` of a preallocated array of the same size ("roof"). Peers: torch's
F.nll_loss forward, and forward + autograd backward (what a training step pays), each with the
gradient buffer preallocated where the API allows it (logitkit out_grad=; torch allocates).
"""

from __future__ import annotations

import numpy as np
import torch

import logitkit
from _bench import median_time, parse_args


def main():
    args = parse_args(__doc__, "4096x32000,65536x128,64x32000")
    print(f"{'case':<26}{'shape':>12}{'logitkit ms':>13}{'torch ms':>10}{'ratio':>7}{'GB/s':>7}{'roof GB/s':>10}")
    rng = np.random.default_rng(0)
    for rows, cols in args.shape_list:
        spec = f"{rows}x{cols}"
        x = rng.standard_normal((rows, cols), dtype=np.float32)
        lp = (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)
        t = rng.integers(0, cols, rows)
        t[rng.random(rows) < 0.1] = -100
        lpt, tt = torch.from_numpy(lp), torch.from_numpy(t)
        grad = np.empty_like(lp)
        roof = median_time(lambda: grad.fill(0), args.repeat)
        gbytes = lp.nbytes / 1e9

        def torch_train():
            xr = lpt.detach().requires_grad_()
            torch.nn.functional.nll_loss(xr, tt).backward()
            return xr.grad

        cases = [
            ("loss (mean)", lambda: logitkit.nll_loss(lp, t), lambda: torch.nn.functional.nll_loss(lpt, tt), None),
            ("loss + grad (mean)", lambda: logitkit.nll_loss(lp, t, return_grad=True, out_grad=grad), torch_train,
             gbytes),
        ]
        for name, ours, peer, traffic in cases:
            a = median_time(ours, args.repeat)
            b = median_time(peer, args.repeat)
            gbs = f"{traffic / a:7.1f}" if traffic else f"{'':>7}"
            roof_gbs = f"{gbytes / roof:10.1f}" if traffic else f"{'':>10}"
            print(f"{name:<26}{spec:>12}{a * 1e3:13.3f}{b * 1e3:10.3f}{b / a:7.1f}{gbs}{roof_gbs}")


if __name__ == "__main__":
    main()
