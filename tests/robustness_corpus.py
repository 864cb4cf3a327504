"""Adversarial corpus for the numerical robustness report (issue 17): fixed rows that stress each
op (huge and tiny magnitudes, ties, near-collapse rows, one-element and long rows, -inf masks,
float16/bfloat16 extremes, alternating huge +-), the ops run on them, their references, and the
error measure of each.

Used by tests/test_robustness.py (every measured error <= its recorded bound in
tests/robustness_bounds.json, on every ISA) and tests/tools/robustness_report.py (writes
tests/robustness.md; --update lowers the bounds).

References are independent of logitkit: closed forms in NumPy np.longdouble (x87 80-bit on x86-64
Linux: a 64-bit mantissa and an exponent range to 1e4932, so nothing in the corpus overflows or
underflows in them and their own error is about 2^-11 of a float64 result's unit roundoff),
evaluated on the exact values of the inputs (after rounding to the tested dtype). Every row is
shifted by its max before anything else, so huge logits keep the digits that matter.

Error measures (all in units of u, the unit roundoff of the *output* dtype: 2^-24 float32, 2^-53
float64, 2^-11 float16, 2^-8 bfloat16; the max over the elements whose reference is finite in
the output dtype):
  rel   |y - r| / max(|r|, tiny): relative error of a probability, floored at the output dtype's
        smallest normal (a subnormal output can only hold its absolute precision).
  abs1  |y - r| / max(|r|, 1): absolute error of a log-space value or a loss, relative once it
        exceeds 1; also for sparse maps (sparsemax, entmax15), whose outputs are 0 at the edge of
        the support, where a relative error means nothing.
  cw    |y - r| / max(c, tiny): componentwise error against the natural scale c of a gradient, the
        magnitude its exact formula cancels down from (given per op in its `scale` note).
Non-finite outputs are checked apart: NaN exactly where the reference is NaN, +-inf exactly where
the reference rounded to the output dtype is +-inf (an exact value within 16 u of the overflow
threshold may round either way). The reference's own error (2^-64 relative) is included in the
float64 measurements; it is below 0.01 u there.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import ml_dtypes
import numpy as np

import logitkit

LD = np.longdouble
BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "bfloat16": BF16,
}


def finfo(dt: np.dtype):
    return ml_dtypes.finfo(dt) if dt == BF16 else np.finfo(dt)


def unit_roundoff(dt: np.dtype) -> float:
    return float(finfo(dt).eps) / 2


def tiny(dt: np.dtype) -> float:
    return float(finfo(dt).smallest_normal)


def to_ld(a) -> np.ndarray:
    """Exact longdouble copy of an array of any tested dtype (bfloat16 widens through float32)."""
    a = np.asarray(a)
    if a.dtype == BF16:
        a = a.astype(np.float32)
    return a.astype(LD)


# ---------------------------------------------------------------------------------------------
# The corpus: name -> builder(dtype, rng) returning a 2-D array of rows in `dtype`, or None when
# the case cannot be written in that dtype (1e30 in float16).
# ---------------------------------------------------------------------------------------------


def _cast(v, dt) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(v, np.float64).astype(dt)


def _normal(dt, rng):
    return _cast(rng.standard_normal((6, 33)) * 3, dt)


def _offset(dt, rng):
    # every value on a grid of 1/16 around +-2^(p-5): |x|/T > 64 takes the shifted path and
    # x - max is exact, so any error comes from the kernels, not from rounding the inputs
    p = finfo(dt).nmant + 1
    base = 2.0 ** (p - 5)
    v = np.round(rng.standard_normal((6, 33)) * 3 * 16) / 16
    v[::2] += base
    v[1::2] -= base
    return _cast(v, dt)


def _huge(dt, rng):
    m = float(finfo(dt).max)
    h = m / 2
    n = 33
    rows = [
        rng.uniform(-1, 1, n) * h,  # spread of the whole range
        np.where(rng.random(n) < 0.5, h, -h),  # ties at +max/2 with -max/2 (x - max overflows)
        np.concatenate([[m, h, -h, -m], rng.uniform(-1, 1, n - 4) * h]),  # the largest floats
        np.concatenate([[h], rng.standard_normal(n - 1) * 3]),  # max/2 beside ordinary logits
        rng.uniform(0.25, 0.5, n) * m,  # all huge, differences huge too
        -rng.uniform(0.25, 0.5, n) * m,  # all hugely negative
    ]
    return _cast(rows, dt)


def _e30(dt, rng):
    if float(finfo(dt).max) < 1e31:
        return None
    n = 33
    rows = [
        rng.uniform(0.5, 2, n) * 1e30 * np.where(rng.random(n) < 0.5, 1, -1),
        rng.standard_normal(n) * 1e30,
        np.concatenate([[1e30], rng.standard_normal(n - 1)]),
        np.concatenate([[-1e30], rng.standard_normal(n - 1)]),
        np.full(n, 1e30) + rng.standard_normal(n) * 1e24,  # near-equal huge values
    ]
    return _cast(rows, dt)


def _tiny(dt, rng):
    f = finfo(dt)
    t, s = float(f.smallest_normal), float(f.smallest_subnormal)
    n = 33
    sign = np.where(rng.random((6, n)) < 0.5, 1.0, -1.0)
    small = 1e-30 if 1e-30 > 64 * s else 64 * s  # 1e-30 where the dtype has it (not float16)
    rows = [
        sign[0] * rng.uniform(1, 4, n) * t,  # smallest normals
        sign[1] * rng.integers(0, 64, n) * s,  # subnormals
        sign[2] * rng.uniform(0.5, 2, n) * small,
        np.where(rng.random(n) < 0.5, 0.0, -0.0),  # signed zeros: exactly uniform
        np.concatenate([[s, -s, t, -t, 0.0], sign[4, 5:] * rng.uniform(1, 2, n - 5) * small]),
        rng.standard_normal(n) * 1e-3,
    ]
    return _cast(rows, dt)


def _ties(dt, rng):
    f = finfo(dt)
    h = float(f.max) / 2
    n = 33
    rows = [np.full(n, c) for c in (0.0, 1.0, -7.5, h, -h, float(f.smallest_normal))]
    for k in (2, 3, n - 1):  # k entries tied at the max, the rest below it
        v = rng.standard_normal(n) - 6
        v[rng.choice(n, k, replace=False)] = 2.0
        rows.append(v)
    return _cast(rows, dt)


def _collapse(dt, rng):
    # one logit g above the rest (Prieto et al.'s Softmax Collapse: float32 rounds p_max to 1 for
    # g beyond ~17; exp(-g) is subnormal past 87 and 0 past 104 in float32, 745 in float64)
    gaps = [17.0, 40.0, 80.0, 88.0, 100.0, 104.0, 120.0, 200.0, 745.0, 1000.0]
    n = 33
    rows = []
    for i, g in enumerate(gaps):
        v = rng.standard_normal(n) * 0.5
        v[(7 * i + 3) % n] = g
        rows.append(v)
    return _cast(rows, dt)


def _collapse_edge(dt, rng):
    # a dominant entry whose probability rounds to 1 or to its neighbour below: gaps across
    # (p + 1) ln 2, where exp(-g) ~ 2^-(p+1), the edge of p_max == 1.0 in the dtype
    p = finfo(dt).nmant + 1
    gaps = (p + 1) * np.log(2) + np.linspace(-3, 3, 13)
    n = 7
    rows = np.zeros((len(gaps), n))
    rows[:, 1:] = -gaps[:, None] - rng.uniform(0, 1, (len(gaps), n - 1)) * np.arange(n - 1)
    return _cast(rows, dt)


def _width1(dt, rng):
    f = finfo(dt)
    h = float(f.max) / 2
    v = [0.0, 1.0, -1.0, h, -float(f.max), float(f.smallest_normal), float(f.smallest_subnormal), -123.5]
    return _cast(np.array(v)[:, None], dt)


def _long(dt, rng):
    n = 100_000
    a = rng.standard_normal(n) * 5
    b = rng.standard_normal(n)
    b[77_777] = 90.0  # collapse beyond float32's normal range for every other entry
    b[rng.random(n) < 0.1] = -np.inf
    c = rng.uniform(-1, 1, n) * float(finfo(dt).max) / 2
    return _cast([a, b, c], dt)


def _masked_one(dt, rng):
    f = finfo(dt)
    h = float(f.max) / 2
    vals = [0.0, 5.0, h, -h, float(f.smallest_normal), -123.5]
    n = 17
    rows = np.full((len(vals), n), -np.inf)
    for i, v in enumerate(vals):
        rows[i, (5 * i + 2) % n] = v
    return _cast(rows, dt)


def _masked_half(dt, rng):
    f = finfo(dt)
    n = 33
    v = rng.standard_normal((6, n)) * 3
    v[rng.random((6, n)) < 0.5] = -np.inf
    v[:, 0] = 1.0  # every row keeps at least one finite entry
    v[4, 1::3] = float(f.max) / 2
    v[5, 1::3] = -float(f.max) / 2
    return _cast(v, dt)


def _masked_all(dt, rng):
    return _cast(np.full((3, 9), -np.inf), dt)


def _extremes(dt, rng):
    # the dtype's own extremes side by side: +-max, +-smallest normal, +-smallest subnormal,
    # signed zeros, 1 (float16: +-65504, 6.1e-5, 6e-8; bfloat16: +-3.39e38, 1.18e-38, 9.2e-41)
    f = finfo(dt)
    m, t, s = float(f.max), float(f.smallest_normal), float(f.smallest_subnormal)
    base = np.array([m, -m, t, -t, s, -s, 0.0, -0.0, 1.0])
    rows = [rng.permutation(base) for _ in range(4)]
    rows.append(np.array([-m, -t, -s, 0.0, s, t, 1.0, -1.0, -m]))  # no +max: a small max
    rows.append(np.array([-m, -m, -m, -m, -m, -m, -m, -m, -m]))  # ties at -max
    return _cast(rows, dt)


def _alternating(dt, rng):
    f = finfo(dt)
    n = 32
    sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    mags = [float(f.max), float(f.max) / 2, 1e4, 100.0]
    if float(f.max) > 1e31:
        mags.append(1e30)
    return _cast([sign * m for m in mags] + [-sign * mags[1]], dt)


CASES: dict[str, Callable] = {
    "normal": _normal,
    "offset": _offset,
    "huge": _huge,
    "e30": _e30,
    "tiny": _tiny,
    "ties": _ties,
    "collapse": _collapse,
    "collapse_edge": _collapse_edge,
    "width1": _width1,
    "long": _long,
    "masked_one": _masked_one,
    "masked_half": _masked_half,
    "masked_all": _masked_all,
    "extremes": _extremes,
    "alternating": _alternating,
}

CASE_NOTES = {
    "normal": "6x33 N(0, 3) logits (the baseline)",
    "offset": "6x33 logits on a 1/16 grid around +-2^(p-5) (|x| > 64: the shifted path; x - max exact)",
    "huge": "6x33 rows near max/2: uniform +-max/2, ties +-max/2, +-max, max/2 among N(0,3), all in [max/4, max/2] of either sign",
    "e30": "5x33 rows of +-1e30 magnitudes, 1e30 among N(0,1), near-equal 1e30 (not float16)",
    "tiny": "6x33 rows of smallest normals, subnormals, 1e-30, signed zeros, mixtures, N(0,1e-3)",
    "ties": "9x33 all-equal rows (0, 1, -7.5, +-max/2, tiny) and rows with 2, 3, 32 entries tied at the max",
    "collapse": "10x33 one-hot-ish rows: one logit 17..1000 above N(0,0.5) others",
    "collapse_edge": "13x7 rows whose max has p within a few ulp of 1 in the dtype (gap ~ (p+1) ln 2 +- 3)",
    "width1": "8x1 rows: 0, +-1, max/2, -max, tiny, subnormal, -123.5",
    "long": "3x100000: N(0,5); N(0,1) with a +90 logit and 10% -inf; uniform +-max/2",
    "masked_one": "6x17 rows all -inf but one entry (0, 5, +-max/2, tiny, -123.5)",
    "masked_half": "6x33 rows with about half -inf, two of them with +-max/2 entries",
    "masked_all": "3x9 rows of only -inf",
    "extremes": "6x9 rows of the dtype's extremes: +-max, +-smallest normal, +-smallest subnormal, +-0, 1",
    "alternating": "6x32 rows +H, -H, ... for H = max, max/2, 1e4, 100, 1e30",
}


@functools.lru_cache(maxsize=None)
def case_input(case: str, dtype: str) -> np.ndarray | None:
    """The rows of `case` in `dtype` (read-only; the same on every call)."""
    rng = np.random.default_rng(zlib.crc32(case.encode()))  # the same draws for every dtype
    x = CASES[case](DTYPES[dtype], rng)
    if x is not None:
        x.setflags(write=False)
    return x


# ---------------------------------------------------------------------------------------------
# References (longdouble, closed forms). The inputs every op derives from a case (the rows, the
# teacher, y and dy of the backward ops) and the row statistics several references share are
# cached per (case, dtype): the 100k-wide rows would otherwise dominate the run time.
# ---------------------------------------------------------------------------------------------


def _errstate():
    return np.errstate(all="ignore")


def ref_sparsemax(s):
    """Martins & Astudillo's sort-based threshold, on rows s already shifted by their max."""
    out = np.empty_like(s)
    for i, row in enumerate(s):
        if np.isnan(row).any():  # an all -inf row: NaN, as documented
            out[i] = np.nan
            continue
        srt = np.sort(row)[::-1]
        cs = np.cumsum(srt)
        j = np.arange(1, len(row) + 1)
        k = j[1 + j * srt > cs][-1]
        tau = (cs[k - 1] - 1) / k
        out[i] = np.maximum(row - tau, 0)
    return out


