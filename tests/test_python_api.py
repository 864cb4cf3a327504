"""The Python API's argument conventions, op by op: None and wrong types give errors naming the
argument (never pybind11's text), a broadcast out= is named `out`, 0-d results are NumPy scalars,
Python scalars are weak (NEP 50), scalar parameters accept NumPy scalars and 0-d arrays, and a
byte-swapped out= is written correctly. Values are checked against float64 NumPy closed forms."""

from __future__ import annotations

import contextlib
import inspect

import logitkit
import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import reference

# ---------------------------------------------------------------------------------------------
# float64 references (closed forms along the last axis)


def _stable_s(x):
    return np.where(x >= 0, 1.0 + x, 1.0 / (1.0 - x))


def _stable_ds(x):
    return np.where(x >= 0, 1.0, 1.0 / (1.0 - x) ** 2)


def _sparsemax(x):
    z = np.sort(x, axis=-1)[..., ::-1]
    k = np.arange(1, x.shape[-1] + 1)
    cs = np.cumsum(z, axis=-1)
    support = 1 + k * z > cs
    kz = support.sum(axis=-1, keepdims=True)
    tau = (np.take_along_axis(cs, kz - 1, axis=-1) - 1) / kz
    return np.maximum(x - tau, 0.0)


def _entmax15(x):  # Peters et al. 2019, Algorithm 2 (sorting), with z = x / 2
    z = x / 2
    zs = np.sort(z, axis=-1)[..., ::-1]
    k = np.arange(1, x.shape[-1] + 1)
    mean = np.cumsum(zs, axis=-1) / k
    mean_sq = np.cumsum(zs**2, axis=-1) / k
    delta = (1 - k * (mean_sq - mean**2)) / k
    tau = mean - np.sqrt(np.maximum(delta, 0))
    kz = (tau <= zs).sum(axis=-1, keepdims=True)
    tau_star = np.take_along_axis(tau, kz - 1, axis=-1)
    return np.maximum(z - tau_star, 0.0) ** 2


def _entmax_vjp(y, dy, alpha):
    g = np.where(y > 0, np.abs(y) ** (2 - alpha), 0.0)
    return g * dy - g * (g * dy).sum(-1, keepdims=True) / g.sum(-1, keepdims=True)


def _softmax(x):
    return reference.softmax(x).astype(np.float64)


def _log_softmax(x):
    return reference.log_softmax(x).astype(np.float64)


MASK = np.array([[True, False, True, True, False, True, True]] * 3)


def _masked_softmax(x):
    e = np.where(MASK, np.exp(x - np.where(MASK, x, -np.inf).max(-1, keepdims=True)), 0.0)
    return e / e.sum(-1, keepdims=True)


