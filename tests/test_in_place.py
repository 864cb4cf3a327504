"""Every op that takes ``out=`` gives the same bits in place (``out=`` one of its inputs),
on a partially overlapping ``out`` and on strided / reversed / aliased-view layouts, as out of
place, on every ISA, in float32 and float64.

Inputs mix the rows that send kernels down their special paths: masked (-inf) logits, one logit
120 above the rest (every other exp argument far below the table exp's range), a NaN, moderate
logits (|x| > 64: the max shift), huge and tiny magnitudes (stablemax's rescale), +inf (sparsemax's
mass split) and plain rows. Every call runs on a buffer with sentinel padding, so writes outside
``out`` are caught too.

Reference: the op out of place on C-contiguous inputs with the reduced axis last (for axis=0 cases
the transposed copy), so a wrong strided path cannot hide in the reference. Outputs beyond the
last-level cache (softmax's streamed kernels) are covered by the C++ test StreamedRows.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import logitkit
import numpy as np
import pytest

ISAS = logitkit.available_isas()
DTYPES = [np.float32, np.float64]
PAD = 11  # sentinel elements on each side of every buffer
SENTINEL = 1234.5678

ROW_KINDS_6 = ["plain", "masked", "wide", "nan", "masked_wide", "moderate"]
ROW_KINDS_ALL = ROW_KINDS_6 + ["huge", "tiny", "posinf"]
LONG_KINDS = ["plain", "masked", "wide", "nan", "masked_wide", "huge", "posinf"]


# ---------------------------------------------------------------------------------------------
# Inputs


def _max_of(dtype) -> float:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return float(np.finfo(dt).max)
    return float(np.finfo(np.float32).max) / 4  # bfloat16: float32's range


def make_row(kind: str, n: int, dtype, rng) -> np.ndarray:
    v = rng.standard_normal(n) * (20.0 if kind == "moderate" else 2.0)
    if kind in ("masked", "masked_wide"):
        v[::3] = -np.inf
    if kind in ("wide", "masked_wide"):
        v[1] = np.max(v[np.isfinite(v)]) + 120.0
    if kind == "nan":
        v[n // 2] = np.nan
    if kind in ("huge", "tiny"):
        big = _max_of(dtype) / (8.0 * n)
        v = rng.uniform(0.25, 1.0, n) * big
        if kind == "huge":
            v[::2] *= -1
        else:
            v = -v
    if kind == "posinf":
        v[2] = np.inf
        v[min(5, n - 1)] = np.inf
    return v.astype(dtype)


def make_rows(n_rows: int, n: int, dtype, rng, kinds) -> np.ndarray:
    """(n_rows, n) array, row r of kind kinds[r % len(kinds)]."""
    return np.stack([make_row(kinds[r % len(kinds)], n, dtype, rng) for r in range(n_rows)])


def make_mask(n_rows: int, n: int, rng) -> np.ndarray:
    m = rng.random((n_rows, n)) > 0.2
    if n_rows > 5:
        m[5] = False  # a fully excluded row
    return m


# ---------------------------------------------------------------------------------------------
# Ops. call(inputs, axis, ctx, out) runs the op; prep(x, axis, ctx, rng) gives its inputs (computed
# on the active ISA). ctx holds the masks in the case's layout.


@dataclass(frozen=True)
class Op:
    name: str
    call: Callable
    prep: Callable
    n_inputs: int = 1


def _fwd(f, **kw):
    return lambda a, axis, ctx, out: f(a[0], axis=axis, out=out, **kw)


def _prep_x(x, axis, ctx, rng):
    return (x,)


def _dy(x, rng):
    dy = rng.standard_normal(x.shape).astype(x.dtype)
    return dy


def _bwd(fwd, bwd, fkw=None, bkw=None, masked=False):
    fkw = fkw or {}
    bkw = bkw or {}

    def prep(x, axis, ctx, rng):
        extra = {"where": ctx["mask"]} if masked else {}
        y = fwd(x, axis=axis, **fkw, **extra)
        return (y, _dy(x, rng))

    def call(a, axis, ctx, out):
        extra = {"where": ctx["mask"]} if masked else {}
        return bwd(a[0], a[1], axis=axis, out=out, **bkw, **extra)

    return call, prep


def _stable_bwd(bwd):
    def prep(x, axis, ctx, rng):
        return (x, _dy(x, rng))

    return (lambda a, axis, ctx, out: bwd(a[0], a[1], axis=axis, out=out)), prep


def _build_ops() -> list[Op]:
    lk = logitkit
    ops: list[Op] = []
    for alg in ("auto", "three_pass_reload", "three_pass_recompute", "two_pass", "online"):
        ops.append(Op(f"softmax[{alg}]", _fwd(lk.softmax, algorithm=alg), _prep_x))
    ops.append(Op("softmax[reload,T=0.7]", _fwd(lk.softmax, algorithm="three_pass_reload", temperature=0.7), _prep_x))
    ops.append(Op("log_softmax", _fwd(lk.log_softmax), _prep_x))
    ops.append(Op("log_softmax[T=0.7]", _fwd(lk.log_softmax, temperature=0.7), _prep_x))
    for log, f in ((False, lk.masked_softmax), (True, lk.masked_log_softmax)):
        nm = "masked_log_softmax" if log else "masked_softmax"
        ops.append(Op(f"{nm}[mask]", lambda a, axis, ctx, out, f=f: f(a[0], ctx["mask"], axis, out=out), _prep_x))
        ops.append(Op(f"{nm}[bcast]", lambda a, axis, ctx, out, f=f: f(a[0], ctx["mask_b"], axis, out=out), _prep_x))
    ops.append(Op("sparsemax", _fwd(lk.sparsemax), _prep_x))
    ops.append(Op("sparsemax[T=0.7]", _fwd(lk.sparsemax, temperature=0.7), _prep_x))
    ops.append(Op("entmax15", _fwd(lk.entmax15), _prep_x))
    for alpha in (1.0, 1.3, 1.5, 2.0):
        ops.append(Op(f"entmax_bisect[a={alpha}]", _fwd(lk.entmax_bisect, alpha=alpha), _prep_x))
    ops.append(Op("stablemax", _fwd(lk.stablemax), _prep_x))
    ops.append(Op("log_stablemax", _fwd(lk.log_stablemax), _prep_x))
    # two-input ops
    call, prep = _bwd(lk.softmax, lk.softmax_backward)
    ops.append(Op("softmax_backward", call, prep, 2))
    call, prep = _bwd(lk.log_softmax, lk.log_softmax_backward)
    ops.append(Op("log_softmax_backward", call, prep, 2))
    call, prep = _bwd(lk.softmax, lk.softmax_backward, masked=True)
    ops.append(Op("softmax_backward[where]", call, prep, 2))
    call, prep = _bwd(lk.log_softmax, lk.log_softmax_backward, masked=True)
    ops.append(Op("log_softmax_backward[where]", call, prep, 2))
    call, prep = _bwd(lk.softmax, lk.softmax_backward, fkw={"temperature": 0.7}, bkw={"temperature": 0.7})
    ops.append(Op("softmax_backward[T=0.7]", call, prep, 2))
    call, prep = _bwd(lk.sparsemax, lk.sparsemax_backward)
    ops.append(Op("sparsemax_backward", call, prep, 2))
    call, prep = _bwd(lk.entmax15, lk.entmax15_backward)
    ops.append(Op("entmax15_backward", call, prep, 2))
    for alpha in (1.0, 1.3, 1.5, 2.0):
        call, prep = _bwd(lk.entmax_bisect, lk.entmax_bisect_backward, fkw={"alpha": alpha}, bkw={"alpha": alpha})
        ops.append(Op(f"entmax_bisect_backward[a={alpha}]", call, prep, 2))
    call, prep = _stable_bwd(lk.stablemax_backward)
    ops.append(Op("stablemax_backward", call, prep, 2))
    call, prep = _stable_bwd(lk.log_stablemax_backward)
    ops.append(Op("log_stablemax_backward", call, prep, 2))
    return ops


OPS = _build_ops()
OP_IDS = [op.name for op in OPS]


# ---------------------------------------------------------------------------------------------
# Cases: (rows, n) logical shape with the reduced axis last; axis 0 cases store the transpose.


@dataclass(frozen=True)
class Case:
    name: str
    rows: int
    n: int
    axis: int  # -1: array (rows, n); 0: array (n, rows) reduced over axis 0
    kinds: tuple


MAIN_CASES = [
    Case("6x128", 6, 128, -1, tuple(ROW_KINDS_6)),
    Case("6x37", 6, 37, -1, tuple(ROW_KINDS_6)),
    Case("6x64", 6, 64, -1, tuple(ROW_KINDS_6)),
    Case("6x3000", 6, 3000, -1, tuple(ROW_KINDS_6)),
    Case("37x6_axis0", 6, 37, 0, tuple(ROW_KINDS_6)),
    Case("9x300", 9, 300, -1, tuple(ROW_KINDS_ALL)),
    Case("9x1024", 9, 1024, -1, tuple(ROW_KINDS_ALL)),
] + [Case(f"1x300001_{k}", 1, 300_001, -1, (k,)) for k in LONG_KINDS]


def case_seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def case_data(case: Case, dtype, rng):
    """(x, ctx) in the case's layout (C-contiguous)."""
    x = make_rows(case.rows, case.n, dtype, rng, case.kinds)
    m = make_mask(case.rows, case.n, rng)
    mb = m[:1]
    if case.axis == 0:
        x, m, mb = x.T.copy(), m.T.copy(), mb.T.copy()
    return x, {"mask": m, "mask_b": mb}


