"""logitkit.logsumexp against float64 references, scipy.special.logsumexp (b, return_sign, keepdims)
and torch.logsumexp, on every ISA and layout."""

from __future__ import annotations

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
    EPS,
    FLOATS,
    PROPERTY,
    assert_close,
    assert_logsumexp_close,
    bits,
    logits,
    rows,
)
from reference import logsumexp as ref_logsumexp

LONG = (1 << 18) + 37
INF, NAN = np.inf, np.nan


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def scipy_lse(x, **kw):
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return scipy.special.logsumexp(x, **kw)


@pytest.mark.parametrize("dtype", FLOATS)
def test_matches_reference(isa, rng, dtype):
    x = logits(rng, (13, 203), dtype)
    y = logitkit.logsumexp(x)
    assert y.dtype == dtype and y.shape == (13,)
    assert_logsumexp_close(y, x, dtype)
    assert_close(y, scipy_lse(x.astype(np.float64), axis=-1), 0.0, 64 * EPS[np.dtype(dtype)] * np.abs(y))
    assert_close(
        y,
        torch.logsumexp(torch.from_numpy(x.astype(np.float64)), -1).numpy(),
        0.0,
        64 * EPS[np.dtype(dtype)] * np.abs(y),
    )


@pytest.mark.parametrize("dtype", FLOATS)
def test_every_tail_length(isa, rng, dtype):
    # A max in the masked tail and tied maxima are where the untied-sum bookkeeping can go wrong.
    for n in range(1, 71):
        x = logits(rng, (4, n), dtype)
        x[1, -1] = x[1].max() + 2
        x[2, :] = 1.5
        x[3, ::3] = x[3].max() + 1
        y = logitkit.logsumexp(x)
        assert_logsumexp_close(y, x, dtype)
        np.testing.assert_allclose(y[2], 1.5 + np.log(n), rtol=8 * EPS[np.dtype(dtype)])
        b = logits(rng, (4, n), dtype)
        y, sign = logitkit.logsumexp(x, b=b, return_sign=True)
        assert_logsumexp_close(y, x, dtype, b=b)
        np.testing.assert_array_equal(sign, ref_logsumexp(x, b=b)[1])


@pytest.mark.parametrize("dtype", FLOATS)
def test_long_row(isa, rng, dtype):
    x = logits(rng, (2, LONG), dtype)
    x[1, 200000] = 40  # dominant element in a later chunk
    assert_logsumexp_close(logitkit.logsumexp(x), x, dtype)
    b = np.abs(logits(rng, (2, LONG), dtype))
    b[:, ::5] = 0
    assert_logsumexp_close(logitkit.logsumexp(x, b=b), x, dtype, b=b)
    y, sign = logitkit.logsumexp(x, b=-b, return_sign=True)
    assert_logsumexp_close(y, x, dtype, b=b)
    np.testing.assert_array_equal(sign, [-1, -1])


@pytest.mark.parametrize("dtype", FLOATS)
def test_axes_keepdims_views(isa, rng, dtype):
    x = logits(rng, (3, 4, 5), dtype)
    x64 = x.astype(np.float64)
    for axis in [0, 1, 2, -1, -3, (0, 2), (2, 0), (0, 1, 2), None]:
        for keepdims in (False, True):
            y = logitkit.logsumexp(x, axis=axis, keepdims=keepdims)
            ref = scipy_lse(x64, axis=axis, keepdims=keepdims)
            assert np.shape(y) == np.shape(ref), (axis, keepdims)
            assert_close(y, ref, 0.0, 64 * EPS[np.dtype(dtype)] * (1 + np.abs(ref)))
    for view in (
        x.transpose(2, 0, 1),
        x[::-1, ::2, ::-1],
        np.asfortranarray(x),
        np.broadcast_to(x[0], (7, 4, 5)),
    ):
        for axis in range(3):
            assert_logsumexp_close(logitkit.logsumexp(view, axis=axis), view, dtype, axis=axis)


