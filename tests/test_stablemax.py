"""stablemax, log_stablemax and their VJPs against float64 closed forms (NumPy), torch float64
autograd and finite differences, on every ISA."""

from __future__ import annotations

import warnings

import logitkit
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}
SIZES = [1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 130, 511, 513, 1500]


# ---------------------------------------------------------------- independent float64 references
def _s(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x >= 0, x + 1.0, 1.0 / (1.0 - x))


def ref_stablemax(x, axis=-1, temperature=1.0):
    x = np.asarray(x)
    s = _s(x.astype(np.result_type(x.dtype, np.float64)) / temperature)  # long double stays
    return s / s.sum(axis=axis, keepdims=True)


def ref_log_stablemax(x, axis=-1, temperature=1.0):
    x = np.asarray(x)
    z = x.astype(np.result_type(x.dtype, np.float64)) / temperature
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(z >= 0, np.log1p(np.abs(z)), -np.log1p(np.abs(z)))
    return logs - np.log(_s(z).sum(axis=axis, keepdims=True))


def torch_vjp(x, dy, log, temperature=1.0, axis=-1):
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    z = xt / temperature
    s = torch.where(z >= 0, z + 1, 1 / (1 - z))
    p = s / s.sum(dim=axis, keepdim=True)
    y = torch.log(p) if log else p
    (g,) = torch.autograd.grad(y, xt, torch.tensor(np.asarray(dy, np.float64)))
    return g.numpy()


def _data(rng, shape, scale=4.0):
    return rng.standard_normal(shape) * scale


# ---------------------------------------------------------------- forward accuracy
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_stablemax_matches_reference(isa, dtype, n):
    rng = np.random.default_rng(n)
    x = _data(rng, (5, n)).astype(dtype)
    y = logitkit.stablemax(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref_stablemax(x), rtol=8 * EPS[dtype], atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_log_stablemax_matches_reference(isa, dtype, n):
    rng = np.random.default_rng(n + 100)
    x = _data(rng, (5, n)).astype(dtype)
    y = logitkit.log_stablemax(x)
    ref = ref_log_stablemax(x)
    # log s - log S: each term has ~1 ulp error, so the error scales with |log S| (a few ulp of it).
    scale = np.abs(ref) + np.abs(np.log(_s(x.astype(np.float64)).sum(-1, keepdims=True)))
    assert np.all(np.abs(y - ref) <= 6 * EPS[dtype] * scale)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_temperature(isa, dtype, temperature):
    x = _data(np.random.default_rng(7), (4, 50)).astype(dtype)
    np.testing.assert_allclose(
        logitkit.stablemax(x, temperature=temperature), ref_stablemax(x, temperature=temperature), rtol=10 * EPS[dtype]
    )
    ref = ref_log_stablemax(x, temperature=temperature)
    np.testing.assert_allclose(
        logitkit.log_stablemax(x, temperature=temperature), ref, rtol=0, atol=30 * EPS[dtype] * np.abs(ref).max()
    )


def test_matches_paper_formula_by_hand():
    # s = [1+2, 1+0, 1/(1+1)] = [3, 1, 0.5], S = 4.5
    np.testing.assert_allclose(logitkit.stablemax(np.array([2.0, 0.0, -1.0])), [3 / 4.5, 1 / 4.5, 0.5 / 4.5], rtol=1e-15)


# ---------------------------------------------------------------- backward
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 3, 17, 64, 129, 700])
def test_backward_matches_torch(isa, dtype, n, log):
    rng = np.random.default_rng(n)
    x = _data(rng, (4, n)).astype(dtype)
    dy = rng.standard_normal((4, n)).astype(dtype)
    fn = logitkit.log_stablemax_backward if log else logitkit.stablemax_backward
    dx = fn(x, dy)
    ref = torch_vjp(x, dy, log)
    assert dx.dtype == dtype
    # dy - sum(p dy) cancels, so the error is relative to the row's gradient scale.
    tol = 16 * EPS[dtype] * (np.abs(ref).max(axis=-1, keepdims=True) + np.abs(dy).max(axis=-1, keepdims=True))
    assert np.all(np.abs(dx - ref) <= tol)


