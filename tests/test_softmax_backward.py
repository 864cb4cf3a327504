"""softmax_backward / log_softmax_backward (plain and masked) against torch.autograd in float64 and
against central finite differences of an independent NumPy forward."""

from __future__ import annotations

import logitkit
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

BF16 = np.dtype(__import__("ml_dtypes").bfloat16)
SIZES = [1, 2, 3, 5, 8, 9, 16, 17, 31, 33, 64, 100, 513, 1025]
OPS = ["softmax", "log_softmax"]


def backward(op):
    return logitkit.softmax_backward if op == "softmax" else logitkit.log_softmax_backward


def torch_vjp(op, x, dy, mask=None, temperature=1.0):
    """(y, dx) from torch.autograd in float64; masked = masked_fill(~mask, -inf) before the op.
    Fully masked rows (NaN in torch) are set to our definition: y = 0 / -inf, dx = 0."""
    xt = torch.tensor(np.ascontiguousarray(x), dtype=torch.float64, requires_grad=True)
    z = (
        xt
        if mask is None
        else xt.masked_fill(~torch.from_numpy(np.broadcast_to(mask, x.shape).copy()), float("-inf"))
    )
    fn = torch.softmax if op == "softmax" else torch.log_softmax
    y = fn(z / temperature, dim=-1)
    (dx,) = torch.autograd.grad(y, xt, torch.tensor(np.ascontiguousarray(dy), dtype=torch.float64))
    y, dx = y.detach().numpy().copy(), dx.numpy().copy()
    if mask is not None:
        dead = ~np.broadcast_to(mask, x.shape).any(axis=-1)
        y[dead] = 0.0 if op == "softmax" else -np.inf
        dx[dead] = 0.0
    return y, dx


def tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}


def masked_dy(dy, mask):
    """torch's log_softmax VJP sums dy over every position, masked ones included; ours treats the
    excluded outputs as constants and ignores dy there. Zeroing dy there makes the two agree."""
    return np.where(mask, dy, 0.0)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_plain_matches_torch_autograd(isa, op, dtype, n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((5, n)) * 2
    dy = rng.standard_normal((5, n))
    y, ref = torch_vjp(op, x, dy)
    dx = backward(op)(y.astype(dtype), dy.astype(dtype))
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, ref, **tol(dtype))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_masked_matches_torch_autograd(isa, op, dtype, n):
    rng = np.random.default_rng(100 + n)
    x = rng.standard_normal((6, n)) * 2
    mask = rng.random((6, n)) < 0.6
    mask[0] = False
    mask[1] = True
    mask[2] = False
    mask[2, -1] = True
    dy = masked_dy(rng.standard_normal((6, n)), mask)
    y, ref = torch_vjp(op, x, dy, mask)
    dx = backward(op)(y.astype(dtype), dy.astype(dtype), where=mask)
    np.testing.assert_allclose(dx, ref, **tol(dtype))
    assert np.all(dx[~mask] == 0) and np.all(dx[0] == 0)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("temperature", [0.3, 1.0, 4.0])
@pytest.mark.parametrize("masked", [False, True])
def test_temperature_scales_by_inverse(isa, op, temperature, masked):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 23))
    mask = rng.random((4, 23)) < 0.5 if masked else None
    dy = rng.standard_normal((4, 23)) if mask is None else masked_dy(rng.standard_normal((4, 23)), mask)
    y, ref = torch_vjp(op, x, dy, mask, temperature)
    dx = backward(op)(y, dy, temperature=temperature, where=mask)
    np.testing.assert_allclose(dx, ref, **tol(np.float64))


def np_forward(op, x, mask=None, temperature=1.0):
    z = x / temperature
    if mask is not None:
        z = np.where(mask, z, -np.inf)
    z = z - np.max(z, axis=-1, keepdims=True)
    lse = np.log(np.sum(np.exp(z), axis=-1, keepdims=True))
    out = z - lse
    return np.exp(out) if op == "softmax" else np.where(np.isfinite(out), out, 0.0)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("masked", [False, True])