def ref_entmax15(s):
    """Peters et al.'s sort-based exact 1.5-entmax, entmax package convention y = [x/2 - tau]^2,
    on rows s already shifted by their max."""
    out = np.empty_like(s)
    for i, row in enumerate(s):
        if np.isnan(row).any():
            out[i] = np.nan
            continue
        x = row / 2
        srt = np.sort(x[np.isfinite(x)])[::-1]  # -inf entries are never in the support
        j = np.arange(1, len(srt) + 1, dtype=LD)
        mean = np.cumsum(srt) / j
        mean_sq = np.cumsum(srt * srt) / j
        delta = (1 - j * (mean_sq - mean * mean)) / j
        tau = mean - np.sqrt(np.maximum(delta, 0))
        t = tau[np.sum(tau <= srt) - 1]
        out[i] = np.where(np.isfinite(x), np.maximum(x - t, 0) ** 2, LD(0))
    return out


def targets(z) -> np.ndarray:
    """The class-index target of each row: its argmax (a confident, correct row: the collapse
    regime) for even rows, the argmin over finite entries (a confident, wrong row) for odd rows;
    0 for a row with no finite entry."""
    z = np.asarray(z, np.float64)
    fin = np.isfinite(z)
    hi = np.argmax(np.where(fin, z, -np.inf), axis=-1)
    lo = np.argmin(np.where(fin, z, np.inf), axis=-1)
    t = np.where(np.arange(len(z)) % 2 == 0, hi, lo)
    return np.where(fin.any(axis=-1), t, 0).astype(np.int64)