@pytest.mark.parametrize("log", [False, True])
def test_backward_temperature_and_axis(isa, log):
    rng = np.random.default_rng(3)
    x = _data(rng, (6, 5, 4))
    dy = rng.standard_normal(x.shape)
    fn = logitkit.log_stablemax_backward if log else logitkit.stablemax_backward
    dx = fn(x, dy, axis=1, temperature=0.7)
    np.testing.assert_allclose(dx, torch_vjp(x, dy, log, temperature=0.7, axis=1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("log", [False, True])
def test_backward_finite_differences(log):
    rng = np.random.default_rng(11)
    x = _data(rng, (9,))
    dy = rng.standard_normal(9)
    fwd = logitkit.log_stablemax if log else logitkit.stablemax
    bwd = logitkit.log_stablemax_backward if log else logitkit.stablemax_backward
    h = 1e-6
    fd = np.array([(dy @ fwd(x + h * e) - dy @ fwd(x - h * e)) / (2 * h) for e in np.eye(9)])
    np.testing.assert_allclose(bwd(x, dy), fd, rtol=1e-6, atol=1e-8)


def test_backward_of_constant_upstream():
    # sum(p) == 1, so a constant upstream gradient has zero VJP through stablemax.
    x = _data(np.random.default_rng(2), (3, 40))
    np.testing.assert_allclose(logitkit.stablemax_backward(x, np.full_like(x, 2.5)), 0, atol=1e-15)


# ---------------------------------------------------------------- layouts, dtypes, out=
def test_strided_and_transposed(isa):
    rng = np.random.default_rng(5)
    base = _data(rng, (40, 70)).astype(np.float32)
    for x, axis in [(base.T, -1), (base, 0), (base[:, ::3], -1), (base[::-1, ::-2], 1), (base[::2].T, 0)]:
        np.testing.assert_allclose(logitkit.stablemax(x, axis=axis), ref_stablemax(x, axis=axis), rtol=1e-6)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        ref = torch_vjp(x, dy, True, axis=axis)
        np.testing.assert_allclose(logitkit.log_stablemax_backward(x, dy.T.copy().T, axis=axis), ref, atol=2e-5)


def _merge(a, axes):
    """Rows of `a` over `axes` as a 2-D array (other axes first, in order)."""
    rest = [d for d in range(a.ndim) if d not in axes]
    return np.transpose(a, rest + list(axes)).reshape(int(np.prod([a.shape[d] for d in rest])), -1)


def test_nd_tuple_axes_and_none():
    rng = np.random.default_rng(6)
    x = _data(rng, (3, 4, 5))
    dy = rng.standard_normal(x.shape)
    for axis in [(0, 2), (1, 2), (2, 0), None, (0, 1, 2)]:
        axes = tuple(range(3)) if axis is None else tuple(sorted(axis))
        ref = _s(x) / _s(x).sum(axis=axes, keepdims=True)
        np.testing.assert_allclose(logitkit.stablemax(x, axis=axis), ref, rtol=1e-14)
        np.testing.assert_allclose(logitkit.log_stablemax(x, axis=axis), np.log(ref), rtol=1e-13, atol=1e-14)
        got = _merge(logitkit.stablemax_backward(x, dy, axis=axis), axes)
        np.testing.assert_allclose(got, torch_vjp(_merge(x, axes), _merge(dy, axes), False), rtol=1e-12, atol=1e-15)


def test_out_and_in_place():
    rng = np.random.default_rng(8)
    x = _data(rng, (8, 33))
    ref = ref_stablemax(x)
    out = np.empty_like(x)
    assert logitkit.stablemax(x, out=out) is out
    np.testing.assert_allclose(out, ref, rtol=1e-14)
    y = x.copy()
    assert logitkit.stablemax(y, out=y) is y
    np.testing.assert_allclose(y, ref, rtol=1e-14)
    dy = rng.standard_normal(x.shape)
    ref_g = torch_vjp(x, dy, False)
    d2 = dy.copy()
    assert logitkit.stablemax_backward(x, d2, out=d2) is d2
    np.testing.assert_allclose(d2, ref_g, rtol=1e-12, atol=1e-15)
    x2 = x.copy()
    logitkit.log_stablemax_backward(x2, dy, out=x2)
    np.testing.assert_allclose(x2, torch_vjp(x, dy, True), rtol=1e-12, atol=1e-15)
    # overlapping but not identical out: computed through a temporary
    buf = x.copy()
    logitkit.stablemax(buf[:, :-1], out=buf[:, 1:])
    np.testing.assert_allclose(buf[:, 1:], ref_stablemax(x[:, :-1]), rtol=1e-14)


def test_reduced_precision_and_promotion():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = _data(np.random.default_rng(9), (4, 30))
    for dt in (np.float16, ml_dtypes.bfloat16):
        xr = x.astype(dt)
        y = logitkit.stablemax(xr)
        assert y.dtype == dt
        np.testing.assert_allclose(y.astype(np.float64), ref_stablemax(xr.astype(np.float64)), rtol=1e-2)
        assert logitkit.stablemax(xr, dtype=np.float32).dtype == np.float32
        g = logitkit.stablemax_backward(xr, np.ones_like(xr))
        assert g.dtype == dt
    xi = np.arange(12).reshape(3, 4)
    y = logitkit.stablemax(xi)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, ref_stablemax(xi), rtol=1e-15)
    assert logitkit.stablemax_backward(x.astype(np.float32), x).dtype == np.float64


def test_empty_scalar_and_size_one():
    assert logitkit.stablemax(np.zeros((0, 5))).shape == (0, 5)
    assert logitkit.stablemax(np.zeros((3, 0))).shape == (3, 0)
    assert logitkit.stablemax_backward(np.zeros((0, 5)), np.zeros((0, 5))).shape == (0, 5)
    assert logitkit.stablemax(np.float64(-7.0)) == 1.0
    assert logitkit.log_stablemax(np.float64(12.0)) == 0.0
    np.testing.assert_array_equal(logitkit.stablemax(np.array([[5.0], [-3.0]])), [[1.0], [1.0]])
    np.testing.assert_array_equal(logitkit.stablemax_backward(np.array([[5.0]]), np.array([[3.0]])), [[0.0]])


def test_thread_count_does_not_change_bits():
    x = _data(np.random.default_rng(10), (300, 1000)).astype(np.float32)
    before = logitkit.get_num_threads()
    try:
        logitkit.set_num_threads(1)
        a, la = logitkit.stablemax(x), logitkit.log_stablemax_backward(x, x)
        logitkit.set_num_threads(2)
        b, lb = logitkit.stablemax(x), logitkit.log_stablemax_backward(x, x)
    finally:
        logitkit.set_num_threads(before)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)


