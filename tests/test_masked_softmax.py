"""Masked softmax / log_softmax (softmax(x, where=mask)) against float64 NumPy and torch references."""

from __future__ import annotations

import logitkit
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

BF16 = np.dtype(__import__("ml_dtypes").bfloat16)
SIZES = [1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 65, 100, 513, 1025]
# Max relative error allowed against the float64 reference (a few ulp of exp plus summation).
RTOL = {np.float32: 2e-6, np.float64: 1e-14}
ATOL = {np.float32: 1e-37, np.float64: 1e-300}


def ref_masked(x, mask, axis=-1, temperature=1.0, log=False):
    """Independent float64 reference: softmax over the included positions; excluded -> 0 / -inf;
    rows with nothing included -> all 0 / all -inf. Finite x only."""
    z = np.asarray(x, np.float64) / temperature
    m = np.broadcast_to(mask, z.shape)
    zm = np.where(m, z, -np.inf)
    mx = np.max(zm, axis=axis, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    e = np.where(m, np.exp(zm - mx), 0.0)
    s = np.sum(e, axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        if log:
            return np.where(m, zm - mx - np.log(s), -np.inf)
        return np.where(s > 0, e / s, 0.0)


def check(y, ref, dtype, log=False):
    assert not np.isnan(y).any()
    if log:  # absolute error scales with the magnitude of the log-sum
        np.testing.assert_allclose(y, ref, rtol=RTOL[dtype], atol=RTOL[dtype] * 4)
    else:
        np.testing.assert_allclose(y, ref, rtol=RTOL[dtype], atol=ATOL[dtype])


def random_case(rng, shape, dtype, density=0.6):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    mask = rng.random(shape) < density
    return x, mask


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("log", [False, True])
def test_matches_reference_every_tail(isa, dtype, n, log):
    rng = np.random.default_rng(n)
    x, mask = random_case(rng, (6, n), dtype)
    mask[0] = False  # fully masked row
    mask[1] = True  # nothing masked
    mask[2] = False
    mask[2, n - 1] = True  # a single included position, in the tail
    f = logitkit.log_softmax if log else logitkit.softmax
    y = f(x, where=mask)
    assert y.dtype == dtype and y.shape == x.shape
    check(y, ref_masked(x, mask, log=log), dtype, log)
    assert np.all(y[0] == (-np.inf if log else 0.0))
    assert np.all(y[~mask] == (-np.inf if log else 0.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("temperature", [0.25, 1.0, 3.0])
def test_temperature(isa, dtype, log, temperature):
    rng = np.random.default_rng(1)
    x, mask = random_case(rng, (5, 37), dtype)
    f = logitkit.log_softmax if log else logitkit.softmax
    check(f(x, where=mask, temperature=temperature), ref_masked(x, mask, temperature=temperature, log=log), dtype, log)


@pytest.mark.parametrize("log", [False, True])
def test_against_torch_masked_fill(isa, log):
    """torch's masked softmax is softmax(x.masked_fill(~mask, -inf)); its fully masked rows are NaN,
    which we define as 0 (softmax) / -inf (log_softmax)."""
    rng = np.random.default_rng(2)
    x, mask = random_case(rng, (16, 70), np.float64, density=0.3)
    mask[3] = False
    xt = torch.from_numpy(x).masked_fill(~torch.from_numpy(mask), float("-inf"))
    ref = (torch.log_softmax if log else torch.softmax)(xt, dim=-1).numpy()
    assert np.isnan(ref[3]).all()
    ref[3] = -np.inf if log else 0.0
    y = (logitkit.log_softmax if log else logitkit.softmax)(x, where=mask)
    np.testing.assert_allclose(y, ref, rtol=1e-14, atol=1e-14 if log else 0)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize(
    "layout",
    ["axis0", "axis1_3d", "transposed", "reversed", "every_other", "tuple_axes", "none", "nonuniform_rows"],
)
def test_strides_and_axes(isa, log, layout):
    rng = np.random.default_rng(3)
    base, bmask = random_case(rng, (6, 10, 24), np.float32)
    bmask[0, :, 0] = False  # a fully masked row along axis 1
    if layout == "axis0":
        x, m, axis = base[:, 0, :], bmask[:, 0, :], 0
    elif layout == "axis1_3d":
        x, m, axis = base, bmask, 1
    elif layout == "transposed":
        x, m, axis = base[0].T, bmask[0].T, -1
    elif layout == "reversed":
        x, m, axis = base[:, ::-1, ::-1], bmask[:, ::-1, ::-1], -1
    elif layout == "every_other":
        x, m, axis = base[:, :, ::2], bmask[:, ::3, ::2], -1
        x = x[:, ::3]
    elif layout == "tuple_axes":
        x, m, axis = base, bmask, (0, 2)
    elif layout == "none":
        x, m, axis = base, bmask, None
    else:  # rows not equally spaced: a slice of the outer dims
        x, m, axis = base[:, 1:9], bmask[:, 1:9], -1
    f = logitkit.log_softmax if log else logitkit.softmax
    y = f(x, axis, where=m)
    if isinstance(axis, tuple) or axis is None:
        axes = tuple(range(x.ndim)) if axis is None else axis
        ref = ref_masked(x, m, axis=axes, log=log)
    else:
        ref = ref_masked(x, m, axis=axis, log=log)
    check(y, ref, np.float32, log)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("mask_shape", [(33,), (1, 33), (7, 1), (), (7, 33)])
@pytest.mark.parametrize("axis", [-1, 0])
def test_broadcast_mask(isa, log, mask_shape, axis):
    """Masks broadcast with stride-0 axes: along the rows, along the reduced axis, or both."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 33)).astype(np.float32)
    mask = rng.random(mask_shape) < 0.5
    f = logitkit.log_softmax if log else logitkit.softmax
    y = f(x, axis, where=mask)
    check(y, ref_masked(x, np.broadcast_to(mask, x.shape), axis=axis, log=log), np.float32, log)


@pytest.mark.parametrize("log", [False, True])
def test_strided_and_zero_dim_masks(isa, log):
    """Mask views with steps, reversed axes and 0-d arrays are read in place, stride by stride."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 21))
    big = rng.random((10, 63)) < 0.5
    f = logitkit.log_softmax if log else logitkit.softmax
    for mask in (big[::2, ::3], big[:5, 20::-1], big[3, ::-3], np.array(True), np.array(False)):
        full = np.broadcast_to(mask, x.shape)
        y = f(x, where=mask)
        if full.any():
            check(y, ref_masked(x, full, axis=-1, log=log), np.float64, log)
        else:
            assert np.all(y == (-np.inf if log else 0.0))


def test_broadcast_mask_is_not_materialized():
    from logitkit._arrays import as_mask

    m = as_mask(np.array([True, False, True]), (1000, 3))
    assert m.strides == (0, 1) and m.base is not None


@pytest.mark.parametrize("log", [False, True])
def test_all_true_and_all_false_scalars(isa, log):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 50))
    f = logitkit.log_softmax if log else logitkit.softmax
    np.testing.assert_allclose(f(x, where=True), f(x), rtol=1e-15, atol=1e-15)
    assert np.all(f(x, where=False) == (-np.inf if log else 0.0))
    assert np.all(f(x, where=np.zeros((4, 1), bool)) == (-np.inf if log else 0.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_special_values_at_excluded_positions_are_ignored(isa, dtype, log):
    rng = np.random.default_rng(6)
    x, mask = random_case(rng, (4, 40), dtype)
    clean = ref_masked(x, mask, log=log)
    specials = np.array([np.inf, -np.inf, np.nan], dtype)
    x = np.where(mask, x, specials[rng.integers(0, 3, x.shape)])
    mask[0] = False
    x[0] = np.nan
    clean[0] = -np.inf if log else 0.0
    f = logitkit.log_softmax if log else logitkit.softmax
    check(f(x, where=mask), clean, dtype, log)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [5, 40])
def test_special_values_at_included_positions(isa, dtype, n):
    inf, nan = np.inf, np.nan
    mask = np.zeros((4, n), bool)
    mask[:, :3] = True
    x = np.zeros((4, n), dtype)
    x[:, 3:] = nan  # excluded garbage
    x[0, :3] = [-inf, 1.0, 2.0]  # -inf included: 0 / -inf there, the rest normal
    x[1, :3] = [nan, 1.0, 2.0]  # NaN included: NaN over the included positions (as torch)
    x[2, :3] = [-inf, -inf, -inf]  # all included -inf: NaN (as plain softmax), excluded still 0
    x[3, :3] = [inf, 1.0, 2.0]  # +inf included: IEEE gives NaN (as plain softmax)
    y = logitkit.softmax(x, where=mask)
    ly = logitkit.log_softmax(x, where=mask)
    ref = ref_masked(np.array([[0.0, 1.0, 2.0]]), np.array([[False, True, True]]))
    np.testing.assert_allclose(y[0, :3], ref[0], rtol=RTOL[dtype])
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(ly[0, :3], np.log(ref[0]), rtol=RTOL[dtype])
    plain = logitkit.softmax(x[:, :3])
    plain_log = logitkit.log_softmax(x[:, :3])
    for r in (1, 2, 3):
        np.testing.assert_array_equal(np.isnan(y[r, :3]), np.isnan(plain[r]))
        np.testing.assert_array_equal(np.isnan(ly[r, :3]), np.isnan(plain_log[r]))
        assert np.isnan(y[r, :3]).any()
    assert np.all(y[:, 3:] == 0) and np.all(ly[:, 3:] == -inf)


@pytest.mark.parametrize("log", [False, True])
def test_out_dtype_and_in_place(isa, log):
    rng = np.random.default_rng(7)
    x, mask = random_case(rng, (9, 21), np.float32)
    f = logitkit.log_softmax if log else logitkit.softmax
    ref = ref_masked(x, mask, log=log)
    out = np.empty_like(x)
    assert f(x, where=mask, out=out) is out
    check(out, ref, np.float32, log)
    xx = x.copy()
    assert f(xx, where=mask, out=xx) is xx  # in place
    check(xx, ref, np.float32, log)
    xt = x.T.copy().T  # in place on a Fortran-ordered array, reduced axis strided
    f(xt, where=mask, out=xt)
    check(xt, ref, np.float32, log)
    y64 = f(x, where=mask, dtype=np.float64)
    assert y64.dtype == np.float64
    check(y64, ref_masked(x, mask, log=log), np.float32, log)
    yi = f(np.arange(12).reshape(3, 4), where=np.array([True, False, True, True]))
    assert yi.dtype == np.float64
    check(yi, ref_masked(np.arange(12.0).reshape(3, 4), np.array([True, False, True, True]), log=log), np.float64, log)


@pytest.mark.parametrize("dtype", [np.float16, BF16])
@pytest.mark.parametrize("log", [False, True])
def test_reduced_precision(isa, dtype, log):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 30)).astype(dtype)
    mask = rng.random((5, 30)) < 0.5
    f = logitkit.log_softmax if log else logitkit.softmax
    y = f(x, where=mask)
    assert y.dtype == dtype
    ref = ref_masked(x.astype(np.float64), mask, log=log)
    eps = float(np.finfo(dtype).eps) if dtype == np.float16 else 2.0**-7
    np.testing.assert_allclose(y.astype(np.float64), ref, rtol=eps, atol=eps * (4 if log else 0.01))


@pytest.mark.parametrize("log", [False, True])
def test_empty_and_scalar(isa, log):
    f = logitkit.log_softmax if log else logitkit.softmax
    assert f(np.zeros((0, 5)), where=np.ones(5, bool)).shape == (0, 5)
    assert f(np.zeros((5, 0)), where=np.ones((5, 0), bool)).shape == (5, 0)
    assert f(np.float64(3.0), where=True) == (0.0 if log else 1.0)
    assert f(np.float64(3.0), where=False) == (-np.inf if log else 0.0)


@pytest.mark.parametrize("log", [False, True])
def test_thread_count_does_not_change_bits(log):
    rng = np.random.default_rng(9)
    x, mask = random_case(rng, (300, 777), np.float32)
    f = logitkit.log_softmax if log else logitkit.softmax
    before = logitkit.get_num_threads()
    try:
        logitkit.set_num_threads(1)
        a = f(x, where=mask)
        logitkit.set_num_threads(2)
        b = f(x, where=mask)
    finally:
        logitkit.set_num_threads(before)
    np.testing.assert_array_equal(a, b)


def test_masked_softmax_aliases():
    rng = np.random.default_rng(10)
    x, mask = random_case(rng, (3, 9), np.float64)
    np.testing.assert_array_equal(logitkit.masked_softmax(x, mask), logitkit.softmax(x, where=mask))
    np.testing.assert_array_equal(logitkit.masked_log_softmax(x, mask), logitkit.log_softmax(x, where=mask))


@pytest.mark.parametrize("f", [logitkit.softmax, logitkit.log_softmax])
def test_bad_masks_name_where(f):
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="where"):
        f(x, where=np.ones((3, 5), bool))
    with pytest.raises(ValueError, match="where"):
        f(x, where=np.ones((2, 3, 4), bool))  # would broadcast x, not the other way round
    with pytest.raises(TypeError, match="where"):
        f(x, where=np.ones((3, 4), np.int64))
    with pytest.raises(TypeError, match="where"):
        f(x, where=np.ones((3, 4), np.float32))
    with pytest.raises(TypeError, match="where"):
        f(x, where=[[True], [True, False]])
    with pytest.raises(TypeError, match="x"):
        f(np.zeros((3, 4), np.complex64), where=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="temperature"):
        f(x, where=np.ones((3, 4), bool), temperature=0.0)
    with pytest.raises(ValueError, match="out"):
        f(x, where=np.ones((3, 4), bool), out=np.zeros((4, 3)))
    with pytest.raises(np.exceptions.AxisError):
        f(x, axis=2, where=np.ones((3, 4), bool))