@functools.lru_cache(maxsize=None)
def inputs(case: str, dtype: str) -> dict[str, np.ndarray]:
    """Every array the ops take for `case` in `dtype`: x (the rows), t (targets), teacher (kl_div:
    the row's finite values in reverse order, -inf kept in place, so the divergence is finite
    whenever the row has a finite entry), dy (the backward ops' upstream gradient: the row's
    finite values, its magnitudes, plus a fixed N(0,1) draw), y_sm / y_lsm (softmax / log_softmax
    of x rounded to the dtype: the backward ops' y)."""
    x = case_input(case, dtype)
    dt = DTYPES[dtype]
    z = to_ld(x)
    teacher = np.array(x)
    for row in teacher:
        fin = np.isfinite(to_ld(row))
        row[fin] = row[fin][::-1]
    rng = np.random.default_rng(zlib.crc32(b"dy" + case.encode()))
    finite = np.where(np.isfinite(z), z, 0).astype(np.float64)
    dy = _cast(finite + rng.standard_normal(z.shape), dt)
    dy = np.where(np.isfinite(to_ld(dy)), dy, _cast(finite, dt))  # +-max + N(0,1) may round up to inf
    parts = stats(case, dtype, "x")
    with _errstate():
        y_sm = _cast(parts["p"].astype(np.float64), dt)
        y_lsm = _cast(parts["logp"].astype(np.float64), dt)
    out = {"x": x, "t": targets(z), "teacher": teacher, "dy": dy, "y_sm": y_sm, "y_lsm": y_lsm}
    for a in out.values():
        a.setflags(write=False)
    return out


