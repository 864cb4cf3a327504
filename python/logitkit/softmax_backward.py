"""Backward passes (vector-Jacobian products) of softmax and log_softmax, plain and masked: front
ends of cpp/include/logitkit/softmax_backward.h."""

from __future__ import annotations

from numpy.typing import ArrayLike, DTypeLike

from . import _arrays, _core
from ._arrays import Axis, FloatArray, Real, Result, check_temperature

__all__ = ["log_softmax_backward", "softmax_backward"]


def softmax_backward(
    y: ArrayLike,
    dy: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    where: ArrayLike | None = None,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """dL/dx for y = softmax(x / temperature, axis, where=where), given y and dy = dL/dy:
    dx = y * (dy - sum(y * dy, axis)) / temperature, fused in two passes over each row.

    y, dy: same shape (dy's shape is checked against y's). where: the forward's mask (bool,
    broadcastable; False = excluded): the sum runs over included positions and excluded ones get
    dx = 0, so a fully masked row gives zeros. out may be y or dy (in place). dtype: as softmax.
    """
    t = check_temperature(temperature)
    kernel = lambda yc, dyc, m, dxc, ax: _core.softmax_backward(yc, dyc, m, dxc, ax, t, False)  # noqa: E731
    return _arrays.map_rows(kernel, [(y, "y"), (dy, "dy")], axis, out, dtype, where=where, masked=True)


def log_softmax_backward(
    y: ArrayLike,
    dy: ArrayLike,
    axis: Axis = -1,
    *,
    temperature: Real = 1.0,
    where: ArrayLike | None = None,
    out: FloatArray | None = None,
    dtype: DTypeLike | None = None,
) -> Result:
    """dL/dx for y = log_softmax(x / temperature, axis, where=where), given y and dy = dL/dy:
    dx = (dy - exp(y) * sum(dy, axis)) / temperature, fused in two passes over each row.

    where: as in softmax_backward (sum over included positions; excluded positions get dx = 0).
    """
    t = check_temperature(temperature)
    kernel = lambda yc, dyc, m, dxc, ax: _core.softmax_backward(yc, dyc, m, dxc, ax, t, True)  # noqa: E731
    return _arrays.map_rows(kernel, [(y, "y"), (dy, "dy")], axis, out, dtype, where=where, masked=True)
