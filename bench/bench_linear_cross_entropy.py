"""linear_cross_entropy forward + backward (loss, d_input, d_linear_weight) against torch's
F.linear_cross_entropy, reference path (logits materialised) and chunked path
(options=LinearCrossEntropyOptions()), float32, in the same run; and each one's peak extra memory,
measured in a fresh process as peak RSS minus the RSS of its inputs and gradient buffers.

  python bench/bench_linear_cross_entropy.py --shapes 2048x1024x32000 --repeat 3
  python bench/bench_linear_cross_entropy.py --memory-only --shapes 1024x512x256000   (CCE's table)
  python bench/bench_linear_cross_entropy.py --impls logitkit,logitkit:128,torch_reference   (chunk_rows)
  python bench/bench_linear_cross_entropy.py --impls logitkit_bf16,logitkit_bf16@avx512,torch_reference_bf16

An implementation name with _bf16 takes bfloat16 input and linear_weight (ml_dtypes for
logitkit, torch.bfloat16 for torch; the gradients are float32 for logitkit, bfloat16 for torch),
logitkit_bf16g also bfloat16_gradient=True;
logitkit...@ISA runs on that backend (e.g. @avx512 to compare the widened float32 kernel with
avx512bf16's vdpbf16ps on the same CPU).

Shapes are N x D x V. GFLOP/s counts the three products (6 N D V flops); compare with the FMA peak
of bench/fma_peak.cc on the same machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

IMPLS = ("logitkit", "torch_reference", "torch_chunked")


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak_rss() -> None:
    """Peak RSS (VmHWM) set back to the current RSS (Linux >= 4.0); ru_maxrss would carry the
    parent's peak across fork and exec."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _inputs(n: int, d: int, v: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((v, d), dtype=np.float32)
    w *= np.float32(1.0 / np.sqrt(d))
    t = rng.integers(0, v, n).astype(np.int64)
    return x, w, t


def _runner(impl: str, x, w, t, threads: int):
    """A function computing loss, d_input, d_linear_weight into buffers allocated (and touched) here."""
    bf16 = "_bf16" in impl
    bf16_gradient = "_bf16g" in impl  # logitkit: bfloat16_gradient=True
    if impl.startswith("logitkit"):  # "logitkit[_bf16][:ROWS][@ISA]"
        import logitkit  # noqa: PLC0415

        logitkit.set_num_threads(threads)
        grads = (np.zeros_like(x), np.zeros_like(w))
        name, _, isa = impl.partition("@")
        chunk = int(name.split(":")[1]) if ":" in name else None
        isa = isa or logitkit.isa()  # set per call: the runs are interleaved
        if bf16:
            import ml_dtypes  # noqa: PLC0415

            x, w = x.astype(ml_dtypes.bfloat16), w.astype(ml_dtypes.bfloat16)

        def run():
            logitkit.set_isa(isa)
            return logitkit.linear_cross_entropy(x, w, t, return_grad=True, out_grads=grads, chunk_rows=chunk,
                                                 bfloat16_gradient=bf16_gradient)

        return run
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415, N812

    torch.set_num_threads(threads)
    xt, wt, tt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(t)
    if bf16:
        xt, wt = xt.to(torch.bfloat16), wt.to(torch.bfloat16)
    xt, wt = xt.requires_grad_(), wt.requires_grad_()
    xt.grad, wt.grad = torch.zeros_like(xt), torch.zeros_like(wt)
    options = torch.nn.LinearCrossEntropyOptions() if impl.startswith("torch_chunked") else None

    def run():
        xt.grad.zero_()
        wt.grad.zero_()
        loss = F.linear_cross_entropy(xt, wt, tt, options=options)
        loss.backward()
        return loss

    return run


def _child(impl: str, n: int, d: int, v: int, threads: int) -> None:
    """Runs one implementation once, after a warm-up, and prints its peak extra memory."""
    x, w, t = _inputs(n, d, v)
    run = _runner(impl, x, w, t, threads)
    run()  # warm-up: the gradient buffers' pages, the threads, lazy allocations kept across calls
    _reset_peak_rss()
    base = _status_bytes("VmRSS")
    t0 = time.perf_counter()
    run()
    seconds = time.perf_counter() - t0
    peak = _status_bytes("VmHWM")
    print(json.dumps({"extra_bytes": max(0, peak - base), "seconds": seconds}))


def memory(impl: str, n: int, d: int, v: int, threads: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", impl, "--shapes", f"{n}x{d}x{v}", "--threads", str(threads)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="2048x1024x32000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    shapes = [tuple(int(s) for s in spec.split("x")) for spec in args.shapes.split(",")]
    if args.child:
        _child(args.child, *shapes[0], args.threads)
        return
    import logitkit  # noqa: PLC0415
    import torch  # noqa: PLC0415

    impls = args.impls.split(",")
    print(f"isa={logitkit.isa()} threads={args.threads} torch={torch.__version__} float32")
    for n, d, v in shapes:
        logits_mb = n * v * 4 / 2**20
        print(f"\nN={n} D={d} V={v}: the logits alone are {logits_mb:.0f} MiB")
        times = {}
        if not args.memory_only:
            x, w, t = _inputs(n, d, v)
            runs = {impl: _runner(impl, x, w, t, args.threads) for impl in impls}
            samples = {impl: [] for impl in impls}
            for impl in impls:
                runs[impl]()  # warm-up
            for _ in range(args.repeat):  # interleaved
                for impl in impls:
                    t0 = time.perf_counter()
                    runs[impl]()
                    samples[impl].append(time.perf_counter() - t0)
            times = {impl: float(np.median(s)) for impl, s in samples.items()}
            del x, w, t, runs
        mem = {impl: memory(impl, n, d, v, args.threads) for impl in impls}
        best_torch = min((times.get(i, np.inf) for i in impls if i.startswith("torch")), default=np.inf)
        print(f"{'impl':>16} {'seconds':>9} {'GFLOP/s':>8} {'vs best torch':>14} {'extra MiB':>10} {'of N*V*4':>9}")
        for impl in impls:
            sec = times.get(impl)
            extra = mem[impl]["extra_bytes"]
            rate = 6 * n * d * v / sec / 1e9 if sec else float("nan")
            ratio = best_torch / sec if sec and impl.startswith("logitkit") else float("nan")
            sec_s = f"{sec:9.3f}" if sec else f"{'-':>9}"
            print(f"{impl:>16} {sec_s} {rate:8.1f} {ratio:14.2f} {extra / 2**20:10.1f} {extra / (n * v * 4):9.2%}")


if __name__ == "__main__":
    main()
