"""Masked softmax / log_softmax (NumPy ``where=`` masks): front ends of
cpp/include/logitkit/masked_softmax.h, also reached through ``softmax(x, where=mask)``."""

from __future__ import annotations

import numpy as np

from . import _arrays, _core
from .softmax import _check_temperature

__all__ = ["masked_log_softmax", "masked_softmax"]


def as_mask(where, shape: tuple[int, ...], reference: str = "x") -> np.ndarray:
    """`where` (bool, broadcastable to `shape`) as a uint8 view of that shape. Broadcast axes keep
    stride 0 and nothing is copied for a bool ndarray."""
    try:
        m = np.asarray(where)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"where: cannot convert to an array ({exc})") from None
    if m.dtype != np.bool_:
        raise TypeError(f"where: expected a boolean mask (False = excluded), got dtype {m.dtype}")
    try:
        m = np.broadcast_to(m, shape)
    except ValueError:
        raise ValueError(f"where: shape {m.shape} cannot be broadcast to {reference}'s shape {tuple(shape)}") from None
    return m.view(np.uint8)


def map_rows_where(kernel, inputs, where, axis, out, dtype):
    """Runs kernel(*inputs_compute, mask_or_None, y_compute, axis) for an op whose output has the
    shape of its inputs. `inputs` is a sequence of (array_like, name), all of one shape; `where`
    (None or a bool mask) is broadcast to it. Same copy rules as softmax._map_rows."""
    names = [name for _, name in inputs]
    arrs = [_arrays.as_array(a, name) for a, name in inputs]
    shape = arrs[0].shape
    for a, name in zip(arrs[1:], names[1:]):
        if a.shape != shape:
            raise ValueError(f"{name}: shape {a.shape} does not match {names[0]}'s shape {shape}")
    if out is not None and not isinstance(out, np.ndarray):
        raise TypeError(f"out: expected a numpy.ndarray, got {type(out).__name__}")
    result = _arrays.result_dtype(*(a.dtype for a in arrs), dtype=dtype, out=out)
    compute = _arrays.compute_dtype(result)
    if out is not None:
        _arrays.check_out(out, shape, result)
    mask = None if where is None else as_mask(where, shape, names[0])
    if len(shape) == 0:  # a scalar is a one-element row, as in scipy.special
        if axis not in (None, 0, -1, ()):
            raise np.exceptions.AxisError(axis, 0, "axis")
        tmp = np.empty(1, compute)
        kernel(*(_arrays.to_compute(a.reshape(1), compute) for a in arrs), None if mask is None else mask.reshape(1),
               tmp, 0)
        return _arrays.finish(tmp.reshape(()), out, result)
    axes = _arrays.normalize_axes(axis, len(shape))
    cs = [_arrays.to_compute(a, compute) for a in arrs]
    if len(axes) == 1:
        if out is not None and all(_arrays.writable_target(out, c, compute) is not None for c in cs):
            kernel(*cs, mask, out, axes[0])
            return out
        tmp = np.empty(shape, compute)
        kernel(*cs, mask, tmp, axes[0])
        return _arrays.finish(tmp, out, result)
    merged = [_arrays.merge_axes(c, axes) for c in cs]
    mm = None if mask is None else _arrays.merge_axes(mask, axes)
    tmp = np.empty(merged[0].shape, compute)
    kernel(*merged, mm, tmp, merged[0].ndim - 1)
    k, nd = len(axes), len(shape)
    moved_shape = np.moveaxis(np.empty(shape, np.bool_), axes, range(nd - k, nd)).shape
    res = np.moveaxis(tmp.reshape(moved_shape), range(nd - k, nd), axes)
    return _arrays.finish(res, out, result)


def masked_softmax(x, where, axis=-1, *, temperature=1.0, out=None, dtype=None):
    """softmax(x / temperature) along `axis` over the positions where `where` is True; the same as
    ``softmax(x, axis, where=where)``.

    where: bool array broadcastable to x (NumPy convention: False = excluded); broadcast axes are
    read with stride 0, never materialized.
    Excluded positions give 0 whatever x holds there (inf, NaN). A row with every position
    excluded gives all zeros (the "safe softmax" of attention; torch's masked softmax gives NaN).
    Included positions behave as a plain softmax over them (a NaN among them gives NaN there).
    axis, out, dtype: as in softmax; out may be x itself.
    """
    t = _check_temperature(temperature)
    kernel = lambda xc, m, yc, ax: _core.masked_softmax(xc, m, yc, ax, t, False)  # noqa: E731
    return map_rows_where(kernel, [(x, "x")], where, axis, out, dtype)


def masked_log_softmax(x, where, axis=-1, *, temperature=1.0, out=None, dtype=None):
    """log_softmax(x / temperature) along `axis` over the positions where `where` is True; the same
    as ``log_softmax(x, axis, where=where)``.

    Excluded positions give -inf; a row with every position excluded gives all -inf (the log of
    the all-zero masked softmax; torch gives NaN). Never NaN from masking."""
    t = _check_temperature(temperature)
    kernel = lambda xc, m, yc, ax: _core.masked_softmax(xc, m, yc, ax, t, True)  # noqa: E731
    return map_rows_where(kernel, [(x, "x")], where, axis, out, dtype)