@functools.lru_cache(maxsize=None)
def stats(case: str, dtype: str, which: str) -> dict[str, np.ndarray]:
    """Row statistics of z = the rows ("x"), 4 x the rows ("x4": temperature 0.25) or the teacher
    ("teacher"), in longdouble: s = z - max (NaN for an all -inf row), e = exp(s), p = softmax,
    logp = log_softmax and lse = logsumexp, with the sum's log taken as log(k) + log1p(rest / k)
    for k entries tied at the max, so the largest entries keep their relative precision."""
    x = case_input(case, dtype)
    z = to_ld(inputs(case, dtype)["teacher"] if which == "teacher" else x)
    if which == "x4":
        z = z * 4
    m = np.max(z, axis=-1, keepdims=True)
    with _errstate():
        s = z - m
        e = np.exp(s)
        tied = s == 0
        k = np.sum(tied, axis=-1, keepdims=True).astype(LD)
        rest = np.sum(np.where(tied, LD(0), e), axis=-1, keepdims=True)
        log_sum = np.log(k) + np.log1p(rest / k)
        lse = np.where(m == -np.inf, LD(-np.inf), m + log_sum)[..., 0]  # documented: all -inf -> -inf
        return {"s": s, "e": e, "p": e / (k + rest), "logp": s - log_sum, "lse": lse, "k": k, "rest": rest,
                "log_sum": log_sum}


@dataclass
class Reference:
    """value: the exact result (longdouble, the output's shape); scale: the "cw" measure's scale
    c; ids: the exact ids of route."""

    value: np.ndarray
    scale: np.ndarray | None = None
    ids: np.ndarray | None = None


def _ce_scale(grad, t):
    """The natural scale of a cross-entropy gradient p - onehot: |p| off the target (relative
    error), 1 at it (p_t - 1 cancels: absolute error)."""
    scale = np.abs(grad)
    scale[np.arange(len(t)), t] = 1
    return scale


