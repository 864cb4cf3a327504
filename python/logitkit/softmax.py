"""softmax, log_softmax and logsumexp: NumPy front ends of cpp/include/logitkit/softmax.h."""

from __future__ import annotations

import typing

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _arrays, _core
from ._arrays import Algorithm, Axis, FloatArray, Real, Result, check_temperature
from .masked_softmax import masked_log_softmax, masked_softmax

__all__ = ["log_softmax", "logsumexp", "softmax"]

ALGORITHMS: tuple[str, ...] = typing.get_args(Algorithm)


def softmax(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    algorithm: Algorithm = "auto",
    where: ArrayLike | None = None,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """softmax(x / temperature) along `axis`.

    axis: int, tuple of ints, or None (all elements). The default -1 follows PyTorch and JAX
    (scipy.special.softmax defaults to None).
    algorithm: "auto" (three_pass_reload while a row fits in half of L2, two_pass beyond),
    "three_pass_reload", "three_pass_recompute", "two_pass" (Dukhan & Ablavatski) or "online"
    (Milakov & Gimelshein). The three-pass algorithms and two_pass agree within about 12 units of
    2^-24 (float32) for |x|/T <= 64; online rounds x - max first, so it differs by about
    |x - max|/T units more (up to 37 at |x| <= 18). The largest entry of a near-collapse row
    (p >= 1 - 2^-8) is correctly rounded on every algorithm.
    out: array of the result shape; may be `x` itself (in place). Without dtype=, its (float)
    dtype sets the result dtype; with dtype=, it must match.
    dtype: output dtype (float16/bfloat16 are computed in float32; float64 in float64).
    where: bool mask broadcastable to x (False = excluded); see masked_softmax (algorithm ignored).
    A row containing NaN gives NaN; a row of all -inf gives NaN (as torch and SciPy).
    """
    t = check_temperature(temperature)
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm: expected one of {', '.join(ALGORITHMS)}; got {algorithm!r}")
    if where is not None:
        return masked_softmax(x, where, axis, temperature=t, out=out, dtype=dtype)
    if dtype is None and (y := _core.fast_target(x, axis, out)) is not None:  # as in map_rows_single
        _core.softmax(x, y, axis, t, algorithm)
        return y
    kernel = lambda xc, yc, ax: _core.softmax(xc, yc, ax, t, algorithm)  # noqa: E731
    return _arrays.map_rows_general(kernel, [(x, "x")], axis, out, dtype)


def log_softmax(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    where: ArrayLike | None = None,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """log(softmax(x / temperature)) along `axis`, computed as (x - max)/T - log(sum) with the
    max term kept out of the sum (log1p), so the largest entry keeps full relative precision.
    where: bool mask broadcastable to x (False = excluded); see masked_log_softmax."""
    t = check_temperature(temperature)
    if where is not None:
        return masked_log_softmax(x, where, axis, temperature=t, out=out, dtype=dtype)
    if dtype is None and (y := _core.fast_target(x, axis, out)) is not None:  # as in map_rows_single
        _core.log_softmax(x, y, axis, t)
        return y
    kernel = lambda xc, yc, ax: _core.log_softmax(xc, yc, ax, t)  # noqa: E731
    return _arrays.map_rows_general(kernel, [(x, "x")], axis, out, dtype)


def logsumexp(
    x: ArrayLike,
    axis: Axis = -1,
    *,
    b: ArrayLike | None = None,
    keepdims: bool = False,
    return_sign: bool = False,
) -> Result | tuple[Result, Result]:
    """log(sum(b * exp(x))) along `axis` with scipy.special.logsumexp's semantics for `b`
    (weights, broadcast against x; zero weights drop their element) and `return_sign`
    (returns (log|sum|, sign(sum)); without it a negative sum gives NaN).

    The default axis is -1 (SciPy's is None). float16/bfloat16 input is computed in float32 and
    returned in the input dtype; integer and bool input gives float64. A Python int/float/bool `b`
    is weak (NEP 50): it takes x's float type, so float32 x with b=2.0 stays float32, as in SciPy.
    A 0-d result is a NumPy scalar.
    """
    if b is None and keepdims is False and return_sign is False and (res := _core.fast_target(x, axis, None, True)) is not None:
        _core.logsumexp(x, res, axis, None, None)  # the common call (see fast_target)
        return _arrays.scalar_if_0d(res)
    keepdims = _arrays.check_flag(keepdims, "keepdims")
    return_sign = _arrays.check_flag(return_sign, "return_sign")
    arr = _arrays.as_array(x)
    dtypes = [arr.dtype]
    barr = None
    if b is not None:
        barr = _arrays.as_array(b, "b")
        if type(b) not in (int, float, bool):  # Python scalars are weak: they do not promote x
            dtypes.append(barr.dtype)
        try:
            shape = np.broadcast_shapes(arr.shape, barr.shape)
        except ValueError:
            raise ValueError(f"b: shape {barr.shape} cannot be broadcast to x's shape {arr.shape}") from None
        arr = np.broadcast_to(arr, shape)
        barr = np.broadcast_to(barr, shape)
    result = _arrays.result_dtype(*dtypes)
    compute = _arrays.compute_dtype(result)
    if arr.ndim == 0:  # one row of one element, and with keepdims a (1,) result, as SciPy's
        _arrays.check_scalar_axis(axis)
        arr, barr, axis = arr.reshape(1), None if barr is None else barr.reshape(1), 0
    inputs = [arr] if barr is None else [arr, barr]
    rows, ax, axes = _arrays.rows_along(axis, *(_arrays.to_compute(a, compute) for a in inputs))
    xc, bc = rows[0], (None if barr is None else rows[1])
    reduced_shape = xc.shape[:ax] + xc.shape[ax + 1 :]
    res = np.empty(reduced_shape, compute)
    sign = np.empty(reduced_shape, compute) if return_sign else None
    _core.logsumexp(xc, res, ax, bc, sign)
    res = _arrays.reduced_result(res, arr.shape, axes, keepdims, result)
    if return_sign:
        return res, _arrays.reduced_result(sign, arr.shape, axes, keepdims, result)
    return res
