"""Benchmark: logitkit.route against the torch compositions the serving engines run on CPU (the
models' published routing code, as in tests/moe_reference.py), and permute + unpermute against
torch's index_select / weighted-sum composition and the copy bandwidth, in the same run.

    python bench/bench_route.py [--repeat 20] [--threads N]

Routing is compute-bound (a router row is at most a few KB and stays in L1: exps, compares and
the selection), so it is reported in ns per token and as a ratio to torch. permute/unpermute are
memory-bound: bytes moved (permute reads and writes every slot's row, unpermute reads every kept
slot's row and writes every token's) against np.copyto's bandwidth measured in the same run.
"""

from __future__ import annotations

import numpy as np
import torch

import logitkit
from _bench import median_time, parse_args
from logitkit.bench import torch_deepseek_v3, torch_topk_softmax


def topk_softmax_renorm(x, k):
    return torch_topk_softmax(torch, x, k)


def deepseek_v3(x, bias, k, n_group, topk_group, scale):
    return torch_deepseek_v3(torch, x, bias, k, n_group, topk_group, scale)


def main():
    args = parse_args(__doc__, "")
    rng = np.random.default_rng(0)
    print(f"{'case':<34}{'logitkit ms':>12}{'torch ms':>10}{'ratio':>8}{'ns/token':>10}")

    def row(name, tokens, ours, theirs):
        a = median_time(ours, args.repeat)
        b = median_time(theirs, args.repeat)
        print(f"{name:<34}{a * 1e3:>12.3f}{b * 1e3:>10.3f}{b / a:>8.1f}{a / tokens * 1e9:>10.1f}")

    for t, e, k in [(16384, 64, 8), (4096, 8, 2)]:
        x = rng.standard_normal((t, e), dtype=np.float32)
        xt = torch.from_numpy(x)
        row(f"softmax top-{k} renorm {t}x{e}", t, lambda: logitkit.route(x, k, renormalize=True),
            lambda: topk_softmax_renorm(xt, k))
    for name, t, e, ng, tg in [("deepseek-v3", 16384, 256, 8, 4), ("kimi-k2", 16384, 384, 1, 1),
                               ("deepseek-v3 decode", 1, 256, 8, 4)]:
        x = rng.standard_normal((t, e), dtype=np.float32)
        b = (rng.standard_normal(e) * 0.01).astype(np.float32)
        xt, bt = torch.from_numpy(x), torch.from_numpy(b)
        preset = "kimi-k2" if name == "kimi-k2" else "deepseek-v3"
        scale = 2.827 if preset == "kimi-k2" else 2.5
        row(f"{name} {t}x{e}", t, lambda: logitkit.route(x, preset=preset, bias=b),
            lambda: deepseek_v3(xt, bt, 8, ng, tg, scale))

    # permute + unpermute at H = 4096
    t, e, k, h = 2048, 8, 2, 4096
    x = rng.standard_normal((t, e), dtype=np.float32)
    w, ids = logitkit.route(x, k, renormalize=True)
    plan = logitkit.dispatch(ids, e)
    hidden = rng.standard_normal((t, h), dtype=np.float32)
    expert_out = logitkit.permute(hidden, plan)
    slot_token = torch.from_numpy(plan.slot_token.astype(np.int64))
    position = torch.from_numpy(plan.position.astype(np.int64))
    ht, et, wt = torch.from_numpy(hidden), torch.from_numpy(expert_out), torch.from_numpy(w)
    dst = np.empty_like(expert_out)
    p_dst, u_dst = np.empty_like(expert_out), np.empty_like(hidden)  # reused buffers, as np.copyto's
    copy_s = median_time(lambda: np.copyto(dst, expert_out), args.repeat)
    copy_gbs = 2 * expert_out.nbytes / 1e9 / copy_s
    print(f"\ncopy bandwidth (np.copyto of {expert_out.nbytes >> 20} MiB): {copy_gbs:.1f} GB/s")
    print(f"{'case':<34}{'logitkit ms':>12}{'torch ms':>10}{'ratio':>8}{'GB/s':>8}{'of copy':>9}")
    p_bytes = 2 * expert_out.nbytes
    u_bytes = expert_out.nbytes + hidden.nbytes
    for name, ours, theirs, nbytes in [
        ("permute 2048x4096 k=2", lambda: logitkit.permute(hidden, plan), lambda: ht.index_select(0, slot_token), p_bytes),
        ("permute, out=", lambda: logitkit.permute(hidden, plan, out=p_dst), lambda: ht.index_select(0, slot_token), p_bytes),
        ("unpermute 2048x4096 k=2", lambda: logitkit.unpermute(expert_out, plan, w),
         lambda: (et.index_select(0, position.reshape(-1)).view(t, k, h) * wt.unsqueeze(-1)).sum(1), u_bytes),
        ("unpermute, out=", lambda: logitkit.unpermute(expert_out, plan, w, out=u_dst),
         lambda: (et.index_select(0, position.reshape(-1)).view(t, k, h) * wt.unsqueeze(-1)).sum(1), u_bytes),
    ]:
        a = median_time(ours, args.repeat)
        b = median_time(theirs, args.repeat)
        gbs = nbytes / 1e9 / a
        print(f"{name:<34}{a * 1e3:>12.3f}{b * 1e3:>10.3f}{b / a:>8.1f}{gbs:>8.1f}{gbs / copy_gbs:>9.2f}")


if __name__ == "__main__":
    main()
