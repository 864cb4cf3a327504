"""sparsemax ops: NumPy front ends of cpp/include/logitkit/sparsemax.h (sparsemax, entmax-1.5,
entmax-bisect and their backward passes)."""

from __future__ import annotations

import math

from typing import SupportsIndex

from numpy.typing import ArrayLike, DTypeLike

from . import _arrays, _core
from ._arrays import Axis, FloatArray, Real, Result, check_temperature, map_rows_single

__all__ = [
    "entmax15",
    "entmax15_backward",
    "entmax_bisect",
    "entmax_bisect_backward",
    "sparsemax",
    "sparsemax_backward",
]


def _check_alpha(alpha) -> float:
    a = _arrays.real_scalar(alpha, "alpha", "a finite number >= 1")
    if not (math.isfinite(a) and a >= 1.0):
        raise ValueError(f"alpha: must be a finite number >= 1 (1 is softmax, 2 is sparsemax), got {alpha!r}")
    return a


def _check_n_iter(n_iter) -> int:
    n = _arrays.int_scalar(n_iter, "n_iter")
    if not 1 <= n <= 2**31 - 1:
        raise ValueError(f"n_iter: must be >= 1, got {n_iter!r}")
    return n


def sparsemax(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """Sparsemax (Martins & Astudillo, 2016) of x / temperature along `axis`: the Euclidean
    projection onto the probability simplex, y = max(x/T - tau, 0) with sum(y) = 1.

    Exact: tau is the closed form on the support, found without sorting the row (only the entries
    within 1 of the max are examined). Entries off the support are exactly 0; smaller
    temperatures give sparser outputs.
    axis: int, tuple of ints or None. out: may be `x` itself. dtype: output dtype (float16 and
    bfloat16 are computed in float32).
    Special values: a NaN in the row, or a row of only -inf, gives a NaN row; +inf entries
    (including x/T overflowing) share the mass equally; -inf entries get 0.
    """
    t = check_temperature(temperature)
    return map_rows_single(lambda xc, yc, ax: _core.sparsemax(xc, yc, ax, t), x, axis, out, dtype)


def entmax15(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """1.5-entmax (Peters, Niculae & Martins, 2019) of x / temperature along `axis`, with the
    entmax package's convention y = max(x/(2T) - tau, 0)**2, sum(y) = 1.

    Exact (closed form on the support, no sort of the row); exactly 0 off the support. Same
    axis/out/dtype conventions and special values as :func:`sparsemax`.
    """
    t = check_temperature(temperature)
    return map_rows_single(lambda xc, yc, ax: _core.entmax15(xc, yc, ax, t), x, axis, out, dtype)


def entmax_bisect(
    x: ArrayLike,
    alpha: Real = 1.5,
    axis: Axis = -1,
    *,
    n_iter: SupportsIndex = 50,
    temperature: Real = 1.0,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """alpha-entmax of x / temperature by bisection, as ``entmax.entmax_bisect``:
    y = max((alpha-1) x/T - tau, 0) ** (1/(alpha-1)) with tau from at most `n_iter` bisection
    steps, then normalized to sum 1.

    alpha: float >= 1. alpha == 1 is softmax (the limit), 1.5 agrees with :func:`entmax15` and 2
    with :func:`sparsemax` to the bisection's precision. alpha < 1 or non-finite raises
    ValueError. Bisection stops early once the interval is below the precision of tau (the
    result is what the remaining steps would give). Evaluated as exp(log1p((alpha-1) w)/(alpha-1))
    with tau = (alpha-1)(max + theta) - 1, w = x/T - max - theta, so it keeps softmax's precision
    and tends to softmax continuously as alpha -> 1. Special values as :func:`sparsemax`.
    """
    a = _check_alpha(alpha)
    k = _check_n_iter(n_iter)
    t = check_temperature(temperature)
    return map_rows_single(lambda xc, yc, ax: _core.entmax_bisect(xc, yc, ax, t, a, k), x, axis, out, dtype)


def sparsemax_backward(
    y: ArrayLike,
    dy: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """Vector-Jacobian product of :func:`sparsemax` given its output `y` and the upstream
    gradient `dy`: on the support S = {y > 0}, dx = (dy - mean_S(dy)) / temperature, and 0
    elsewhere. `temperature` must match the forward call (it scales the gradient with respect to
    x). NaN in dy propagates as in autograd through the entmax package."""
    t = check_temperature(temperature)
    return _arrays.map_rows(
        lambda yc, dc, oc, ax: _core.sparsemax_backward(yc, dc, oc, ax, t),
        [(y, "y"), (dy, "dy")],
        axis,
        out,
        dtype,
    )


def entmax15_backward(
    y: ArrayLike,
    dy: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """Vector-Jacobian product of :func:`entmax15`: with g = sqrt(y),
    dx = (g dy - g sum(g dy) / sum(g)) / temperature."""
    t = check_temperature(temperature)
    return _arrays.map_rows(
        lambda yc, dc, oc, ax: _core.entmax15_backward(yc, dc, oc, ax, t),
        [(y, "y"), (dy, "dy")],
        axis,
        out,
        dtype,
    )


def entmax_bisect_backward(
    y: ArrayLike,
    dy: ArrayLike,
    alpha: Real = 1.5,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """Vector-Jacobian product of :func:`entmax_bisect` (with respect to x, not alpha): with
    g = y**(2 - alpha) on y > 0 and 0 elsewhere, dx = (g dy - g sum(g dy) / sum(g)) / temperature.
    alpha == 1 gives softmax's VJP, 2 sparsemax's."""
    a = _check_alpha(alpha)
    t = check_temperature(temperature)
    return _arrays.map_rows(
        lambda yc, dc, oc, ax: _core.entmax_bisect_backward(yc, dc, oc, ax, a, t),
        [(y, "y"), (dy, "dy")],
        axis,
        out,
        dtype,
    )
