"""logitkit.softmax against float64 references, torch and SciPy, on every ISA, algorithm and layout."""

from __future__ import annotations

import sys
import threading

import logitkit
import ml_dtypes
import numpy as np
import pytest
import scipy.special
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reference import (
    ALGORITHMS,
    EPS,
    FLOATS,
    HUGE_LOGIT_ROW_LENGTHS,
    PROPERTY,
    assert_close,
    assert_close_to_shifted_reference,
    assert_softmax_close,
    bits,
    huge_logit_rows,
    logits,
    rows,
    softmax_rtol,
)
from reference import (
    softmax as ref_softmax,
)

ALL_ALGORITHMS = ("auto", *ALGORITHMS)
LONG = (1 << 18) + 37  # >= 2^18 takes the chunked multi-thread path; +37 leaves a partial chunk


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ---------------------------------------------------------------------------------------------
# Accuracy against the float64 reference


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
@pytest.mark.parametrize("temperature", [1.0, 0.25, 3.0, 100.0])
def test_matches_reference(isa, rng, dtype, algorithm, temperature):
    x = logits(rng, (9, 131), dtype)
    y = logitkit.softmax(x, temperature=temperature, algorithm=algorithm)
    assert y.dtype == dtype and y.shape == x.shape
    assert_softmax_close(y, x, temperature=temperature)


@pytest.mark.parametrize("dtype", FLOATS)
def test_wide_range_logits(isa, rng, dtype):
    # |x - max| up to ~600: outputs span from 1 down to underflow; the bound grows with |x - max|.
    x = (rng.standard_normal((4, 300)) * 150).astype(dtype)
    for algorithm in ALL_ALGORITHMS:
        assert_softmax_close(logitkit.softmax(x, algorithm=algorithm), x)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", HUGE_LOGIT_ROW_LENGTHS)
def test_huge_logits_with_temperature_above_one(isa, rng, dtype, n):
    # x - max overflows to -inf, c (x - max) does not: every path must take the finite value.
    x, temperatures = huge_logit_rows(dtype, rng, n)
    for t in temperatures:
        for algorithm in ALL_ALGORITHMS:
            assert_close_to_shifted_reference(logitkit.softmax(x, temperature=t, algorithm=algorithm), x, t)
        assert_close_to_shifted_reference(logitkit.softmax(x, temperature=t, where=np.ones(n, bool)), x, t)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [32000, LONG, 1 << 20])
def test_sum_error_does_not_grow_with_row_length(isa, dtype, n):
    # n equal logits (0.7: exp(0.7) is inexact, and the unshifted paths see it): every output is
    # 1/n, so y n - 1 is the error of the common factor 1/sum plus the product's rounding. Block
    # (and chunk) sums are combined so that it does not grow with n (for float64: before,
    # one rounding per block made it 600 units of 2^-53 at 262k elements on the scalar backend).
    x = np.full((1, n), 0.7, dtype)
    for y in [logitkit.softmax(x, algorithm=a) for a in ALL_ALGORITHMS] + [logitkit.softmax(x, where=np.ones(n, bool))]:
        err = float(np.abs(y.astype(np.longdouble) * n - 1).max())
        assert err <= 4 * EPS[np.dtype(dtype)], f"{err / EPS[np.dtype(dtype)]:.1f} units"


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(3, 3000), (1, LONG)])
def test_two_pass_with_temperature_is_as_exact_as_the_shifted_algorithms(isa, rng, dtype, shape):
    # two_pass takes exp(c x) without subtracting the max: the rounding of c x (a relative error
    # of |c x| eps, 2e-4 here before the fix) must not show; the bound grows with |x - max| / T.
    x = (rng.standard_normal(shape) * 3 - 5000).astype(dtype)
    for t in (0.7, 3.0):
        for algorithm in ("two_pass", "auto"):  # auto: two_pass for rows beyond half of L2
            assert_close_to_shifted_reference(logitkit.softmax(x, temperature=t, algorithm=algorithm), x, t)


@pytest.mark.parametrize("shape", [(3000,), (8, 3000)])  # a row alone; rows pipelined
@pytest.mark.parametrize("algorithm", ["auto", "three_pass_reload", "three_pass_recompute", "two_pass"])
def test_unshifted_rows_round_nothing_before_the_exp(isa, rng, shape, algorithm):
    # The three-pass algorithms take exp(x) / sum without subtracting the max when every
    # |x| <= 64 (two_pass never subtracts it), so float32 outputs stay within 3 ulp of the float64
    # softmax of the same logits (measured 1.1-1.7). Rounding x - max first, as online softmax
    # must (its running max), costs up to the ulp of |x - max|: 17 ulp here.
    x = rng.uniform(-30, 30, shape).astype(np.float32)
    xd = x.astype(np.float64)
    e = np.exp(xd - xd.max(-1, keepdims=True))
    ref = e / e.sum(-1, keepdims=True)
    y = logitkit.softmax(x, algorithm=algorithm).astype(np.float64)
    assert np.abs(y / ref - 1).max() <= 3 * 2.0**-23