# name -> (call(f, inputs, **kw), inputs from x and dy, float64 reference from (x, dy))
OPS = {
    "softmax": (lambda f, a, **kw: f(a[0], **kw), lambda x, dy: (x,), lambda x, dy: _softmax(x)),
    "log_softmax": (lambda f, a, **kw: f(a[0], **kw), lambda x, dy: (x,), lambda x, dy: _log_softmax(x)),
    "masked_softmax": (lambda f, a, **kw: f(a[0], MASK, **kw), lambda x, dy: (x,), lambda x, dy: _masked_softmax(x)),
    "masked_log_softmax": (
        lambda f, a, **kw: f(a[0], MASK, **kw),
        lambda x, dy: (x,),
        lambda x, dy: np.log(_masked_softmax(x), where=MASK, out=np.full(MASK.shape, -np.inf)),
    ),
    "stablemax": (
        lambda f, a, **kw: f(a[0], **kw),
        lambda x, dy: (x,),
        lambda x, dy: _stable_s(x) / _stable_s(x).sum(-1, keepdims=True),
    ),
    "log_stablemax": (
        lambda f, a, **kw: f(a[0], **kw),
        lambda x, dy: (x,),
        lambda x, dy: np.log(_stable_s(x) / _stable_s(x).sum(-1, keepdims=True)),
    ),
    "sparsemax": (lambda f, a, **kw: f(a[0], **kw), lambda x, dy: (x,), lambda x, dy: _sparsemax(x)),
    "entmax15": (lambda f, a, **kw: f(a[0], **kw), lambda x, dy: (x,), lambda x, dy: _entmax15(x)),
    "entmax_bisect": (lambda f, a, **kw: f(a[0], 1.5, **kw), lambda x, dy: (x,), lambda x, dy: _entmax15(x)),
    "softmax_backward": (
        lambda f, a, **kw: f(*a, **kw),
        lambda x, dy: (_softmax(x), dy),
        lambda x, dy: _softmax(x) * (dy - (_softmax(x) * dy).sum(-1, keepdims=True)),
    ),
    "log_softmax_backward": (
        lambda f, a, **kw: f(*a, **kw),
        lambda x, dy: (_log_softmax(x), dy),
        lambda x, dy: dy - _softmax(x) * dy.sum(-1, keepdims=True),
    ),
    "stablemax_backward": (
        lambda f, a, **kw: f(*a, **kw),
        lambda x, dy: (x, dy),
        lambda x, dy: _stable_ds(x)
        / _stable_s(x).sum(-1, keepdims=True)
        * (dy - (_stable_s(x) / _stable_s(x).sum(-1, keepdims=True) * dy).sum(-1, keepdims=True)),
    ),
    "log_stablemax_backward": (
        lambda f, a, **kw: f(*a, **kw),
        lambda x, dy: (x, dy),
        lambda x, dy: _stable_ds(x) / _stable_s(x) * dy
        - _stable_ds(x) / _stable_s(x).sum(-1, keepdims=True) * dy.sum(-1, keepdims=True),
    ),
    "sparsemax_backward": (
        lambda f, a, **kw: f(*a, **kw),
        lambda x, dy: (_sparsemax(x), dy),
        lambda x, dy: _entmax_vjp(_sparsemax(x), dy, 2.0),
    ),
    "entmax15_backward": (
        lambda f, a, **kw: f(*a, **kw),
        lambda x, dy: (_entmax15(x), dy),
        lambda x, dy: _entmax_vjp(_entmax15(x), dy, 1.5),
    ),
    "entmax_bisect_backward": (
        lambda f, a, **kw: f(*a, 1.5, **kw),
        lambda x, dy: (_entmax15(x), dy),
        lambda x, dy: _entmax_vjp(_entmax15(x), dy, 1.5),
    ),
}
REDUCTIONS = {
    "logsumexp": lambda x: reference.logsumexp(x).astype(np.float64),
    "entropy": lambda x: -(_softmax(x) * _log_softmax(x)).sum(-1),
}


def _data(dtype=np.float64):
    rng = np.random.default_rng(12)
    x = rng.normal(scale=2.0, size=(3, 7)).round(3)
    dy = rng.normal(size=(3, 7)).round(3)
    return x.astype(dtype), dy.astype(dtype)


def _inputs(name, dtype):
    x, dy = _data()
    return tuple(np.asarray(a, dtype) for a in OPS[name][1](x, dy)), OPS[name][2](x, dy)


PUBLIC = [n for n in logitkit.__all__ if callable(getattr(logitkit, n)) and not isinstance(getattr(logitkit, n), type)]