def _ref_ce(case, dtype):
    """(per-row loss lse - z_t, gradient softmax - onehot)."""
    st, t = stats(case, dtype, "x"), inputs(case, dtype)["t"]
    rows = np.arange(len(t))
    with _errstate():
        loss = st["log_sum"][:, 0] - st["s"][rows, t]
    grad = st["p"].copy()
    grad[rows, t] -= 1
    return loss, grad


def _ref_stable_s(case, dtype):
    z = to_ld(case_input(case, dtype))
    with _errstate():
        return np.where(z >= 0, z + 1, 1 / (1 - z))


def _ref_stablemax(case, dtype):
    s = _ref_stable_s(case, dtype)
    with _errstate():
        return Reference(s / np.sum(s, axis=-1, keepdims=True))


def _ref_log_stablemax(case, dtype):
    s = _ref_stable_s(case, dtype)
    with _errstate():
        return Reference(np.log(s) - np.log(np.sum(s, axis=-1, keepdims=True)))


def _ref_entropy(case, dtype):
    """H = log Z - sum(s e^s) / Z, the tied max entries (s = 0) and underflowed terms out of the sum."""
    st = stats(case, dtype, "x")
    s, e = st["s"], st["e"]
    with _errstate():
        se = np.sum(np.where((s == 0) | (e == 0), LD(0), s * e), axis=-1, keepdims=True)
        h = st["log_sum"] - se / (st["k"] + st["rest"])
    return Reference(np.where(np.isnan(s).any(axis=-1, keepdims=True), LD(np.nan), h)[..., 0])


def _ref_softmax_backward(case, dtype):
    i = inputs(case, dtype)
    y, dy = to_ld(i["y_sm"]), to_ld(i["dy"])
    with _errstate():
        ref = y * (dy - np.sum(y * dy, axis=-1, keepdims=True))
        scale = y * (np.abs(dy) + np.sum(y * np.abs(dy), axis=-1, keepdims=True))
    return Reference(ref, scale)


def _ref_log_softmax_backward(case, dtype):
    i = inputs(case, dtype)
    y, dy = to_ld(i["y_lsm"]), to_ld(i["dy"])
    with _errstate():
        ey = np.exp(y)
        ref = dy - ey * np.sum(dy, axis=-1, keepdims=True)
        scale = np.abs(dy) + ey * np.sum(np.abs(dy), axis=-1, keepdims=True)
    return Reference(ref, scale)


def _ref_nll(case, dtype):
    i = inputs(case, dtype)
    return Reference(-to_ld(i["x"])[np.arange(len(i["t"])), i["t"]])


def _ref_nll_mean(case, dtype):
    # the rows' values as log-probabilities: a mean of terms of both signs and any magnitude, which
    # the compensated sum must get; the exact sum (Fraction) rounded to about 106 bits
    vals = np.asarray(_ref_nll(case, dtype).value, np.float64)
    if not np.all(np.isfinite(vals)):
        return Reference(np.asarray(LD(np.sum(vals)) / len(vals)))
    exact = sum(Fraction(float(v)) for v in vals) / len(vals)
    head = float(exact)
    return Reference(np.asarray(LD(head) + LD(float(exact - Fraction(head)))))


def _ref_kl(case, dtype):
    """forward KL(q || p) per row, p = softmax(x), q = softmax(teacher), 0 log 0 = 0."""
    sx, st = stats(case, dtype, "x"), stats(case, dtype, "teacher")
    q = st["p"]
    with _errstate():
        ref = np.sum(np.where(q > 0, q * (st["logp"] - sx["logp"]), LD(0)), axis=-1)
    return Reference(np.where(np.isnan(q).any(axis=-1) | np.isnan(sx["p"]).any(axis=-1), LD(np.nan), ref))


def _ref_kl_grad(case, dtype):
    p, q = stats(case, dtype, "x")["p"], stats(case, dtype, "teacher")["p"]
    return Reference(p - q, p + q)


def _route_ids(case, dtype):
    """Top-2 by logit, ties to the lower id (a stable sort on -x); -inf ranks last."""
    x = case_input(case, dtype)
    k = min(2, x.shape[-1])
    return np.argsort(-to_ld(x).astype(np.float64), axis=-1, kind="stable")[:, :k]


def _ref_route(case, dtype):
    ids = _route_ids(case, dtype)
    st = stats(case, dtype, "x")
    p = np.where(np.isnan(st["p"]), LD(0), st["p"])  # documented: an all -inf row gives zeros
    return Reference(np.take_along_axis(p, ids, -1), ids=ids)