@pytest.mark.parametrize("dtype", FLOATS)
def test_weights(isa, rng, dtype):
    x = logits(rng, (6, 45), dtype)
    x64 = x.astype(np.float64)
    cases = {
        "positive": np.abs(logits(rng, x.shape, dtype)),
        "mixed signs": logits(rng, x.shape, dtype),
        "zeros": np.where(rng.random(x.shape) < 0.3, 0, 1).astype(dtype),
        "all negative": -np.abs(logits(rng, x.shape, dtype)) - 0.1,
        "row vector": np.linspace(-1, 2, 45).astype(dtype),  # broadcast along rows
        "column": np.array([[1], [2], [0.5], [-1], [0], [3]], dtype),  # broadcast along the axis
        "scalar": dtype(2.5),
        "ints": rng.integers(-2, 3, x.shape),
    }
    for name, b in cases.items():
        y, sign = logitkit.logsumexp(x, b=b, return_sign=True)
        ref, ref_sign = scipy_lse(x64, axis=-1, b=np.asarray(b, np.float64), return_sign=True)
        np.testing.assert_array_equal(sign, ref_sign, err_msg=name)
        assert_logsumexp_close(y, x, dtype, b=np.asarray(b, np.float64))
        # Without return_sign a negative sum is NaN, as in SciPy.
        y_nosign = logitkit.logsumexp(x, b=b)
        np.testing.assert_array_equal(np.isnan(y_nosign), ref_sign < 0, err_msg=name)
        np.testing.assert_array_equal(y_nosign[ref_sign >= 0], y[ref_sign >= 0])


def test_weights_exact_cases(isa):
    # log(e^1 - e^2) < 0 inside: |.| and sign -1 (SciPy's docstring example).
    y, s = logitkit.logsumexp([1.0, 2.0], b=[1, -1], return_sign=True)
    assert s == -1 and abs(y - np.log(np.e**2 - np.e)) < 1e-15
    # Exact cancellation: log 0 = -inf with sign 0.
    y, s = logitkit.logsumexp([3.0, 3.0], b=[1.5, -1.5], return_sign=True)
    assert y == -np.inf and s == 0
    # Zero weights drop their element even if it is the largest.
    assert logitkit.logsumexp([100.0, 0.0], b=[0, 1]) == 0.0
    y = logitkit.logsumexp([5.0, 1.0, 2.0], b=[0, 2, 0])
    assert abs(y - (1 + np.log(2))) < 1e-15
    # All weights zero: the empty sum.
    y, s = logitkit.logsumexp([1.0, 2.0], b=[0, 0], return_sign=True)
    assert y == -np.inf and s == 0


def test_weights_keepdims_and_axis(isa, rng):
    x = logits(rng, (4, 5, 6), np.float64)
    b = logits(rng, (5, 1), np.float64)
    for axis in (0, 1, 2, (0, 2), None):
        y, s = logitkit.logsumexp(x, axis=axis, b=b, keepdims=True, return_sign=True)
        ref, ref_s = scipy_lse(x, axis=axis, b=b, keepdims=True, return_sign=True)
        assert y.shape == ref.shape and s.shape == ref_s.shape
        np.testing.assert_array_equal(s, ref_s)
        # b has mixed signs, so sums can cancel; 1e-10 leaves room for a condition number ~1e5.
        assert_close(y, ref, 0.0, 1e-10 * (1 + np.abs(ref)))


def test_weights_promote(isa):
    x32 = np.array([1.0, 2.0], np.float32)
    assert logitkit.logsumexp(x32, b=np.float32([1, 2])).dtype == np.float32
    assert logitkit.logsumexp(x32, b=np.float64([1, 2])).dtype == np.float64
    assert logitkit.logsumexp(x32, b=[1, 2]).dtype == np.float64  # integer weights: float64
    assert logitkit.logsumexp(x32.astype(np.float16), b=np.float16([1, 2])).dtype == np.float16
    assert logitkit.logsumexp(x32.astype(np.float16), b=x32).dtype == np.float32


