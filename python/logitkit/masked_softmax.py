"""Masked softmax / log_softmax (NumPy ``where=`` masks): front ends of
cpp/include/logitkit/masked_softmax.h, also reached through ``softmax(x, where=mask)``."""

from __future__ import annotations

from numpy.typing import ArrayLike, DTypeLike

from . import _arrays, _core
from ._arrays import Axis, FloatArray, Real, Result, check_temperature

__all__ = ["masked_log_softmax", "masked_softmax"]


def masked_softmax(
    x: ArrayLike,
    where: ArrayLike | None,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """softmax(x / temperature) along `axis` over the positions where `where` is True; the same as
    ``softmax(x, axis, where=where)``.

    where: bool array broadcastable to x (NumPy convention: False = excluded); broadcast axes are
    read with stride 0, never materialized. None means no mask: the plain softmax (as
    ``softmax(x, where=None)``).
    Excluded positions give 0 whatever x holds there (inf, NaN). A row with every position
    excluded gives all zeros (the "safe softmax" of attention; torch's masked softmax gives NaN).
    Included positions behave as a plain softmax over them (a NaN among them gives NaN there).
    axis, out, dtype: as in softmax; out may be x itself.
    """
    t = check_temperature(temperature)
    if where is None:  # unmasked, as softmax(x, where=None)
        unmasked = lambda xc, yc, ax: _core.softmax(xc, yc, ax, t, "auto")  # noqa: E731
        return _arrays.map_rows_single(unmasked, x, axis, out, dtype)
    kernel = lambda xc, m, yc, ax: _core.masked_softmax(xc, m, yc, ax, t)  # noqa: E731
    return _arrays.map_rows(kernel, [(x, "x")], axis, out, dtype, where=where, masked=True)


def masked_log_softmax(
    x: ArrayLike,
    where: ArrayLike | None,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """log_softmax(x / temperature) along `axis` over the positions where `where` is True; the same
    as ``log_softmax(x, axis, where=where)``.

    Excluded positions give -inf; a row with every position excluded gives all -inf (the log of
    the all-zero masked softmax; torch gives NaN). Never NaN from masking. where=None means no
    mask: the plain log_softmax."""
    t = check_temperature(temperature)
    if where is None:  # unmasked, as log_softmax(x, where=None)
        unmasked = lambda xc, yc, ax: _core.log_softmax(xc, yc, ax, t)  # noqa: E731
        return _arrays.map_rows_single(unmasked, x, axis, out, dtype)
    kernel = lambda xc, m, yc, ax: _core.masked_log_softmax(xc, m, yc, ax, t)  # noqa: E731
    return _arrays.map_rows(kernel, [(x, "x")], axis, out, dtype, where=where, masked=True)
