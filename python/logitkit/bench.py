"""`python -m logitkit bench`: every op family timed against the peers installed here (NumPy, SciPy,
PyTorch CPU, the `entmax` package), in one run, interleaved, with the machine's two roofs measured
in the same run.

    python -m logitkit bench --quick                      # under a minute on 2 cores
    python -m logitkit bench --ops softmax,losses --threads 2 --json out.json
    python -m logitkit bench --ops sweep --plot sweep.png  # the Two-Pass paper's row-length sweep

How it measures: each case builds its inputs once; every implementation is warmed up, then timed in
rounds that visit the implementations in turn (rotated each round), so that drifting clocks and
neighbours hit all of them alike. A sample is the mean of enough back-to-back calls to take about
a millisecond; the report gives the median of the samples and their spread ((max - min) / 2 over
the median). Before each sample the process pauses briefly: torch's OpenMP workers spin for ~10 ms
after a parallel region and would otherwise share the cores with whatever is timed next.

Memory-bound ops (softmax beyond L2, losses, permute) are judged against the copy bandwidth
(`measure_copy_bandwidth`: streaming-store copy, bytes read + written, all pool threads) and report
effective GB/s = bytes the op must move / time. Compute-bound ones (routing, linear cross-entropy)
report GFLOP/s against the FMA peak (`measure_fma_peak`) where flops are well defined, and time per
token otherwise. "vs best peer" is the best peer's median time over logitkit's: above 1 means
logitkit is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import logitkit
from logitkit import _core

OPS = ("softmax", "backward", "sparse", "losses", "routing", "moe", "linear_ce", "latency", "sweep")
SETTLE_SECONDS = 0.005


@dataclass
class Case:
    op: str  # the op group (OPS)
    name: str  # what is timed, with its shape
    impls: dict[str, Callable[[], object]]  # "logitkit" first, then the peers
    bytes: float = 0.0  # bytes the op must move at least (memory-bound), or 0
    flops: float = 0.0  # flops of the op (compute-bound), or 0
    row_length: int = 0  # for the sweep plot
    results: dict[str, dict] = field(default_factory=dict)


def _peers() -> dict[str, object]:
    """The optional peers that import here; the others are reported as skipped."""
    found = {}
    for name in ("scipy.special", "torch", "entmax"):
        try:
            found[name.split(".")[0]] = __import__(name, fromlist=["_"])
        except ImportError:
            pass
    return found


# --------------------------------------------------------------------------------- the machine
def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def machine_facts() -> dict:
    """CPU model, ISA, threads and cache sizes: the header of every report and of the JSON."""
    model = ""
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith(("model name", "Model", "CPU part")):
            model = line.split(":", 1)[1].strip()
            break
    if not model and sys.platform == "darwin":
        import subprocess

        model = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True).stdout.strip()
    caches = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    if os.path.isdir(base):
        for entry in sorted(os.listdir(base)):
            level, kind, size = (_read(f"{base}/{entry}/{f}") for f in ("level", "type", "size"))
            if level and size and kind != "Instruction":
                caches[f"L{level}{'d' if kind == 'Data' else ''}"] = size
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "isa": logitkit.isa(),
        "available_isas": list(logitkit.available_isas()),
        "threads": logitkit.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "caches": caches,
        "logitkit": logitkit.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def measure_roofs(quick: bool) -> dict:
    copy = _core._measure_copy_bandwidth(256 << 20, 3 if quick else 7)
    fma = _core._measure_fma_peak(0.1 if quick else 0.3)
    return {"copy_gbs": copy / 1e9, "fma_gflops": fma / 1e9}


# --------------------------------------------------------------------------------- timing
def _time_calls(fn, number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def measure(case: Case, rounds: int, sample_seconds: float) -> None:
    """Interleaved rounds over the implementations; fills case.results[impl] = median, spread."""
    numbers, samples = {}, {name: [] for name in case.impls}
    for name, fn in case.impls.items():
        fn()  # warm-up: allocations, page faults, thread start, lazy imports
        one = max(_time_calls(fn, 1), 1e-7)
        numbers[name] = max(1, min(10_000, int(sample_seconds / one)))
    order = list(case.impls)
    for r in range(rounds):
        for name in order[r % len(order):] + order[: r % len(order)]:
            time.sleep(SETTLE_SECONDS)
            samples[name].append(_time_calls(case.impls[name], numbers[name]))
    for name, s in samples.items():
        med = float(np.median(s))
        case.results[name] = {"median_s": med, "spread": (max(s) - min(s)) / 2 / med, "samples": len(s)}


# --------------------------------------------------------------------------------- the cases
def _rng():
    return np.random.default_rng(0)


def softmax_cases(quick, peers):
    cases = []
    torch, sp = peers.get("torch"), peers.get("scipy")
    for rows, cols in ([(256, 32000), (4096, 128)] if quick else [(4096, 32000), (65536, 128), (8, 32000)]):
        x = (_rng().standard_normal((rows, cols)) * 3).astype(np.float32)
        y = np.empty_like(x)
        nbytes = 2 * x.nbytes
        for op in ("softmax", "log_softmax", "logsumexp"):
            ours = getattr(logitkit, op)
            impls = {}
            if op == "logsumexp":
                impls["logitkit"] = lambda ours=ours, x=x: ours(x, axis=-1)
            else:
                impls["logitkit"] = lambda ours=ours, x=x, y=y: ours(x, axis=-1, out=y)
            if torch is not None:
                xt, yt = torch.from_numpy(x), torch.from_numpy(y)
                if op == "logsumexp":
                    impls["torch"] = lambda xt=xt: torch.logsumexp(xt, -1)
                else:
                    impls["torch"] = lambda f=getattr(torch, op), xt=xt, yt=yt: f(xt, -1, out=yt)
            if sp is not None:
                impls["scipy"] = lambda f=getattr(sp, op), x=x: f(x, axis=-1)
            if op == "softmax":
                impls["numpy"] = lambda x=x: _numpy_softmax(x)
            cases.append(Case("softmax", f"{op} {rows}x{cols}", impls, bytes=x.nbytes if op == "logsumexp" else nbytes))
    return cases


def _numpy_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def backward_cases(quick, peers):
    torch = peers.get("torch")
    rows, cols = (256, 32000) if quick else (2048, 32000)
    rng = _rng()
    y = logitkit.softmax(rng.standard_normal((rows, cols), dtype=np.float32))
    dy = rng.standard_normal((rows, cols), dtype=np.float32)
    dx = np.empty_like(y)
    impls = {"logitkit": lambda: logitkit.softmax_backward(dy, y, axis=-1, out=dx)}
    if torch is not None:
        yt, dyt = torch.from_numpy(y), torch.from_numpy(dy)
        impls["torch"] = lambda: torch._softmax_backward_data(dyt, yt, -1, torch.float32)
    impls["numpy"] = lambda: y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    return [Case("backward", f"softmax_backward {rows}x{cols}", impls, bytes=3 * y.nbytes)]


def sparse_cases(quick, peers):
    torch, entmax = peers.get("torch"), peers.get("entmax")
    rows, cols = (256, 4096) if quick else (2048, 32000)
    x = _rng().standard_normal((rows, cols), dtype=np.float32)
    cases = []
    for op in ("sparsemax", "entmax15"):
        impls = {"logitkit": lambda f=getattr(logitkit, op): f(x, axis=-1)}
        if entmax is not None and torch is not None:
            xt = torch.from_numpy(x)
            impls["entmax"] = lambda f=getattr(entmax, op): f(xt, dim=-1)
        cases.append(Case("sparse", f"{op} {rows}x{cols}", impls, bytes=2 * x.nbytes))
    stable = {"logitkit": lambda: logitkit.stablemax(x, axis=-1)}
    stable["numpy"] = lambda: _numpy_stablemax(x)
    cases.append(Case("sparse", f"stablemax {rows}x{cols}", stable, bytes=2 * x.nbytes))
    return cases


def _numpy_stablemax(x):
    s = np.where(x >= 0, x + 1, 1 / (1 - x))
    return s / s.sum(axis=-1, keepdims=True)


def loss_cases(quick, peers):
    torch = peers.get("torch")
    rows, cols = (256, 32000) if quick else (4096, 32000)
    rng = _rng()
    x = (rng.standard_normal((rows, cols)) * 2).astype(np.float32)
    t = rng.integers(0, cols, rows)
    cases = []
    ce = {"logitkit": lambda: logitkit.cross_entropy(x, t, return_grad=True)}
    if torch is not None:
        import torch.nn.functional as F

        tt = torch.from_numpy(t)

        def torch_ce():
            xt = torch.from_numpy(x).requires_grad_()
            F.cross_entropy(xt, tt).backward()
            return xt.grad

        ce["torch"] = torch_ce
    cases.append(Case("losses", f"cross_entropy + grad {rows}x{cols}", ce, bytes=2 * x.nbytes))
    ls = {"logitkit": lambda: logitkit.cross_entropy(x, t, label_smoothing=0.1, z_loss=1e-4)}
    if torch is not None:
        xt = torch.from_numpy(x)
        ls["torch"] = lambda: F.cross_entropy(xt, tt, label_smoothing=0.1) + 1e-4 * torch.logsumexp(xt, -1).pow(2).mean()
    cases.append(Case("losses", f"cross_entropy smooth+z {rows}x{cols}", ls, bytes=x.nbytes))
    teacher = (rng.standard_normal((rows, cols)) * 2).astype(np.float32)
    kl = {"logitkit": lambda: logitkit.kl_div(x, teacher, return_grad=True)}
    if torch is not None:
        tl = torch.from_numpy(teacher)

        def torch_kl():
            xt = torch.from_numpy(x).requires_grad_()
            F.kl_div(torch.log_softmax(xt, -1), torch.log_softmax(tl, -1), reduction="batchmean", log_target=True).backward()
            return xt.grad

        kl["torch"] = torch_kl
    cases.append(Case("losses", f"kl_div (distillation) + grad {rows}x{cols}", kl, bytes=3 * x.nbytes))
    return cases


def torch_topk_softmax(torch, x, k):
    p = torch.softmax(x, -1)
    w, i = torch.topk(p, k)
    return w / w.sum(-1, keepdim=True), i


def torch_deepseek_v3(torch, x, bias, k=8, n_group=8, topk_group=4, scale=2.5):
    """DeepSeek-V3's published routing, in torch ops (tests/moe_reference.py has the checked one)."""
    s = x.sigmoid()
    sc = s + bias
    t, e = x.shape
    if n_group > 1:
        g = sc.view(t, n_group, -1).topk(2, -1)[0].sum(-1)
        gi = g.topk(topk_group, -1)[1]
        m = torch.zeros_like(g).scatter_(1, gi, 1).unsqueeze(-1).expand(t, n_group, e // n_group).reshape(t, e)
        sc = sc.masked_fill(~m.bool(), float("-inf"))
    i = sc.topk(k, -1)[1]
    w = s.gather(1, i)
    return w / (w.sum(-1, keepdim=True) + 1e-20) * scale, i


def routing_cases(quick, peers):
    torch = peers.get("torch")
    tokens = 2048 if quick else 16384
    rng = _rng()
    cases = []
    x = rng.standard_normal((tokens, 64), dtype=np.float32)
    impls = {"logitkit": lambda: logitkit.route(x, 8, renormalize=True)}
    if torch is not None:
        xt = torch.from_numpy(x)
        impls["torch"] = lambda: torch_topk_softmax(torch, xt, 8)
    cases.append(Case("routing", f"route softmax top-8 {tokens}x64", impls))
    x = rng.standard_normal((tokens, 256), dtype=np.float32)
    b = (rng.standard_normal(256) * 0.01).astype(np.float32)
    impls = {"logitkit": lambda: logitkit.route(x, preset="deepseek-v3", bias=b)}
    if torch is not None:
        xt, bt = torch.from_numpy(x), torch.from_numpy(b)
        impls["torch"] = lambda: torch_deepseek_v3(torch, xt, bt)
    cases.append(Case("routing", f"route deepseek-v3 {tokens}x256", impls))
    return cases


def moe_cases(quick, peers):
    torch = peers.get("torch")
    t, e, k, h = (512, 8, 2, 2048) if quick else (2048, 8, 2, 4096)
    rng = _rng()
    w, ids = logitkit.route(rng.standard_normal((t, e), dtype=np.float32), k, renormalize=True)
    plan = logitkit.dispatch(ids, e)
    hidden = rng.standard_normal((t, h), dtype=np.float32)
    expert_out = logitkit.permute(hidden, plan)
    perm = {"logitkit": lambda: logitkit.permute(hidden, plan), "numpy": lambda: hidden[plan.slot_token]}
    unperm = {"logitkit": lambda: logitkit.unpermute(expert_out, plan, w)}
    if torch is not None:
        slot_token = torch.from_numpy(plan.slot_token.astype(np.int64))
        position = torch.from_numpy(plan.position.astype(np.int64))
        ht, et, wt = torch.from_numpy(hidden), torch.from_numpy(expert_out), torch.from_numpy(w)
        perm["torch"] = lambda: ht.index_select(0, slot_token)
        unperm["torch"] = lambda: (et.index_select(0, position.reshape(-1)).view(t, k, h) * wt.unsqueeze(-1)).sum(1)
    return [
        Case("moe", f"permute {t}x{h} k={k}", perm, bytes=2 * expert_out.nbytes),
        Case("moe", f"unpermute {t}x{h} k={k}", unperm, bytes=expert_out.nbytes + hidden.nbytes),
    ]


def linear_ce_cases(quick, peers):
    torch = peers.get("torch")
    n, d, v = (256, 512, 8000) if quick else (2048, 1024, 32000)
    rng = _rng()
    x = (rng.standard_normal((n, d)) / np.sqrt(d)).astype(np.float32)
    wt = rng.standard_normal((v, d), dtype=np.float32)
    t = rng.integers(0, v, n)
    impls = {"logitkit": lambda: logitkit.linear_cross_entropy(x, wt, t, return_grad=True)}
    if torch is not None and hasattr(torch.nn.functional, "linear_cross_entropy"):
        tt = torch.from_numpy(t)

        def torch_lce():
            xt = torch.from_numpy(x).requires_grad_()
            wtt = torch.from_numpy(wt).requires_grad_()
            torch.nn.functional.linear_cross_entropy(xt, wtt, tt).backward()
            return xt.grad, wtt.grad

        impls["torch"] = torch_lce
    # Three GEMMs of 2·N·D·V flops each: logits, d_input, d_linear_weight.
    return [Case("linear_ce", f"linear_cross_entropy + grads {n}x{d}x{v}", impls, flops=6.0 * n * d * v)]


def latency_cases(quick, peers):
    torch = peers.get("torch")
    rng = _rng()
    r = rng.standard_normal((1, 8), dtype=np.float32)
    s = rng.standard_normal((8, 32), dtype=np.float32)
    c = rng.standard_normal((1, 32), dtype=np.float32)
    ct = np.array([3])
    out = np.empty_like(s)
    cases = [
        Case("latency", "route 1x8 k=2 (one call)", {"logitkit": lambda: logitkit.route(r, 2)}),
        Case("latency", "softmax 8x32 out= (one call)", {"logitkit": lambda: logitkit.softmax(s, out=out)}),
        Case("latency", "cross_entropy 1x32 (one call)", {"logitkit": lambda: logitkit.cross_entropy(c, ct)}),
    ]
    if torch is not None:
        import torch.nn.functional as F

        rt, st, outt, cct, ctt = (torch.from_numpy(a) for a in (r, s, out, c, ct))
        cases[0].impls["torch"] = lambda: torch_topk_softmax(torch, rt, 2)
        cases[1].impls["torch"] = lambda: torch.softmax(st, -1, out=outt)
        cases[2].impls["torch"] = lambda: F.cross_entropy(cct, ctt)
    return cases


def sweep_cases(quick, peers):
    """The Two-Pass paper's figure: softmax bandwidth over row lengths from in-L1 to far beyond L3,
    every algorithm. Short rows are batched to 64K elements (256 KB, in L2) so that the Python
    call stays a few percent of the time; from 64K on, one row."""
    torch = peers.get("torch")
    lengths = [1 << p for p in (range(10, 25, 2) if quick else range(10, 26))]
    cases = []
    for n in lengths:
        rows = max(1, (1 << 16) // n)
        x = (_rng().standard_normal((rows, n)) * 3).astype(np.float32)
        y = np.empty_like(x)
        impls = {}
        for alg in ("auto", "three_pass_reload", "three_pass_recompute", "two_pass", "online"):
            name = "logitkit" if alg == "auto" else f"logitkit:{alg}"
            impls[name] = lambda alg=alg, x=x, y=y: logitkit.softmax(x, algorithm=alg, out=y)
        if torch is not None:
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            impls["torch"] = lambda xt=xt, yt=yt: torch.softmax(xt, -1, out=yt)
        cases.append(Case("sweep", f"softmax {rows}x{n}", impls, bytes=2 * x.nbytes, row_length=n))
    return cases


BUILDERS = {
    "softmax": softmax_cases,
    "backward": backward_cases,
    "sparse": sparse_cases,
    "losses": loss_cases,
    "routing": routing_cases,
    "moe": moe_cases,
    "linear_ce": linear_ce_cases,
    "latency": latency_cases,
    "sweep": sweep_cases,
}


# --------------------------------------------------------------------------------- report
def _summarise(case: Case, roofs: dict) -> None:
    ours = case.results["logitkit"]["median_s"]
    peers = {k: v["median_s"] for k, v in case.results.items() if not k.startswith("logitkit")}
    for name, res in case.results.items():
        t = res["median_s"]
        if case.bytes:
            res["gbs"] = case.bytes / t / 1e9
            res["roof_fraction"] = res["gbs"] / roofs["copy_gbs"]
        if case.flops:
            res["gflops"] = case.flops / t / 1e9
            res["roof_fraction"] = res["gflops"] / roofs["fma_gflops"]
    if peers:
        best = min(peers, key=peers.get)
        case.results["logitkit"]["best_peer"] = best
        case.results["logitkit"]["vs_best_peer"] = peers[best] / ours


def print_case(case: Case) -> None:
    for name, res in case.results.items():
        t = res["median_s"]
        unit = f"{t * 1e6:9.2f} us" if t < 1e-3 else f"{t * 1e3:9.3f} ms"
        rate = ""
        if "gbs" in res:
            rate = f"{res['gbs']:7.1f} GB/s {res['roof_fraction']:5.2f} of copy"
        elif "gflops" in res:
            rate = f"{res['gflops']:7.1f} GFLOP/s {res['roof_fraction']:4.2f} of FMA peak"
        ratio = ""
        if name == "logitkit" and "vs_best_peer" in res:
            ratio = f"{res['vs_best_peer']:6.2f}x vs {res['best_peer']}"
        label = case.name if name == "logitkit" else ""
        print(f"{label:<42} {name:<30} {unit} ±{100 * res['spread']:3.0f}%  {rate:<32} {ratio}")


def plot(cases: list[Case], roofs: dict, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install 'logitkit[bench]'")
    sweep = [c for c in cases if c.row_length]
    if not sweep:
        sys.exit("--plot draws the row-length sweep: add 'sweep' to --ops")
    fig, ax = plt.subplots(figsize=(8, 5))
    for impl in sweep[0].results:
        xs = [c.row_length for c in sweep if impl in c.results]
        ys = [c.results[impl]["gbs"] for c in sweep if impl in c.results]
        ax.plot(xs, ys, marker="o", label=impl)
    ax.axhline(roofs["copy_gbs"], color="k", linestyle="--", label=f"memory roof (copy) {roofs['copy_gbs']:.1f} GB/s")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("row length (float32 elements)")
    ax.set_ylabel("effective GB/s (read x + write y)")
    m = machine_facts()
    ax.set_title(f"softmax throughput vs row length\n{m['cpu']}, {m['isa']}, {m['threads']} threads", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m logitkit bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes, few rounds: under a minute on 2 cores")
    ap.add_argument("--ops", default=None, help=f"comma-separated op groups out of {','.join(OPS)} (default: all but sweep; with --quick all)")
    ap.add_argument("--threads", type=int, default=None, help="threads for logitkit and torch (default: logitkit's)")
    ap.add_argument("--rounds", type=int, default=None, help="samples per implementation (default 5, 9 without --quick)")
    ap.add_argument("--json", metavar="PATH", help="write machine, roofs and every result as JSON")
    ap.add_argument("--plot", metavar="PATH", help="PNG of the sweep's throughput vs row length (needs matplotlib)")
    args = ap.parse_args(argv)
    if args.ops is None:
        ops = list(OPS) if (args.quick or args.plot) else [o for o in OPS if o != "sweep"]
    else:
        ops = [o.strip() for o in args.ops.split(",") if o.strip()]
        unknown = sorted(set(ops) - set(OPS))
        if unknown:
            ap.error(f"--ops: unknown op group(s) {', '.join(unknown)}; choose from {', '.join(OPS)}")
    if args.threads is not None:
        if args.threads < 1:
            ap.error("--threads must be at least 1")
        logitkit.set_num_threads(args.threads)
    peers = _peers()
    if "torch" in peers:
        peers["torch"].set_num_threads(logitkit.get_num_threads())
    rounds = args.rounds or (5 if args.quick else 9)
    sample_seconds = 0.001 if args.quick else 0.004

    facts = machine_facts()
    print(f"logitkit {facts['logitkit']} bench{' --quick' if args.quick else ''}")
    print(f"cpu      {facts['cpu']} ({facts['machine']}, {facts['cpu_count']} logical CPUs)")
    print(f"isa      {facts['isa']} (available: {', '.join(facts['available_isas'])}); threads {facts['threads']}")
    print(f"caches   {', '.join(f'{k} {v}' for k, v in facts['caches'].items()) or 'unknown'}")
    versions = {"numpy": np.__version__}
    for name, mod in peers.items():
        versions[name] = getattr(mod, "__version__", None) or getattr(sys.modules.get(name), "__version__", "?")
    print(f"peers    {', '.join(f'{k} {v}' for k, v in versions.items())}")
    for missing in sorted({"scipy", "torch", "entmax"} - set(peers)):
        print(f"         {missing} is not installed: its rows are skipped (pip install 'logitkit[bench]')")
    roofs = measure_roofs(args.quick)
    print(f"roofs    copy {roofs['copy_gbs']:.1f} GB/s (read + write, streaming stores); "
          f"FMA peak {roofs['fma_gflops']:.0f} GFLOP/s float32 on {facts['isa']}")
    print(f"         median of {rounds} interleaved samples; ± is half the range over the median\n")

    cases = []
    for op in ops:
        cases.extend(BUILDERS[op](args.quick, peers))
    tty = sys.stderr.isatty()
    t_start = time.perf_counter()
    current = None
    for i, case in enumerate(cases):
        msg = f"[{i + 1}/{len(cases)}] {case.name} ({', '.join(case.impls)})"
        print(("\r\033[K" if tty else "") + msg, end="" if tty else "\n", file=sys.stderr, flush=True)
        measure(case, rounds, sample_seconds)
        _summarise(case, roofs)
        if case.op != current:
            current = case.op
            print(f"{'-- ' + case.op + ' ':-<42} {'implementation':<30} {'median':>12}  {'':5} {'rate':<32} ratio")
        if tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        print_case(case)
    print(f"\n{len(cases)} cases in {time.perf_counter() - t_start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": facts, "peers": versions, "roofs": roofs, "rounds": rounds,
                       "cases": [{"op": c.op, "name": c.name, "bytes": c.bytes, "flops": c.flops,
                                  "row_length": c.row_length, "results": c.results} for c in cases]}, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        plot(cases, roofs, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
