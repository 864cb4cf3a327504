"""A representative call of every family against float64 NumPy references, importing nothing
but NumPy: the subset .ci/run also runs from the installed wheel under qemu-x86_64 -cpu Haswell
(must pick avx2) and -cpu Nehalem (must pick scalar), where torch and SciPy may not run. With
LOGITKIT_EXPECT_ISA set, the chosen backend is checked too."""

from __future__ import annotations

import os

import numpy as np
import pytest

import logitkit

RTOL = 2e-6  # float32 kernels against float64: a few ulps


def ref_softmax(x, axis=-1):
    z = np.asarray(x, np.float64)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def ref_log_softmax(x, axis=-1):
    z = np.asarray(x, np.float64)
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


def ref_sparsemax(z):
    z = np.asarray(z, np.float64)
    out = np.empty_like(z)
    for i, row in enumerate(z):
        s = np.sort(row)[::-1]
        cs = np.cumsum(s) - 1
        k = np.arange(1, len(row) + 1)
        support = k * s > cs
        tau = cs[support][-1] / k[support][-1]
        out[i] = np.maximum(row - tau, 0)
    return out


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return {
        "x": (rng.standard_normal((37, 1003)) * 4).astype(np.float32),
        "t": rng.integers(0, 1003, 37),
        "router": rng.standard_normal((129, 64)).astype(np.float32),
        "hidden": rng.standard_normal((129, 96)).astype(np.float32),
        "w": (rng.standard_normal((300, 96)) * 0.1).astype(np.float32),
    }


def test_expected_backend():
    want = os.environ.get("LOGITKIT_EXPECT_ISA")
    if not want:
        pytest.skip("LOGITKIT_EXPECT_ISA not set (set by the qemu-x86_64 runs of .ci/run)")
    assert logitkit.isa() == want, (logitkit.isa(), logitkit.available_isas())


def test_softmax_family(isa, data):
    x = data["x"]
    np.testing.assert_allclose(logitkit.softmax(x), ref_softmax(x), rtol=RTOL, atol=1e-30)
    for alg in ("three_pass_recompute", "two_pass", "online"):
        np.testing.assert_allclose(logitkit.softmax(x, algorithm=alg), ref_softmax(x), rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(logitkit.log_softmax(x), ref_log_softmax(x), rtol=1e-6, atol=1e-5)
    z = x.astype(np.float64)
    lse = z.max(-1) + np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1))
    np.testing.assert_allclose(logitkit.logsumexp(x), lse, rtol=1e-6)
    np.testing.assert_allclose(logitkit.softmax(x.T, axis=0), ref_softmax(x.T, axis=0), rtol=RTOL, atol=1e-30)
    mask = (np.arange(x.shape[1]) % 3) != 0
    masked = np.where(mask, z, -np.inf)
    np.testing.assert_allclose(logitkit.masked_softmax(x, np.broadcast_to(mask, x.shape)), ref_softmax(masked), rtol=RTOL, atol=1e-30)


def test_backward_and_sparse(isa, data):
    x = data["x"]
    y = ref_softmax(x)
    dy = np.cos(np.arange(x.size)).reshape(x.shape)
    want = y * (dy - (dy * y).sum(-1, keepdims=True))
    got = logitkit.softmax_backward(y.astype(np.float32), dy.astype(np.float32))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(logitkit.sparsemax(x), ref_sparsemax(x), atol=2e-6)
    e15 = logitkit.entmax15(x)
    assert np.allclose(e15.sum(-1), 1, atol=1e-5) and (e15 >= 0).all()
    z = x.astype(np.float64)
    s = np.where(z >= 0, z + 1.0, 1.0 / (1.0 - z))  # StableMax's s(x)
    np.testing.assert_allclose(logitkit.stablemax(x), s / s.sum(-1, keepdims=True), rtol=RTOL)
    p = ref_softmax(x)
    np.testing.assert_allclose(logitkit.entropy(x), -(p * np.log(np.maximum(p, 1e-300))).sum(-1), rtol=1e-5, atol=1e-6)


def test_losses(isa, data):
    x, t = data["x"], data["t"]
    lp = ref_log_softmax(x)
    rows = np.arange(len(t))
    loss, grad = logitkit.cross_entropy(x, t, return_grad=True)
    np.testing.assert_allclose(loss, -lp[rows, t].mean(), rtol=1e-6)
    g = np.exp(lp)
    g[rows, t] -= 1
    np.testing.assert_allclose(grad, g / len(t), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(logitkit.nll_loss(lp.astype(np.float32), t), -lp[rows, t].mean(), rtol=1e-6)
    teacher = x[::-1].copy()
    q = ref_softmax(teacher)
    kl = (q * (np.log(q) - lp)).sum() / len(t)
    np.testing.assert_allclose(logitkit.kl_div(x, teacher), kl, rtol=1e-5)


def test_routing_and_moe(isa, data):
    r, h = data["router"], data["hidden"]
    w, ids = logitkit.route(r, 4, renormalize=True)
    p = ref_softmax(r)
    want_ids = np.argsort(-r.astype(np.float64), axis=-1, kind="stable")[:, :4]
    np.testing.assert_array_equal(ids, want_ids)
    top = np.take_along_axis(p, want_ids, -1)
    np.testing.assert_allclose(w, top / top.sum(-1, keepdims=True), rtol=1e-6)
    plan = logitkit.dispatch(ids, 64)
    np.testing.assert_array_equal(plan.counts, np.bincount(ids.ravel(), minlength=64))
    permuted = logitkit.permute(h, plan)
    combined = logitkit.unpermute(permuted, plan, w)
    np.testing.assert_allclose(combined, h * w.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_linear_cross_entropy(isa, data):
    h, wt = data["hidden"], data["w"]
    t = np.arange(len(h)) * 7 % wt.shape[0]
    loss, dx, dw = logitkit.linear_cross_entropy(h, wt, t, return_grad=True)
    logits = h.astype(np.float64) @ wt.T.astype(np.float64)
    lp = ref_log_softmax(logits)
    rows = np.arange(len(t))
    np.testing.assert_allclose(loss, -lp[rows, t].mean(), rtol=1e-5)
    g = np.exp(lp)
    g[rows, t] -= 1
    g /= len(t)
    np.testing.assert_allclose(dx, g @ wt.astype(np.float64), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dw, g.T @ h.astype(np.float64), rtol=1e-4, atol=1e-6)