def test_weights_broadcast_x(isa):
    # b may also be the larger operand: x broadcasts against it (SciPy semantics).
    x = np.array([0.0, 1.0, 2.0])
    b = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    y = logitkit.logsumexp(x, b=b)
    np.testing.assert_allclose(y, scipy_lse(np.broadcast_to(x, b.shape), axis=-1, b=b), rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# Shapes, dtypes


@pytest.mark.parametrize("dtype", FLOATS)
def test_empty_and_scalars(isa, dtype):
    np.testing.assert_array_equal(logitkit.logsumexp(np.zeros((3, 0), dtype)), [-np.inf] * 3)
    y, s = logitkit.logsumexp(np.zeros((3, 0), dtype), return_sign=True)
    np.testing.assert_array_equal(s, [0, 0, 0])
    assert logitkit.logsumexp(np.zeros((0, 3), dtype)).shape == (0,)
    assert logitkit.logsumexp(np.zeros((0, 3), dtype), axis=0).shape == (3,)
    assert logitkit.logsumexp(np.zeros((0, 3), dtype), axis=0, keepdims=True).shape == (1, 3)
    y = logitkit.logsumexp(dtype(2.0))
    assert np.ndim(y) == 0 and y == 2.0
    assert logitkit.logsumexp(dtype(2.0), b=3.0) == pytest.approx(2 + np.log(3), rel=1e-6)
    assert logitkit.logsumexp(np.ones((4, 1), dtype)).tolist() == [1.0] * 4
    y = logitkit.logsumexp([1, 2, 3])
    assert np.ndim(y) == 0 and y.dtype == np.float64
    assert_logsumexp_close(y, np.array([1.0, 2.0, 3.0]), np.float64)
    y = logitkit.logsumexp([[1.0, 2.0], [3.0, 4.0]], axis=None)
    assert y == pytest.approx(scipy_lse([[1.0, 2.0], [3.0, 4.0]]), rel=1e-15)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_reduced_precision(isa, rng, dtype):
    x = logits(rng, (5, 70), np.float32).astype(dtype)
    y = logitkit.logsumexp(x)
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, logitkit.logsumexp(x.astype(np.float32)).astype(dtype))
    half_ulp = 2.0**-11 if dtype is np.float16 else 2.0**-8
    assert_close(y, ref_logsumexp(x.astype(np.float64))[0], half_ulp + 2.0**-18, 0.0)
    y, s = logitkit.logsumexp(x, b=-np.ones(70, dtype), return_sign=True)
    assert y.dtype == s.dtype == np.dtype(dtype)
    assert (s == -1).all()


@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.bool_])
def test_int_promotes_to_float64(isa, dtype):
    x = np.array([[0, 1, 1], [1, 1, 1]], dtype)
    y = logitkit.logsumexp(x)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, scipy_lse(x.astype(np.float64), axis=-1), rtol=1e-15)


def test_non_native_byte_order_and_empty_axes(isa):
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(
        logitkit.logsumexp(x.astype(">f8"), b=np.ones(3, ">f4")), scipy_lse(x, axis=-1), rtol=1e-15
    )
    # axis=() reduces over nothing: log(exp(x)) = x, as in SciPy.
    np.testing.assert_array_equal(logitkit.logsumexp(x, axis=()), scipy_lse(x, axis=()))
    assert logitkit.logsumexp(x, axis=(), keepdims=True).shape == (2, 3)


def test_unsupported_dtypes(isa):
    for x in (np.array([1j]), np.array([object()]), np.array(["s"])):
        with pytest.raises(TypeError, match=r"x: unsupported dtype.*accepted"):
            logitkit.logsumexp(x)
    with pytest.raises(TypeError, match=r"b: unsupported dtype.*accepted"):
        logitkit.logsumexp([1.0, 2.0], b=[1j, 1])


# ---------------------------------------------------------------------------------------------
# Special values


