"""Fused Shannon entropy of softmax(logits) and the Softmax Collapse fraction: NumPy front ends of
cpp/include/logitkit/entropy.h."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _arrays, _core
from ._arrays import Axis, Real, Result, check_temperature

__all__ = ["collapse_fraction", "entropy"]


def entropy(
    logits: ArrayLike, axis: Axis = -1, *, temperature: Real = 1.0, keepdims: bool = False
) -> Result:
    """Shannon entropy (nats) of softmax(logits / temperature) along `axis`, fused: one max pass
    and one pass accumulating sum(e^z) and sum(z e^z) with z = (x - max) / T, so no probability
    array is formed. H = log Z - sum(z e^z) / Z, with the max entries kept out of Z's sum, so
    nearly one-hot rows keep full relative precision and exactly one-hot rows (every other entry
    underflows) give exactly 0; uniform rows give log(n).

    axis: int, tuple of ints or None. float16/bfloat16 logits are computed in float32 and the
    result returned in their dtype; integer/bool logits give float64.
    A row that is empty, all -inf, or contains +inf or NaN gives NaN.
    """
    t = check_temperature(temperature)
    if keepdims is False and (res := _core.fast_target(logits, axis, None, True)) is not None:
        _core.entropy(logits, res, axis, t)  # the common call (see fast_target)
        return _arrays.scalar_if_0d(res)
    keepdims = _arrays.check_flag(keepdims, "keepdims")
    arr = _arrays.as_array(logits, "logits")
    result = _arrays.result_dtype(arr.dtype)
    compute = _arrays.compute_dtype(result)
    (xc,), ax, axes = _arrays.rows_along(axis, _arrays.to_compute(arr, compute))
    res = np.empty(xc.shape[:ax] + xc.shape[ax + 1 :], compute)
    _core.entropy(xc, res, ax, t)
    return _arrays.reduced_result(res, arr.shape, axes, keepdims, result)


def collapse_fraction(logits: ArrayLike, axis: Axis = -1, dtype: DTypeLike = np.float32) -> float:
    """Fraction of rows (along `axis`) whose softmax computed in `dtype` gives probability exactly
    1.0 to the maximum: the "Softmax Collapse" of Prieto et al. (2025), where the gradient of
    cross-entropy at that row vanishes.

    Definition: logits are first rounded to `dtype`; a row collapses exactly when
    ``logitkit.softmax`` of it (in `dtype`: computed in float32 and rounded for float16 and
    bfloat16) has a largest entry of exactly 1.0, so ``collapse_fraction(x) ==
    np.mean(softmax(x).max(axis) == 1)`` by construction. softmax's dominant entry is correctly
    rounded: with R the sum of exp(x_j - max) over the other entries, p_max = 1 / (1 + R) is 1.0
    when R is below about 2^-25 (float32), 2^-54 (float64), 2^-12 (float16), 2^-9 (bfloat16).
    Rows with NaN, +inf, tied maxima, only -inf, or no entries never collapse. Returns NaN for an
    array with no rows.
    """
    arr = _arrays.as_array(logits, "logits")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: not a dtype: {dtype!r}") from None
    bf16 = _arrays.bfloat16_dtype()
    if bf16 is not None and dt == bf16:
        name = "bfloat16"
    elif dt in (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16)):
        name = dt.name
    else:
        raise TypeError(f"dtype: unsupported dtype {dt}; accepted: float32, float64, float16, bfloat16")
    rounded = arr.astype(dt, copy=False)
    compute = np.float64 if name == "float64" else np.float32
    (xc,), ax, _ = _arrays.rows_along(axis, _arrays.to_compute(rounded, np.dtype(compute)))
    return float(_core.collapse_fraction(xc, ax, name))