def test_stated_accuracy_bounds(isa):
    # The README's Accuracy table, measured over a corpus of float32 rows (lengths 7 to 32000,
    # logits of sigma 1 to 20 clipped to |x| <= 64), relative error of normal outputs against the
    # float64 softmax of the same logits, in units u = 2^-24 (one ulp of an output is 1 to 2 u):
    # three-pass and two_pass <= 7 u (measured 5.6-6.1 on scalar and AVX2); online rounds x - max
    # first, <= 7 (1 + |x - max|) u (measured 6.2 (1 + |x - max|)), so at |x| <= 18 it differs from
    # auto by up to about 37 u.
    u = 2.0**-24
    rng = np.random.default_rng(7)
    worst = {}
    for n in (7, 100, 1000, 3000, 32000):
        for sigma in (1, 4, 10, 20):
            x = np.clip(rng.standard_normal((max(1, 64000 // n), n)) * sigma, -64, 64).astype(np.float32)
            xd = x.astype(np.float64)
            z = xd - xd.max(-1, keepdims=True)
            ref = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
            normal = ref >= 2.0**-126
            for algorithm in ALL_ALGORITHMS:
                y = logitkit.softmax(x, algorithm=algorithm).astype(np.float64)
                rel = np.where(normal, np.abs(y / ref - 1) / u, 0.0)
                if algorithm == "online":
                    rel = rel / (1 + np.abs(z))
                worst[algorithm] = max(worst.get(algorithm, 0.0), rel.max())
    assert max(worst.values()) <= 7, worst
    assert min(worst.values()) > 2, worst  # the corpus reaches the bound's order
    xs = rng.uniform(-18, 18, (8, 3000)).astype(np.float32)
    online = logitkit.softmax(xs, algorithm="online").astype(np.float64)
    assert np.abs(online / logitkit.softmax(xs) - 1).max() <= 40 * u


@pytest.mark.parametrize("dtype", FLOATS)
def test_algorithms_agree(isa, rng, dtype):
    x = logits(rng, (16, 200), dtype)
    results = {a: logitkit.softmax(x, algorithm=a) for a in ALL_ALGORITHMS}
    # Each is within softmax_rtol of the exact value, so any two are within twice that.
    rtol = 2 * softmax_rtol(x, dtype)
    for y in results.values():
        assert_close(y, results["three_pass_reload"], rtol, 0.0)
        assert_softmax_close(y, x)
    # auto picks three_pass_reload for rows that fit in cache.
    np.testing.assert_array_equal(bits(results["auto"]), bits(results["three_pass_reload"]))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
@pytest.mark.parametrize("n", [3000, 1000, 128, 100, 40])
def test_rows_alone_equal_rows_in_a_batch(isa, rng, dtype, algorithm, n):
    # A batch of long rows runs three_pass_reload software-pipelined across rows; short rows run in
    # blocks of up to one vector of rows (exp and sums in lockstep pairs, then one vector of
    # reciprocals, then the scale passes), a single row alone; a block of the exp holding an
    # argument below -87 (outside the float32 table exp's range) is recomputed with the exp's
    # per-group range check. Each path gives a row the same bits. Rows with every |x| <= 64 skip
    # the max shift in three_pass_reload (kinds 0, 5, 6 here), the others take it: the batch
    # switches between both kinds, and a short pair holding one of them goes one row at a time.
    # 41 rows: the eight kinds recur in every block of rows, at every offset.
    x = logits(rng, (41, n), dtype)
    kind = np.arange(len(x)) % 8
    for r in range(len(x)):
        if kind[r] == 1:
            x[r, n // 30] = x[r].max() - 95  # a float32 subnormal output among normal ones
        elif kind[r] == 2:
            x[r, ::7] = -np.inf
        elif kind[r] == 3:
            x[r, n - 1] = x[r].max() - 95  # in the last, partial block of the exp
        elif kind[r] == 4:
            x[r, : max(1, n // 75)] -= 120  # every lane of a group out of range
        elif kind[r] == 6:
            x[r, 17] = 64  # at the bound of the unshifted exp
        elif kind[r] == 7:
            x[r, n - 2] = np.nextafter(dtype(64), dtype(100))  # just past it
    batch = logitkit.softmax(x, algorithm=algorithm)
    for r in range(len(x)):
        np.testing.assert_array_equal(bits(batch[r]), bits(logitkit.softmax(x[r], algorithm=algorithm)))
    finite = kind != 2
    assert_softmax_close(batch[finite], x[finite])
    assert (batch[kind == 1, n // 30] > 0).all() and (batch[kind == 2][:, ::7] == 0).all()
    for r in np.flatnonzero(kind == 2):
        kept = np.isfinite(x[r])
        assert_softmax_close(batch[r, kept], x[r, kept])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_every_tail_length(isa, rng, dtype, algorithm):
    # 1..70 covers every remainder of the 4-vector unrolled loop for 1, 4, 8 and 16 lanes; the
    # max is put last so that it sits in the masked tail, where lane padding must not leak in.
    for n in range(1, 71):
        x = logits(rng, (3, n), dtype)
        x[1, -1] = x[1].max() + 1
        x[2, :] = x[2, 0]  # all tied
        y = logitkit.softmax(x, algorithm=algorithm)
        assert_softmax_close(y, x)
        np.testing.assert_allclose(y[2], np.full(n, 1.0 / n), rtol=64 * EPS[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_long_row(isa, rng, dtype, algorithm):
    x = logits(rng, (LONG,), dtype)
    y = logitkit.softmax(x, algorithm=algorithm)
    assert_softmax_close(y, x)
    assert abs(y.sum(dtype=np.float64) - 1) < 1e-4


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_long_rows_several(isa, rng, algorithm):
    x = logits(rng, (2, LONG), np.float32)
    x[1] += 50  # a different max per row
    assert_softmax_close(logitkit.softmax(x, algorithm=algorithm), x)


# Outputs of at least the last-level cache (LLC, 32 MiB here; read from sysconf) take the
# non-temporal-store paths. Their results must equal, bit for bit, the cached paths that smaller
# calls take, including when `out` starts off the stream alignment (head of ordinary stores).
STREAMED_ELEMENTS = (40 << 20) // 4  # 40 MiB of float32: above any common L3 of one CCX/socket


@pytest.mark.parametrize("offset", [0, 3])
def test_streamed_rows_equal_cached_rows(isa, rng, offset):
    n = 4099  # rows far below L2: three_pass_reload goes through scratch and streams to out
    rows = STREAMED_ELEMENTS // n + 1
    x = logits(rng, (rows, n), np.float32)
    buf = np.empty(rows * n + 16, np.float32)
    out = buf[offset : offset + rows * n].reshape(rows, n)  # misaligned when offset != 0
    logitkit.softmax(x, out=out, algorithm="three_pass_reload")
    piece = 64  # 64 rows (1 MiB) per call stays cached
    expected = np.concatenate(
        [logitkit.softmax(x[r : r + piece], algorithm="three_pass_reload") for r in range(0, rows, piece)]
    )
    assert np.array_equal(bits(out), bits(expected))
    assert_softmax_close(out[:8], x[:8])


@pytest.mark.parametrize("offset", [0, 5])
def test_streamed_long_row_two_pass(isa, rng, offset):
    n = STREAMED_ELEMENTS + 13
    x = logits(rng, (n,), np.float32)
    buf = np.empty(n + 16, np.float32)
    out = buf[offset : offset + n]
    logitkit.softmax(x, out=out, algorithm="two_pass")
    assert_softmax_close(out, x)
    assert abs(out.sum(dtype=np.float64) - 1) < 1e-4


def test_long_row_strided(isa, rng):
    # Long rows that are not contiguous go through gather/scatter, not the chunked path.
    x = logits(rng, (LONG, 2), np.float32)
    assert_softmax_close(logitkit.softmax(x, axis=0), x, axis=0)


# ---------------------------------------------------------------------------------------------
# Shapes, axes and layouts


@pytest.mark.parametrize("dtype", FLOATS)
def test_every_axis(isa, rng, dtype):
    x = logits(rng, (3, 4, 5, 6), dtype)
    for axis in range(-4, 4):
        assert_softmax_close(logitkit.softmax(x, axis=axis), x, axis=axis)


def _ref_over_axes(x, axes):
    """Reference over a set of axes: move them last, flatten, softmax, undo."""
    k = len(axes)
    moved = np.moveaxis(np.asarray(x, np.float64), axes, range(x.ndim - k, x.ndim))
    flat = moved.reshape(moved.shape[: x.ndim - k] + (-1,))
    y = ref_softmax(flat).reshape(moved.shape)
    return np.moveaxis(y, range(x.ndim - k, x.ndim), axes)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [(0, 2), (2, 0), (-1, 1), (0, 1, 2), (1,), None])
def test_axis_tuple_and_none(isa, rng, dtype, axis):
    x = logits(rng, (4, 3, 5), dtype)
    y = logitkit.softmax(x, axis=axis)
    axes = tuple(range(3)) if axis is None else tuple(sorted(a % 3 for a in axis))
    ref = _ref_over_axes(x, axes)
    assert_close(y, ref, float(softmax_rtol(x, dtype, axis=None).max()), 0.0)
    np.testing.assert_allclose(y.sum(axis=axes, dtype=np.float64), 1.0, rtol=1e-5)
    # SciPy's softmax takes the same axis argument.
    np.testing.assert_allclose(y, scipy.special.softmax(x.astype(np.float64), axis=axis), rtol=1e-5)


def test_more_dimensions_than_the_cpp_views(isa, rng):
    # NumPy allows 64 dimensions, the C++ views 16: the Python layer merges the other axes.
    x = rng.standard_normal((2, 1, 3) + (1,) * 13 + (2, 3))
    for axis in (-1, 0, 2, (0, 17), None):
        for ours, scipys in [
            (logitkit.softmax, scipy.special.softmax),
            (logitkit.log_softmax, scipy.special.log_softmax),
            (logitkit.logsumexp, scipy.special.logsumexp),
        ]:
            got, want = ours(x, axis=axis), scipys(x, axis=axis)
            assert got.shape == np.shape(want)
            assert_close(got, want, 1e-13, 1e-15)
        want = scipy.special.logsumexp(x, axis=axis, keepdims=True)
        assert_close(logitkit.logsumexp(x, axis=axis, keepdims=True), want, 1e-13, 1e-15)
        p = scipy.special.softmax(x, axis=axis)
        assert_close(logitkit.entropy(x, axis=axis), -np.sum(p * np.log(p), axis=axis), 1e-12, 1e-15)
        out = np.empty_like(x)
        assert logitkit.softmax(x, axis=axis, out=out) is out
        assert_close(out, scipy.special.softmax(x, axis=axis), 1e-13, 1e-15)


def test_axis_tuple_of_transposed_view(isa, rng):
    x = logits(rng, (5, 4, 3), np.float64).transpose(2, 0, 1)
    y = logitkit.softmax(x, axis=(0, 2))
    assert_close(y, _ref_over_axes(x, (0, 2)), 1e-13, 0.0)


def _views(rng, dtype):
    base = logits(rng, (12, 40), dtype)
    yield "transposed", base.T
    yield "negative stride", base[::-1, ::-1]
    yield "step 2 columns", base[:, ::2]
    yield "step 3 rows", base[::3]
    yield "fortran", np.asfortranarray(base)
    yield "broadcast rows", np.broadcast_to(base[0], (5, 40))
    yield "3-d permuted", logits(rng, (4, 6, 7), dtype).transpose(1, 2, 0)
    # Misaligned buffer: float32 data at an odd byte offset.
    raw = np.zeros(base.nbytes + 1, np.uint8)[1:].view(dtype).reshape(base.shape)
    raw[...] = base
    yield "misaligned", raw


@pytest.mark.parametrize("dtype", FLOATS)
def test_views(isa, rng, dtype):
    for name, x in _views(rng, dtype):
        before = x.copy()
        for axis in range(-x.ndim, x.ndim):
            y = logitkit.softmax(x, axis=axis)
            assert y.shape == x.shape, name
            assert_softmax_close(y, x, axis=axis)
        np.testing.assert_array_equal(x, before, err_msg=f"{name}: input modified")


@pytest.mark.parametrize("dtype", FLOATS)
def test_size_one_and_empty_axes(isa, dtype):
    x = np.arange(6, dtype=dtype).reshape(2, 3, 1)
    np.testing.assert_array_equal(logitkit.softmax(x, axis=-1), np.ones_like(x))
    assert_softmax_close(logitkit.softmax(x, axis=1), x, axis=1)
    for shape, axis in [
        ((0,), 0),
        ((3, 0), -1),
        ((0, 3), -1),
        ((0, 3), 0),
        ((2, 0, 4), 1),
        ((2, 0, 4), None),
        ((2, 0, 4), (0, 2)),  # the merged axes are not empty, another one is
        ((0, 2), ()),
        ((3, 0), (0, 1)),
    ]:
        e = np.zeros(shape, dtype)
        for op in (logitkit.softmax, logitkit.log_softmax):
            y = op(e, axis=axis)
            assert y.shape == shape and y.dtype == dtype
        assert logitkit.logsumexp(e, axis=axis).shape == np.sum(e, axis=axis).shape


def test_scalars_and_lists(isa):
    y = logitkit.softmax(3.5)
    assert np.shape(y) == () and float(y) == 1.0
    y = logitkit.softmax([1, 2, 3])  # integers promote to float64
    assert y.dtype == np.float64
    assert_softmax_close(y, np.array([1.0, 2.0, 3.0]))
    y = logitkit.softmax([[1.0, 2.0], [3.0, 5.0]], axis=0)
    assert_softmax_close(y, np.array([[1.0, 2.0], [3.0, 5.0]]), axis=0)
    y = logitkit.softmax((0.5, 0.25), temperature=0.5)
    assert_softmax_close(y, np.array([0.5, 0.25]), temperature=0.5)
    y = logitkit.softmax(np.float32(2.0))
    assert y.dtype == np.float32 and float(y) == 1.0


# ---------------------------------------------------------------------------------------------
# out=


@pytest.mark.parametrize("dtype", FLOATS)
def test_out(isa, rng, dtype):
    x = logits(rng, (5, 33), dtype)
    expected = logitkit.softmax(x)
    out = np.full_like(x, np.nan)
    assert logitkit.softmax(x, out=out) is out
    np.testing.assert_array_equal(bits(out), bits(expected))
    # A non-contiguous out, and an out in another supported dtype (cast on the way out).
    out_t = np.full((33, 5), np.nan, dtype).T
    assert logitkit.softmax(x, out=out_t) is out_t
    np.testing.assert_array_equal(out_t, expected)
    # Without dtype=, out's (supported float) dtype is the result dtype and decides the precision.
    other = np.float32 if dtype is np.float64 else np.float64
    out_o = np.empty(x.shape, other)
    assert logitkit.softmax(x, out=out_o) is out_o
    np.testing.assert_array_equal(out_o, logitkit.softmax(x, dtype=other))
    assert_softmax_close(out_o, x)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(6, 128), (6, 37), (6, 3000), (1, 300_001)])
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_in_place_with_masked_and_wide_logits(isa, rng, dtype, shape, algorithm):
    # Masked (-inf) logits and logits far below the max put exp arguments out of the float32
    # table exp's range; the kernels that first try the unchecked exp (and short rows that try
    # exp(x) before knowing the row's range) must not then read an x they already overwrote.
    # Rows: short in pairs (128) and alone (37), pipelined (3000), one long chunked row.
    x = logits(rng, shape, dtype)
    x[:, ::7] = -np.inf
    x[0, 1] = x[0].max() + 120  # every other exp argument below -87
    if shape[0] > 2:
        x[2] = logits(rng, shape[1:], dtype)  # a plain row among them
    expected = logitkit.softmax(x, algorithm=algorithm)
    y = x.copy()
    assert logitkit.softmax(y, out=y, algorithm=algorithm) is y
    np.testing.assert_array_equal(bits(y), bits(expected))
    for r in range(shape[0]):  # -inf entries carry no mass: the others are the softmax of the rest
        kept = np.isfinite(x[r])
        assert_softmax_close(y[r, kept], x[r, kept])
        assert (y[r, ~kept] == 0).all()
    expected = logitkit.log_softmax(x)
    y = x.copy()
    assert logitkit.log_softmax(y, out=y) is y
    np.testing.assert_array_equal(bits(y), bits(expected))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("axis", [0, 1])
def test_in_place(isa, rng, dtype, axis):
    x = logits(rng, (7, 45), dtype)
    expected = logitkit.softmax(x, axis=axis)
    y = x.copy()
    assert logitkit.softmax(y, axis=axis, out=y) is y
    np.testing.assert_array_equal(bits(y), bits(expected))
    # In place on a strided view leaves the rest of the buffer alone.
    buf = logits(rng, (7, 90), dtype)
    keep = buf[:, 1::2].copy()
    view = buf[:, ::2]
    view_expected = logitkit.softmax(view.copy(), axis=axis)
    logitkit.softmax(view, axis=axis, out=view)
    np.testing.assert_array_equal(view, view_expected)
    np.testing.assert_array_equal(buf[:, 1::2], keep)


@pytest.mark.parametrize("dtype", FLOATS)
def test_overlapping_out(isa, rng, dtype):
    # out shares memory with x without being x: the result must be as if x were read first.
    buf = logits(rng, (64,), dtype)
    x, out = buf[:-3], buf[3:]
    expected = logitkit.softmax(x.copy())
    logitkit.softmax(x, out=out)
    np.testing.assert_array_equal(buf[3:], expected)
    buf = logits(rng, (6, 6), dtype)
    x = buf.copy()
    logitkit.softmax(buf, axis=1, out=buf.T)  # same memory, transposed layout
    np.testing.assert_array_equal(buf.T, logitkit.softmax(x, axis=1))


@pytest.mark.parametrize("op", [logitkit.softmax, logitkit.log_softmax])
@pytest.mark.parametrize("dtype", FLOATS)
def test_out_layouts_near_x(isa, rng, dtype, op):
    # Interleaved with x in one buffer (address ranges meet, elements do not), reversed strides,
    # and a buffer right after x's last element: each written as if x were read first.
    buf = logits(rng, (5, 40), dtype)
    x, out = buf[:, ::2], buf[:, 1::2]
    x_before = x.copy()
    assert op(x, out=out) is out
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(bits(out), bits(op(x_before)))
    x = logits(rng, (4, 33), dtype)[::-1, ::-1]
    out = np.empty((4, 33), dtype)[::-1]
    np.testing.assert_array_equal(bits(op(x, out=out)), bits(op(np.ascontiguousarray(x))))
    both = logits(rng, (2, 3, 17), dtype)
    x, out = both[0], both[1]
    expected = op(x.copy())
    op(x, out=out)
    np.testing.assert_array_equal(bits(out), bits(expected))
    if op is logitkit.softmax:
        assert_softmax_close(out, x)


def test_out_errors(isa):
    x = np.zeros((2, 3), np.float32)
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out.*read-only"):
        logitkit.softmax(x, out=ro)
    with pytest.raises(ValueError, match="out.*shape"):
        logitkit.softmax(x, out=np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="out.*shape"):
        logitkit.softmax(x, out=np.empty((2, 3, 1), np.float32))
    for dt in (np.int32, np.bool_, np.complex64, object):
        with pytest.raises(TypeError, match="out.*dtype"):
            logitkit.softmax(x, out=np.empty((2, 3), dt))
    with pytest.raises(TypeError, match="out.*ndarray"):
        logitkit.softmax(x, out=[[0.0] * 3] * 2)
    with pytest.raises(TypeError, match="out.*dtype"):
        logitkit.softmax(x, dtype=np.float64, out=np.empty((2, 3), np.float32))


# ---------------------------------------------------------------------------------------------
# dtypes


REDUCED = [np.float16, ml_dtypes.bfloat16]
# Half-ulp of the output dtype relative (round to nearest) plus the float32 error.
REDUCED_RTOL = {np.float16: 2.0**-11 + 2.0**-20, ml_dtypes.bfloat16: 2.0**-8 + 2.0**-20}


@pytest.mark.parametrize("dtype", REDUCED)
def test_reduced_precision(isa, rng, dtype):
    x = logits(rng, (6, 77), np.float32).astype(dtype)
    y = logitkit.softmax(x)
    assert y.dtype == np.dtype(dtype)
    ref = ref_softmax(x.astype(np.float64))
    tiny = float(np.finfo(np.float16).smallest_subnormal) if dtype is np.float16 else 0.0
    assert_close(y, ref, REDUCED_RTOL[dtype], tiny)
    # Computed in float32, then rounded once: equal to the float32 result cast to the dtype.
    np.testing.assert_array_equal(y, logitkit.softmax(x.astype(np.float32)).astype(dtype))


@pytest.mark.parametrize("dtype", REDUCED)
def test_reduced_precision_dtype_override(isa, rng, dtype):
    x = logits(rng, (3, 20), np.float32).astype(dtype)
    y = logitkit.softmax(x, dtype=np.float32)
    assert y.dtype == np.float32
    assert_softmax_close(y, x.astype(np.float64))
    y64 = logitkit.softmax(x, dtype=np.float64)
    assert y64.dtype == np.float64
    assert_softmax_close(y64, x.astype(np.float64))
    out = np.empty(x.shape, dtype)
    assert logitkit.softmax(x, out=out) is out
    np.testing.assert_array_equal(out, logitkit.softmax(x))


def test_dtype_override(isa, rng):
    x32 = logits(rng, (4, 50), np.float32)
    y = logitkit.softmax(x32, dtype=np.float64)
    assert y.dtype == np.float64
    assert_softmax_close(y, x32.astype(np.float64))  # computed in float64: float64 bound holds
    y = logitkit.softmax(x32.astype(np.float64), dtype="float32")
    assert y.dtype == np.float32
    assert_softmax_close(y, x32)
    assert logitkit.softmax(x32, dtype=np.float16).dtype == np.float16
    assert logitkit.softmax(x32, dtype=ml_dtypes.bfloat16).dtype == np.dtype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.bool_])
def test_int_and_bool_promote_to_float64(isa, dtype):
    # Every integer and bool dtype computes in float64. (SciPy follows NumPy's promotion instead:
    # int8 -> float16, int16/uint16 -> float32, and rejects bool.)
    x = np.array([[0, 1, 1], [1, 0, 0]], dtype=dtype)
    y = logitkit.softmax(x)
    assert y.dtype == np.float64
    assert_close(y, scipy.special.softmax(x.astype(np.float64), axis=-1), 1e-15, 0.0)
    assert logitkit.softmax(x, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize(
    "x",
    [
        np.array([1j, 2]),
        np.array([1, 2], dtype=object),
        np.array(["a", "b"]),
        np.array([1, 2], dtype="M8[s]"),
    ],
    ids=["complex", "object", "str", "datetime"],
)
def test_unsupported_dtypes(isa, x):
    with pytest.raises(TypeError, match=r"x: unsupported dtype.*accepted: float32, float64"):
        logitkit.softmax(x)


def test_non_native_byte_order(isa, rng):
    x = logits(rng, (3, 20), np.float64)
    for dt in (">f8", ">f4", "<f4"):
        xs = x.astype(dt)
        y = logitkit.softmax(xs)
        assert y.dtype == np.dtype(dt).newbyteorder("=")
        assert_softmax_close(y, xs.astype(np.float64))


def test_dtype_with_metadata(isa):
    # A dtype equal to float32/float64 but carried by its own descriptor object (metadata).
    for base in FLOATS:
        dt = np.dtype(base, metadata={"unit": "nat"})
        x = np.array([[1.0, 2.0, 4.0]], dt)
        out = np.empty(x.shape, dt)
        assert logitkit.softmax(x, out=out) is out
        assert_softmax_close(out, x.astype(base))
        assert_softmax_close(logitkit.softmax(x), x.astype(base))
        assert logitkit.logsumexp(x, b=x)[0] == pytest.approx(float(np.log(np.sum(x * np.exp(x)))))


def test_other_ml_dtypes_rejected(isa):
    with pytest.raises(TypeError, match="x: unsupported dtype float8_e4m3fn"):
        logitkit.softmax(np.ones(3, ml_dtypes.float8_e4m3fn))


@pytest.mark.parametrize("dtype", REDUCED)
def test_reduced_precision_in_place(isa, rng, dtype):
    x = logits(rng, (4, 30), np.float32).astype(dtype)
    expected = logitkit.softmax(x)
    assert logitkit.softmax(x, out=x) is x
    np.testing.assert_array_equal(x, expected)


def test_bad_dtype_argument(isa):
    with pytest.raises(TypeError, match="dtype"):
        logitkit.softmax([1.0, 2.0], dtype=np.int32)
    with pytest.raises(TypeError, match="dtype"):
        logitkit.softmax([1.0, 2.0], dtype=np.complex64)
    with pytest.raises(TypeError, match="dtype"):
        logitkit.softmax([1.0, 2.0], dtype="not a dtype")


def test_ragged_list(isa):
    with pytest.raises(TypeError, match="x"):
        logitkit.softmax([[1.0, 2.0], [3.0]])


# ---------------------------------------------------------------------------------------------
# Special values, with torch as the oracle

INF, NAN = np.inf, np.nan


def special_rows(n):
    """Rows of length n with special values placed both in full vectors and in the tail."""
    base = np.linspace(-2.0, 3.0, n)
    patterns = [
        (NAN,),
        (INF,),
        (-INF,),
        (INF, -INF),
        (INF, INF),
        (INF, NAN),
        (-INF, NAN),
        (-INF,) * n,
        (INF,) * n,
        (NAN,) * n,
    ]
    for pattern in patterns:
        for start in sorted({0, n - 1}):
            idx = [(start + 3 * k) % n for k in range(len(pattern))]
            if len(set(idx)) < len(pattern):
                continue
            row = base.copy()
            row[idx] = pattern
            yield row


def _torch_softmax(x, axis=-1):
    return torch.softmax(torch.from_numpy(np.ascontiguousarray(x)), dim=axis).numpy()


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [1, 2, 5, 16, 37])
def test_special_values_match_torch(isa, dtype, n):
    rows = np.array(list(special_rows(n)), dtype=dtype)
    expected = _torch_softmax(rows)
    for algorithm in ALL_ALGORITHMS:
        y = logitkit.softmax(rows, algorithm=algorithm)
        assert_close(y, expected, 64 * EPS[np.dtype(dtype)], 0.0)
    # SciPy agrees with torch on softmax of special values.
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(np.isnan(scipy.special.softmax(rows, axis=-1)), np.isnan(expected))


@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_anywhere_poisons_the_row(isa, rng, dtype):
    for n in (1, 2, 3, 7, 8, 9, 16, 17, 33, 64, 65):
        x = logits(rng, (n, n), dtype)
        x[np.arange(n), np.arange(n)] = np.nan  # row r has its NaN at position r
        for algorithm in ALL_ALGORITHMS:
            assert np.isnan(logitkit.softmax(x, algorithm=algorithm)).all(), (n, algorithm)


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_extreme_finite_no_overflow(isa, algorithm):
    # x - max would overflow for +-3e38 (float32) and +-1.7e308 (float64); the result must not.
    for dtype, big in ((np.float32, 3e38), (np.float64, 1.7e308)):
        x = np.array([[big, -big, big, 0.0], [-big, -big, -big, -big], [big, big - big / 2**20, 0, 0]], dtype)
        y = logitkit.softmax(x, algorithm=algorithm)
        expected = _torch_softmax(x)
        assert np.isfinite(y).all(), (dtype, y)
        assert_close(y, expected, 16 * EPS[np.dtype(dtype)], 0.0)
        np.testing.assert_array_equal(y[0], [0.5, 0, 0.5, 0])
        np.testing.assert_array_equal(y[1], [0.25] * 4)
        np.testing.assert_array_equal(y[2], [1, 0, 0, 0])


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_large_logits_and_temperature(isa, algorithm):
    # Large |x| with small T: the scaled values exceed the exp range; max subtraction keeps it finite.
    x = np.array([1e4, 1e4 - 1, 1e4 - 1.5, -1e4, 0], np.float32)
    y = logitkit.softmax(x, temperature=0.01, algorithm=algorithm)
    assert_softmax_close(y, x, temperature=0.01)
    assert y[0] == 1 and y[1] > 0 and (y[2:] == 0).all()  # e^-100 is a float32 subnormal, e^-150 is 0
    x = np.array([2e6, 2e6 - 1, 2e6 + 1], np.float64)  # beyond the two-pass (mantissa, exponent) range
    assert_softmax_close(logitkit.softmax(x, algorithm=algorithm), x)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_subnormal_outputs(isa, dtype, algorithm):
    # Outputs deep in the subnormal range must be rounded, not flushed to zero.
    if dtype is np.float32:
        x = np.array([0.0, -90.0, -100.0, -103.0, -104.0, -110.0], dtype)
    else:
        x = np.array([0.0, -700.0, -720.0, -740.0, -744.0, -746.0], dtype)
    y = logitkit.softmax(x, algorithm=algorithm)
    assert_softmax_close(y, x)
    assert (y[1:4] > 0).all()
    assert_close(y, _torch_softmax(x), 0.0, 2 * float(np.finfo(dtype).smallest_subnormal))


# ---------------------------------------------------------------------------------------------
# Threads: bitwise identical results for any thread count


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_thread_count_determinism(isa, threads, rng, dtype, algorithm):
    cases = [
        (logits(rng, (3000, 37), dtype), -1),  # many short rows, split into tasks by size
        (logits(rng, (9, 3001), dtype), -1),  # pipelined rows, tasks sized by the thread count
        (logits(rng, (LONG,), dtype), -1),  # one long row, split into chunks
        (logits(rng, (300, 200), dtype), 0),  # strided rows through gather/scatter
    ]
    for x, axis in cases:
        results = []
        for n in (1, 2, 3):
            logitkit.set_num_threads(n)
            results.append(bits(logitkit.softmax(x, axis=axis, algorithm=algorithm)))
        np.testing.assert_array_equal(results[0], results[1])
        np.testing.assert_array_equal(results[0], results[2])


def test_gil_released_during_kernel(threads):
    # No timing: with a huge switch interval Python never preempts a thread, so the main thread
    # can only run while the worker is blocked or inside C code that released the GIL. The worker
    # calls softmax until the main thread says stop (at most `cap` times); if the binding kept the
    # GIL, the main thread could not say stop before the worker gave up.
    logitkit.set_num_threads(1)
    x = np.random.default_rng(0).standard_normal((64, 4096)).astype(np.float32)
    out = np.empty_like(x)
    cap = 2000
    state = {"stop": False, "calls": 0}

    def worker():
        while not state["stop"] and state["calls"] < cap:
            logitkit.softmax(x, out=out)
            state["calls"] += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        t = threading.Thread(target=worker)
        t.start()
        state["stop"] = True
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert state["calls"] < cap
    assert_softmax_close(out, x)


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_axis(isa):
    x = np.zeros((2, 3))
    for axis in (2, -3, (0, 2), (5,)):
        with pytest.raises(np.exceptions.AxisError, match="axis"):
            logitkit.softmax(x, axis=axis)
    with pytest.raises(ValueError, match="axis.*repeated"):
        logitkit.softmax(x, axis=(1, -1))
    for axis in (1.0, "0", [0.5], True, (np.bool_(False),)):
        with pytest.raises(TypeError, match="axis"):
            logitkit.softmax(x, axis=axis)
    # NumPy integers are fine; axis=() is the empty set of axes: every element is its own group.
    assert_softmax_close(logitkit.softmax(x, axis=np.int64(0)), x, axis=0)
    np.testing.assert_array_equal(logitkit.softmax(x, axis=()), np.ones_like(x))
    with pytest.raises(np.exceptions.AxisError, match="axis.*0-d"):
        logitkit.softmax(1.0, axis=1)
    for axis in (1.5, "a", (0.5,)):  # a 0-d input checks the axis's type as any other does
        with pytest.raises(TypeError, match="axis"):
            logitkit.softmax(np.array(1.0), axis=axis)
    assert logitkit.softmax(np.array(1.0), axis=(0,)) == 1.0
    assert issubclass(np.exceptions.AxisError, ValueError)


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, float("nan"), float("inf"), -float("inf"), 10**400])
def test_bad_temperature_value(isa, temperature):
    with pytest.raises(ValueError, match="temperature"):
        logitkit.softmax([1.0, 2.0], temperature=temperature)


@pytest.mark.parametrize("temperature", ["1", None, [1.0], True, 1j])
def test_bad_temperature_type(isa, temperature):
    with pytest.raises(TypeError, match="temperature"):
        logitkit.softmax([1.0, 2.0], temperature=temperature)


def test_temperature_numpy_scalars(isa):
    x = np.array([1.0, 2.0, 4.0])
    for t in (np.float32(2.0), np.float64(2.0), np.int64(2), 2):
        assert_softmax_close(logitkit.softmax(x, temperature=t), x, temperature=2.0)


def test_tiny_temperature_float32(isa):
    # 1/T overflows float32: rejected with a clear error rather than producing inf/NaN.
    with pytest.raises(ValueError, match=r"temperature: its inverse \S+e\+299 is outside the range of float32 \(temperature 1e-300\)"):
        logitkit.softmax(np.ones(3, np.float32), temperature=1e-300)
    with pytest.raises(ValueError, match=r"temperature.*float64 \(temperature 5e-324\)"):
        logitkit.softmax(np.ones(3), temperature=5e-324)
    y = logitkit.softmax(np.array([1.0, 2.0]), temperature=1e-300)  # fine in float64
    np.testing.assert_array_equal(y, [0.0, 1.0])


@pytest.mark.parametrize("algorithm", ["fast", "", "Auto", None, 1])
def test_bad_algorithm(isa, algorithm):
    with pytest.raises(ValueError, match="algorithm"):
        logitkit.softmax([1.0, 2.0], algorithm=algorithm)


def test_keyword_only(isa):
    with pytest.raises(TypeError):
        logitkit.softmax([1.0, 2.0], -1, 2.0)


# ---------------------------------------------------------------------------------------------
# Properties


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from(FLOATS), algorithm=st.sampled_from(ALL_ALGORITHMS))
def test_property_rows_sum_to_one(isa, data, dtype, algorithm):
    x = data.draw(rows(dtype))
    y = logitkit.softmax(x, algorithm=algorithm)
    assert (y >= 0).all() and (y <= 1).all()
    # Each element is within its relative bound, so the sum is within the largest bound.
    err = np.abs(y.sum(axis=-1, dtype=np.float64) - 1)
    assert (err <= softmax_rtol(x, dtype).max(axis=-1) + x.shape[-1] * EPS[np.dtype(dtype)]).all()


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from(FLOATS), algorithm=st.sampled_from(ALL_ALGORITHMS))
def test_property_shift_invariance(isa, data, dtype, algorithm):
    # Multiples of 1/8 below 2^10 plus an integer shift below 2^10 are exact in float32, so
    # x + c and x share x - max exactly: online softmax, which always subtracts its running max,
    # gives the same bits. The others may not subtract it (two_pass never does; the three-pass
    # algorithms skip it for logits within +-64), so they agree within their error bounds.
    x = data.draw(
        hnp.arrays(dtype, st.integers(1, 70), elements=st.integers(-4000, 4000).map(lambda k: k / 8))
    )
    c = data.draw(st.integers(-1000, 1000))
    y0 = logitkit.softmax(x, algorithm=algorithm)
    y1 = logitkit.softmax(x + dtype(c), algorithm=algorithm)
    # Both rows beyond the unshifted bound (|x| > 64): the three-pass algorithms subtract the max
    # from both, which then give the same bits as online softmax does.
    both_shifted = np.abs(x).max() > 64 and np.abs(x + dtype(c)).max() > 64
    if algorithm == "online" or (both_shifted and algorithm.startswith("three_pass")):
        np.testing.assert_array_equal(bits(y1), bits(y0))
    else:
        rtol = softmax_rtol(x, dtype) + softmax_rtol(x + dtype(c), dtype)
        assert_close(y1, y0, rtol, 8 * float(np.finfo(dtype).smallest_subnormal))


@PROPERTY
@given(
    data=st.data(),
    dtype=st.sampled_from(FLOATS),
    algorithm=st.sampled_from(ALL_ALGORITHMS),
    temperature=st.floats(0.05, 20.0),
)
def test_property_temperature_equivalence(isa, data, dtype, algorithm, temperature):
    x = data.draw(rows(dtype, 20.0))
    y = logitkit.softmax(x, temperature=temperature, algorithm=algorithm)
    y_scaled = logitkit.softmax((x.astype(np.float64) / temperature).astype(dtype), algorithm=algorithm)
    # Both are within their bounds of the exact softmax(x / T) (the scaled input's own rounding
    # adds |x/T| eps, which the bound for x/T already contains).
    rtol = softmax_rtol(x, dtype, temperature=temperature) * 2
    tiny = 8 * float(np.finfo(dtype).smallest_subnormal)
    assert_close(y, y_scaled, rtol, tiny)
    assert_softmax_close(y, x, temperature=temperature)


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from(FLOATS), algorithm=st.sampled_from(ALL_ALGORITHMS))
def test_property_monotone(isa, data, dtype, algorithm):
    # softmax is increasing in each logit within a row; the order (with ties) must survive rounding.
    x = data.draw(rows(dtype))
    y = logitkit.softmax(x, algorithm=algorithm)
    order = np.argsort(x, axis=-1, kind="stable")
    xs = np.take_along_axis(x, order, -1)
    ys = np.take_along_axis(y, order, -1)
    assert (np.diff(ys, axis=-1) >= 0).all()
    ties = np.diff(xs, axis=-1) == 0
    assert (np.diff(ys, axis=-1)[ties] == 0).all()
    # So the largest logit gets the largest probability.
    np.testing.assert_array_equal(
        np.take_along_axis(y, np.argmax(x, axis=-1)[:, None], -1)[:, 0], y.max(axis=-1)
    )


@pytest.mark.parametrize(
    "op",
    [
        logitkit.softmax,
        logitkit.log_softmax,
        logitkit.logsumexp,
        logitkit.entropy,
        logitkit.stablemax,
        logitkit.sparsemax,
        lambda x: logitkit.softmax(x, where=np.ones(5, bool)),
        lambda x: logitkit.softmax_backward(x, x),
    ],
)
def test_sequence_of_arrays_is_stacked(isa, rng, op):
    # As np.asarray: a tuple or list of equal-shape arrays is one array with a leading axis, never
    # taken for the arrays themselves (the common-call fast path must not look inside it).
    rows = [logits(rng, (5,), np.float32) for _ in range(3)]
    stacked = np.stack(rows)
    for seq in (tuple(rows), rows):
        np.testing.assert_array_equal(op(seq), op(stacked))


def test_common_call_path_agrees_with_general_path(isa, rng):
    # The common call is recognised in C++ (_core.fast_target); dtype= forces the general Python
    # path. Over random layouts (views, negative strides, transposes, out= aliasing x or not) both
    # must give the same bits and leave x alone.
    ops = [
        lambda x, **kw: logitkit.softmax(x, **kw),
        lambda x, **kw: logitkit.log_softmax(x, **kw),
        lambda x, **kw: logitkit.stablemax(x, **kw),
        lambda x, **kw: logitkit.softmax(x, where=MASK[: x.shape[-1]], **kw),
    ]
    for trial in range(60):
        dtype = (np.float32, np.float64)[trial % 2]
        base = logits(rng, (6, 7, 40), dtype)
        view = [base, base[:, ::-1], base.transpose(2, 0, 1), base[::2, 1:, ::3], base[..., 5:25]][trial % 5]
        axis = int(rng.integers(-view.ndim, view.ndim))
        op = ops[trial % len(ops)]
        before = view.copy()
        general = op(view, axis=axis, dtype=dtype)
        np.testing.assert_array_equal(bits(op(view, axis=axis)), bits(general))
        out = np.empty(view.shape, dtype)[..., ::-1] if trial % 4 == 1 else np.empty(view.shape, dtype)
        assert op(view, axis=axis, out=out) is out
        np.testing.assert_array_equal(bits(out), bits(general))
        np.testing.assert_array_equal(view, before)
        alias = view.copy()
        assert op(alias, axis=axis, out=alias) is alias
        np.testing.assert_array_equal(bits(alias), bits(general))


MASK = np.random.default_rng(11).random(40) < 0.7


def test_large_new_outputs_start_on_a_cache_line(isa, rng):
    # NumPy puts big buffers 16 bytes past a 64-byte line; the common call allocates its own
    # result on a line so the kernel's vector stores never straddle two (see new_output).
    x = logits(rng, (8, 4000), np.float32)[:, 1:]  # an input off the line, as NumPy's usually are
    for y in (logitkit.softmax(x), logitkit.log_softmax(x), logitkit.stablemax(x)):
        assert y.ctypes.data % 64 == 0
        assert y.flags.c_contiguous and y.flags.writeable and y.shape == x.shape and y.dtype == x.dtype
        assert not np.shares_memory(y, x)
    np.testing.assert_array_equal(bits(logitkit.softmax(x)), bits(logitkit.softmax(x, out=np.empty_like(x))))


@pytest.mark.parametrize("algorithm", ["three_pass_reload", "three_pass_recompute", "online"])
def test_normalisation_error_of_long_rows(isa, algorithm):
    # The sum of a row is taken in blocks whose float lanes add up 16 terms each, then in double:
    # every output of a row shares its 1/sum, so its error shows as a common factor. Against a
    # float64 softmax of the same float32 arguments x - max, that factor stays within 2 ulp
    # (measured 0.9-1.1; the scalar backend's former 512-element blocks reached 5).
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((32, 32000)) * 4).astype(np.float32)
    z = (x - x.max(-1, keepdims=True)).astype(np.float64)
    e = np.exp(z)
    ref = e / e.sum(-1, keepdims=True)
    y = logitkit.softmax(x, algorithm=algorithm).astype(np.float64)
    factor = np.median(y / ref, axis=-1) - 1
    assert np.abs(factor).max() <= 2 * 2.0**-23