def special_rows(n):
    base = np.linspace(-2.0, 3.0, n)
    for pattern in [
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
    ]:
        for start in sorted({0, n - 1}):
            idx = [(start + 3 * k) % n for k in range(len(pattern))]
            if len(set(idx)) == len(pattern):
                row = base.copy()
                row[idx] = pattern
                yield row


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [1, 2, 5, 16, 37])
def test_special_values_match_torch_and_scipy(isa, dtype, n):
    x = np.array(list(special_rows(n)), dtype)
    y = logitkit.logsumexp(x)
    expected = torch.logsumexp(torch.from_numpy(x), -1).numpy()
    assert_close(y, expected, 16 * EPS[np.dtype(dtype)], 0.0)
    assert_close(y, scipy_lse(x, axis=-1), 16 * EPS[np.dtype(dtype)], 0.0)
    y, s = logitkit.logsumexp(x, return_sign=True)
    _, ref_s = scipy_lse(x, axis=-1, return_sign=True)
    np.testing.assert_array_equal(s, ref_s)


@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_anywhere(isa, rng, dtype):
    for n in (1, 2, 3, 4, 8, 9, 17, 33, 65):
        x = logits(rng, (n, n), dtype)
        x[np.arange(n), np.arange(n)] = np.nan
        assert np.isnan(logitkit.logsumexp(x)).all(), n
        x[:, :] = -np.inf
        x[np.arange(n), np.arange(n)] = np.nan  # NaN among -inf: the max reduction must not hide it
        assert np.isnan(logitkit.logsumexp(x)).all(), n
        y, s = logitkit.logsumexp(x, b=np.ones_like(x), return_sign=True)
        assert np.isnan(y).all() and np.isnan(s).all(), n


def test_nan_in_long_row(isa):
    x = np.full(LONG, -np.inf, np.float32)
    x[-1] = np.nan
    assert np.isnan(logitkit.logsumexp(x))
    x[-1] = 0
    assert logitkit.logsumexp(x) == 0


@pytest.mark.parametrize("dtype", FLOATS)
def test_extreme_finite(isa, dtype):
    big = float(np.finfo(dtype).max)
    x = np.array([[big, -big, big], [-big, -big, -big], [big, 0, 0]], dtype)
    y = logitkit.logsumexp(x)
    expected = torch.logsumexp(torch.from_numpy(x), -1).numpy()
    assert np.isfinite(y).all()
    assert_close(y, expected, 4 * EPS[np.dtype(dtype)], 0.0)
    assert y[1] == dtype(-big)  # -big + log 3 rounds back to -big


@pytest.mark.parametrize("dtype", FLOATS)
def test_special_values_with_weights(isa, dtype):
    # Where SciPy and logitkit agree: weights on finite and infinite elements.
    cases = [
        ([INF, 1.0], [-1.0, 1.0], (INF, -1.0)),  # +inf with a negative weight
        ([INF, 1.0], [2.0, -5.0], (INF, 1.0)),
        ([INF, INF], [1.0, 2.0], (INF, 1.0)),  # same-sign weights at +inf
        ([INF, INF], [1.0, -1.0], (NAN, NAN)),  # cancelling weights at +inf: undefined
        ([-INF, -INF], [1.0, -3.0], (-INF, 0.0)),
        ([NAN, 1.0], [0.0, 1.0], (1.0, 1.0)),  # zero weight drops a NaN
        ([INF, 1.0], [0.0, 1.0], (1.0, 1.0)),  # ... and an inf
        ([2.0, NAN], [1.0, 1.0], (NAN, NAN)),
        ([2.0, 1.0], [NAN, 1.0], (NAN, NAN)),  # a NaN weight
        ([1.0, 2.0], [INF, INF], (INF, 1.0)),  # infinite weights, at the max and off it
        ([1.0, 2.0], [-INF, -INF], (INF, -1.0)),
        ([1.0, 2.0], [INF, 1.0], (INF, 1.0)),
        ([1.0, 2.0], [1.0, -INF], (INF, -1.0)),
        ([1.0, 2.0], [INF, -INF], (NAN, NAN)),  # inf - inf
        ([INF, INF], [1.0, NAN], (NAN, NAN)),  # a NaN weight at +inf
        ([INF, 2.0], [NAN, 1.0], (NAN, NAN)),
    ]
    for x, b, (val, sign) in cases:
        x, b = np.array(x, dtype), np.array(b, dtype)
        y, s = logitkit.logsumexp(x, b=b, return_sign=True)
        ref, ref_s = scipy_lse(x, b=b, return_sign=True)
        np.testing.assert_array_equal([y, s], [val, sign], err_msg=f"{x} {b}")
        np.testing.assert_array_equal([y, s], [ref, ref_s], err_msg=f"{x} {b} vs SciPy")