# ---------------------------------------------------------------- huge inputs and special values
def test_huge_inputs_do_not_overflow(isa):
    x = np.array([[3e38, 3e38, 1.0, -3e38], [3.4e38] * 3 + [0.0], [-3e38, -1e38, -2e38, -3.4e38]], np.float32)
    y = logitkit.stablemax(x)
    ref = ref_stablemax(x.astype(np.float64))
    assert np.all(np.isfinite(y))
    # normal outputs to a few ulp; subnormal ones to a few subnormal steps
    np.testing.assert_allclose(y, ref, rtol=8 * EPS[np.float32], atol=8 * np.finfo(np.float32).smallest_subnormal)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)
    # the log domain stays accurate where the probability itself is subnormal: log s - log S has
    # a few ulp of |log S| (~89 here) of absolute error
    lref = ref_log_stablemax(x.astype(np.float64))
    log_sum = np.log(_s(x.astype(np.float64)).sum(-1, keepdims=True))
    assert np.all(np.abs(logitkit.log_stablemax(x) - lref) <= 4 * EPS[np.float32] * (np.abs(lref) + np.abs(log_sum)))
    xd = np.array([[1.7e308, 1.7e308, 1.0], [-1.7e308, -1e308, -5e307]])
    refd = ref_stablemax(xd.astype(np.longdouble)).astype(np.float64)  # 80-bit: the sum fits
    np.testing.assert_allclose(logitkit.stablemax(xd), refd, rtol=8 * EPS[np.float64], atol=1e-320)
    lref = ref_log_stablemax(xd.astype(np.longdouble))
    log_sum = np.log(_s(xd.astype(np.longdouble)).sum(-1, keepdims=True))
    assert np.all(np.abs(logitkit.log_stablemax(xd) - lref) <= 4 * EPS[np.float64] * (np.abs(lref) + np.abs(log_sum)))
    # single extreme entry: exactly 1 up to one ulp
    np.testing.assert_allclose(logitkit.stablemax(np.array([-3.4e38], np.float32)), [1.0], rtol=EPS[np.float32])
    dx = logitkit.stablemax_backward(x, np.ones_like(x) * np.arange(4, dtype=np.float32))
    assert np.all(np.isfinite(dx))