def test_finite_differences(isa, op, masked):
    """dx_i = d/dx_i sum(dy * f(x)), by central differences of a float64 NumPy forward. The
    masked log_softmax objective drops the (constant) excluded outputs."""
    rng = np.random.default_rng(11)
    shape, temperature = (3, 7), 1.7
    x = rng.standard_normal(shape)
    mask = rng.random(shape) < 0.6 if masked else None
    if masked:
        mask[:, 0] = True
    dy = rng.standard_normal(shape)
    objective = lambda v: np.sum(dy * np_forward(op, v, mask, temperature) * (1 if mask is None else mask))  # noqa: E731
    h = 1e-6
    fd = np.zeros(shape)
    for idx in np.ndindex(shape):
        e = np.zeros(shape)
        e[idx] = h
        fd[idx] = (objective(x + e) - objective(x - e)) / (2 * h)
    y = (logitkit.softmax if op == "softmax" else logitkit.log_softmax)(
        x, temperature=temperature, where=mask
    )
    dx = backward(op)(y, dy, temperature=temperature, where=mask)
    np.testing.assert_allclose(dx, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize(
    "layout",
    ["axis0", "axis1_3d", "transposed", "reversed", "every_other", "tuple_axes", "none", "nonuniform_rows"],
)
@pytest.mark.parametrize("masked", [False, True])
def test_strides_and_axes(isa, op, layout, masked):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((6, 10, 24))
    mask = rng.random(x.shape) < 0.6 if masked else np.ones(x.shape, bool)
    mask[0, :, 0] = False if masked else True
    dy = masked_dy(rng.standard_normal(x.shape), mask)
    sel = {
        "axis0": (np.s_[:, 0, :], 0),
        "axis1_3d": (np.s_[:, :, :], 1),
        "transposed": (np.s_[0], -1),
        "reversed": (np.s_[:, ::-1, ::-1], -1),
        "every_other": (np.s_[:, ::3, ::2], -1),
        "tuple_axes": (np.s_[:, :, :], (0, 2)),
        "none": (np.s_[:, :, :], None),
        "nonuniform_rows": (np.s_[:, 1:9], -1),
    }[layout]
    xs, ms, dys = x[sel[0]], mask[sel[0]], dy[sel[0]]
    axis = sel[1]
    if layout == "transposed":
        xs, ms, dys = xs.T, ms.T, dys.T
    # Reference: move the reduced axes last, flatten them, and ask torch.
    axes = tuple(range(xs.ndim)) if axis is None else (axis if isinstance(axis, tuple) else (axis % xs.ndim,))
    k = len(axes)
    move = lambda a: np.moveaxis(a, axes, range(a.ndim - k, a.ndim))  # noqa: E731
    flat = lambda a: move(a).reshape(move(a).shape[: a.ndim - k] + (-1,))  # noqa: E731
    y, ref = torch_vjp(op, flat(xs), flat(dys), flat(ms) if masked else None)
    ref = np.moveaxis(ref.reshape(move(xs).shape), range(xs.ndim - k, xs.ndim), axes)
    y = np.moveaxis(y.reshape(move(xs).shape), range(xs.ndim - k, xs.ndim), axes)
    dx = backward(op)(y, dys, axis, where=ms if masked else None)
    np.testing.assert_allclose(dx, ref, **tol(np.float64))
    dx32 = backward(op)(y.astype(np.float32), dys.astype(np.float32), axis, where=ms if masked else None)
    np.testing.assert_allclose(dx32, ref, **tol(np.float32))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mask_shape", [(33,), (1, 33), (7, 1), (), (7, 33)])
def test_broadcast_mask(isa, op, mask_shape):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((7, 33))
    mask = rng.random(mask_shape) < 0.5
    full = np.broadcast_to(mask, x.shape)
    dy = masked_dy(rng.standard_normal(x.shape), full)
    y, ref = torch_vjp(op, x, dy, full)
    np.testing.assert_allclose(backward(op)(y, dy, where=mask), ref, **tol(np.float64))
    np.testing.assert_allclose(
        backward(op)(y.T, dy.T, 0, where=np.broadcast_to(mask, x.shape).T), ref.T, **tol(np.float64)
    )


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_excluded_positions_ignore_special_values(isa, op, dtype):
    """dy and y at excluded positions never reach the result, even as inf or NaN."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((5, 40))
    mask = rng.random(x.shape) < 0.5
    mask[4] = False
    dy = masked_dy(rng.standard_normal(x.shape), mask)
    y, ref = torch_vjp(op, x, dy, mask)
    specials = np.array([np.inf, -np.inf, np.nan])
    y_bad = np.where(mask, y, specials[rng.integers(0, 3, x.shape)]).astype(dtype)
    dy_bad = np.where(mask, dy, specials[rng.integers(0, 3, x.shape)]).astype(dtype)
    dx = backward(op)(y_bad, dy_bad, where=mask)
    assert not np.isnan(dx).any()
    np.testing.assert_allclose(dx, ref, **tol(dtype))


@pytest.mark.parametrize("op", OPS)
def test_special_values_propagate_when_included(isa, op):
    y = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5]])
    dy = np.array([[np.nan, 1.0, 2.0], [np.inf, 1.0, 2.0]])
    dx = backward(op)(y if op == "softmax" else np.log(y), dy)
    assert np.isnan(dx[0]).all()  # NaN enters the row sum
    assert not np.isfinite(dx[1]).all()


@pytest.mark.parametrize("op", OPS)
def test_out_in_place_and_dtypes(isa, op):
    rng = np.random.default_rng(15)
    x = rng.standard_normal((8, 19))
    dy = rng.standard_normal(x.shape)
    y, ref = torch_vjp(op, x, dy)
    f = backward(op)
    out = np.empty_like(y)
    assert f(y, dy, out=out) is out
    np.testing.assert_allclose(out, ref, **tol(np.float64))
    yy, dd = y.copy(), dy.copy()
    assert f(yy, dd, out=dd) is dd  # overwrite dy
    np.testing.assert_allclose(dd, ref, **tol(np.float64))
    yy, dd = y.copy(), dy.copy()
    assert f(yy, dd, out=yy) is yy  # overwrite y
    np.testing.assert_allclose(yy, ref, **tol(np.float64))
    yf, df = np.asfortranarray(y), np.asfortranarray(dy)
    assert f(yf, df, out=df) is df  # in place through the strided (gather/scatter) path
    np.testing.assert_allclose(df, ref, **tol(np.float64))
    d32 = f(y.astype(np.float32), dy.astype(np.float32), dtype=np.float64)
    assert d32.dtype == np.float64
    np.testing.assert_allclose(d32, ref, **tol(np.float32))
    mixed = f(y.astype(np.float32), dy)  # float32 with float64 promotes to float64
    assert mixed.dtype == np.float64
    np.testing.assert_allclose(mixed, ref, **tol(np.float32))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [np.float16, BF16])
def test_reduced_precision(isa, op, dtype):
    rng = np.random.default_rng(16)
    x = rng.standard_normal((4, 30))
    mask = rng.random(x.shape) < 0.7
    dy = masked_dy(rng.standard_normal(x.shape), mask)
    yq, dyq = np_forward(op, x, mask).astype(dtype), dy.astype(dtype)
    if op == "log_softmax":
        yq = np.where(mask, yq, -np.inf).astype(dtype)
    dx = backward(op)(yq, dyq, where=mask)
    assert dx.dtype == dtype
    # Reference from the same rounded inputs, in float64.
    y64, dy64 = yq.astype(np.float64), dyq.astype(np.float64)
    if op == "softmax":
        ref = np.where(mask, y64 * (dy64 - np.sum(np.where(mask, y64 * dy64, 0), -1, keepdims=True)), 0)
    else:
        ref = np.where(mask, dy64 - np.exp(y64) * np.sum(np.where(mask, dy64, 0), -1, keepdims=True), 0)
    eps = float(np.finfo(np.float16).eps) if dtype == np.float16 else 2.0**-7
    np.testing.assert_allclose(dx.astype(np.float64), ref, rtol=2 * eps, atol=2 * eps)


@pytest.mark.parametrize("op", OPS)
def test_empty_and_scalar(isa, op):
    f = backward(op)
    assert f(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 4)
    assert f(np.zeros((4, 0)), np.zeros((4, 0)), where=np.ones((4, 0), bool)).shape == (4, 0)
    y0 = 1.0 if op == "softmax" else 0.0  # a one-element softmax is constant: zero gradient
    assert f(np.float64(y0), np.float64(3.0)) == 0.0
    assert f(np.float64(y0), np.float64(3.0), where=False) == 0.0


@pytest.mark.parametrize("op", OPS)
def test_thread_count_does_not_change_bits(op):
    rng = np.random.default_rng(17)
    y = rng.random((300, 777)).astype(np.float32)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    mask = rng.random(y.shape) < 0.5
    before = logitkit.get_num_threads()
    try:
        logitkit.set_num_threads(1)
        a = backward(op)(y, dy, where=mask), backward(op)(y, dy)
        logitkit.set_num_threads(2)
        b = backward(op)(y, dy, where=mask), backward(op)(y, dy)
    finally:
        logitkit.set_num_threads(before)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("op", OPS)
def test_bad_input_names_the_argument(op):
    f = backward(op)
    y = np.zeros((3, 4))
    with pytest.raises(ValueError, match="dy"):
        f(y, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="dy"):
        f(y, np.zeros((4,)))  # no broadcasting between y and dy
    with pytest.raises(ValueError, match="where"):
        f(y, y, where=np.ones((3, 5), bool))
    with pytest.raises(TypeError, match="where"):
        f(y, y, where=np.ones((3, 4), np.uint8))
    with pytest.raises(TypeError, match="dy"):
        f(y, np.zeros((3, 4), np.complex128))
    with pytest.raises(TypeError, match="y"):
        f(np.zeros((3, 4), object), y)
    with pytest.raises(ValueError, match="temperature"):
        f(y, y, temperature=-1.0)
    with pytest.raises(ValueError, match="out"):
        f(y, y, out=np.zeros((3, 3)))
    with pytest.raises(TypeError, match="out"):
        f(y, y, out=np.zeros((3, 4), np.int32))
    with pytest.raises(np.exceptions.AxisError):
        f(y, y, axis=3)


_PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_x = hnp.arrays(
    np.float64, st.tuples(st.integers(1, 5), st.integers(1, 70)), elements=st.floats(-30, 30, allow_nan=False)
)


@_PROPERTY
@given(x=_x, data=st.data())
def test_property_gradient_sums_to_zero(isa, x, data):
    """softmax outputs sum to a constant, so the VJP is orthogonal to the ones vector (also over the
    included positions of a masked row); log_softmax likewise since sum(exp(y)) = 1."""
    mask = data.draw(hnp.arrays(np.bool_, x.shape))
    dy = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-10, 10)))
    for op in OPS:
        for where in (None, mask):
            y = (logitkit.softmax if op == "softmax" else logitkit.log_softmax)(x, where=where)
            dx = backward(op)(y, dy, where=where)
            assert not np.isnan(dx).any()
            scale = 1 + np.abs(dy).sum(axis=-1)
            assert np.all(np.abs(dx.sum(axis=-1)) <= 1e-12 * scale)
            if where is not None:
                assert np.all(dx[~mask] == 0)


@_PROPERTY
@given(x=_x, data=st.data())
def test_property_all_true_mask_equals_unmasked(isa, x, data):
    dy = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(-10, 10)))
    for op in OPS:
        for dtype, t in ((np.float32, 1e-6), (np.float64, 1e-15)):
            y = (logitkit.softmax if op == "softmax" else logitkit.log_softmax)(x.astype(dtype))
            a = backward(op)(y, dy.astype(dtype), where=np.ones(x.shape, bool))
            b = backward(op)(y, dy.astype(dtype))
            np.testing.assert_allclose(a, b, rtol=t, atol=t * (1 + np.abs(dy).max()))


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_streamed_output_equals_cached_output(isa, log, masked):
    # dx of at least the last-level cache (32 MiB here) is written with non-temporal stores; the
    # values must equal, bit for bit, those of smaller calls, also when out starts misaligned.
    rng = np.random.default_rng(11)
    n = 4099
    rows = (40 << 20) // 4 // n + 1
    y = rng.random((rows, n), dtype=np.float32)
    dy = rng.standard_normal((rows, n), dtype=np.float32)
    where = rng.random((rows, n)) < 0.7 if masked else None
    op = logitkit.log_softmax_backward if log else logitkit.softmax_backward
    buf = np.empty(rows * n + 16, np.float32)
    out = buf[3 : 3 + rows * n].reshape(rows, n)
    op(y, dy, where=where, out=out)
    piece = 64
    expected = np.concatenate(
        [
            op(y[r : r + piece], dy[r : r + piece], where=None if where is None else where[r : r + piece])
            for r in range(0, rows, piece)
        ]
    )
    np.testing.assert_array_equal(out.view(np.uint32), expected.view(np.uint32))
