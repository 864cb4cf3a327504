"""Interleaved before/after timing of every family's ops, for changes that must not slow anything.

    python bench/ab.py --before /path/to/old/python --after python --rounds 7

Each directory must hold an importable logitkit package (with its built _core). Every round runs
one process per side, alternating which side goes first, and each process times every case (best
of several repeats of a call loop); the report is the median over rounds of after/before time per
case (1.00: unchanged; < 1: faster after). Interleaving cancels most of the drift of a shared VM.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

# (name, op, shape, layout): layout "c" = contiguous rows, "t" = reduce over axis 0 of a C array
# (strided rows: the driver's gather-scatter tiles), "s" = every other element of each row.
CASES = [
    (op, shape, layout)
    for op in [
        "softmax", "log_softmax", "logsumexp", "masked_softmax", "softmax_backward", "log_softmax_backward",
        "stablemax", "stablemax_backward", "entropy", "collapse_fraction", "sparsemax", "entmax15",
        "sparsemax_backward",
    ]
    for shape, layout in [((8, 32000), "c"), ((4096, 128), "c"), ((256, 32000), "c"), ((2, 300000), "c"),
                          ((1024, 1000), "t"), ((512, 1000), "s")]
]

WORKER = r"""
import json, sys, time
import numpy as np
import logitkit

cases = json.loads(sys.argv[1])
logitkit.set_num_threads(int(sys.argv[2]))
rng = np.random.default_rng(0)
out = {}
for op, shape, layout in cases:
    base = (rng.standard_normal(shape) * 3).astype(np.float32)
    axis = -1
    if layout == "t":
        base, axis = np.ascontiguousarray(base.T), 0
    x = np.repeat(base, 2, axis=-1)[:, ::2] if layout == "s" else base
    y = logitkit.softmax(x, axis=axis)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    where = rng.random(x.shape) > 0.2
    res = np.empty_like(y)
    calls = {
        "softmax": lambda: logitkit.softmax(x, axis=axis, out=res),
        "log_softmax": lambda: logitkit.log_softmax(x, axis=axis, out=res),
        "logsumexp": lambda: logitkit.logsumexp(x, axis=axis),
        "masked_softmax": lambda: logitkit.softmax(x, axis=axis, where=where, out=res),
        "softmax_backward": lambda: logitkit.softmax_backward(y, dy, axis=axis, out=res),
        "log_softmax_backward": lambda: logitkit.log_softmax_backward(y, dy, axis=axis, out=res),
        "stablemax": lambda: logitkit.stablemax(x, axis=axis, out=res),
        "stablemax_backward": lambda: logitkit.stablemax_backward(x, dy, axis=axis, out=res),
        "entropy": lambda: logitkit.entropy(x, axis=axis),
        "collapse_fraction": lambda: logitkit.collapse_fraction(x, axis=axis),
        "sparsemax": lambda: logitkit.sparsemax(x, axis=axis, out=res),
        "entmax15": lambda: logitkit.entmax15(x, axis=axis, out=res),
        "sparsemax_backward": lambda: logitkit.sparsemax_backward(y, dy, axis=axis, out=res),
    }
    f = calls[op]
    f()
    reps = max(2, int(4e6 / x.size))
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - t) / reps)
    out["%s %s %s" % (op, "x".join(map(str, shape)), layout)] = best
print(json.dumps(out))
"""


def run_side(path: str, threads: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=path)
    done = subprocess.run([sys.executable, "-c", WORKER, json.dumps(CASES), str(threads)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="directory holding the old logitkit package")
    ap.add_argument("--after", required=True, help="directory holding the new logitkit package")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    ratios: dict[str, list[float]] = {}
    for r in range(args.rounds):
        sides = [args.before, args.after] if r % 2 == 0 else [args.after, args.before]
        times = {side: run_side(side, args.threads) for side in sides}
        for case, t in times[args.after].items():
            ratios.setdefault(case, []).append(t / times[args.before][case])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"{'case':<42} after/before (median of {args.rounds} rounds; min, max)")
    for case, rs in ratios.items():
        print(f"{case:<42} {statistics.median(rs):5.2f}   ({min(rs):.2f}, {max(rs):.2f})")
    all_ratios = [statistics.median(rs) for rs in ratios.values()]
    print(f"{'geometric mean':<42} {statistics.geometric_mean(all_ratios):5.2f}")


if __name__ == "__main__":
    main()
