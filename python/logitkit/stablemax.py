"""StableMax and log-StableMax (Prieto et al. 2025, "Grokking at the Edge of Numerical Stability")
with their vector-Jacobian products: NumPy front ends of cpp/include/logitkit/stablemax.h."""

from __future__ import annotations

import numpy as np

from . import _arrays, _core
from .softmax import _check_temperature, _map_rows

__all__ = ["log_stablemax", "log_stablemax_backward", "stablemax", "stablemax_backward"]


def stablemax(x, axis=-1, *, temperature=1.0, out=None, dtype=None):
    """StableMax of x / temperature along `axis`: s(x) / sum(s(x)) with s(x) = 1 + x for x >= 0
    and 1 / (1 - x) for x < 0. Needs no max subtraction and no exp.

    axis: int, tuple of ints or None (all elements). out: result-shaped array, may be `x` itself.
    dtype: output dtype (float16/bfloat16 are computed in float32, float64 in float64).
    x / temperature is computed as x * (1 / temperature), as in softmax.

    Special values, per row: NaN anywhere gives a NaN row; -inf entries get 0 and a row of only
    -inf entries is NaN (0/0, as softmax); +inf entries get NaN and the other entries of that row
    0 (s / S with S = inf). Finite rows never overflow, even at x ~ 3e38: the row sum is rescaled
    by a power of two when it leaves [2^-64, 2^64) (float32) or [2^-512, 2^512) (float64), so only
    outputs that are themselves subnormal can lose precision.
    """
    t = _check_temperature(temperature)
    return _map_rows(lambda xc, yc, ax: _core.stablemax(xc, yc, ax, t), x, axis, out, dtype)


def log_stablemax(x, axis=-1, *, temperature=1.0, out=None, dtype=None):
    """log(stablemax(x / temperature)) along `axis`, computed as sign(x) log1p(|x|) - log(sum s(x))
    without forming the ratio, so tiny probabilities keep full relative precision. -inf entries
    give -inf; other special values as in `stablemax`."""
    t = _check_temperature(temperature)
    return _map_rows(lambda xc, yc, ax: _core.log_stablemax(xc, yc, ax, t), x, axis, out, dtype)


def stablemax_backward(x, dy, axis=-1, *, temperature=1.0, out=None, dtype=None):
    """Vector-Jacobian product of `stablemax` with respect to x: given the upstream gradient dy
    (x's shape), returns dx_i = s'(x_i) / S * (dy_i - sum_j p_j dy_j) / temperature, where
    p = stablemax(x), S = sum s(x) and s'(x) = 1 (x >= 0), 1 / (1 - x)^2 (x < 0), with x already
    divided by the temperature. StableMax's Jacobian depends on x, not only on p, so the API takes x.
    out may be `x` or `dy` itself."""
    t = _check_temperature(temperature)
    return _map_rows2(lambda xc, dc, oc, ax: _core.stablemax_backward(xc, dc, oc, ax, t), x, dy, axis, out, dtype)


def log_stablemax_backward(x, dy, axis=-1, *, temperature=1.0, out=None, dtype=None):
    """Vector-Jacobian product of `log_stablemax` with respect to x:
    dx_i = (s'(x_i) / s(x_i) dy_i - s'(x_i) / S sum_j dy_j) / temperature (see `stablemax_backward`
    for the notation). out may be `x` or `dy` itself."""
    t = _check_temperature(temperature)
    return _map_rows2(
        lambda xc, dc, oc, ax: _core.log_stablemax_backward(xc, dc, oc, ax, t), x, dy, axis, out, dtype
    )


def _map_rows2(kernel, x, dy, axis, out, dtype):
    """Runs kernel(x_compute, dy_compute, out_compute, axis) for an op of two same-shape inputs
    whose output has their shape."""
    arr = _arrays.as_array(x, "x")
    darr = _arrays.as_array(dy, "dy")
    if darr.shape != arr.shape:
        raise ValueError(f"dy: shape {darr.shape} does not match x's shape {arr.shape}")
    if out is not None and not isinstance(out, np.ndarray):
        raise TypeError(f"out: expected a numpy.ndarray, got {type(out).__name__}")
    result = _arrays.result_dtype(arr.dtype, darr.dtype, dtype=dtype, out=out)
    compute = _arrays.compute_dtype(result)
    if out is not None:
        _arrays.check_out(out, arr.shape, result)
    if arr.ndim == 0:  # a scalar is a one-element row
        if axis not in (None, 0, -1, ()):
            raise np.exceptions.AxisError(axis, 0, "axis")
        res = _map_rows2(kernel, arr.reshape(1), darr.reshape(1), 0, None, result).reshape(())
        if out is not None:
            np.copyto(out, res, casting="unsafe")
            return out
        return res
    axes = _arrays.normalize_axes(axis, arr.ndim)
    xc = _arrays.to_compute(arr, compute)
    dc = _arrays.to_compute(darr, compute)
    if len(axes) == 1:
        target = _arrays.writable_target(out, xc, compute)
        if target is not None and np.shares_memory(target, dc) and not _arrays.same_layout(target, dc):
            target = None
        if target is not None:
            kernel(xc, dc, target, axes[0])
            return target
        tmp = np.empty(arr.shape, compute)
        kernel(xc, dc, tmp, axes[0])
        return _arrays.finish(tmp, out, result)
    mx = _arrays.merge_axes(xc, axes)
    md = _arrays.merge_axes(dc, axes)
    tmp = np.empty(mx.shape, compute)
    kernel(mx, md, tmp, mx.ndim - 1)
    k = len(axes)
    moved_shape = np.moveaxis(np.empty(arr.shape, np.bool_), axes, range(arr.ndim - k, arr.ndim)).shape
    res = np.moveaxis(tmp.reshape(moved_shape), range(arr.ndim - k, arr.ndim), axes)
    return _arrays.finish(res, out, result)
