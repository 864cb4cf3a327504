"""entropy (fused Shannon entropy of softmax) and collapse_fraction (Softmax Collapse) against
independent references: SciPy/NumPy float64 (and mpmath where cancellation matters), NumPy
softmax computed in the collapse dtype, on every ISA."""

from __future__ import annotations

import logitkit
import mpmath
import numpy as np
import pytest
import scipy.special as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from logitkit import _core

SIZES = [1, 2, 3, 7, 15, 16, 17, 33, 64, 65, 130, 513, 2000]


def ref_entropy(x, axis=-1, temperature=1.0):
    logp = sp.log_softmax(np.asarray(x, np.float64) / temperature, axis=axis)
    p = np.exp(logp)
    return -np.where(p > 0, p * logp, 0.0).sum(axis=axis)


def _tol(dtype, n):
    # float32: exp has ~1 ulp, sums in blocks; the result scale is log(n)
    return (4e-7 if dtype == np.float32 else 2e-15) * (1 + np.log(max(n, 1)))


# ---------------------------------------------------------------- entropy accuracy
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_entropy_matches_reference(isa, dtype, n):
    rng = np.random.default_rng(n)
    for scale in (0.1, 3.0, 30.0):
        x = (rng.standard_normal((6, n)) * scale).astype(dtype)
        h = logitkit.entropy(x)
        assert h.dtype == dtype and h.shape == (6,)
        np.testing.assert_allclose(h, ref_entropy(x), rtol=4 * _tol(dtype, n), atol=_tol(dtype, n))


@pytest.mark.parametrize("temperature", [0.25, 1.0, 4.0])
def test_temperature(isa, temperature):
    x = np.random.default_rng(1).standard_normal((5, 100)) * 4
    np.testing.assert_allclose(
        logitkit.entropy(x, temperature=temperature), ref_entropy(x, temperature=temperature), rtol=1e-13, atol=1e-14
    )
    np.testing.assert_allclose(
        logitkit.entropy(x.astype(np.float32), temperature=temperature),
        ref_entropy(x.astype(np.float32), temperature=temperature),
        rtol=2e-6,
        atol=2e-6,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_with_temperature_above_one(isa, dtype):
    # x - max overflows, (x - max) / T does not: the reference divides first, in float64 (or
    # longdouble for float64's largest values, where x / T rounds no worse).
    big = np.finfo(dtype).max * dtype(0.9)
    x = (np.random.default_rng(2).standard_normal((3, 40)) * 3).astype(dtype)
    x[:, 0], x[:, 20], x[1, 13] = -big, big, -big / 2
    for t in (2.0, float(big) / 4):
        ref = ref_entropy(x.astype(np.longdouble) / np.longdouble(t)).astype(np.float64)
        np.testing.assert_allclose(logitkit.entropy(x, temperature=t), ref, rtol=4 * _tol(dtype, 40), atol=_tol(dtype, 40))


def test_uniform_rows_give_log_n_exactly(isa):
    for n in (1, 5, 17, 1000):
        for dt in (np.float32, np.float64):
            h = logitkit.entropy(np.full((2, n), 3.25, dt))
            np.testing.assert_array_equal(h, np.full(2, np.log(n), dt))


def test_one_hot_rows_are_exactly_zero(isa):
    x = np.array([[0.0, -1e4, -1e5, -np.inf], [50.0, -800.0, -900.0, -1e30]])  # gaps beyond exp underflow
    for dt in (np.float32, np.float64):
        np.testing.assert_array_equal(logitkit.entropy(x.astype(dt)), 0.0)


def test_nearly_one_hot_keeps_relative_precision(isa):
    # H = -(p1 log p1 + p2 log p2) for [0, -d]; tiny, so any cancellation would show.
    for d in (20.0, 30.0, 50.0):
        with mpmath.workdps(50):
            e = mpmath.e ** (-d)
            p1, p2 = 1 / (1 + e), e / (1 + e)
            ref = float(-(p1 * mpmath.log(p1) + p2 * mpmath.log(p2)))
        np.testing.assert_allclose(logitkit.entropy(np.array([0.0, -d])), ref, rtol=1e-14)
        np.testing.assert_allclose(logitkit.entropy(np.array([0.0, -d], np.float32)), ref, rtol=1e-6)


def test_special_values(isa):
    inf, nan = np.inf, np.nan
    x = np.array([[0, 0, -inf], [-inf, -inf, -inf], [nan, 1, 2], [inf, 0, 1], [1, 2, nan]], np.float32)
    h = logitkit.entropy(x)
    np.testing.assert_allclose(h[0], np.log(2), rtol=1e-7)  # -inf entries carry no mass
    assert np.all(np.isnan(h[1:]))
    assert np.isnan(logitkit.entropy(np.zeros((2, 0)))).all()


def test_layouts_axes_and_dtypes():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 7, 8)) * 3
    for axis in (0, 1, 2, -1):
        np.testing.assert_allclose(logitkit.entropy(x, axis=axis), ref_entropy(x, axis=axis), rtol=1e-13)
        kd = logitkit.entropy(x, axis=axis, keepdims=True)
        assert kd.shape == tuple(1 if d == axis % 3 else s for d, s in enumerate(x.shape))
    for axis in ((0, 2), (2, 1), None):
        axes = (0, 1, 2) if axis is None else tuple(sorted(axis))
        rest = [d for d in range(3) if d not in axes]
        rows = np.transpose(x, rest + list(axes)).reshape(int(np.prod([x.shape[d] for d in rest])), -1)
        got = logitkit.entropy(x, axis=axis)
        np.testing.assert_allclose(np.ravel(got), ref_entropy(rows), rtol=1e-13)
        assert logitkit.entropy(x, axis=axis, keepdims=True).ndim == 3
    xs = x[:, ::2, ::-3]
    np.testing.assert_allclose(logitkit.entropy(xs, axis=1), ref_entropy(xs, axis=1), rtol=1e-13)
    np.testing.assert_allclose(logitkit.entropy(x.T), ref_entropy(x.T), rtol=1e-13)
    ml_dtypes = pytest.importorskip("ml_dtypes")
    for dt in (np.float16, ml_dtypes.bfloat16):
        h = logitkit.entropy(x.astype(dt))
        assert h.dtype == dt
        np.testing.assert_allclose(h.astype(np.float64), ref_entropy(x.astype(dt).astype(np.float64)), rtol=1e-2)
    assert logitkit.entropy(np.arange(12).reshape(3, 4)).dtype == np.float64
    assert logitkit.entropy(np.float32(2.0)) == 0.0


