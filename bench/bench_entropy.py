"""Benchmark: logitkit entropy and collapse_fraction against torch (CPU) in the same run; prints
median times and ratios (peer time / logitkit time).

    python bench/bench_entropy.py [--repeat 5] [--shapes 4096x32000,65536x128] [--threads N]

entropy is one fused read of the logits (memory-bound beyond the caches); torch's composition
forms log_softmax and softmax. collapse_fraction computes each row's softmax into scratch (it is
mean(softmax(x).max(axis) == 1) by construction); its peer is that expression in torch.
"""

from __future__ import annotations

import numpy as np
import torch

import logitkit
from _bench import median_time, parse_args


def torch_entropy(x):
    logp = torch.log_softmax(x, -1)
    return -(logp.exp() * logp).sum(-1)


def torch_collapse_fraction(x):
    return (torch.softmax(x, -1).amax(-1) == 1).double().mean().item()


def main():
    args = parse_args(__doc__, "4096x32000,65536x128")
    print(f"{'op':<20}{'shape':>14}{'logitkit ms':>13}  peers (ms, ratio = peer / logitkit)")
    rng = np.random.default_rng(0)
    for rows, cols in args.shape_list:
        spec = f"{rows}x{cols}"
        x = (rng.standard_normal((rows, cols), dtype=np.float32) * 3).astype(np.float32)
        xt = torch.from_numpy(x)
        cases = [
            ("entropy", lambda: logitkit.entropy(x), {"torch": lambda: torch_entropy(xt)}),
            ("collapse_fraction", lambda: logitkit.collapse_fraction(x),
             {"torch softmax.max==1": lambda: torch_collapse_fraction(xt)}),
        ]
        for name, ours, peers in cases:
            t = median_time(ours, args.repeat)
            cells = [f"{peer} {median_time(fn, args.repeat) * 1e3:.1f}" for peer, fn in peers.items()]
            cells = [f"{c} ({float(c.split()[-1]) / (t * 1e3):.2f}x)" for c in cells]
            print(f"{name:<20}{spec:>14}{t * 1e3:>13.2f}  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
