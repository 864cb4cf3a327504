"""StableMax and log-StableMax (Prieto et al. 2025, "Grokking at the Edge of Numerical Stability")
with their vector-Jacobian products: NumPy front ends of cpp/include/logitkit/stablemax.h."""

from __future__ import annotations

from numpy.typing import ArrayLike, DTypeLike

from . import _arrays, _core
from ._arrays import Axis, FloatArray, Real, Result, check_temperature, map_rows_single

__all__ = ["log_stablemax", "log_stablemax_backward", "stablemax", "stablemax_backward"]


def stablemax(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """StableMax of x / temperature along `axis`: s(x) / sum(s(x)) with s(x) = 1 + x for x >= 0
    and 1 / (1 - x) for x < 0. Needs no max subtraction and no exp.

    axis: int, tuple of ints or None (all elements). out: result-shaped array, may be `x` itself.
    dtype: output dtype (float16/bfloat16 are computed in float32, float64 in float64).
    x / temperature is computed as x * (1 / temperature), as in softmax.

    Special values, per row: NaN anywhere gives a NaN row; -inf entries get 0 and a row of only
    -inf entries is NaN (0/0, as softmax); +inf entries get NaN and the other entries of that row
    0 (s / S with S = inf). Finite rows never overflow, even at x ~ 3e38: the row sum is rescaled
    by a power of two when it leaves [2^-64, 2^64) (float32) or [2^-512, 2^512) (float64), so only
    outputs that are themselves subnormal can lose precision. Rows where x / temperature itself
    overflows (temperature < 1, |x| near the largest float) are evaluated with explicit exponents
    (the limit of the math, e.g. [1, 1.7e-39] for [3e38, 0] at temperature 0.5), never NaN.
    """
    t = check_temperature(temperature)
    return map_rows_single(lambda xc, yc, ax: _core.stablemax(xc, yc, ax, t), x, axis, out, dtype)


def log_stablemax(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """log(stablemax(x / temperature)) along `axis`, within 3 ulp at any magnitude (measured
    against mpmath): log(p) where p is normal, -log1p(rest / s_top) for the largest entry (p near
    1), sign(x) log1p(|x|) - log(sum s(x)) below the normal range. -inf entries give -inf; other
    special values as in `stablemax`."""
    t = check_temperature(temperature)
    return map_rows_single(lambda xc, yc, ax: _core.log_stablemax(xc, yc, ax, t), x, axis, out, dtype)


def stablemax_backward(
    x: ArrayLike,
    dy: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """Vector-Jacobian product of `stablemax` with respect to x: given the upstream gradient dy
    (x's shape), returns dx_i = s'(x_i) / S * (dy_i - sum_j p_j dy_j) / temperature, where
    p = stablemax(x), S = sum s(x) and s'(x) = 1 (x >= 0), 1 / (1 - x)^2 (x < 0), with x already
    divided by the temperature. StableMax's Jacobian depends on x, not only on p, so the API takes x.
    out may be `x` or `dy` itself."""
    t = check_temperature(temperature)
    return _arrays.map_rows(
        lambda xc, dc, oc, ax: _core.stablemax_backward(xc, dc, oc, ax, t),
        [(x, "x"), (dy, "dy")],
        axis,
        out,
        dtype,
    )


def log_stablemax_backward(
    x: ArrayLike,
    dy: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """Vector-Jacobian product of `log_stablemax` with respect to x:
    dx_i = (s'(x_i) / s(x_i) dy_i - s'(x_i) / S sum_j dy_j) / temperature (see `stablemax_backward`
    for the notation). out may be `x` or `dy` itself."""
    t = check_temperature(temperature)
    return _arrays.map_rows(
        lambda xc, dc, oc, ax: _core.log_stablemax_backward(xc, dc, oc, ax, t),
        [(x, "x"), (dy, "dy")],
        axis,
        out,
        dtype,
    )