def _ref_route_mixtral(case, dtype):
    ids = _route_ids(case, dtype)
    e = np.take_along_axis(stats(case, dtype, "x")["e"], ids, -1)
    with _errstate():
        ref = e / np.sum(e, axis=-1, keepdims=True)  # renormalised over the k selected
    return Reference(np.where(np.isnan(ref), LD(0), ref), ids=ids)


def _ref_route_sigmoid(case, dtype):
    ids = _route_ids(case, dtype)
    with _errstate():
        sig = 1 / (1 + np.exp(-np.take_along_axis(to_ld(case_input(case, dtype)), ids, -1)))
    return Reference(sig, ids=ids)


def _ref_lce_d_input(case, dtype):
    # d_input = G linear_weight, linear_weight = x^T: scale |G|' |x^T| with |G|' as _ce_scale
    _, grad = _ref_ce(case, dtype)
    t = inputs(case, dtype)["t"]
    w = to_ld(case_input(case, dtype)).T
    with _errstate():
        return Reference(grad @ w, _ce_scale(grad, t) @ np.abs(w))


def _sparse_ref(fn):
    return lambda case, dtype: Reference(fn(stats(case, dtype, "x")["s"]))


def _ce_loss_ref(case, dtype):
    return Reference(_ref_ce(case, dtype)[0])


def _ce_grad_ref(case, dtype):
    _, grad = _ref_ce(case, dtype)
    return Reference(grad, _ce_scale(grad, inputs(case, dtype)["t"]))


def _ce_grad_t_ref(case, dtype):
    r = _ce_grad_ref(case, dtype)
    return Reference(r.value.T, r.scale.T)


# ---------------------------------------------------------------------------------------------
# The ops: call(inputs) -> the output (route: (weights, ids)), with the active ISA
# ---------------------------------------------------------------------------------------------


def _lce_call(i, out):
    """input = I (N x N), linear_weight = x^T (V x N): the logits input @ linear_weight.T are the
    rows x exactly (every product is by 0 or 1, every sum has one nonzero term)."""
    x = i["x"]
    eye = np.eye(len(x), dtype=np.float32).astype(x.dtype)
    loss, d_in, d_w = logitkit.linear_cross_entropy(eye, np.ascontiguousarray(x.T), i["t"], reduction="none",
                                                    return_grad=True)
    return {"loss": loss, "d_input": d_in, "d_weight": d_w}[out]


@dataclass
class Op:
    name: str
    measure: str
    note: str
    call: Callable[[dict], object]
    reference: Callable[[str, str], Reference]
    skip: tuple[str, ...] = ()  # cases the op cannot take (the reason in `note`)


_LCE_SKIP = ("masked_one", "masked_half", "masked_all", "long")
_LCE_NOTE = ("; input = identity and linear_weight = the rows transposed, so the logits are the rows exactly "
             "(no -inf cases: inf * 0 is NaN in any GEMM; no long case)")

