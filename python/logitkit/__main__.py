"""`python -m logitkit info` prints the build and CPU facts; `python -m logitkit demo` runs softmax
on a vocabulary-sized batch and checks it against a float64 reference; `python -m logitkit bench
[--quick] [--ops ...] [--threads N] [--json F] [--plot F]` times every op family against the peers
installed here (logitkit/bench.py)."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

import logitkit
from logitkit import _core


def info() -> None:
    print(f"logitkit {logitkit.__version__}")
    print(f"python   {platform.python_version()} on {platform.machine()} ({platform.system()})")
    print(f"numpy    {np.__version__}")
    print(f"isa      {logitkit.isa()} (available: {', '.join(logitkit.available_isas())})")
    print(f"threads  {logitkit.get_num_threads()} (cpu count {os.cpu_count()})")
    llc = _core.last_level_cache_bytes()
    print(f"cache    last level {llc >> 20} MiB per core (outputs this large are written with streaming stores)")


def demo(rows: int = 256, vocab: int = 32000) -> None:
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((rows, vocab)) * 4).astype(np.float32)
    t0 = time.perf_counter()
    probs = logitkit.softmax(logits, axis=-1)
    t1 = time.perf_counter()
    z = logits.astype(np.float64)
    ref = np.exp(z - z.max(axis=-1, keepdims=True))
    ref /= ref.sum(axis=-1, keepdims=True)
    rel = np.max(np.abs(probs - ref) / np.maximum(ref, np.finfo(np.float32).tiny))
    lse = logitkit.logsumexp(logits, axis=-1)
    print(f"softmax {rows}x{vocab} float32 on {logitkit.isa()}: {1e3 * (t1 - t0):.2f} ms")
    print(f"  max relative error vs float64 reference: {rel:.2e}")
    print(f"  rows sum to 1 within {np.max(np.abs(probs.sum(axis=-1, dtype=np.float64) - 1)):.1e}")
    print(f"  logsumexp of row 0: {lse[0]:.6f}")
    if not rel < 1e-5:
        sys.exit("demo: accuracy check failed")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from logitkit import bench

        try:
            sys.exit(bench.main(argv[1:]))
        except ValueError as exc:  # an invalid LOGITKIT_ISA or LOGITKIT_NUM_THREADS
            sys.exit(f"logitkit: {exc}")
    parser = argparse.ArgumentParser(prog="python -m logitkit", description=__doc__)
    parser.add_argument("command", choices=["info", "demo", "bench"], nargs="?", default="info")
    args = parser.parse_args(argv)
    try:
        info()
        if args.command == "demo":
            print()
            demo()
    except ValueError as exc:  # e.g. an invalid LOGITKIT_ISA or LOGITKIT_NUM_THREADS
        sys.exit(f"logitkit: {exc}")


if __name__ == "__main__":
    main()
