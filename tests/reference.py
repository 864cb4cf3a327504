"""Extended-precision NumPy references for the softmax core and the error bounds the tests hold
them to.

References are computed in np.longdouble (x87 80-bit on x86-64 Linux: 64-bit mantissa, so their own
error is ~2^-11 of a float64 kernel's) from the exact input values; where longdouble is just double
(e.g. macOS arm64) the bounds below also include the reference's own rounding (REF_EPS terms).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

ALGORITHMS = ("three_pass_reload", "three_pass_recompute", "two_pass", "online")
FLOATS = (np.float32, np.float64)

# Unit roundoff of the compute dtype.
EPS = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float64): 2.0**-53}
# Unit roundoff of the reference arithmetic.
REF = np.longdouble
REF_EPS = float(np.finfo(REF).eps) / 2
# Smallest subnormal: outputs that underflow into the subnormal range lose relative precision,
# so every comparison also allows a few of these absolutely.
DENORM = {np.dtype(np.float32): 2.0**-149, np.dtype(np.float64): 2.0**-1074}


def _row_max(z, axis):
    with np.errstate(invalid="ignore"):
        return np.max(z, axis=axis, keepdims=True)


def softmax(x, axis=-1, temperature=1.0):
    z = np.asarray(x, dtype=REF) / REF(temperature)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(z - _row_max(z, axis))
        return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1, temperature=1.0):
    """z - max - log(k + r) for k entries tied at the max and r the sum over the others, taken
    as log(k) + log1p(r / k) so that the max entry's tiny result (~ -r) keeps full precision."""
    z = np.asarray(x, dtype=REF) / REF(temperature)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = z - _row_max(z, axis)
        tied = s == 0
        k = np.sum(tied, axis=axis, keepdims=True).astype(REF)
        r = np.sum(np.where(tied, REF(0), np.exp(s)), axis=axis, keepdims=True)
        lse = np.where(k > 0, np.log(k) + np.log1p(r / np.maximum(k, 1)), np.log(r))
        return s - lse


def softmax_rtol(x, dtype, axis=-1, temperature=1.0):
    """Per-element relative error bound of a float32/float64 softmax.

    The dominant error is forming z = (x - max) * (1/T) (three-pass, online) or x * (1/T)
    (two_pass, which never subtracts the max): up to three roundings, each an absolute error of
    |z| eps in the exponent, i.e. a relative error of |z| eps in exp(z); |z| <= (|x| + |max|)/T.
    On top come a few ulp from the vectorized exp, the product with 1/sum and the sum itself
    (blocks of 512 in the compute dtype, combined in double: ~log2(512) roundings of positive
    terms at worst). Hence eps (64 + 3 (|x| + |max|) / T), plus the reference's own rounding.
    """
    eps = EPS[np.dtype(dtype)]
    a = np.abs(np.asarray(x, dtype=np.float64))
    spread = (a + _row_max(a, axis)) / temperature
    return eps * (64 + 3 * spread) + REF_EPS * (16 + 3 * spread)


def assert_softmax_close(actual, x, axis=-1, temperature=1.0, dtype=None):
    dtype = np.dtype(dtype or actual.dtype)
    ref = softmax(x, axis, temperature)
    rtol = softmax_rtol(x, dtype, axis, temperature)
    assert_close(actual, ref, rtol, 4 * DENORM[dtype])


def assert_log_softmax_close(actual, x, axis=-1, temperature=1.0, dtype=None):
    """Absolute error bound: log_softmax = (x - max)/T - lse; forming (x - max)/T is up to three
    roundings of its magnitude, the final subtraction one of |result|, and lse's own error is
    ~eps relative to the sum (log1p of the untied sum), plus the reference's rounding."""
    dtype = np.dtype(dtype or actual.dtype)
    ref = log_softmax(x, axis, temperature)
    a = np.abs(np.asarray(x, dtype=np.float64)) / temperature
    spread = a + _row_max(a, axis)
    size = 32 + 3 * spread + 4 * np.abs(ref.astype(np.float64))
    assert_close(actual, ref, 0.0, (EPS[dtype] + REF_EPS) * size)


# Short rows in blocks, pipelined rows, one long row split into chunks across threads.
HUGE_LOGIT_ROW_LENGTHS = [2, 37, 3000, (1 << 18) + 37]