def rows_last(a: np.ndarray, axis: int) -> np.ndarray:
    return np.ascontiguousarray(a.T if axis == 0 else a)


def reference(op: Op, inputs, case: Case, ctx):
    """op out of place on C-contiguous inputs with the reduced axis last, in the case's layout."""
    ins = [rows_last(a, case.axis) for a in inputs]
    cx = {k: rows_last(v, case.axis) for k, v in ctx.items()}
    y = op.call(ins, -1, cx, None)
    return rows_last(y, case.axis) if case.axis == 0 else y


# ---------------------------------------------------------------------------------------------
# Comparison


def _uint(dtype):
    return {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]


def diff_report(got: np.ndarray, exp: np.ndarray, label: str, limit: int = 6) -> str | None:
    """None when got and exp hold the same bits (NaN positions equal, payloads ignored)."""
    got = np.ascontiguousarray(got)
    exp = np.ascontiguousarray(exp)
    gn, en = np.isnan(got.astype(np.float64)), np.isnan(exp.astype(np.float64))
    ug, ue = got.view(_uint(got.dtype)), exp.view(_uint(exp.dtype))
    bad = (gn != en) | (~gn & ~en & (ug != ue))
    if not bad.any():
        return None
    idx = np.argwhere(bad)
    both = ~gn & ~en & np.isfinite(got.astype(np.float64)) & np.isfinite(exp.astype(np.float64)) & bad
    ulp = ""
    if both.any():
        ig = ug.astype(np.int64)[both]
        ie = ue.astype(np.int64)[both]
        ulp = f", max finite bit distance {int(np.max(np.abs(ig - ie)))}"
    lines = [f"{label}: {len(idx)} of {got.size} elements differ (NaN mismatches: {int((gn != en).sum())}{ulp})"]
    for i in idx[:limit]:
        t = tuple(int(v) for v in i)
        lines.append(f"    at {t}: got {got[t]!r}, expected {exp[t]!r}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Buffers with sentinel padding; a layout maps a flat buffer to the view the op sees.


class Layout:
    """make(buf) -> view of logical shape `shape`; size: elements the layout spans."""

    def __init__(self, kind: str, shape):
        self.kind, self.shape = kind, tuple(shape)
        r, n = self.shape
        self.size = r * n * (2 if kind == "strided" else 1)

    def make(self, buf):
        r, n = self.shape
        body = buf[PAD : PAD + self.size]
        if self.kind in ("c", "view"):
            return body.reshape(r, n)
        if self.kind == "strided":
            return body.reshape(r, 2 * n)[:, ::2]
        if self.kind == "rev_rows":
            return body.reshape(r, n)[::-1]
        if self.kind == "rev_axis":
            return body.reshape(r, n)[:, ::-1]
        raise AssertionError(self.kind)

    def new(self, data: np.ndarray):
        buf = np.full(self.size + 2 * PAD, SENTINEL, data.dtype)
        v = self.make(buf)
        v[...] = data
        return buf, v

    def covered(self):
        c = np.zeros(self.size + 2 * PAD, bool)
        self.make(c)[...] = True
        return c


def check_buffer(buf, before, cov, view_got, expected, label) -> list[str]:
    errs = []
    r = diff_report(view_got, expected, f"{label}: values")
    if r:
        errs.append(r)
    r = diff_report(buf[~cov], before[~cov], f"{label}: memory outside out (padding / gaps) changed")
    if r:
        errs.append(r)
    return errs


def run_isa(isa):
    return logitkit.use_isa(isa)


# ---------------------------------------------------------------------------------------------
# 1. In place (out= each input in turn), C-contiguous, every case


@pytest.mark.parametrize("case", MAIN_CASES, ids=[c.name for c in MAIN_CASES])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_in_place(op, isa, dtype, case):
    _in_place_body(op, isa, dtype, case)


def _in_place_body(op, isa, dtype, case):
    rng = np.random.default_rng(case_seed(op.name, np.dtype(dtype).name, case.name))
    errs: list[str] = []
    with np.errstate(all="ignore"), run_isa(isa):
        x, ctx = case_data(case, dtype, rng)
        inputs = op.prep(x, case.axis, ctx, rng)
        inputs = tuple(np.ascontiguousarray(a) for a in inputs)
        ref = reference(op, inputs, case, ctx)
        # out of place in the case's own layout (axis 0: the strided path) against the reference
        oop = op.call([a.copy() for a in inputs], case.axis, ctx, None)
        r = diff_report(oop, ref, "out of place (case layout) vs contiguous rows-last reference")
        if r:
            errs.append(r)
        targets = list(range(op.n_inputs)) + (["all"] if op.n_inputs > 1 else [])
        for t in targets:
            lay = Layout("c", inputs[0].shape)
            if t == "all":  # every input and out are one array: op(a, a, out=a)
                buf, a = lay.new(inputs[0])
                before = buf.copy()
                exp = reference(op, [inputs[0]] * op.n_inputs, case, ctx)
                got = op.call([a] * op.n_inputs, case.axis, ctx, a)
                lbl = "out = every input (same array)"
                others_ok = []
            else:
                buf, a = lay.new(inputs[t])
                before = buf.copy()
                ins = [a if i == t else inputs[i].copy() for i in range(op.n_inputs)]
                keep = [c.copy() for c in ins]
                exp = ref
                got = op.call(ins, case.axis, ctx, a)
                lbl = f"out = input {t}"
                others_ok = [(i, ins[i], keep[i]) for i in range(op.n_inputs) if i != t]
            if got is not a:
                errs.append(f"{lbl}: the op did not return out itself")
            errs += check_buffer(buf, before, lay.covered(), a, exp, lbl)
            for i, now, was in others_ok:
                r = diff_report(now, was, f"{lbl}: input {i} (not out) was modified")
                if r:
                    errs.append(r)
    assert not errs, f"{op.name} isa={isa} dtype={np.dtype(dtype).name} case={case.name} axis={case.axis}\n" + "\n".join(errs)


# ---------------------------------------------------------------------------------------------
# 2. In place on other layouts: an aliased view (another object, same memory: the general path),
#    a strided view, negative row stride, negative axis stride


LAYOUT_CASES = [c for c in MAIN_CASES if c.name in ("6x128", "6x3000", "9x300")]
LAYOUTS = ["view", "strided", "rev_rows", "rev_axis"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", LAYOUT_CASES, ids=[c.name for c in LAYOUT_CASES])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_in_place_layouts(op, isa, dtype, case, layout):
    rng = np.random.default_rng(case_seed(op.name, dtype.__name__, case.name, layout))
    errs: list[str] = []
    with np.errstate(all="ignore"), run_isa(isa):
        x, ctx = case_data(case, dtype, rng)
        inputs = tuple(np.ascontiguousarray(a) for a in op.prep(x, case.axis, ctx, rng))
        ref = reference(op, inputs, case, ctx)
        for t in range(op.n_inputs):
            lay = Layout(layout, inputs[t].shape)
            buf, a = lay.new(inputs[t])
            before = buf.copy()
            ins = [a if i == t else inputs[i].copy() for i in range(op.n_inputs)]
            out = a[...] if layout == "view" else a
            got = op.call(ins, case.axis, ctx, out)
            lbl = f"layout={layout} out = input {t}"
            if got is not out:
                errs.append(f"{lbl}: the op did not return out itself")
            errs += check_buffer(buf, before, lay.covered(), a, ref, lbl)
    assert not errs, f"{op.name} isa={isa} dtype={dtype.__name__} case={case.name} axis={case.axis}\n" + "\n".join(errs)


# ---------------------------------------------------------------------------------------------
# 3. Partially overlapping out: input and out are two windows of one buffer, `shift` elements
#    apart (out after the input for shift > 0, before it for shift < 0). Either the values are
#    those of out of place (input read first) or a clear error; never silently wrong.


OVERLAP_CASES = [c for c in MAIN_CASES if c.name in ("6x128", "6x3000", "37x6_axis0", "6x37")]


def _shifts(case: Case):
    row = case.n if case.axis == -1 else case.rows  # one row of the stored array
    return [5, -5, row, -row]


@pytest.mark.parametrize("case", OVERLAP_CASES, ids=[c.name for c in OVERLAP_CASES])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_partial_overlap(op, isa, dtype, case):
    rng = np.random.default_rng(case_seed(op.name, dtype.__name__, case.name, "overlap"))
    errs: list[str] = []
    with np.errstate(all="ignore"), run_isa(isa):
        x, ctx = case_data(case, dtype, rng)
        inputs = tuple(np.ascontiguousarray(a) for a in op.prep(x, case.axis, ctx, rng))
        ref = reference(op, inputs, case, ctx)
        shape = inputs[0].shape
        size = inputs[0].size
        for t in range(op.n_inputs):
            for shift in _shifts(case):
                s = abs(shift)
                buf = np.full(size + s + 2 * PAD, SENTINEL, dtype)
                lo_in, lo_out = (PAD, PAD + s) if shift > 0 else (PAD + s, PAD)
                a = buf[lo_in : lo_in + size].reshape(shape)
                a[...] = inputs[t]
                out = buf[lo_out : lo_out + size].reshape(shape)
                before = buf.copy()
                ins = [a if i == t else inputs[i].copy() for i in range(op.n_inputs)]
                lbl = f"partial overlap: out = input {t} shifted by {shift:+d} elements"
                try:
                    got = op.call(ins, case.axis, ctx, out)
                except (ValueError, TypeError) as exc:  # a clear error is acceptable
                    if not str(exc):
                        errs.append(f"{lbl}: raised {type(exc).__name__} without a message")
                    continue
                if got is not out:
                    errs.append(f"{lbl}: the op did not return out itself")
                cov = np.zeros(buf.size, bool)
                cov[lo_out : lo_out + size] = True
                errs += check_buffer(buf, before, cov, out, ref, lbl)
    assert not errs, f"{op.name} isa={isa} dtype={dtype.__name__} case={case.name} axis={case.axis}\n" + "\n".join(errs)


# ---------------------------------------------------------------------------------------------
# 4. Thread counts: the pipelined / chunked kernels split rows (and one long row) by thread count


THREAD_OPS = [op for op in OPS if op.name.startswith(("softmax[", "log_softmax", "masked_", "entmax_bisect[a=1.0]"))]
THREAD_CASES = [c for c in MAIN_CASES if c.name in ("6x3000", "9x1024", "1x300001_masked_wide")]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("case", THREAD_CASES, ids=[c.name for c in THREAD_CASES])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("op", THREAD_OPS, ids=[op.name for op in THREAD_OPS])
def test_in_place_threads(op, isa, dtype, case, threads):
    before = logitkit.get_num_threads()
    logitkit.set_num_threads(threads)
    try:
        _in_place_body(op, isa, dtype, case)
    finally:
        logitkit.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# 5. float16 / bfloat16 (computed in float32 through a temporary): in place must still match


def _reduced_dtypes():
    out = [pytest.param(np.float16, id="f16")]
    try:
        import ml_dtypes  # noqa: PLC0415

        out.append(pytest.param(np.dtype(ml_dtypes.bfloat16), id="bf16"))
    except ImportError:
        pass
    return out


REDUCED_CASES = [c for c in MAIN_CASES if c.name in ("6x128", "37x6_axis0", "6x3000")]


@pytest.mark.parametrize("case", REDUCED_CASES, ids=[c.name for c in REDUCED_CASES])
@pytest.mark.parametrize("dtype", _reduced_dtypes())
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_in_place_reduced_precision(op, isa, dtype, case):
    _in_place_body(op, isa, dtype, case)


# ---------------------------------------------------------------------------------------------
# 6. 3-D views whose rows are not equally spaced (outer dims that cannot be merged: the per-row
#    offset path), reduced over each axis, in place


ND_CASES = [(n, axis) for n in (37, 1100) for axis in (0, 1, 2)]


@pytest.mark.parametrize("n,axis", ND_CASES, ids=[f"n{n}_axis{a}" for n, a in ND_CASES])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_in_place_3d_nonuniform(op, isa, dtype, n, axis):
    rng = np.random.default_rng(case_seed(op.name, np.dtype(dtype).name, n, axis, "3d"))
    errs: list[str] = []
    with np.errstate(all="ignore"), run_isa(isa):
        logical = make_rows(6, n, dtype, rng, ROW_KINDS_6).reshape(2, 3, n)  # reduced axis last
        mask_l = make_mask(6, n, rng).reshape(2, 3, n)
        x = np.ascontiguousarray(np.moveaxis(logical, -1, axis))
        ctx = {"mask": np.ascontiguousarray(np.moveaxis(mask_l, -1, axis))}
        ctx["mask_b"] = ctx["mask"][tuple(slice(0, 1) if d != axis else slice(None) for d in range(3))]
        inputs = tuple(np.ascontiguousarray(a) for a in op.prep(x, axis, ctx, rng))
        # reference: contiguous, reduced axis last
        ins_l = [np.ascontiguousarray(np.moveaxis(a, axis, -1)) for a in inputs]
        ctx_l = {k: np.ascontiguousarray(np.moveaxis(v, axis, -1)) for k, v in ctx.items()}
        ref = np.moveaxis(op.call(ins_l, -1, ctx_l, None), -1, axis)
        oop = op.call([a.copy() for a in inputs], axis, ctx, None)
        r = diff_report(oop, ref, "out of place (3-D layout) vs contiguous rows-last reference")
        if r:
            errs.append(r)
        shape = inputs[0].shape
        d = next(k for k in range(3) if k != axis)  # widen one outer dim and slice it back
        base_shape = tuple(s + 2 if k == d else s for k, s in enumerate(shape))
        size = int(np.prod(base_shape))
        sl = tuple(slice(1, -1) if k == d else slice(None) for k in range(3))
        for t in range(op.n_inputs):
            buf = np.full(size + 2 * PAD, SENTINEL, dtype)
            a = buf[PAD : PAD + size].reshape(base_shape)[sl]
            a[...] = inputs[t]
            before = buf.copy()
            cov = np.zeros(buf.size, bool)
            cov[PAD : PAD + size].reshape(base_shape)[sl] = True
            ins = [a if i == t else inputs[i].copy() for i in range(op.n_inputs)]
            got = op.call(ins, axis, ctx, a)
            lbl = f"3-D sliced view, out = input {t}"
            if got is not a:
                errs.append(f"{lbl}: the op did not return out itself")
            errs += check_buffer(buf, before, cov, a, ref, lbl)
    assert not errs, f"{op.name} isa={isa} dtype={np.dtype(dtype).name} n={n} axis={axis}\n" + "\n".join(errs)