def test_every_public_op_is_covered():
    with_out = {"permute", "unpermute"}  # row gathers with out=, tested in tests/test_moe.py
    ops = {n for n in PUBLIC if "out" in inspect.signature(getattr(logitkit, n)).parameters} - with_out
    assert ops == set(OPS)
    reductions = {"logsumexp", "entropy", "collapse_fraction"}
    # tests/test_nll_loss.py, test_cross_entropy*.py, test_distill.py, test_class_losses.py
    losses = {"nll_loss", "cross_entropy", "kl_div", "jsd", "tvd", "focal_loss", "poly1_cross_entropy",
              "comp_sum_loss", "generalized_cross_entropy", "ldr_kl_loss", "stablemax_cross_entropy",
              "sparsemax_loss", "entmax15_loss", "spherical_z_loss", "kl_div_topk", "dkd_loss",
              "nkd_loss", "linear_cross_entropy"}
    # tests/test_route.py, test_route_presets.py, test_moe.py
    moe = {"route", "PRESETS", "DispatchPlan", "dispatch", "permute", "unpermute", "expert_choice", "expert_counts",
           "load_balancing_loss", "router_z_loss", "sequence_balance_loss", "update_bias", "contrastive_logits"}
    assert reductions | losses | moe | ops | set(logitkit.runtime.__all__) | {"__version__"} == set(logitkit.__all__)


# ---------------------------------------------------------------------------------------------
# 1. None and wrong types name the argument, never leak pybind11's signature dump

X = np.linspace(-2, 2, 6, dtype=np.float32).reshape(2, 3)
VALID = {
    "x": X,
    "logits": X,
    "y": np.full((2, 3), 1 / 3, np.float32),
    "dy": X,
    "where": np.ones((2, 3), bool),
    "axis": -1,
    "temperature": 1.0,
    "algorithm": "auto",
    "alpha": 1.5,
    "n_iter": 50,
    "b": np.ones((2, 3), np.float32),
    "keepdims": False,
    "return_sign": False,
    "out": None,
    "dtype": None,
    "name": "scalar",
    "n": 1,
    "log_probs": np.log(np.full((2, 3), 1 / 3, np.float32)),
    "target": np.array([0, 2]),
    "weight": None,
    "ignore_index": -100,
    "reduction": "mean",
    "sample_weight": None,
    "return_grad": False,
    "grad_output": 1.0,
    "out_grad": None,
    "label_smoothing": 0.0,
    "z_loss": 0.0,
    "softcap": None,
    "target_margin": 0.0,
    "extras": (),
    "student_logits": X,
    "teacher_logits": X[::-1].copy(),
    "direction": "forward",
    "temperature_squared": True,
    "beta": 0.5,
    "gamma": 2.0,
    "epsilon": 1.0,
    "tau": 1.0,
    "q": 0.7,
    "lam": 1.0,
    "margin": 1.0,
    "a": 0.1,
    "teacher_logprobs": np.log(np.array([[0.7, 0.3], [0.6, 0.4]], np.float32)),
    "teacher_ids": np.array([[1, 0], [2, 1]]),
    "k": 2,
    "preset": None,
    "scoring": "softmax",
    "activation": None,
    "weights_from": "scores",
    "renormalize": True,
    "renormalize_eps": 0.0,
    "scaling_factor": 1.0,
    "bias": np.zeros(3, np.float32),
    "n_group": 1,
    "topk_group": None,
    "group_score": "max",
    "expert_mask": None,
    "force": None,
    "noise": None,
    "noise_std": 1.0,
    "seed": 0,
    "experts": np.array([[0, 1], [2, 0]]),
    "num_experts": 3,
    "weights": np.full((2, 2), 0.5, np.float32),
    "capacity": 2,
    "capacity_factor": None,
    "min_capacity": 4,
    "drop_policy": "position",
    "block_size": 1,
    "hidden": X,
    "plan": logitkit.dispatch(np.array([[0, 1], [2, 0]]), 3),
    "expert_out": np.ones((4, 3), np.float32),
    "normalization": "switch",
    "seq_len": 1,
    "counts": np.array([1, 2, 1]),
    "rate": 0.001,
    "strong": X,
    "weak": X[::-1].copy(),
    "input": X,
    "linear_weight": np.ones((4, 3), np.float32),
    "linear_bias": None,
    "filter_eps": None,
    "out_grads": None,
    "accumulate": False,
    "return_stats": False,
    "chunk_rows": None,
    "bfloat16_gradient": False,
}
VALID_FOR = {
    "spherical_z_loss": {"b": 10.0},  # a parameter name another op uses for an array
    "contrastive_logits": {"alpha": 0.1},
}  # a parameter name another op uses for an array
BAD = {
    "None": None,
    "object": object(),
    "str": "abc",
    "complex": 1j,
    "array": np.array([1.0, 2.0, 3.0, 4.0]),
    "bool_array": np.array([True, False, True, False]),
}