def test_thread_count_does_not_change_bits():
    x = np.random.default_rng(5).standard_normal((500, 777)).astype(np.float32)
    before = logitkit.get_num_threads()
    try:
        logitkit.set_num_threads(1)
        a = logitkit.entropy(x)
        logitkit.set_num_threads(2)
        b = logitkit.entropy(x)
    finally:
        logitkit.set_num_threads(before)
    np.testing.assert_array_equal(a, b)


def test_bad_input():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="temperature"):
        logitkit.entropy(x, temperature=0)
    with pytest.raises(TypeError, match="temperature"):
        logitkit.entropy(x, temperature=None)
    with pytest.raises(TypeError, match="logits"):
        logitkit.entropy(x.astype(complex))
    with pytest.raises(np.exceptions.AxisError):
        logitkit.entropy(x, axis=-3)
    with pytest.raises(TypeError, match="logits"):
        logitkit.collapse_fraction(np.array(["a"]))
    with pytest.raises(TypeError, match="dtype"):
        logitkit.collapse_fraction(x, dtype=np.int32)
    with pytest.raises(TypeError, match="dtype"):
        logitkit.collapse_fraction(x, dtype="nonsense")
    with pytest.raises(np.exceptions.AxisError):
        logitkit.collapse_fraction(x, axis=5)


finite = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=50),
    elements=st.floats(-300, 300, allow_nan=False),
)