@pytest.mark.parametrize("dtype", FLOATS)
def test_weights_deliberate_differences_from_scipy(isa, dtype):
    # 1. Zero weights always drop their element. SciPy drops it too, except that when its result
    #    is not finite it recomputes log(sum(b * exp(x))) directly, where 0 * inf and 0 * NaN are NaN.
    for x, b, ours in [
        ([-INF, INF], [1.0, 0.0], (-INF, 0.0)),
        ([-INF, NAN], [1.0, 0.0], (-INF, 0.0)),
        ([-2.0, NAN, INF], [0.0, 0.0, 1.0], (INF, 1.0)),
    ]:
        x, b = np.array(x, dtype), np.array(b, dtype)
        y, s = logitkit.logsumexp(x, b=b, return_sign=True)
        np.testing.assert_array_equal([y, s], ours)
        assert np.isnan(scipy_lse(x, b=b, return_sign=True)[0])
    # 2. Several +inf elements count as one term weighted by the sum of their weights; SciPy
    #    computes sum(b * inf), which is NaN as soon as the weights at +inf differ in sign.
    x, b = np.array([INF, 0.0, INF], dtype), np.array([-1.0, 1.0, 3.0], dtype)
    y, s = logitkit.logsumexp(x, b=b, return_sign=True)
    np.testing.assert_array_equal([y, s], [INF, 1.0])
    assert np.isnan(scipy_lse(x, b=b, return_sign=True)[0])