# ---------------------------------------------------------------------------------------------
# The dominant entry, correctly rounded (the Softmax-Collapse regime)


def _dominant_rows(rng, rows, n, gap_low, gap_high, dtype):
    x = rng.standard_normal((rows, n)) * 2 - 40  # far from 0: the unshifted path, as [-38.5, -56]
    x[np.arange(rows), rng.integers(0, n, rows)] = x.max(1) + rng.uniform(gap_low, gap_high, rows)
    return x.astype(dtype)


def _correctly_rounded_max(x, dtype, temperature=1.0):
    """p_max = 1 / (1 + R) from float64 math (float32 rows) or mpmath (float64 rows), rounded once,
    and whether the row is away from a rounding boundary by more than float32 exps can move it."""
    if dtype == np.float32:
        z = x.astype(np.float64) / temperature
        m = z.max(-1, keepdims=True)
        r = np.where(z == m, 0.0, np.exp(z - m)).sum(-1)  # unique maxima here; 1 + R would round R
        p = 1.0 / (1.0 + r)
        f = p.astype(np.float32)
        lo = np.nextafter(f, np.float32(0)).astype(np.float64)
        hi = np.nextafter(f, np.float32(2)).astype(np.float64)
        gap = np.minimum(np.abs(p - (f + lo) / 2), np.abs(p - (f + hi) / 2))
        return f, gap > r * 1e-6  # float32 exps: R within ~1e-7 relative
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 160
    out = []
    for row in x:
        z = [mpmath.mpf(float(v)) / temperature for v in row]
        m = max(z)
        out.append(float(1 / sum(mpmath.exp(v - m) for v in z)))
    return np.array(out), np.ones(len(x), bool)


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
@pytest.mark.parametrize("n", [2, 37, 1000, 3001])
def test_dominant_entry_correctly_rounded_float32(isa, rng, algorithm, n):
    # Before the fix, about 12% of such rows had p_max 1 ulp low (e.g. [-38.5, -56] gave 0.99999994).
    rows = 4000 if n < 1000 else 300
    x = _dominant_rows(rng, rows, n, 12, 20, np.float32)
    expected, decided = _correctly_rounded_max(x, np.float32)
    for view in (x, np.asfortranarray(x)):  # contiguous rows and gathered (strided) rows
        y = logitkit.softmax(view, algorithm=algorithm)
        np.testing.assert_array_equal(y.max(-1)[decided], expected[decided])
        assert np.array_equal(bits(y), bits(logitkit.softmax(x, algorithm=algorithm)))
    assert decided.mean() > 0.99
    y = logitkit.softmax(x, algorithm=algorithm, temperature=0.5)
    expected, decided = _correctly_rounded_max(x, np.float32, 0.5)
    np.testing.assert_array_equal(y.max(-1)[decided], expected[decided])