def test_tiny_sums_are_exact(isa):
    # every s is subnormal-adjacent: the sum is rescaled, outputs keep full precision
    x = np.array([[-1e38, -2e38, -3e38], [-1e30, -1e36, -5e37]], np.float32)
    np.testing.assert_allclose(logitkit.stablemax(x), ref_stablemax(x.astype(np.float64)), rtol=4 * EPS[np.float32])


def test_special_values(isa):
    inf, nan = np.inf, np.nan
    x = np.array([[nan, 1, 2], [-inf, 0, 1], [-inf, -inf, -inf], [inf, 1, -2], [inf, inf, 0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = logitkit.stablemax(x)
        ly = logitkit.log_stablemax(x)
        dx = logitkit.stablemax_backward(x, np.ones_like(x))
    assert np.all(np.isnan(y[0])) and np.all(np.isnan(ly[0])) and np.all(np.isnan(dx[0]))
    np.testing.assert_allclose(y[1], [0, 1 / 3, 2 / 3], rtol=1e-6)
    assert ly[1, 0] == -inf
    np.testing.assert_allclose(ly[1, 1:], np.log([1 / 3, 2 / 3]), rtol=1e-6)
    assert np.all(np.isnan(y[2])) and np.all(np.isnan(ly[2]))  # 0/0, as softmax
    assert np.isnan(y[3, 0]) and np.all(y[3, 1:] == 0)  # s/S with S = inf
    assert np.isnan(ly[3, 0]) and np.all(ly[3, 1:] == -inf)
    assert np.all(np.isnan(y[4, :2])) and y[4, 2] == 0


def test_bad_input():
    x = np.zeros((2, 3))
    for t in (0.0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="temperature"):
            logitkit.stablemax(x, temperature=t)
    with pytest.raises(TypeError, match="temperature"):
        logitkit.log_stablemax(x, temperature="1")
    with pytest.raises(TypeError, match="x"):
        logitkit.stablemax(x.astype(np.complex64))
    with pytest.raises(np.exceptions.AxisError):
        logitkit.stablemax(x, axis=2)
    with pytest.raises(ValueError, match="out"):
        logitkit.stablemax(x, out=np.zeros((3, 2)))
    with pytest.raises(TypeError, match="out"):
        logitkit.stablemax(x, out=np.zeros((2, 3), np.int64))
    with pytest.raises(TypeError, match="out"):
        logitkit.stablemax(x, out=[0.0] * 6)
    with pytest.raises(ValueError, match="dy"):
        logitkit.stablemax_backward(x, np.zeros((2, 4)))
    with pytest.raises(TypeError, match="dy"):
        logitkit.log_stablemax_backward(x, np.zeros((2, 3), object))
    with pytest.raises(TypeError, match="dtype"):
        logitkit.stablemax(x, dtype=np.int32)


# ---------------------------------------------------------------- properties
finite_rows = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
    elements=st.floats(-1e6, 1e6, allow_nan=False),
)


@settings(max_examples=150, deadline=None)
@given(finite_rows)
def test_rows_sum_to_one_and_lie_in_unit_interval(x):
    y = logitkit.stablemax(x)
    assert np.all(y > 0) and np.all(y <= 1)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-13)
    np.testing.assert_allclose(np.exp(logitkit.log_stablemax(x)), y, rtol=1e-9)


@settings(max_examples=150, deadline=None)
@given(finite_rows, st.floats(0.0, 100.0), st.integers(0, 39))
def test_monotone(x, bump, j):
    """Larger logits get larger probabilities, and raising one logit raises its probability."""
    y = logitkit.stablemax(x)
    order = np.argsort(x, axis=-1, kind="stable")
    assert np.all(np.diff(np.take_along_axis(y, order, -1), axis=-1) >= 0)
    j %= x.shape[1]
    x2 = x.copy()
    x2[:, j] += bump
    assert np.all(logitkit.stablemax(x2)[:, j] >= y[:, j] * (1 - 1e-14))


# ---------------------------------------------------------------- mpmath: log accuracy in ulp, x / T overflow
mpmath = pytest.importorskip("mpmath")


def _mp_rows(x, temperature):
    """s(z_j) and S of each row of x in 2600-bit mpmath, z = x * (1/temperature rounded to x's
    dtype) as the library defines it: exact for every finite float64 input and factor."""
    c = mpmath.mpf(float(np.asarray(1 / temperature, x.dtype)))
    out = []
    for row in np.atleast_2d(x):
        z = [mpmath.mpf(float(v)) * c for v in row]
        s = [v + 1 if v >= 0 else 1 / (1 - v) for v in z]
        out.append((c, z, s, mpmath.fsum(s)))
    return out


def _ulp_error(got, exact, dtype):
    """|got - exact| in units of the spacing of exact rounded to dtype (subnormal spacing below)."""
    err = []
    for g, e in zip(np.ravel(got), exact):
        spacing = mpmath.mpf(float(np.spacing(np.abs(dtype(float(e))))))
        err.append(float(abs(mpmath.mpf(float(g)) - e) / spacing))
    return max(err)


def _mp_log_stablemax(x, temperature=1.0):
    with mpmath.workprec(2600):
        return [[mpmath.log(v / S) for v in s] for _, _, s, S in _mp_rows(x, temperature)]


# Measured maximum over the rows below (and over 2000 random rows of every magnitude): 3 ulp.
LOG_STABLEMAX_ULP = 4


@pytest.mark.parametrize(
    "x, dtype",
    [([1e30, 4e29], np.float64), ([1e4, 4e3, -1e4], np.float32), ([1e300, 3e299, 1.0], np.float64),
     ([1e15, 1.0, -2.0], np.float64), ([3e38, 1e38, -5.0], np.float32), ([2e8, 1.0], np.float32)],
)
def test_log_stablemax_ulp_issue_rows(isa, x, dtype):
    # log s - log S cancelled here: 113 and 32 ulp at [1e30, 4e29], 21 at [1e4, 4e3, -1e4]
    x = np.array(x, dtype)
    for t in (1.0, 0.5, 3.0):
        assert _ulp_error(logitkit.log_stablemax(x, temperature=t), _mp_log_stablemax(x, t)[0], dtype) <= LOG_STABLEMAX_ULP


def _random_rows(rng, dtype, count):
    fmax = np.finfo(dtype).max
    for k in range(count):
        n = int(rng.integers(2, 200 if k % 10 == 0 else 20))
        kind = k % 5
        if kind == 0:  # one dominant entry: p -> 1, log p -> 0
            x = rng.uniform(-5, 5, n)
            x[rng.integers(n)] = 10 ** rng.uniform(2, 30 if dtype == np.float32 else 200)
        elif kind == 1:  # subnormal probabilities
            x = -np.abs(rng.standard_normal(n)) * 10 ** rng.uniform(20, np.log10(fmax) - 1)
            x[0] = 10 ** rng.uniform(0, 10)
        elif kind == 2:  # all negative, any magnitude
            x = -np.abs(rng.standard_normal(n)) * 10 ** rng.uniform(-2, np.log10(fmax) - 1)
        elif kind == 3:  # two near-equal large entries: p ~ 1/2
            v = 10 ** rng.uniform(0, 30)
            x = np.concatenate([[v, v * (1 - 10 ** rng.uniform(-7, -1))], rng.uniform(-1, 1, n)])
        else:  # any magnitude up to the largest float
            x = rng.standard_normal(n) * 10 ** rng.uniform(-3, np.log10(fmax) - 0.5)
        yield np.clip(x, -fmax, fmax).astype(dtype), [1.0, 0.5, 3.0, 0.1, 1e-3][k % 5 if k % 2 else 0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_stablemax_ulp_random(isa, dtype):
    worst = 0.0
    for x, t in _random_rows(np.random.default_rng(21), dtype, 60):
        worst = max(worst, _ulp_error(logitkit.log_stablemax(x, temperature=t), _mp_log_stablemax(x, t)[0], dtype))
    assert worst <= LOG_STABLEMAX_ULP


OVERFLOW_ROWS = {
    np.float32: [[3e38, 0.0], [3e38, 2.9e38, -3e38], [-3e38, -3.3e38, 1.0], [-3e38, -1e38], [3.4e38, 3.3e38, 0.5],
                 [-3.4e38, -3.4e38], [3e38, -np.inf, -3e38]],
    np.float64: [[1.7e308, 0.0], [1.7e308, 1.6e308, -1.7e308], [-1.7e308, -1.79e308, 1.0], [-1.7e308, -1e308],
                 [1.79e308, 1.7e308, 0.5], [-1.79e308, -1.79e308], [1.7e308, -np.inf, -1.7e308]],
}


@pytest.mark.parametrize("temperature", [0.5, 0.1, 1e-3, 2.0, 3.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_temperature_overflow(isa, dtype, temperature):
    # x / T beyond the largest float: the math is finite (x * c overflows only in the arithmetic),
    # was [nan, 0] for [3e38, 0] at T = 0.5 and a NaN row for [-3e38, -3e38] at T = 0.5.
    eps, tiny = EPS[dtype], np.finfo(dtype).smallest_subnormal
    rng = np.random.default_rng(4)
    for row in OVERFLOW_ROWS[dtype]:
        x = np.array(row, dtype)
        dy = rng.standard_normal(x.shape).astype(dtype)
        y, ly = logitkit.stablemax(x, temperature=temperature), logitkit.log_stablemax(x, temperature=temperature)
        dx = logitkit.stablemax_backward(x, dy, temperature=temperature)
        ldx = logitkit.log_stablemax_backward(x, dy, temperature=temperature)
        assert not np.isnan(y).any() and not np.isnan(ly).any() and not np.isnan(dx).any() and not np.isnan(ldx).any()
        with mpmath.workprec(2600):
            ((c, z, s, S),) = _mp_rows(x, temperature)
            p = [v / S for v in s]
            ds = [mpmath.mpf(1) if v >= 0 else 1 / (1 - v) ** 2 for v in z]  # s'(z)
            d = [mpmath.mpf(float(v)) for v in dy]
            g, G = mpmath.fsum(pi * di for pi, di in zip(p, d)), mpmath.fsum(d)
            ref_dx = [c * dsi / S * (di - g) for dsi, di in zip(ds, d)]
            ref_ldx = [c * (dsi / si * di - dsi / S * G) if si else 0 for dsi, si, di in zip(ds, s, d)]
            # bounds: dy - g and dy - G p round at about eps (|dy| + |g|) before the exact scalings
            bound_dx = [8 * eps * c * dsi / S * (abs(di) + abs(g)) for dsi, di in zip(ds, d)]
            bound_ldx = [8 * eps * c * dsi / si * (abs(di) + abs(G) * pi) if si else 0 for dsi, si, di, pi in zip(ds, s, d, p)]
            for j in range(len(row)):
                assert abs(mpmath.mpf(float(y[j])) - p[j]) <= 4 * eps * p[j] + 2 * tiny
                if p[j] > 0:
                    assert abs(mpmath.mpf(float(ly[j])) - mpmath.log(p[j])) <= LOG_STABLEMAX_ULP * eps * abs(mpmath.log(p[j])) + tiny
                else:
                    assert ly[j] == -np.inf
                assert abs(mpmath.mpf(float(dx[j])) - ref_dx[j]) <= bound_dx[j] + 2 * tiny
                assert abs(mpmath.mpf(float(ldx[j])) - ref_ldx[j]) <= bound_ldx[j] + 2 * tiny