@settings(max_examples=150, deadline=None)
@given(finite, st.floats(-1e3, 1e3))
def test_entropy_bounds_and_shift_invariance(x, shift):
    h = logitkit.entropy(x)
    n = x.shape[1]
    assert np.all(h >= 0) and np.all(h <= np.log(n) * (1 + 1e-14) + 1e-15)
    np.testing.assert_allclose(logitkit.entropy(x + shift), h, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(h, ref_entropy(x), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- collapse_fraction
def other_share(x, dtype):
    """R = sum of exp(x_j - max) over the other entries, in float64 from the dtype-rounded logits,
    and whether the max is unique and finite."""
    z = np.asarray(x).astype(dtype).astype(np.float64)
    m = z.max(-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        e = np.where(z == m, 0.0, np.exp(z - m))  # the max term kept out: 1 + R would round R away
    unique = ((z == m).sum(-1) == 1) & np.isfinite(m[..., 0])
    return e.sum(-1), unique


# The correctly rounded p_max = 1 / (1 + R) is 1.0 in the dtype from the midpoint below 1:
# R <= 2^-(p+1) for a p-bit significand (float16 and bfloat16 results are rounded from float32).
THRESH = {np.float64: 2.0**-54, np.float32: 2.0**-25, np.float16: 2.0**-12}


def reference_collapsed(x, dtype, margin=2.0):
    """(collapsed, decided): the correctly rounded p_max is 1.0, for rows whose R is not within a
    factor `margin` of the threshold (there float32 exps, 0.57 ulp each, could decide either way)."""
    r, unique = other_share(x, dtype)
    t = THRESH[dtype]
    return unique & (r <= t), ~unique | (r < t / margin) | (r > t * margin)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_collapse_matches_correctly_rounded_softmax(isa, dtype):
    rng = np.random.default_rng(0)
    # per-row scale, log-uniform, so the top-two gaps straddle every dtype's threshold
    x = rng.standard_normal((4000, 6)) * np.exp(rng.uniform(0, np.log(300), (4000, 1)))
    expected, decided = reference_collapsed(x, dtype)
    x = x[decided]
    expected = expected[decided]
    assert 0.1 < expected.mean() < 0.9  # the data set exercises both outcomes
    assert logitkit.collapse_fraction(x, dtype=dtype) == expected.mean()


def _near_collapse_rows(rng, rows, n, low, high):
    x = rng.standard_normal((rows, n)) * 2
    x[np.arange(rows), rng.integers(0, n, rows)] = x.max(1) + rng.uniform(low, high, rows)
    return x


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, "bfloat16"])
def test_collapse_fraction_is_softmax_max_equal_one(isa, dtype):
    # By construction: collapse_fraction(x) == mean(softmax(x).max(axis) == 1) in the same dtype,
    # on near-collapse rows (the issue: [-38.5, -56] collapsed by one count, not by softmax's).
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    rng = np.random.default_rng(1)
    bits = {np.float64: 54, np.float32: 25, np.float16: 12}.get(dtype, 9)  # R at the boundary: 2^-bits
    for n in (2, 7, 64, 1000):
        boundary = bits * np.log(2) + np.log(n)  # R grows with the number of other terms
        x = _near_collapse_rows(rng, 3000 if n < 1000 else 300, n, boundary - 10, boundary + 2).astype(dtype)
        got = logitkit.collapse_fraction(x, dtype=dtype)
        assert 0.05 < got < 0.95
        assert got == np.mean(logitkit.softmax(x).max(-1) == 1), (dtype, n)
        assert logitkit.collapse_fraction(x.T, axis=0, dtype=dtype) == got
    row = np.array([-38.5, -56.0], np.float32)
    assert logitkit.softmax(row)[0] == 1.0  # 1 / (1 + e^-17.5) rounds to 1.0 (was 0.99999994)
    assert logitkit.collapse_fraction(row) == 1.0


def test_collapse_borderline_float32(isa):
    # exp(z) brackets 2^-25, where the correctly rounded 1 / (1 + e) reaches 1.0 in float32: just
    # below it p_max is 1 (collapse), just above it 1 - 2^-24. A naive 1 + e == 1 test puts the
    # threshold at 2^-24 instead, and counts the rows in between as collapsed.
    z0 = np.float32(np.log(2.0**-25))
    below, above = z0 - np.float32(4e-6), z0 + np.float32(4e-6)
    assert np.exp(np.float64(below)) < 2.0**-25 * (1 - 1e-6) and np.exp(np.float64(above)) > 2.0**-25 * (1 + 1e-6)
    mid = np.float32(np.log(1.5 * 2.0**-25))  # between the two thresholds: 1 + e == 1, yet p_max < 1
    rows = np.array([[0, below, -200], [0, above, -200], [below, 0, -200], [0, 0, -30], [0, -np.inf, -np.inf],
                     [0, mid, -200]], np.float32)
    expected, decided = reference_collapsed(rows, np.float32, margin=1 + 2e-6)
    assert decided.all()
    np.testing.assert_array_equal(expected, [True, False, True, False, True, False])
    assert np.float32(1) + np.exp(mid) == np.float32(1)
    for i, row in enumerate(rows):
        assert logitkit.collapse_fraction(row, dtype=np.float32) == float(expected[i])
        assert (logitkit.softmax(row).max() == 1) == expected[i]
    assert logitkit.collapse_fraction(rows, dtype=np.float32) == 0.5


def test_collapse_sum_of_small_terms_is_exact():
    # three terms of 2^-25: R = 3 * 2^-25, so p_max < 1. (A sequential float32 sum would round each
    # addition away and report a collapse.) Two terms: R = 2^-24, p_max = 1 - 2^-24 + ..., not 1.
    z = np.float32(np.log(np.float32(2.0**-25)))
    row = np.array([0, z, z, z], np.float32)
    assert logitkit.collapse_fraction(row, dtype=np.float32) == 0.0
    assert logitkit.collapse_fraction(row[:3], dtype=np.float32) == 0.0
    assert logitkit.collapse_fraction(row[:2], dtype=np.float32) == float(np.exp(np.float64(z)) <= 2.0**-25)


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_collapse_reduced_precision_grid(isa, name):
    """Every logit gap on the dtype's grid around the threshold, against NumPy."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = np.dtype(np.float16) if name == "float16" else np.dtype(ml_dtypes.bfloat16)
    gaps = np.unique(np.linspace(-12, -3, 4000).astype(dt)).astype(np.float64)
    rows = np.stack([np.zeros_like(gaps), gaps], axis=1)
    p = 1.0 / (1.0 + np.exp(gaps))  # float64, then float32, then the dtype: as softmax rounds
    expected = p.astype(np.float32).astype(dt) == 1
    assert 0 < expected.sum() < len(rows)
    got = [logitkit.collapse_fraction(r, dtype=dt) for r in rows]
    np.testing.assert_array_equal(got, expected.astype(float))


def test_collapse_axes_and_edge_cases():
    x = np.zeros((3, 4, 5))
    x[:, :, 0] = 100.0  # along axis 2 every row is one-hot
    assert logitkit.collapse_fraction(x, axis=2) == 1.0
    assert logitkit.collapse_fraction(x, axis=1) == 0.0  # ties along axis 1
    assert logitkit.collapse_fraction(np.moveaxis(x, 2, 0), axis=0) == 1.0
    assert logitkit.collapse_fraction(x, axis=(0, 2)) == 0.0  # 3 tied maxima per row
    assert logitkit.collapse_fraction(x[:, :1, :], axis=None) == 0.0
    assert logitkit.collapse_fraction(np.float32(3)) == 1.0
    assert np.isnan(logitkit.collapse_fraction(np.zeros((0, 4))))
    assert logitkit.collapse_fraction(np.zeros((2, 0))) == 0.0
    assert logitkit.collapse_fraction(np.array([[np.nan, 100, 0], [np.inf, 0, 0], [-np.inf] * 3])) == 0.0
    assert isinstance(logitkit.collapse_fraction(x), float)
    # float64 logits rounded to float32 first: an 18.0 gap collapses in float32, not in float64
    # (e^-18 < 2^-25; at 17, 1 + e^-17 rounds to 1 in float32, yet p_max rounds to 1 - 2^-24)
    assert logitkit.collapse_fraction(np.array([0.0, -17.0]), dtype=np.float32) == 0.0
    row = np.array([0.0, -18.0])
    assert logitkit.collapse_fraction(row, dtype=np.float32) == 1.0
    assert logitkit.collapse_fraction(row, dtype=np.float64) == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_collapse_strided_long_rows(isa, dtype):
    # Rows long enough for softmax's chunked long-row path (>= 2^18), read through a strided view:
    # the gathered row must survive the long-row softmax's own per-thread scratch (it was
    # overwritten once, and every such row counted as not collapsed).
    rng = np.random.default_rng(5)
    n = 300_001
    x = rng.standard_normal((3, n)) * 3
    x[0, :2] = -np.inf, 1e30  # collapses in every dtype, as row 2 does
    x[2, 11] = 200.0  # the other terms are below e^-190 of it
    x = x.astype(dtype)
    expected = np.mean(scipy_softmax_max_is_one(x))
    assert expected == 2 / 3
    strided = np.repeat(x, 2, axis=-1)[:, ::2]
    assert logitkit.collapse_fraction(x, dtype=dtype) == expected
    assert logitkit.collapse_fraction(strided, dtype=dtype) == expected
    assert logitkit.collapse_fraction(np.ascontiguousarray(x.T), axis=0, dtype=dtype) == expected


def scipy_softmax_max_is_one(x):
    # float64 reference: the largest probability is 1 in the dtype exactly when the rest sum below
    # half an ulp of 1 (here decided with a wide margin: either ~0 or ~1)
    rest = np.exp(sp.logsumexp(np.asarray(x, np.float64), axis=-1, b=None) - np.max(x, -1).astype(np.float64)) - 1
    return rest < np.finfo(x.dtype).eps / 4
