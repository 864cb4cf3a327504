"""Bitwise snapshot of every op's output over a fixed corpus, on every ISA: the check that a
refactor changes no result (issue 13's "no bit changes").

    python tests/tools/op_snapshot.py write before.json     # on the old build
    python tests/tools/op_snapshot.py write after.json      # on the new build
    python tests/tools/op_snapshot.py compare before.json after.json

Each case (op, ISA, dtype, shape, layout, parameters, input kind) maps to the SHA-256 of its
output bytes (and, for ops that raise, of the exception's type). The corpus covers short rows,
pipelined rows, rows of one sum block, long rows split across threads, strided and transposed
views, temperatures, and special values (+-inf, NaN, near the largest float); it runs in about
a minute on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

import logitkit

SHAPES = [(1,), (7,), (3, 129), (16, 1000), (4, 3001), (9, 40), (2, 70001), (1, 300001)]
STREAMED = (2100, 4099)  # float32 outputs beyond a 32 MiB last-level cache: the streamed kernels
DTYPES = [np.float32, np.float64]
TEMPERATURES = [1.0, 0.7, 3.0]


def inputs(rng, shape, dtype):
    """Named inputs of one shape: normal logits, wide logits, special values."""
    normal = rng.standard_normal(shape) * 3
    wide = rng.standard_normal(shape) * 200
    special = normal.copy()
    flat = special.reshape(-1)
    if flat.size >= 4:
        flat[:: max(1, flat.size // 3)] = -np.inf
        flat[1] = np.finfo(dtype).max / 2
        flat[-1] = -np.finfo(dtype).max / 2
    nan = normal.copy()
    nan.reshape(-1)[-1] = np.nan
    return {"normal": normal.astype(dtype), "wide": wide.astype(dtype), "special": special.astype(dtype),
            "nan": nan.astype(dtype)}


def layouts(x):
    """(name, view, axis): the last axis contiguous, the first axis of a transposed copy, a strided slice."""
    yield "c", x, -1
    if x.ndim == 2:
        yield "t", np.ascontiguousarray(x.T), 0
        yield "s", np.repeat(x, 2, axis=-1)[:, ::2], -1


def digest(value) -> str:
    if isinstance(value, tuple):
        return "|".join(digest(v) for v in value)
    a = np.ascontiguousarray(np.asarray(value))
    return hashlib.sha256(a.tobytes() + str(a.dtype).encode()).hexdigest()[:16]


def ops(x, axis, t):
    """(name, thunk) for every op at temperature t."""
    rng = np.random.default_rng(1)
    dy = rng.standard_normal(x.shape).astype(x.dtype)
    mask = rng.random(x.shape) > 0.3
    y = logitkit.softmax(np.nan_to_num(x), axis=axis)
    out = [
        *(("softmax/" + a, lambda a=a: logitkit.softmax(x, axis, temperature=t, algorithm=a))
          for a in ("three_pass_reload", "three_pass_recompute", "two_pass", "online", "auto")),
        ("log_softmax", lambda: logitkit.log_softmax(x, axis, temperature=t)),
        ("masked_softmax", lambda: logitkit.masked_softmax(x, mask, axis, temperature=t)),
        ("masked_log_softmax", lambda: logitkit.masked_log_softmax(x, mask, axis, temperature=t)),
        ("softmax_backward", lambda: logitkit.softmax_backward(y, dy, axis, temperature=t)),
        ("log_softmax_backward", lambda: logitkit.log_softmax_backward(np.log(y), dy, axis, temperature=t)),
        ("stablemax", lambda: logitkit.stablemax(x, axis, temperature=t)),
        ("log_stablemax", lambda: logitkit.log_stablemax(x, axis, temperature=t)),
        ("stablemax_backward", lambda: logitkit.stablemax_backward(x, dy, axis, temperature=t)),
        ("sparsemax", lambda: logitkit.sparsemax(x, axis, temperature=t)),
        ("entmax15", lambda: logitkit.entmax15(x, axis, temperature=t)),
        ("entmax_bisect", lambda: logitkit.entmax_bisect(x, 1.3, axis, temperature=t)),
        ("sparsemax_backward", lambda: logitkit.sparsemax_backward(logitkit.sparsemax(np.nan_to_num(x), axis), dy, axis)),
        ("entropy", lambda: logitkit.entropy(x, axis, temperature=t)),
    ]
    if t == 1.0:
        b = np.abs(dy) + 0.5
        out += [
            ("logsumexp", lambda: logitkit.logsumexp(x, axis)),
            ("logsumexp_b", lambda: logitkit.logsumexp(x, axis, b=b, return_sign=True)),
            ("collapse_fraction", lambda: logitkit.collapse_fraction(x, axis, dtype=x.dtype)),
        ]
        n_classes = x.shape[axis]
        target = rng.integers(-1, n_classes, np.delete(x.shape, axis % x.ndim))  # -1: ignored
        w = np.abs(dy.reshape(-1)[:n_classes]).astype(x.dtype) + 0.5
        for reduction in ("mean", "sum", "none"):
            out.append((f"nll_loss_{reduction}", lambda r=reduction: logitkit.nll_loss(
                x, target, w, axis=axis, ignore_index=-1, reduction=r, return_grad=True)))
            out.append((f"cross_entropy_{reduction}", lambda r=reduction: logitkit.cross_entropy(
                x, target, w, axis=axis, ignore_index=-1, reduction=r, label_smoothing=0.1, return_grad=True)))
    return out


def snapshot() -> dict:
    result = {}
    for isa in logitkit.available_isas():
        with logitkit.use_isa(isa):
            rng = np.random.default_rng(0)
            for dtype in DTYPES:
                for shape in SHAPES:
                    for kind, x0 in inputs(rng, shape, dtype).items():
                        for layout, x, axis in layouts(x0):
                            for t in TEMPERATURES:
                                for name, thunk in ops(x, axis, t):
                                    key = f"{isa}/{np.dtype(dtype).name}/{'x'.join(map(str, shape))}/{layout}/{kind}/T{t}/{name}"
                                    try:
                                        with np.errstate(all="ignore"):
                                            result[key] = digest(thunk())
                                    except Exception as e:  # noqa: BLE001 - an error is a result too
                                        result[key] = "raises " + type(e).__name__
            x = rng.standard_normal(STREAMED).astype(np.float32) * 3
            for name, thunk in (("softmax", lambda: logitkit.softmax(x, algorithm="three_pass_reload")),
                                ("log_softmax", lambda: logitkit.log_softmax(x))):
                result[f"{isa}/float32/{'x'.join(map(str, STREAMED))}/c/normal/T1.0/{name}"] = digest(thunk())
    return result


def main(argv):
    if len(argv) == 3 and argv[1] == "write":
        snap = snapshot()
        with open(argv[2], "w") as f:
            json.dump(snap, f, indent=0, sort_keys=True)
        print(f"{len(snap)} cases written to {argv[2]}")
        return 0
    if len(argv) == 4 and argv[1] == "compare":
        a, b = (json.load(open(p)) for p in argv[2:4])
        keys = sorted(set(a) | set(b))
        diff = [k for k in keys if a.get(k) != b.get(k)]
        for k in diff[:50]:
            print(f"{k}: {a.get(k)} -> {b.get(k)}")
        print(f"{len(diff)} of {len(keys)} cases differ")
        return 1 if diff else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
