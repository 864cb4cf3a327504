"""Accuracy of the vector log and log1p (simd/math-inl.h) on every ISA, in ulp against
high-precision references (float64 for float32 results, long double or mpmath for float64)."""

from __future__ import annotations

import logitkit
import numpy as np
import pytest
from logitkit import _core

# Bounds stated in cpp/include/logitkit/math.h; the measured maxima are about 0.8 ulp.
MAX_ULP = 1.0

HAVE_EXTENDED = np.finfo(np.longdouble).nmant >= 63


def _run(fn, x):
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    fn(x, y)
    return y


def _ulp_error(y, ref_hp, dtype):
    """|y - ref| in units of the spacing of the reference rounded to `dtype`."""
    ref_hp = np.asarray(ref_hp, np.longdouble)
    spacing = np.spacing(np.abs(ref_hp.astype(dtype))).astype(np.longdouble)
    return np.abs(y.astype(np.longdouble) - ref_hp) / spacing


def _positive_float32(rng, n):
    """Uniform over the bit patterns of positive finite float32, denormals included."""
    return rng.integers(1, 0x7F800000, n, dtype=np.uint32).view(np.float32)


def _positive_float64(rng, n):
    return rng.integers(1, 0x7FF0000000000000, n, dtype=np.uint64).view(np.float64)


def _reference(fn_name, x):
    if x.dtype == np.float32:
        return getattr(np, fn_name)(x.astype(np.float64))
    if not HAVE_EXTENDED:
        pytest.skip("no 80-bit long double for a float64 reference")
    return getattr(np, fn_name)(x.astype(np.longdouble))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_ulp(isa, dtype):
    rng = np.random.default_rng(1)
    gen = _positive_float32 if dtype == np.float32 else _positive_float64
    x = np.concatenate(
        [
            gen(rng, 400_000),
            (1 + (rng.random(100_000) - 0.5) * 1e-3).astype(dtype),  # near 1: cancellation
            np.ldexp(1.0, np.arange(-140, 120)).astype(dtype),  # powers of two (exact k ln2)
            (np.sqrt(2) * (1 + np.linspace(-1e-6, 1e-6, 1001))).astype(dtype),  # reduction edge
        ]
    )
    x = x[np.isfinite(x) & (x > 0)]
    err = _ulp_error(_run(_core._log, x), _reference("log", x), dtype)
    assert err.max() <= MAX_ULP, (isa, float(err.max()), x[np.argmax(err)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log1p_ulp(isa, dtype):
    rng = np.random.default_rng(2)
    gen = _positive_float32 if dtype == np.float32 else _positive_float64
    x = np.concatenate(
        [
            gen(rng, 300_000),
            -(gen(rng, 300_000) % 1),  # (-1, 0]
            ((rng.random(100_000) - 0.5) * 1e-4).astype(dtype),  # tiny: u = 1 + x rounds a lot
            np.linspace(-0.999999, 3, 100_001).astype(dtype),
            np.ldexp(1.0, np.arange(-60, 100)).astype(dtype),
        ]
    ).astype(dtype)
    x = x[np.isfinite(x) & (x > -1)]
    err = _ulp_error(_run(_core._log1p, x), _reference("log1p", x), dtype)
    assert err.max() <= MAX_ULP, (isa, float(err.max()), x[np.argmax(err)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(isa, dtype):
    info = np.finfo(dtype)
    x = np.array([0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, 1.0, info.smallest_subnormal, info.max], dtype)
    y = _run(_core._log, x)
    assert y[0] == -np.inf and y[1] == -np.inf
    assert np.isnan(y[2]) and np.isnan(y[4]) and np.isnan(y[5])
    assert y[3] == np.inf and y[6] == 0.0
    np.testing.assert_allclose(y[7:], np.log(x[7:].astype(np.float64)), rtol=2 * info.eps)

    x = np.array([-1.0, -2.0, np.inf, -np.inf, np.nan, 0.0, 1e-30 if dtype == np.float32 else 1e-300, info.max], dtype)
    y = _run(_core._log1p, x)
    assert y[0] == -np.inf
    assert np.isnan(y[1]) and np.isnan(y[3]) and np.isnan(y[4])
    assert y[2] == np.inf and y[5] == 0.0
    assert y[6] == x[6]  # log1p(x) == x below half an ulp of 1
    np.testing.assert_allclose(y[7], np.log(np.float64(info.max)), rtol=2 * info.eps)


@pytest.mark.parametrize("n", list(range(1, 40)) + [63, 64, 65, 127, 129])
def test_every_tail_length(isa, n):
    """Masked tails give the same values as full vectors."""
    x = np.linspace(0.01, 50, n).astype(np.float32)
    ref = _run(_core._log, np.tile(x, 64)[: 64 * n]).reshape(64, n)[0]
    np.testing.assert_array_equal(_run(_core._log, x), ref)
    np.testing.assert_allclose(_run(_core._log1p, x), np.log1p(x.astype(np.float64)), rtol=2e-7)


def test_isas_agree_within_one_ulp():
    x = _positive_float32(np.random.default_rng(3), 100_000)
    outs = []
    for name in logitkit.available_isas():
        with logitkit.use_isa(name):
            outs.append(_run(_core._log, x))
    for y in outs[1:]:
        assert np.max(np.abs(y.view(np.int32).astype(np.int64) - outs[0].view(np.int32))) <= 1