OPS: list[Op] = [
    Op("softmax", "rel", "softmax(x)",
       lambda i: logitkit.softmax(i["x"]), lambda c, d: Reference(stats(c, d, "x")["p"])),
    Op("softmax_T0.25", "rel", "softmax(x, temperature=0.25): x/T overflows near the largest floats",
       lambda i: logitkit.softmax(i["x"], temperature=0.25), lambda c, d: Reference(stats(c, d, "x4")["p"])),
    Op("log_softmax", "abs1", "log_softmax(x)",
       lambda i: logitkit.log_softmax(i["x"]), lambda c, d: Reference(stats(c, d, "x")["logp"])),
    Op("logsumexp", "abs1", "logsumexp(x) per row",
       lambda i: logitkit.logsumexp(i["x"]), lambda c, d: Reference(stats(c, d, "x")["lse"])),
    Op("softmax_backward", "cw", "softmax_backward(y, dy), y = softmax(x) rounded to the dtype, dy = x's finite "
       "values + N(0,1); scale y_i (|dy_i| + sum_j y_j |dy_j|)",
       lambda i: logitkit.softmax_backward(i["y_sm"], i["dy"]), _ref_softmax_backward),
    Op("log_softmax_backward", "cw", "log_softmax_backward(y, dy), y = log_softmax(x) rounded, dy as "
       "softmax_backward; scale |dy_i| + e^y_i sum_j |dy_j|",
       lambda i: logitkit.log_softmax_backward(i["y_lsm"], i["dy"]), _ref_log_softmax_backward),
    Op("stablemax", "rel", "stablemax(x)", lambda i: logitkit.stablemax(i["x"]), _ref_stablemax),
    Op("log_stablemax", "abs1", "log_stablemax(x)", lambda i: logitkit.log_stablemax(i["x"]), _ref_log_stablemax),
    Op("sparsemax", "abs1", "sparsemax(x)", lambda i: logitkit.sparsemax(i["x"]), _sparse_ref(ref_sparsemax)),
    Op("entmax15", "abs1", "entmax15(x)", lambda i: logitkit.entmax15(i["x"]), _sparse_ref(ref_entmax15)),
    Op("entropy", "rel", "entropy(x) per row (nats; documented to keep relative precision for nearly one-hot rows)",
       lambda i: logitkit.entropy(i["x"]), _ref_entropy),
    Op("cross_entropy", "abs1", "cross_entropy(x, t, reduction='none'), t = argmax (even rows) / finite argmin "
       "(odd rows)", lambda i: logitkit.cross_entropy(i["x"], i["t"], reduction="none"), _ce_loss_ref),
    Op("cross_entropy_grad", "cw", "its gradient softmax - onehot; scale |ref| off the target, 1 at it",
       lambda i: logitkit.cross_entropy(i["x"], i["t"], reduction="none", return_grad=True)[1], _ce_grad_ref),
    Op("nll_loss", "abs1", "nll_loss(x, t, reduction='none') with the rows as log-probabilities",
       lambda i: logitkit.nll_loss(i["x"], i["t"], reduction="none"), _ref_nll),
    Op("nll_loss_mean", "abs1", "nll_loss(x, t) mean over the rows (a compensated sum of both signs)",
       lambda i: np.asarray(logitkit.nll_loss(i["x"], i["t"])), _ref_nll_mean),
    Op("kl_div", "abs1", "kl_div(x, teacher, reduction='none'), teacher = the row's finite values reversed",
       lambda i: logitkit.kl_div(i["x"], i["teacher"], reduction="none"), _ref_kl),
    Op("kl_div_grad", "cw", "its gradient p - q; scale p + q",
       lambda i: logitkit.kl_div(i["x"], i["teacher"], reduction="none", return_grad=True)[1], _ref_kl_grad),
    Op("route", "rel", "route(x, k=2) softmax weights (ids checked exactly: top-k by logit, ties to the lower id)",
       lambda i: logitkit.route(i["x"], min(2, i["x"].shape[-1])), _ref_route),
    Op("route_mixtral", "rel", "route(x, preset='mixtral', k=2): softmax top-2 renormalised",
       lambda i: logitkit.route(i["x"], min(2, i["x"].shape[-1]), preset="mixtral"), _ref_route_mixtral),
    Op("route_sigmoid", "rel", "route(x, k=2, scoring='sigmoid')",
       lambda i: logitkit.route(i["x"], min(2, i["x"].shape[-1]), scoring="sigmoid"), _ref_route_sigmoid),
    Op("linear_cross_entropy", "abs1", "linear_cross_entropy loss per row, targets as cross_entropy" + _LCE_NOTE,
       lambda i: _lce_call(i, "loss"), _ce_loss_ref, _LCE_SKIP),
    Op("linear_cross_entropy_d_weight", "cw", "d_linear_weight = G^T (the CE gradient); scale as cross_entropy_grad",
       lambda i: _lce_call(i, "d_weight"), _ce_grad_t_ref, _LCE_SKIP),
    Op("linear_cross_entropy_d_input", "cw", "d_input = G linear_weight; scale |G|' |linear_weight|, |G|' the scale "
       "of cross_entropy_grad", lambda i: _lce_call(i, "d_input"), _ref_lce_d_input, _LCE_SKIP),
]
OPS_BY_NAME = {op.name: op for op in OPS}


def combos():
    """Every (op, case, dtype) of the corpus, in report order."""
    for op in OPS:
        for case in CASES:
            if case in op.skip:
                continue
            for dt in DTYPES:
                if case_input(case, dt) is not None:
                    yield op.name, case, dt


def key(op: str, case: str, dtype: str) -> str:
    return f"{op}/{case}/{dtype}"


@functools.lru_cache(maxsize=None)
def reference(op: str, case: str, dtype: str) -> Reference:
    """The op's reference, kept for every ISA. Stored in float64 unless the output is float64
    (its 2^-53 rounding is below 1e-7 u of a float32/16 output; halves the memory)."""
    ref = OPS_BY_NAME[op].reference(case, dtype)
    if dtype != "float64":
        with _errstate():
            ref.value = np.asarray(ref.value, np.float64)
            ref.scale = None if ref.scale is None else np.asarray(ref.scale, np.float64)
    return ref


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def _round_to(ref: np.ndarray, dt: np.dtype) -> np.ndarray:
    """The reference rounded to the output dtype (through float64), back in longdouble."""
    with _errstate():
        return to_ld(np.asarray(ref).astype(np.float64).astype(dt))


@dataclass
class Measurement:
    error: float  # max error in units of the output dtype's unit roundoff, over comparable elements
    failures: list[str]  # special-value mismatches and exact checks (route's ids) that failed
    worst: str  # where the error is largest (for the report)


