"""Benchmark of logitkit.softmax / log_softmax / logsumexp against NumPy, SciPy and PyTorch (CPU).

Every library runs in the same process on the same input, after warm-up, and is reported as the
median of repeated calls. logitkit and torch write into preallocated outputs (out=); the
allocating front ends (logitkit without out=, scipy.special.*) are compared with each other.
Effective bandwidth counts 8 bytes per float32 element (one read, one write; 4 for logsumexp,
which only reads) and is compared with np.copyto into a preallocated array of the same size,
measured in the same run ("vs copy" = effective GB/s over copy GB/s).

    python bench/bench_softmax.py                 # full run (about a minute)
    python bench/bench_softmax.py --quick         # fewer repetitions, smaller long row
    python bench/bench_softmax.py --shapes 8x32000 65536x128 --ops softmax
    python bench/bench_softmax.py --rounds 3      # every shape measured 3 times, medians reported
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time

import numpy as np

import logitkit

try:
    import scipy
    import scipy.special
except ImportError:  # optional peer
    scipy = None
try:
    import torch
except ImportError:  # optional peer
    torch = None

DEFAULT_SHAPES = ["4096x32000", "8x32000", "65536x128", "1x16777216", "1x16"]  # 1x16: per-call overhead


def parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.lower().split("x"))


# Pause before each measurement. torch's OpenMP workers keep spinning for about 10 ms after a
# parallel region (measured: a full CPU of 2 during the next 8 ms), so whatever is timed right
# after torch would share its cores with them; every implementation starts with the others idle.
SETTLE_SECONDS = 0.05


def median_seconds(fn, min_time: float, min_reps: int, max_reps: int) -> float:
    """Median wall time of fn() after warm-up; repetitions sized to take about min_time."""
    time.sleep(SETTLE_SECONDS)
    for _ in range(3):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    reps = int(min(max_reps, max(min_reps, min_time / one)))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def numpy_softmax(x, y):
    """The textbook reference: subtract the row max, exponentiate, divide by the row sum."""
    np.subtract(x, x.max(axis=-1, keepdims=True), out=y)
    np.exp(y, out=y)
    y /= y.sum(axis=-1, keepdims=True)
    return y


def machine_summary() -> str:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        model = fields.get("Model name", model).strip()
        caches = ", ".join(
            f"{k.strip()} {fields[k].strip()}" for k in ("L1d cache", "L2 cache", "L3 cache") if k in fields
        )
        model = f"{model}, {os.cpu_count()} CPUs, {caches}"
    except (OSError, subprocess.CalledProcessError):
        pass
    return model


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def measure_op(op, shape, x, y, xt, yt, rt, n_el, t, args):
    """[(implementation, seconds)] for one op on one input; torch's out= variant is the reference."""
    results = []
    if op == "softmax":
        if torch is not None:
            results.append(("torch (out=)", t(lambda: torch.softmax(xt, -1, out=yt))))
        results.append(("logitkit (out=)", t(lambda: logitkit.softmax(x, out=y))))
        results.append(("logitkit (allocating)", t(lambda: logitkit.softmax(x))))
        if shape[0] == 1 or n_el >= 1 << 24:
            for alg in ("two_pass", "three_pass_reload"):
                results.append((f"logitkit {alg} (out=)", t(lambda a=alg: logitkit.softmax(x, algorithm=a, out=y))))
        if torch is not None:
            results.append(("torch (allocating)", t(lambda: torch.softmax(xt, -1))))
        if not args.no_peers:
            results.append(("numpy max/exp/sum (out=)", t(lambda: numpy_softmax(x, y))))
            if scipy is not None:
                results.append(("scipy.special.softmax (allocating)", t(lambda: scipy.special.softmax(x, axis=-1))))
    elif op == "log_softmax":
        if torch is not None:
            results.append(("torch (out=)", t(lambda: torch.log_softmax(xt, -1, out=yt))))
        results.append(("logitkit (out=)", t(lambda: logitkit.log_softmax(x, out=y))))
        results.append(("logitkit (allocating)", t(lambda: logitkit.log_softmax(x))))
        if torch is not None:
            results.append(("torch (allocating)", t(lambda: torch.log_softmax(xt, -1))))
        if not args.no_peers and scipy is not None:
            results.append(("scipy.special.log_softmax (allocating)", t(lambda: scipy.special.log_softmax(x, axis=-1))))
    else:
        if torch is not None:
            results.append(("torch (out=)", t(lambda: torch.logsumexp(xt, -1, out=rt))))
        # logsumexp has no out=: both sides allocate the small reduced result.
        results.append(("logitkit (allocating)", t(lambda: logitkit.logsumexp(x, axis=-1))))
        if not args.no_peers and scipy is not None:
            results.append(("scipy.special.logsumexp (allocating)", t(lambda: scipy.special.logsumexp(x, axis=-1))))
    # torch's out= row goes last in the table, as the reference.
    return [r for r in results if r[0] != "torch (out=)"] + [r for r in results if r[0] == "torch (out=)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=None, help="shapes like 8x32000 (default: the issue's four and 1x16)")
    ap.add_argument("--ops", nargs="+", default=["softmax", "log_softmax", "logsumexp"],
                    choices=["softmax", "log_softmax", "logsumexp"])
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for logitkit and torch")
    ap.add_argument("--min-time", type=float, default=0.4, help="seconds of repetitions per measurement")
    ap.add_argument("--quick", action="store_true", help="short run: fewer repetitions, 4M-element long row")
    ap.add_argument("--no-peers", action="store_true", help="skip NumPy and SciPy (torch still runs)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every shape this many times, report the medians (for machines whose speed drifts)")
    args = ap.parse_args()
    shapes = [parse_shape(s) for s in (args.shapes or DEFAULT_SHAPES)]
    if args.quick:
        args.min_time = min(args.min_time, 0.1)
        if args.shapes is None:
            shapes = [s if s != (1, 1 << 24) else (1, 1 << 22) for s in shapes]
    min_reps, max_reps = (5, 2000) if args.quick else (11, 20000)

    logitkit.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    versions = [f"logitkit {logitkit.__version__} ({logitkit.isa()})", f"numpy {np.__version__}"]
    if scipy is not None:
        versions.append(f"scipy {scipy.__version__}")
    if torch is not None:
        versions.append(f"torch {torch.__version__}")
    print(f"machine: {machine_summary()}")
    print(f"versions: {', '.join(versions)}; threads: {args.threads} (NumPy and SciPy are single-threaded)")
    print(f"load average at start: {load_average()}")
    print()

    def t(fn):
        return median_seconds(fn, args.min_time, min_reps, max_reps)

    rows = []  # (shape, op, impl, seconds, elements, copy_seconds, torch_seconds)
    rng = np.random.default_rng(0)
    for shape in shapes:
        x = (rng.standard_normal(shape, dtype=np.float32) * 4).astype(np.float32)
        n_el = x.size
        y = np.empty_like(x)
        reduced = np.empty(shape[:-1], np.float32)
        xt = torch.from_numpy(x) if torch is not None else None
        yt = torch.from_numpy(y) if torch is not None else None
        rt = torch.from_numpy(reduced) if torch is not None else None
        samples = {}  # (op, impl) -> seconds, one per round; op None is the copy
        for _ in range(max(1, args.rounds)):
            samples.setdefault((None, "np.copyto"), []).append(t(lambda: np.copyto(y, x)))
            for op in args.ops:
                for impl, sec in measure_op(op, shape, x, y, xt, yt, rt, n_el, t, args):
                    samples.setdefault((op, impl), []).append(sec)
        med = {key: statistics.median(v) for key, v in samples.items()}
        t_copy = med[(None, "np.copyto")]
        rows.append((shape, "copy", "np.copyto", t_copy, n_el, t_copy, None))
        for op in args.ops:
            t_torch = med.get((op, "torch (out=)"))
            for (o, impl), sec in med.items():
                if o == op:
                    rows.append((shape, op, impl, sec, n_el, t_copy, t_torch))
        print_table([r for r in rows if r[0] == shape])
        print()
    print(f"load average at end: {load_average()}")


def print_table(rows) -> None:
    print("| shape | op | implementation | median | GB/s | vs copy | vs torch |")
    print("|---|---|---|---:|---:|---:|---:|")
    for shape, op, impl, sec, n_el, t_copy, t_torch in rows:
        shape_s = "x".join(str(s) for s in shape)
        nbytes = (4 if op == "logsumexp" else 8) * n_el
        gbs = nbytes / sec / 1e9
        vs_copy = f"{gbs / (8 * n_el / t_copy / 1e9):.2f}"
        vs_torch = f"{t_torch / sec:.2f}x" if t_torch is not None else ""
        print(f"| {shape_s} | {op} | {impl} | {format_time(sec)} | {gbs:.1f} | {vs_copy} | {vs_torch} |")


def format_time(sec: float) -> str:
    if sec < 1e-3:
        return f"{sec * 1e6:.1f} us"
    return f"{sec * 1e3:.2f} ms"


if __name__ == "__main__":
    main()
