"""Benchmark: the seed papers' losses on class indices, loss + gradient, against torch's
composition of the same formula with autograd (what a training step pays without logitkit), in
the same run, with the bandwidth each reaches against the copy bandwidth measured in the run.

    python bench/bench_class_losses.py [--repeat 5] [--shapes 4096x32000] [--threads N]

Each reads the logits and writes the gradient (8 bytes per float32 element), judged against
`np.copyto` of the same size. sparsemax_loss and entmax15_loss run on rows of 1000 classes
(torch's sparsemax composition sorts every row).
"""

from __future__ import annotations

import numpy as np
import torch

import logitkit
from _bench import median_time, parse_args

F = torch.nn.functional


def torch_focal(xt, tt, gamma=2.0):
    lp = F.log_softmax(xt, -1).gather(-1, tt[:, None])[:, 0]
    return (-((1 - lp.exp()) ** gamma) * lp).mean()


def torch_poly1(xt, tt, eps=1.0):
    lp = F.log_softmax(xt, -1).gather(-1, tt[:, None])[:, 0]
    return (-lp + eps * (1 - lp.exp())).mean()


def torch_gce(xt, tt, q=0.7):
    p = F.softmax(xt, -1).gather(-1, tt[:, None])[:, 0]
    return ((1 - p**q) / q).mean()


def torch_stablemax_ce(xt, tt):
    s = torch.where(xt >= 0, xt + 1, 1 / (1 - torch.clamp(xt, max=0)))
    return F.nll_loss(torch.log(s / s.sum(-1, keepdim=True)), tt)


def torch_z_loss(xt, tt, a=0.1, b=10.0):
    z = (xt - xt.mean(-1, keepdim=True)) / xt.std(-1, unbiased=False, keepdim=True)
    return (F.softplus(a * (b - z.gather(-1, tt[:, None])[:, 0])) / a).mean()


def torch_sparsemax_loss(xt, tt):
    zs, _ = torch.sort(xt, -1, descending=True)
    k = torch.arange(1, xt.shape[-1] + 1, dtype=xt.dtype)
    cs = zs.cumsum(-1)
    kk = ((1 + k * zs) > cs).sum(-1, keepdim=True)
    tau = (cs.gather(-1, kk - 1) - 1) / kk
    p = torch.clamp(xt - tau, min=0)
    onehot = F.one_hot(tt, xt.shape[-1]).to(xt.dtype)
    return (((p - onehot) * xt).sum(-1) + 0.5 * (1 - (p * p).sum(-1))).mean()


def main():
    args = parse_args(__doc__, "4096x32000")
    print(f"{'case':<26}{'shape':>12}{'logitkit ms':>13}{'torch ms':>10}{'ratio':>7}{'GB/s':>7}{'of copy':>9}")
    rng = np.random.default_rng(0)
    for rows, cols in args.shape_list:
        cases = [
            ("focal_loss g=2", lambda x, t, g: logitkit.focal_loss(x, t, 2.0, return_grad=True, out_grad=g),
             torch_focal, cols),
            ("poly1_cross_entropy", lambda x, t, g: logitkit.poly1_cross_entropy(x, t, return_grad=True, out_grad=g),
             torch_poly1, cols),
            ("generalized_cross_entropy",
             lambda x, t, g: logitkit.generalized_cross_entropy(x, t, return_grad=True, out_grad=g), torch_gce, cols),
            ("stablemax_cross_entropy",
             lambda x, t, g: logitkit.stablemax_cross_entropy(x, t, return_grad=True, out_grad=g),
             torch_stablemax_ce, cols),
            ("spherical_z_loss", lambda x, t, g: logitkit.spherical_z_loss(x, t, return_grad=True, out_grad=g),
             torch_z_loss, cols),
            ("sparsemax_loss", lambda x, t, g: logitkit.sparsemax_loss(x, t, return_grad=True, out_grad=g),
             torch_sparsemax_loss, 1000),
        ]
        for name, ours, peer, c in cases:
            n = rows * cols // c
            x = rng.standard_normal((n, c), dtype=np.float32) * 3
            t = rng.integers(0, c, n)
            g = np.empty_like(x)
            dst = np.empty_like(x)
            copy_s = median_time(lambda: np.copyto(dst, x), args.repeat)
            xt, tt = torch.from_numpy(x), torch.from_numpy(t)

            def torch_step():
                xr = xt.detach().requires_grad_()
                peer(xr, tt).backward()
                return xr.grad

            a = median_time(lambda: ours(x, t, g), args.repeat)
            b = median_time(torch_step, args.repeat)
            gbs = 2 * x.nbytes / 1e9 / a
            copy_gbs = 2 * x.nbytes / 1e9 / copy_s
            print(f"{name:<26}{f'{n}x{c}':>12}{a * 1e3:13.2f}{b * 1e3:10.1f}{b / a:7.1f}{gbs:7.1f}{gbs / copy_gbs:9.2f}")


if __name__ == "__main__":
    main()