@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_dominant_entry_correctly_rounded_float64(isa, rng, algorithm):
    x = _dominant_rows(rng, 150, 9, 30, 40, np.float64)
    expected, _ = _correctly_rounded_max(x, np.float64)
    np.testing.assert_array_equal(logitkit.softmax(x, algorithm=algorithm).max(-1), expected)


def test_dominant_entry_on_every_path(isa, rng):
    # Masked rows, long rows split across threads, and streamed outputs give the same dominant
    # entry as short cached rows (and the correctly rounded one).
    x = _dominant_rows(rng, 64, 50, 14, 20, np.float32)
    expected, decided = _correctly_rounded_max(x, np.float32)
    mask = np.ones_like(x, bool)
    mask[:, -5:] = x[:, -5:] < x.max(-1, keepdims=True)  # exclude only non-maxima
    xm = x.copy()
    xm[~mask] = np.nan  # excluded entries' values must not matter
    y = logitkit.softmax(xm, where=mask)
    ref, dec = _correctly_rounded_max(np.where(mask, x, -np.inf), np.float32)
    np.testing.assert_array_equal(y.max(-1)[dec], ref[dec])
    long = np.full((4, (1 << 18) + 77), -60.0, np.float32)
    long[:, 1000] = [-31.0, -30.0, -29.0, -28.0]  # R = 262k e^-gap: about 2^-25 at a gap of 29.8
    long[:, 2000:2100] = rng.uniform(-65, -55, (4, 100))
    expected_long, decided_long = _correctly_rounded_max(long, np.float32)
    assert decided_long.all() and 0 < (expected_long == 1).sum() < 4
    for algorithm in ALL_ALGORITHMS:
        np.testing.assert_array_equal(logitkit.softmax(long, algorithm=algorithm).max(-1), expected_long)
    n = 4099
    rows = STREAMED_ELEMENTS // n + 1
    big = np.tile(_dominant_rows(rng, 64, n, 14, 20, np.float32), (rows // 64 + 1, 1))[:rows]
    streamed = logitkit.softmax(big, algorithm="three_pass_reload")
    cached = logitkit.softmax(big[:64], algorithm="three_pass_reload")
    assert np.array_equal(bits(streamed[:64]), bits(cached))
    short = np.tile(x, ((STREAMED_ELEMENTS // x.size) + 1, 1))  # streamed short rows
    assert np.array_equal(bits(logitkit.softmax(short)[:64]), bits(logitkit.softmax(x)))


# x / T near the largest float, T < 1 and T > 1 (checked with the stablemax and sparsemax fixes,
# where x * c overflowed): the shifted softmax family computes c (x - max) without overflow
# (scaled_difference), so these rows must match the 2600-bit mpmath values.
SCALED_OVERFLOW_ROWS = {
    np.float32: [[3e38, 0.0], [3e38, 2.9e38, -3e38], [-3e38, -3.3e38, 1.0], [-3e38, -1e38], [3.4e38, 3.4e38, 1.0]],
    np.float64: [[1.7e308, 0.0], [1.7e308, 1.6e308, -1.7e308], [-1.7e308, -1.79e308, 1.0], [-1.7e308, -1e308],
                 [1.79e308, 1.79e308, 1.0]],
}


@pytest.mark.parametrize("temperature", [0.5, 0.1, 2.0, 3.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_temperature_near_max_float(isa, dtype, temperature):
    mpmath = pytest.importorskip("mpmath")
    from logitkit.softmax import ALGORITHMS

    eps = np.finfo(dtype).eps
    for row in SCALED_OVERFLOW_ROWS[dtype]:
        x = np.array(row, dtype)
        with mpmath.workprec(2600):
            c = mpmath.mpf(float(np.asarray(1 / temperature, dtype)))
            z = [mpmath.mpf(float(v)) * c for v in x]
            e = [mpmath.exp(v - max(z)) for v in z]
            p = [v / mpmath.fsum(e) for v in e]
            want = np.array([float(v) for v in p])
            want_log = np.array([float(mpmath.log(v)) if v > 0 else -np.inf for v in p])
            want_h = float(-mpmath.fsum(v * mpmath.log(v) for v in p if v > 0))
        with np.errstate(over="ignore"):  # log p below -3.4e38 is -inf in float32
            want_log = want_log.astype(dtype).astype(np.float64)
        mask = np.ones(x.shape, bool)
        for y in [logitkit.softmax(x, temperature=temperature, algorithm=a) for a in ALGORITHMS] + [
            logitkit.masked_softmax(x, mask, temperature=temperature)
        ]:
            np.testing.assert_allclose(y, want, rtol=4 * eps, atol=2 * np.finfo(dtype).smallest_subnormal)
        for ly in (logitkit.log_softmax(x, temperature=temperature), logitkit.masked_log_softmax(x, mask, temperature=temperature)):
            fin = np.isfinite(want_log)
            assert np.all(ly[~fin] == -np.inf)
            np.testing.assert_allclose(ly[fin], want_log[fin], rtol=4 * eps, atol=0)
        np.testing.assert_allclose(logitkit.entropy(x, temperature=temperature), want_h, rtol=8 * eps, atol=4 * eps)