_rows = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(1, 70)),
    elements=st.floats(-50, 50, allow_nan=False, allow_infinity=False),
)


# The isa fixture only switches the backend, so sharing it across examples is safe.
_PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_PROPERTY
@given(x=_rows, data=st.data())
def test_property_sums_to_one_or_zero(isa, x, data):
    mask = data.draw(hnp.arrays(np.bool_, x.shape))
    for dtype in (np.float32, np.float64):
        y = logitkit.softmax(x.astype(dtype), where=mask)
        assert not np.isnan(y).any() and np.all(y >= 0)
        assert np.all(y[~mask] == 0)
        expected = mask.any(axis=-1).astype(np.float64)
        np.testing.assert_allclose(y.sum(axis=-1, dtype=np.float64), expected, rtol=0, atol=1e-5 if dtype == np.float32 else 1e-12)
        ly = logitkit.log_softmax(x.astype(dtype), where=mask)
        assert not np.isnan(ly).any() and np.all(ly[~mask] == -np.inf)
        np.testing.assert_allclose(np.exp(ly.astype(np.float64)), y, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-30)


@_PROPERTY
@given(x=_rows, temperature=st.floats(0.1, 10))
def test_property_all_true_mask_equals_unmasked(isa, x, temperature):
    mask = np.ones(x.shape, bool)
    for log in (False, True):
        f = logitkit.log_softmax if log else logitkit.softmax
        for dtype, tol in ((np.float32, 1e-6), (np.float64, 1e-14)):
            xd = x.astype(dtype)
            np.testing.assert_allclose(
                f(xd, where=mask, temperature=temperature), f(xd, temperature=temperature), rtol=tol, atol=tol
            )
