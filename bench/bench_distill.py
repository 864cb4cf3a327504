"""Benchmark: logitkit kl_div (forward and reverse), jsd and tvd, loss + gradient with respect to
the student's logits, against torch's composition (log_softmax of both, F.kl_div with
log_target, .backward()) in the same run, with the bandwidth each reaches against the copy
bandwidth measured in the same run.

    python bench/bench_distill.py [--repeat 5] [--shapes 4096x32000,512x128256] [--threads N]

With the gradient a row is read twice (student and teacher) and its gradient written: 12 bytes
per float32 element, as the issue counts it; judged against `np.copyto` of the same size (8
bytes per element moved) scaled to 12. torch: what a distillation training step pays.
"""

from __future__ import annotations

import numpy as np
import torch

import logitkit
from _bench import median_time, parse_args

F = torch.nn.functional


def main():
    args = parse_args(__doc__, "4096x32000,512x128256")
    print(f"{'case':<24}{'shape':>12}{'logitkit ms':>13}{'torch ms':>10}{'ratio':>7}{'GB/s':>7}{'of copy':>9}")
    rng = np.random.default_rng(0)
    for rows, cols in args.shape_list:
        spec = f"{rows}x{cols}"
        s = rng.standard_normal((rows, cols), dtype=np.float32) * 3
        t = s + rng.standard_normal((rows, cols), dtype=np.float32)
        st, tt = torch.from_numpy(s), torch.from_numpy(t)
        dst = np.empty_like(s)
        copy_s = median_time(lambda: np.copyto(dst, s), args.repeat)
        copy_gbs = 2 * s.nbytes / 1e9 / copy_s

        def torch_kl(reverse=False, temperature=2.0):
            sr = st.detach().requires_grad_()
            lp = F.log_softmax(sr / temperature, -1)
            lq = F.log_softmax(tt / temperature, -1)
            loss = F.kl_div(lq, lp, log_target=True, reduction="batchmean") if reverse else F.kl_div(
                lp, lq, log_target=True, reduction="batchmean")
            (loss * temperature**2).backward()
            return sr.grad

        def torch_jsd(beta=0.5):
            sr = st.detach().requires_grad_()
            lp, lq = F.log_softmax(sr, -1), F.log_softmax(tt, -1)
            p, q = lp.exp(), lq.exp()
            lm = (beta * q + (1 - beta) * p).log()
            loss = (beta * (q * (lq - lm)).sum(-1) + (1 - beta) * (p * (lp - lm)).sum(-1)).mean()
            loss.backward()
            return sr.grad

        def torch_tvd():
            sr = st.detach().requires_grad_()
            (0.5 * (F.softmax(sr, -1) - F.softmax(tt, -1)).abs().sum(-1).mean()).backward()
            return sr.grad

        cases = [
            ("kl_div forward, T=2", lambda: logitkit.kl_div(s, t, temperature=2.0, return_grad=True, out_grad=dst),
             torch_kl),
            ("kl_div reverse, T=2",
             lambda: logitkit.kl_div(s, t, temperature=2.0, direction="reverse", return_grad=True, out_grad=dst),
             lambda: torch_kl(True)),
            ("jsd beta=0.5", lambda: logitkit.jsd(s, t, return_grad=True, out_grad=dst), torch_jsd),
            ("tvd", lambda: logitkit.tvd(s, t, return_grad=True, out_grad=dst), torch_tvd),
            ("kl_div forward, loss only", lambda: logitkit.kl_div(s, t, temperature=2.0), None),
        ]
        for name, ours, peer in cases:
            a = median_time(ours, args.repeat)
            b = median_time(peer, args.repeat) if peer else float("nan")
            moved = (3 if peer else 2) * s.nbytes
            gbs = moved / 1e9 / a
            print(f"{name:<24}{spec:>12}{a * 1e3:13.2f}{b * 1e3:10.1f}{b / a:7.1f}{gbs:7.1f}{gbs / copy_gbs:9.2f}")
        print(f"{'(copy, same run)':<24}{spec:>12}{copy_s * 1e3:13.2f}{'':>10}{'':>7}{copy_gbs:7.1f}")


if __name__ == "__main__":
    main()