def huge_logit_rows(dtype, rng, n):
    """Rows of n normal logits with the dtype's largest magnitudes planted, for temperatures > 1:
    x - max overflows while (x - max) / T does not (3 rows, 1 when long). Returns (rows,
    temperatures)."""
    big = np.finfo(dtype).max * np.asarray(0.9, dtype)
    x = (rng.standard_normal((3 if n < 1 << 18 else 1, n)) * 3).astype(dtype)
    x[:, 0] = -big
    x[:, n // 2] = big
    x[-1, n // 3] = -big / 2
    # 2: exp(-big) = 0 exactly; big / 80: c (x - max) = -144 in the shifted kernels;
    # big / 4: arguments near -8, unshifted in three_pass_reload, shifted in online and masked.
    return x, [2.0, float(big) / 80, float(big) / 4]


def assert_close_to_shifted_reference(actual, x, temperature, log=False, axis=-1):
    """softmax / log_softmax of x / T against the longdouble reference, with the error bound of
    rounding (x - max) once rather than softmax_rtol's (|x| + |max|) / T, which is vacuous near
    the largest floats: a relative error |x - max| / T eps in exp, or that much absolutely in
    log_softmax; plus the sum's error, which does not grow with the row length (block and chunk
    sums are combined in double, compensated for float64: simd/block_sum.h)."""
    dtype = np.dtype(actual.dtype)
    z = np.asarray(x, dtype=REF)
    gap = np.abs(z - _row_max(z, axis)) / REF(temperature)  # in REF: beyond float64's range
    if log:
        ref = log_softmax(x, axis, temperature)
        atol = (EPS[dtype] + REF_EPS) * (32 + 3 * gap + 4 * np.abs(ref))
        assert_close(actual, ref, 0.0, atol)
    else:
        ref = softmax(x, axis, temperature)
        assert_close(actual, ref, EPS[dtype] * (64 + 3 * gap) + REF_EPS * 16, 4 * DENORM[dtype])


def logsumexp(x, axis=-1, b=None):
    """logsumexp with the sign of the sum and the sum's condition number
    sum|b e^x| / |sum b e^x| (large where weights of both signs cancel)."""
    z = np.asarray(x, dtype=REF)
    w = np.ones_like(z) if b is None else np.broadcast_to(np.asarray(b, dtype=REF), z.shape)
    m = np.max(np.where(w != 0, z, REF(-np.inf)), axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, REF(0))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        terms = np.where(w != 0, w * np.exp(z - m), REF(0))
        s = np.sum(terms, axis=axis, keepdims=True)
        cond = np.sum(np.abs(terms), axis=axis, keepdims=True) / np.abs(s)
        lse = np.log(np.abs(s)) + m
    return np.squeeze(lse, axis), np.squeeze(np.sign(s), axis), np.squeeze(cond, axis).astype(np.float64)


def assert_logsumexp_close(actual, x, dtype, axis=-1, b=None):
    """|error| <= eps (16 + 4 |max| + 4 |lse| + 64 cond): the shift by the max and the final
    add are one rounding each of their magnitude; a relative error d of the sum is an absolute
    error d of its log, and d grows with the cancellation (cond) between signed weights."""
    ref, _, cond = logsumexp(x, axis, b)
    z = np.asarray(x, dtype=np.float64)
    big = np.max(np.abs(np.where(np.isfinite(z), z, 0.0)), axis=axis)
    r = np.abs(np.where(np.isfinite(ref), ref, 0).astype(np.float64))
    atol = (EPS[np.dtype(dtype)] + REF_EPS) * (16 + 4 * big + 4 * r + 64 * cond)
    assert_close(np.asarray(actual, dtype=np.float64), ref, 0.0, atol)


def assert_close(actual, ref, rtol, atol):
    """|actual - ref| <= rtol |ref| + atol elementwise; NaN and infinities must match exactly."""
    actual = np.asarray(actual)
    if actual.dtype.kind == "V":  # bfloat16 and other ml_dtypes widen through float32
        actual = actual.astype(np.float32)
    actual = actual.astype(REF)
    ref = np.asarray(ref, dtype=REF)
    assert actual.shape == ref.shape, (actual.shape, ref.shape)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(ref), err_msg="NaN positions differ")
    special = ~np.isfinite(ref)
    np.testing.assert_array_equal(actual[special], ref[special], err_msg="infinities differ")
    with np.errstate(invalid="ignore"):
        err = np.abs(actual - ref)
        bound = np.broadcast_to(rtol * np.abs(ref) + atol, ref.shape)
    bad = np.isfinite(ref) & ~(err <= bound)
    if bad.any():
        i = np.flatnonzero(bad.ravel())[0]
        raise AssertionError(
            f"{bad.sum()} of {bad.size} elements out of bounds; first at flat index {i}: "
            f"actual {actual.ravel()[i]!r}, reference {ref.ravel()[i]!r}, "
            f"error {err.ravel()[i]:.3e} > bound {bound.ravel()[i]:.3e}"
        )


def bits(a):
    """Bitwise view for identity checks (NaN payloads included)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint8)


def logits(rng, shape, dtype, scale=3.0):
    """Normal logits of standard deviation `scale`, rounded to `dtype`."""
    return (rng.standard_normal(shape) * scale).astype(dtype)


# Hypothesis settings and row strategy shared by the property tests.
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def rows(dtype, max_abs=50.0):
    """1-4 rows of 1-80 finite values in [-max_abs, max_abs], exactly representable in `dtype`."""
    width = 32 if dtype is np.float32 else 64
    return hnp.arrays(
        dtype,
        st.tuples(st.integers(1, 4), st.integers(1, 80)),
        elements=st.floats(-max_abs, max_abs, width=width),
    )