# ---------------------------------------------------------------------------------------------
# Threads, bad input


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [2500, 1000, 128, 100, 40])
def test_rows_alone_equal_rows_in_a_batch(isa, rng, dtype, n):
    # Batches of long rows are pipelined (a row's sum carries the next row's max pass); short rows
    # run in blocks of up to one vector of rows: sums in lockstep pairs (a pair with a row of the
    # special cases below goes one row at a time), then one vector log for the block. Each row
    # keeps the bits it gets alone, whatever its neighbours hold. 41 rows: the eight kinds below
    # recur in every block, at every offset.
    x = logits(rng, (41, n), dtype)
    kind = np.arange(len(x)) % 8
    for r in range(len(x)):
        if kind[r] == 1:
            x[r, 10] = x[r].max() - 95  # out of the float32 table exp's range: the block is recomputed
        elif kind[r] == 2:
            x[r, ::5] = -INF
        elif kind[r] == 3:
            x[r, 7] = INF
        elif kind[r] == 4:
            x[r] = -INF
        elif kind[r] == 5:
            x[r, n - 1] = NAN
        elif kind[r] == 6:
            x[r, n // 25 :] = x[r, : n // 25].max()  # many tied maxima
    y, s = logitkit.logsumexp(x, return_sign=True)
    for r in range(len(x)):
        alone, sign = logitkit.logsumexp(x[r], return_sign=True)
        np.testing.assert_array_equal(bits(y[r]), bits(alone))
        np.testing.assert_array_equal(bits(s[r]), bits(sign))
    finite = np.isin(kind, [0, 1, 2, 6, 7])
    assert_logsumexp_close(y[finite], x[finite], dtype)
    assert (s[finite] == 1).all()
    assert (y[kind == 3] == INF).all() and (y[kind == 4] == -INF).all() and np.isnan(y[kind == 5]).all()
    assert np.isnan(s[kind == 5]).all()


@pytest.mark.parametrize("dtype", FLOATS)
def test_thread_count_determinism(isa, threads, rng, dtype):
    cases = [
        (logits(rng, (3000, 37), dtype), None),
        (logits(rng, (9, 3001), dtype), None),  # pipelined rows, tasks sized by the thread count
        (logits(rng, (LONG,), dtype), None),
        (logits(rng, (LONG,), dtype), logits(rng, (LONG,), dtype)),
        (logits(rng, (300, 200), dtype).T, logits(rng, (200, 300), dtype)),
    ]
    for x, b in cases:
        results = []
        for n in (1, 2, 3):
            logitkit.set_num_threads(n)
            y, s = logitkit.logsumexp(x, b=b, return_sign=True)
            results.append((bits(y), bits(s)))
        for r in results[1:]:
            np.testing.assert_array_equal(r[0], results[0][0])
            np.testing.assert_array_equal(r[1], results[0][1])


def test_bad_input(isa):
    x = np.zeros((2, 3))
    with pytest.raises(np.exceptions.AxisError, match="axis"):
        logitkit.logsumexp(x, axis=2)
    with pytest.raises(np.exceptions.AxisError, match="axis"):
        logitkit.logsumexp(x, axis=(0, -3))
    with pytest.raises(ValueError, match="axis.*repeated"):
        logitkit.logsumexp(x, axis=(0, 0))
    with pytest.raises(TypeError, match="axis"):
        logitkit.logsumexp(x, axis=0.5)
    with pytest.raises(np.exceptions.AxisError, match="axis"):
        logitkit.logsumexp(3.0, axis=1)
    with pytest.raises(ValueError, match="b: shape"):
        logitkit.logsumexp(x, b=np.ones(2))
    with pytest.raises(ValueError, match="b: shape"):
        logitkit.logsumexp(x, b=np.ones((3, 3)))
    with pytest.raises(TypeError, match="b"):
        logitkit.logsumexp(x, b=[[1.0], [1.0, 2.0]])


# ---------------------------------------------------------------------------------------------
# Properties


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_property_definition(isa, data, dtype):
    # logsumexp(x) = max + log(sum(exp(x - max))), bounded by max <= . <= max + log n.
    x = data.draw(rows(dtype, 80.0))
    y = logitkit.logsumexp(x).astype(np.float64)
    z = x.astype(np.float64)
    m = z.max(axis=-1)
    ref = m + np.log(np.sum(np.exp(z - m[:, None]), axis=-1))
    eps = EPS[np.dtype(dtype)]
    assert_close(y, ref, 0.0, eps * (16 + 4 * np.abs(m) + 4 * np.abs(ref)))
    assert (y >= m).all() and (y <= m + np.log(x.shape[-1]) + eps * (8 + 4 * np.abs(m))).all()


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_property_shift(isa, data, dtype):
    # x + c is exact for multiples of 1/8 and integer c, and the max shift is exact, so
    # logsumexp(x + c) = logsumexp(x) + c up to the rounding of that final add.
    x = data.draw(
        hnp.arrays(dtype, st.integers(1, 70), elements=st.integers(-4000, 4000).map(lambda k: k / 8))
    )
    c = data.draw(st.integers(-1000, 1000))
    y0 = float(logitkit.logsumexp(x))
    y1 = float(logitkit.logsumexp(x + dtype(c)))
    eps = EPS[np.dtype(dtype)]
    assert abs(y1 - (y0 + c)) <= eps * (4 * abs(y0) + 4 * abs(y1) + 8)


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_property_positive_weights_are_log_shifts(isa, data, dtype):
    # sum(b e^x) = sum(e^(x + log b)) for b > 0.
    x = data.draw(rows(dtype, 30.0))
    width = 32 if dtype is np.float32 else 64
    b = data.draw(hnp.arrays(dtype, x.shape, elements=st.floats(2.0**-10, 2.0**10, width=width)))
    y = logitkit.logsumexp(x, b=b).astype(np.float64)
    shifted = x.astype(np.float64) + np.log(b.astype(np.float64))
    ref = ref_logsumexp(shifted)[0]
    eps = EPS[np.dtype(dtype)]
    assert_close(y, ref, 0.0, eps * (32 + 8 * np.abs(shifted).max(axis=-1) + 4 * np.abs(ref)))


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_property_monotone(isa, data, dtype):
    # Raising one logit cannot lower the result.
    x = data.draw(rows(dtype, 30.0))
    i = data.draw(st.integers(0, x.shape[-1] - 1))
    x2 = x.copy()
    x2[:, i] = x2[:, i] + dtype(1)
    assert (logitkit.logsumexp(x2) >= logitkit.logsumexp(x)).all()
