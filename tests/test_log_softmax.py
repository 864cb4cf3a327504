"""logitkit.log_softmax against float64 references, torch and SciPy, on every ISA and layout."""

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
    HUGE_LOGIT_ROW_LENGTHS,
    PROPERTY,
    assert_close,
    assert_close_to_shifted_reference,
    assert_log_softmax_close,
    bits,
    huge_logit_rows,
    logits,
    rows,
    softmax_rtol,
)
from reference import (
    log_softmax as ref_log_softmax,
)

LONG = (1 << 18) + 37


@pytest.fixture
def rng():
    return np.random.default_rng(99)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("temperature", [1.0, 0.2, 7.0])
def test_matches_reference(isa, rng, dtype, temperature):
    x = logits(rng, (11, 97), dtype)
    y = logitkit.log_softmax(x, temperature=temperature)
    assert y.dtype == dtype and y.shape == x.shape
    assert_log_softmax_close(y, x, temperature=temperature)
    tx = torch.from_numpy(x.astype(np.float64) / temperature)
    assert_close(
        y, torch.log_softmax(tx, -1).numpy(), 0.0, float(np.abs(y).max()) * 64 * EPS[np.dtype(dtype)] + 1e-300
    )


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", HUGE_LOGIT_ROW_LENGTHS)
def test_huge_logits_with_temperature_above_one(isa, rng, dtype, n):
    # x - max overflows to -inf, c (x - max) does not (-0.9 max / 2 is finite): never -inf.
    x, temperatures = huge_logit_rows(dtype, rng, n)
    for t in temperatures:
        y = logitkit.log_softmax(x, temperature=t)
        assert np.isfinite(y).all()
        assert_close_to_shifted_reference(y, x, t, log=True)
        ym = logitkit.log_softmax(x, temperature=t, where=np.ones(n, bool))
        assert_close_to_shifted_reference(ym, x, t, log=True)
        assert np.array_equal(bits(logitkit.log_softmax(x[-1], temperature=t)), bits(y[-1]))  # alone = batch


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("temperature", [1.0, 0.5])
@pytest.mark.parametrize("n", [2500, 1000, 128, 100, 40])
def test_rows_alone_equal_rows_in_a_batch(isa, rng, dtype, temperature, n):
    # A row's result never depends on the rows computed with it (tasks, blocks of the exp whose
    # range check fails and are recomputed, rows whose max is +inf, -inf or NaN). Long rows are
    # pipelined; short ones run in blocks of up to one vector of rows (sums in lockstep pairs, a
    # pair with a row of the cases above falling back to one row at a time, then one vector log
    # for the block). 41 rows: the nine kinds below recur in every block, at every offset.
    x = logits(rng, (41, n), dtype)
    kind = np.arange(len(x)) % 9
    for r in range(len(x)):
        if kind[r] == 1:
            x[r, 10] = x[r].max() - 95  # out of the float32 table exp's range: the block is recomputed
        elif kind[r] == 2:
            x[r, ::5] = -np.inf
        elif kind[r] == 3:
            x[r, 7] = np.inf
        elif kind[r] == 4:
            x[r] = -np.inf
        elif kind[r] == 5:
            x[r, n - 1] = np.nan
        elif kind[r] == 6:
            x[r, n // 25 :] = x[r, : n // 25].max()  # many tied maxima
    batch = logitkit.log_softmax(x, temperature=temperature)
    for r in range(len(x)):
        alone = logitkit.log_softmax(x[r], temperature=temperature)
        np.testing.assert_array_equal(bits(batch[r]), bits(alone))
    finite = np.isin(kind, [0, 1, 6, 7, 8])
    assert_log_softmax_close(batch[finite], x[finite], temperature=temperature)
    assert (batch[kind == 2][:, ::5] == -np.inf).all() and np.isfinite(batch[kind == 2][:, 1::5]).all()
    assert np.isnan(batch[kind == 3][:, 7]).all() and (batch[kind == 3][:, :7] == -np.inf).all()
    assert np.isnan(batch[kind == 4]).all() and np.isnan(batch[kind == 5]).all()


@pytest.mark.parametrize("dtype", FLOATS)
def test_dominant_entry_keeps_relative_precision(isa, dtype):
    # log_softmax of the max is -log1p(sum of the others): for a dominant entry that is tiny and
    # must be accurate relative to itself, not to 1 (a log(sum) implementation gets 0 or noise).
    gap = 30.0 if dtype is np.float32 else 60.0
    x = np.array([[0.0, -gap, -gap - 1, -gap - 2] + [-gap - 3] * 20], dtype)
    y = logitkit.log_softmax(x)
    ref = ref_log_softmax(x)
    assert ref[0, 0] < 0 and y[0, 0] < 0
    assert abs(y[0, 0] / ref[0, 0] - 1) < 16 * EPS[np.dtype(dtype)]


@pytest.mark.parametrize("dtype", FLOATS)
def test_every_tail_length(isa, rng, dtype):
    for n in range(1, 71):
        x = logits(rng, (4, n), dtype)
        x[1, -1] = x[1].max() + 1  # max in the masked tail
        x[2, :] = x[2, 0]  # all tied: log(1/n)
        x[3, n // 2] = x[3].max() + 40  # one dominant entry
        y = logitkit.log_softmax(x)
        assert_log_softmax_close(y, x)
        np.testing.assert_allclose(
            y[2], np.full(n, -np.log(n)), rtol=16 * EPS[np.dtype(dtype)], atol=4 * EPS[np.dtype(dtype)]
        )


@pytest.mark.parametrize("dtype", FLOATS)
def test_long_row(isa, rng, dtype):
    x = logits(rng, (LONG,), dtype)
    assert_log_softmax_close(logitkit.log_softmax(x), x)
    x2 = logits(rng, (2, LONG), dtype)
    x2[1, 12345] = 100  # dominant entry in one chunk
    assert_log_softmax_close(logitkit.log_softmax(x2), x2)


@pytest.mark.parametrize("dtype", FLOATS)
def test_axes_and_views(isa, rng, dtype):
    x = logits(rng, (3, 4, 5), dtype)
    for axis in range(-3, 3):
        assert_log_softmax_close(logitkit.log_softmax(x, axis=axis), x, axis=axis)
    for view in (
        x.transpose(2, 0, 1),
        x[::-1, :, ::-2],
        np.asfortranarray(x),
        np.broadcast_to(x[0, 0], (6, 5)),
    ):
        for axis in range(view.ndim):
            assert_log_softmax_close(logitkit.log_softmax(view, axis=axis), view, axis=axis)
    # Tuple of axes and None match SciPy (which takes the same argument).
    x64 = x.astype(np.float64)
    for axis in [(0, 2), (2, 1), None]:
        y = logitkit.log_softmax(x, axis=axis)
        ref = scipy.special.log_softmax(x64, axis=axis)
        assert_close(y, ref, 0.0, 128 * EPS[np.dtype(dtype)] * (1 + np.abs(ref)))


@pytest.mark.parametrize("dtype", FLOATS)
def test_empty_size_one_scalar_list(isa, dtype):
    assert logitkit.log_softmax(np.zeros((3, 0), dtype)).shape == (3, 0)
    assert logitkit.log_softmax(np.zeros((0, 3), dtype), axis=0).shape == (0, 3)
    np.testing.assert_array_equal(logitkit.log_softmax(np.ones((4, 1), dtype)), np.zeros((4, 1)))
    y = logitkit.log_softmax(dtype(2.0))
    assert y.shape == () and y == 0
    y = logitkit.log_softmax([1, 2, 3])
    assert y.dtype == np.float64
    assert_log_softmax_close(y, np.array([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("dtype", FLOATS)
def test_out_and_in_place(isa, rng, dtype):
    x = logits(rng, (6, 40), dtype)
    expected = logitkit.log_softmax(x, axis=0)
    out = np.empty_like(x)
    assert logitkit.log_softmax(x, axis=0, out=out) is out
    np.testing.assert_array_equal(bits(out), bits(expected))
    y = x.copy()
    assert logitkit.log_softmax(y, axis=0, out=y) is y
    np.testing.assert_array_equal(bits(y), bits(expected))
    buf = np.concatenate([x.ravel(), np.zeros(5, dtype)])
    logitkit.log_softmax(buf[:-5], out=buf[5:])  # overlapping, not identical
    np.testing.assert_array_equal(buf[5:], logitkit.log_softmax(x.ravel()))
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out.*read-only"):
        logitkit.log_softmax(x, out=ro)
    with pytest.raises(ValueError, match="out.*shape"):
        logitkit.log_softmax(x, out=np.empty((40, 6), dtype))
    with pytest.raises(TypeError, match="out"):
        logitkit.log_softmax(x, out=np.empty((6, 40), np.int64))
    with pytest.raises(TypeError, match="out"):
        logitkit.log_softmax(x, out=x.tolist())


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_reduced_precision(isa, rng, dtype):
    x = logits(rng, (5, 50), np.float32).astype(dtype)
    y = logitkit.log_softmax(x)
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, logitkit.log_softmax(x.astype(np.float32)).astype(dtype))
    half_ulp = 2.0**-11 if dtype is np.float16 else 2.0**-8
    assert_close(y, ref_log_softmax(x.astype(np.float64)), half_ulp + 2.0**-18, 1e-6)
    y32 = logitkit.log_softmax(x, dtype=np.float32)
    assert y32.dtype == np.float32
    assert_log_softmax_close(y32, x.astype(np.float64))


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.bool_])
def test_int_promotes_to_float64(isa, dtype):
    x = np.array([0, 1, 1, 0], dtype)
    y = logitkit.log_softmax(x)
    assert y.dtype == np.float64
    assert_log_softmax_close(y, x.astype(np.float64))


def test_unsupported_dtypes(isa):
    for x in (np.array([1 + 1j]), np.array([None]), np.array(["x"])):
        with pytest.raises(TypeError, match=r"x: unsupported dtype.*accepted"):
            logitkit.log_softmax(x)


# ---------------------------------------------------------------------------------------------
# Special values

INF, NAN = np.inf, np.nan


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [1, 2, 5, 16, 37])
def test_special_values_match_torch(isa, dtype, n):
    # Rows with NaN, -inf, all -inf, and extreme finite values (no +inf: see below).
    base = np.linspace(-2.0, 3.0, n)
    rows = []
    for pattern in [(NAN,), (-INF,), (-INF, NAN), (-INF,) * n, (NAN,) * n]:
        for start in sorted({0, n - 1}):
            idx = [(start + 3 * k) % n for k in range(len(pattern))]
            if len(set(idx)) == len(pattern):
                row = base.copy()
                row[idx] = pattern
                rows.append(row)
    big = float(np.finfo(dtype).max) * 0.9
    rows.append(np.resize([big, -big], n))
    rows.append(np.full(n, -big))
    x = np.array(rows, dtype)
    y = logitkit.log_softmax(x)
    expected = torch.log_softmax(torch.from_numpy(x), -1).numpy()
    assert_close(y, expected, 64 * EPS[np.dtype(dtype)], 64 * EPS[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [1, 2, 5, 16, 37])
def test_positive_infinity_follows_scipy(isa, dtype, n):
    # Deliberate difference from torch: for a row containing +inf, torch returns NaN for the whole
    # row; logitkit (like SciPy) follows IEEE arithmetic: NaN at the +inf entries (inf - inf), -inf
    # at the finite and -inf entries (their probability is 0), NaN everywhere if a NaN is present.
    base = np.linspace(-2.0, 3.0, n)
    rows = []
    for pattern in [(INF,), (INF, -INF), (INF, INF), (INF, NAN), (INF,) * n]:
        for start in sorted({0, n - 1}):
            idx = [(start + 3 * k) % n for k in range(len(pattern))]
            if len(set(idx)) == len(pattern):
                row = base.copy()
                row[idx] = pattern
                rows.append(row)
    x = np.array(rows, dtype)
    y = logitkit.log_softmax(x)
    with np.errstate(invalid="ignore"):
        expected = scipy.special.log_softmax(x, axis=-1)
    np.testing.assert_array_equal(y, expected)
    has_nan = np.isnan(x).any(axis=-1, keepdims=True)
    np.testing.assert_array_equal(np.isnan(y), (x == INF) | has_nan)
    assert np.isnan(torch.log_softmax(torch.from_numpy(x), -1).numpy()).all()


@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_anywhere(isa, rng, dtype):
    for n in (1, 2, 3, 8, 9, 17, 33, 65):
        x = logits(rng, (n, n), dtype)
        x[np.arange(n), np.arange(n)] = np.nan
        assert np.isnan(logitkit.log_softmax(x)).all(), n


@pytest.mark.parametrize("dtype", FLOATS)
def test_all_negative_infinity_row(isa, dtype):
    x = np.full((2, 19), -np.inf, dtype)
    x[1, 7] = 0.0
    y = logitkit.log_softmax(x)
    assert np.isnan(y[0]).all()
    expected = np.full(19, -np.inf)
    expected[7] = 0.0
    np.testing.assert_array_equal(y[1], expected)


# ---------------------------------------------------------------------------------------------
# Threads, bad input


@pytest.mark.parametrize("dtype", FLOATS)
def test_thread_count_determinism(isa, threads, rng, dtype):
    for x, axis in (
        (logits(rng, (3000, 37), dtype), -1),
        (logits(rng, (LONG,), dtype), -1),
        (logits(rng, (300, 200), dtype), 0),
    ):
        results = []
        for n in (1, 2, 3):
            logitkit.set_num_threads(n)
            results.append(bits(logitkit.log_softmax(x, axis=axis)))
        np.testing.assert_array_equal(results[0], results[1])
        np.testing.assert_array_equal(results[0], results[2])


def test_bad_input(isa):
    x = np.zeros((2, 3))
    with pytest.raises(np.exceptions.AxisError, match="axis"):
        logitkit.log_softmax(x, axis=-3)
    with pytest.raises(TypeError, match="axis"):
        logitkit.log_softmax(x, axis="1")
    for t in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            logitkit.log_softmax(x, temperature=t)
    for t in ("2", None, np.ones(2)):
        with pytest.raises(TypeError, match="temperature"):
            logitkit.log_softmax(x, temperature=t)
    with pytest.raises(TypeError):
        logitkit.log_softmax(x, algorithm="online")  # log_softmax has a single algorithm
    with pytest.raises(TypeError, match="dtype"):
        logitkit.log_softmax(x, dtype=np.int8)


# ---------------------------------------------------------------------------------------------
# Properties


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from(FLOATS), temperature=st.sampled_from([1.0, 0.5, 4.0]))
def test_property_log_of_softmax(isa, data, dtype, temperature):
    # Where softmax is a normal number, log(softmax) has absolute error = softmax's relative error.
    x = data.draw(rows(dtype))
    y = logitkit.log_softmax(x, temperature=temperature)
    p = logitkit.softmax(x, temperature=temperature)
    normal = p >= np.finfo(dtype).tiny
    with np.errstate(divide="ignore"):
        logp = np.log(p.astype(np.float64))
    eps = EPS[np.dtype(dtype)]
    atol = 2 * softmax_rtol(x, dtype, temperature=temperature) + eps * (32 + 4 * np.abs(logp))
    assert_close(np.where(normal, y, 0.0), np.where(normal, logp, 0.0), 0.0, atol)


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_property_matches_x_minus_logsumexp(isa, data, dtype):
    x = data.draw(rows(dtype))
    y = logitkit.log_softmax(x)
    lse = logitkit.logsumexp(x, axis=-1, keepdims=True)
    eps = EPS[np.dtype(dtype)]
    atol = eps * (16 + 4 * np.abs(x.astype(np.float64)) + 4 * np.abs(lse.astype(np.float64)))
    assert_close(y, x.astype(np.float64) - lse, 0.0, atol)


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_property_monotone_and_nonpositive(isa, data, dtype):
    x = data.draw(rows(dtype))
    y = logitkit.log_softmax(x)
    assert (y <= 0).all()
    order = np.argsort(x, axis=-1, kind="stable")
    assert (np.diff(np.take_along_axis(y, order, -1), axis=-1) >= 0).all()
    # log-probabilities exponentiate to a distribution
    np.testing.assert_allclose(
        np.exp(y.astype(np.float64)).sum(-1), 1.0, rtol=1e-4 if dtype is np.float32 else 1e-12
    )


@PROPERTY
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_property_shift_invariance(isa, data, dtype):
    x = data.draw(
        hnp.arrays(dtype, st.integers(1, 70), elements=st.integers(-4000, 4000).map(lambda k: k / 8))
    )
    c = data.draw(st.integers(-1000, 1000))
    # x + c is exact and x - max is unchanged, so the result is bitwise the same.
    np.testing.assert_array_equal(bits(logitkit.log_softmax(x + dtype(c))), bits(logitkit.log_softmax(x)))