def _where(mask: np.ndarray, a: np.ndarray, ref: np.ndarray) -> str:
    bad = np.flatnonzero(mask.ravel())
    i = bad[0]
    return f"{bad.size} element(s), first at flat index {i}: actual {a.ravel()[i]}, reference {ref.ravel()[i]}"


def measure(op: str, case: str, dtype: str) -> Measurement:
    """Runs `op` on the rows of `case` in `dtype` with the active ISA and measures it against its
    (cached) reference."""
    spec = OPS_BY_NAME[op]
    ref_ = reference(op, case, dtype)
    out = spec.call(inputs(case, dtype))
    failures = []
    if ref_.ids is not None:
        out, ids = out
        if not np.array_equal(ids, ref_.ids):
            rows = np.flatnonzero((ids != ref_.ids).any(axis=-1)).tolist()
            failures.append(f"ids differ from the reference (top-k by logit, ties to the lower id) at rows {rows}")
    actual = np.asarray(out)
    dt = actual.dtype
    a, ref = to_ld(actual), np.asarray(ref_.value, dtype=LD)
    assert a.shape == ref.shape, (op, case, dtype, a.shape, ref.shape)
    r_out = _round_to(ref, dt)
    u = LD(unit_roundoff(dt))
    nan_ref, nan_a = np.isnan(ref), np.isnan(a)
    if not np.array_equal(nan_a, nan_ref):
        failures.append("NaN where the reference is not, or not where it is: " + _where(nan_a != nan_ref, a, ref))
    inf_mismatch = (np.isinf(r_out) | np.isinf(a)) & ~nan_ref & ~nan_a & (a != r_out)
    # an exact value within 16 u of the overflow threshold may round to +-inf
    inf_mismatch &= ~(np.isinf(a) & (a == _round_to(ref * (1 + 16 * u), dt)))
    if inf_mismatch.any():
        failures.append("+-inf where the reference rounded to the output dtype is not, or vice versa: "
                        + _where(inf_mismatch, a, ref))
    ok = np.isfinite(r_out) & np.isfinite(a)
    with _errstate():
        if spec.measure == "rel":
            scale = np.maximum(np.abs(ref), LD(tiny(dt)))
        elif spec.measure == "abs1":
            scale = np.maximum(np.abs(ref), LD(1))
        else:
            scale = np.maximum(np.asarray(ref_.scale, dtype=LD), LD(tiny(dt)))
        err = np.where(ok, np.abs(a - ref) / scale / u, LD(0))
    if not ok.any():
        return Measurement(0.0, failures, "")
    i = int(np.argmax(err.ravel()))
    worst = f"flat index {i}: {float(a.ravel()[i])!r} vs {float(ref.ravel()[i])!r}"
    return Measurement(float(err.ravel()[i]), failures, worst)


def clean_bound(value: float) -> float:
    """The next 1, 2 or 5 x 10^k at or above 1.1 x value (0 stays 0: the op is exact there)."""
    if value <= 0:
        return 0.0
    target = value * 1.1
    k = int(np.floor(np.log10(target)))
    for m in (1, 2, 5, 10):
        b = m * 10.0**k
        if b >= target * (1 - 1e-12):
            return float(f"{b:.6g}")
    return float(f"{10.0 ** (k + 1):.6g}")


# (op, case) pairs that fail today, each for a known reason: an intermediate sum overflows for
# inputs within a few units of the dtype's largest finite value, although the exact result is
# finite. test_robustness.py marks them xfail(strict=True), so a fix shows up as an unexpected pass
# (then delete the entry and run tools/robustness_report.py --update); tests/robustness.md lists them.
_DY_OVERFLOW = ("softmax_backward forms dy - sum(y dy): with |dy| near the largest finite value the "
                "difference overflows to -inf, and y = 0 times it gives NaN where the exact result is 0")
_SUM_DY_OVERFLOW = ("log_softmax_backward forms dy - softmax(x) sum(dy): sum(dy) of entries near the "
                    "largest finite value overflows to +-inf (NaN or inf where the exact result is finite)")
KNOWN_LIMITATIONS = {
    **{("softmax_backward", c): _DY_OVERFLOW for c in ("huge", "extremes", "alternating")},
    **{("log_softmax_backward", c): _SUM_DY_OVERFLOW
       for c in ("huge", "ties", "long", "masked_half", "extremes", "alternating")},
    ("nll_loss_mean", "huge"): ("the float64 mean sums the picked -log p before dividing: two values of "
                                "1.5e308 overflow to inf though their mean is finite"),
    **{("kl_div", c): ("kl_div sums p (log p - log q) unnormalised before the batch mean: per-row terms "
                       "near the largest finite value overflow to inf though the divergence is finite")
       for c in ("huge", "long", "masked_half")},
}