def _call(fn, kwargs):
    res = fn(**kwargs)
    if isinstance(res, contextlib.AbstractContextManager):  # use_isa
        with res:
            pass


@pytest.mark.parametrize("bad", BAD, ids=BAD)
@pytest.mark.parametrize("name", PUBLIC)
def test_bad_argument_is_named(name, bad, threads):
    fn = getattr(logitkit, name)
    params = inspect.signature(fn).parameters
    isa_before = logitkit.isa()
    try:
        for p in params:
            kwargs = {q: VALID_FOR.get(name, {}).get(q, VALID[q]) for q in params if q != p}
            kwargs[p] = BAD[bad]
            try:
                _call(fn, kwargs)  # accepted (None is a valid axis, out, where, ...)
            except (TypeError, ValueError) as exc:
                msg = str(exc)
                assert "incompatible function arguments" not in msg, (p, msg)
                assert msg.startswith(f"{p}:") or f" {p}'s " in msg, (p, msg)  # or a mismatch with {p}
    finally:
        logitkit.set_isa(isa_before)


@pytest.mark.parametrize("name", ["masked_softmax", "masked_log_softmax"])
def test_masked_with_where_none_is_unmasked(name, isa):
    plain = {"masked_softmax": logitkit.softmax, "masked_log_softmax": logitkit.log_softmax}[name]
    fn = getattr(logitkit, name)
    for x in (X, X.astype(np.float64).tolist(), X.T):
        for axis in (-1, 0, None):
            np.testing.assert_array_equal(fn(x, None, axis), plain(x, axis))
    out = np.empty_like(X)
    assert fn(X, None, out=out) is out
    np.testing.assert_array_equal(out, plain(X))
    np.testing.assert_array_equal(fn(X, None, dtype=np.float64), plain(X, dtype=np.float64))
    ref = _softmax(X.astype(np.float64)) if name == "masked_softmax" else _log_softmax(X.astype(np.float64))
    np.testing.assert_allclose(fn(X, None), ref, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# 2. A broadcast (stride-0) out= is refused under the name `out`


def _broadcast_out(shape, dtype):
    return as_strided(np.zeros(1, dtype), shape, (0,) * len(shape))  # writeable, unlike broadcast_to


@pytest.mark.parametrize("name", OPS)
def test_stride_zero_out_is_named_out(name):
    call = OPS[name][0]
    for dtype in (np.float32, np.float64):
        inputs, _ = _inputs(name, dtype)
        for out in (_broadcast_out(inputs[0].shape, dtype), as_strided(np.zeros(7, dtype), (3, 7), (0, dtype().itemsize))):
            assert out.flags.writeable
            for kw in ({}, {"dtype": dtype}):  # the common call checked in C++, and the general path
                with pytest.raises(ValueError, match=r"^out: stride 0 in dimension 0 of extent 3"):
                    call(getattr(logitkit, name), inputs, out=out, **kw)
            with pytest.raises(ValueError, match=r"^out: stride 0"):  # a list input: general path
                call(getattr(logitkit, name), tuple(a.tolist() for a in inputs), out=out)
    inputs, _ = _inputs(name, np.float32)  # stride 0 along an extent of 1 is an ordinary view
    out = as_strided(np.zeros(7, np.float32), (1, 7), (0, 4))
    if name.startswith("masked"):
        call = lambda f, a, **kw: f(a[0], MASK[:1], **kw)  # noqa: E731
    assert call(getattr(logitkit, name), tuple(a[:1] for a in inputs), out=out) is out
    np.testing.assert_array_equal(out, call(getattr(logitkit, name), tuple(a[:1] for a in inputs)))


# ---------------------------------------------------------------------------------------------
# 3. A 0-d result is a NumPy scalar of the result dtype without out=, and out itself with it

ZERO_D = {  # name -> expected value for a one-element row
    "softmax": 1.0,
    "log_softmax": 0.0,
    "masked_softmax": 1.0,
    "masked_log_softmax": 0.0,
    "stablemax": 1.0,
    "log_stablemax": 0.0,
    "sparsemax": 1.0,
    "entmax15": 1.0,
    "entmax_bisect": 1.0,
    "softmax_backward": 0.0,
    "log_softmax_backward": 0.0,
    "stablemax_backward": 0.0,
    "log_stablemax_backward": 0.0,
    "sparsemax_backward": 0.0,
    "entmax15_backward": 0.0,
    "entmax_bisect_backward": 0.0,
}


def _zero_d_call(name, scalar, **kw):
    fn = getattr(logitkit, name)

    def like(v):  # v in the type of `scalar` (Python number, NumPy scalar or 0-d array)
        return np.array(v, scalar.dtype) if isinstance(scalar, np.ndarray) else type(scalar)(v)

    if name.startswith("masked"):
        return fn(scalar, True, **kw)
    if name in ("softmax_backward", "sparsemax_backward", "entmax15_backward", "entmax_bisect_backward"):
        return fn(like(1), like(0.75), **kw)
    if name == "log_softmax_backward":
        return fn(like(0), like(0.75), **kw)
    if name.endswith("_backward"):
        return fn(scalar, like(0.75), **kw)
    return fn(scalar, **kw)


@pytest.mark.parametrize("name", [*OPS, *REDUCTIONS])
def test_zero_d_result_is_numpy_scalar(name, isa):
    expected = ZERO_D.get(name, {"logsumexp": 3.0, "entropy": 0.0}.get(name))
    for scalar, dtype in ((3.0, np.float64), (3, np.float64), (np.float32(3), np.float32), (np.float64(3), np.float64)):
        for axis in ({}, {"axis": None}, {"axis": 0}, {"axis": ()}):
            res = _zero_d_call(name, scalar, **axis)
            assert type(res) is dtype, (scalar, axis, type(res))
            assert res == expected
        res = _zero_d_call(name, np.array(scalar))  # a 0-d array input too, as NumPy's ufuncs
        assert type(res) is dtype
    if name in OPS:
        out = np.empty((), np.float32)
        assert _zero_d_call(name, np.float32(3), out=out) is out
        assert out[()] == expected
    elif name == "logsumexp":
        res, sign = logitkit.logsumexp(np.float32(3), b=2.0, return_sign=True)
        assert type(res) is np.float32 and type(sign) is np.float32
        assert sign == 1 and np.isclose(res, 3 + np.log(2.0), rtol=1e-7)


# ---------------------------------------------------------------------------------------------
# 5. Python scalars are weak; scalar parameters take NumPy scalars and 0-d arrays


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_logsumexp_python_scalar_b_is_weak(dtype, isa):
    x = np.array([0.5, 1.0, -2.0], dtype)
    exact = np.log(2.0 * np.exp(x.astype(np.float64)).sum())
    for b in (2.0, 2, True):
        res = logitkit.logsumexp(x, b=b)
        assert res.dtype == dtype, b
        w = 1.0 if b is True else 2.0
        assert np.isclose(float(res), np.log(w) + exact - np.log(2.0), rtol=float(np.finfo(dtype).eps) * 4)
    # NumPy scalars and arrays are strong (NEP 50), as in SciPy: they promote.
    for b in (np.float64(2.0), np.array(2.0), np.array([2.0, 2.0, 2.0])):
        assert logitkit.logsumexp(x, b=b).dtype == np.float64
    assert logitkit.logsumexp(x, b=np.float32(2.0)).dtype == np.result_type(dtype, np.float32)
    assert logitkit.logsumexp([1, 2, 3], b=2.0).dtype == np.float64  # integer x still gives float64


def _temperature_ops():
    for name in OPS:
        yield name, "temperature"
    yield "entmax_bisect", "alpha"
    yield "entmax_bisect_backward", "alpha"
    yield "entmax_bisect", "n_iter"


SCALARS = {
    "temperature": (2.0, [np.array(2.0), np.float64(2.0), np.float32(2.0), np.int64(2), np.array(2), np.array(2.0, np.float32)]),
    "alpha": (1.25, [np.float64(1.25), np.array(1.25), np.float32(1.25), np.array(1.25, np.float16)]),
    "n_iter": (30, [np.int64(30), np.int32(30), np.array(30), np.uint8(30)]),
}


@pytest.mark.parametrize("name,param", list(_temperature_ops()))
def test_scalar_parameters_take_numpy_scalars(name, param, isa):
    call = OPS[name][0]
    fn = getattr(logitkit, name)
    inputs, _ = _inputs(name, np.float32)
    if param == "alpha":  # alpha is positional in the table's calls
        call = lambda f, a, **kw: f(*a, **kw)  # noqa: E731
    python_value, numpy_values = SCALARS[param]
    expected = call(fn, inputs, **{param: python_value})
    for v in numpy_values:
        np.testing.assert_array_equal(call(fn, inputs, **{param: v}), expected, err_msg=repr(v))
    for bad in (np.array(True), np.bool_(True), np.array([2.0]), np.array(2.0 + 1j)):
        with pytest.raises(TypeError, match=f"^{param}: expected"):
            call(fn, inputs, **{param: bad})
    if param == "n_iter":
        with pytest.raises(TypeError, match="^n_iter: expected an int"):
            call(fn, inputs, n_iter=np.float64(30))


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_temperature_and_flags_take_numpy_scalars(name):
    x, _ = _data(np.float32)
    fn = getattr(logitkit, name)
    if name == "entropy":
        np.testing.assert_array_equal(fn(x, temperature=np.array(2.0)), fn(x, temperature=2.0))
    np.testing.assert_array_equal(fn(x, keepdims=np.bool_(True)), fn(x, keepdims=True))
    with pytest.raises(TypeError, match="^keepdims: expected a bool"):
        fn(x, keepdims=None)


# ---------------------------------------------------------------------------------------------
# 6. Byte-swapped out= (and input) are accepted and give the native result


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_byte_swapped_out(name, dtype, isa):
    call = OPS[name][0]
    fn = getattr(logitkit, name)
    inputs, ref = _inputs(name, dtype)
    native = call(fn, inputs)
    swapped = np.dtype(dtype).newbyteorder()
    for ins in (inputs, tuple(a.astype(swapped) for a in inputs)):
        out = np.full(native.shape, np.nan, swapped)
        assert call(fn, ins, out=out) is out
        assert out.dtype == swapped
        np.testing.assert_array_equal(out, native)  # bit for bit the native result
        rtol = 64 * float(np.finfo(dtype).eps)
        np.testing.assert_allclose(out.astype(np.float64), ref, rtol=rtol, atol=rtol)
        out = np.full(native.shape, np.nan, swapped)  # in place into a byte-swapped input
        if name.endswith("_backward"):
            continue
        own = ins[0].copy()
        assert call(fn, (own,) + ins[1:], out=own) is own
        np.testing.assert_array_equal(own, native)
    with pytest.raises(TypeError, match="^out: dtype"):
        call(fn, inputs, out=np.empty(native.shape, np.dtype(np.float16).newbyteorder()), dtype=dtype)
