"""focal_loss, poly1_cross_entropy, comp_sum_loss / generalized_cross_entropy and ldr_kl_loss
against torch float64 compositions of their papers' formulas (loss and autograd gradient), on
every ISA: class weights, ignored rows, sample_weight, every reduction, temperature, the class
axis, special values, float32, in-place gradients and argument errors."""

from __future__ import annotations

import logitkit
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_rows(kind, x, t, param, temperature=1.0, margin=0.0):
    """Per-row losses (class axis last) as torch float64 tensors; x requires grad."""
    keep = t != -100
    tt = torch.tensor(np.where(keep, t, 0))
    if kind == "ldr_kl":
        lam = param
        onehot = F.one_hot(tt, x.shape[-1]).to(x.dtype)
        d = (x + margin * (1 - onehot) - (x * onehot).sum(-1, keepdim=True)) / lam
        return lam * (torch.logsumexp(d, -1) - np.log(x.shape[-1]))
    lp = F.log_softmax(x / temperature, -1).gather(-1, tt[..., None])[..., 0]
    p = lp.exp()
    if kind == "focal":
        return -((1 - p) ** param) * lp
    if kind == "poly1":
        return -lp + param * (1 - p)
    if kind == "comp_sum":
        return -lp if param == 1.0 else (p ** (param - 1) - 1) / (1 - param)
    raise ValueError(kind)


def torch_loss(kind, x, t, param, *, weight=None, sw=None, alpha=None, reduction="mean", temperature=1.0,
               margin=0.0, grad_output=1.0):
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    rows = torch_rows(kind, xt, t, param, temperature, margin)
    keep = torch.tensor(t != -100)
    w = torch.ones(t.shape, dtype=torch.float64)
    if weight is not None:
        w = torch.tensor(np.asarray(weight, np.float64))[torch.tensor(np.where(t != -100, t, 0))]
    if sw is not None:
        w = w * torch.tensor(sw)
    w = torch.where(keep, w, torch.zeros_like(w))
    a = torch.ones_like(w)
    if alpha is not None:
        a = torch.tensor(np.asarray(alpha, np.float64)[np.where(t != -100, t, 0)] if np.ndim(alpha) else
                         np.full(t.shape, float(alpha)))
    rows = torch.where(keep, rows * w * a, torch.zeros_like(rows))
    loss = {"mean": lambda: rows.sum() / w.sum(), "sum": rows.sum, "none": lambda: rows}[reduction]()
    loss.backward(torch.as_tensor(grad_output, dtype=loss.dtype).expand_as(loss))
    return loss.detach().numpy(), xt.grad.numpy()


def call(kind, x, t, param, **kw):
    if kind == "focal":
        return logitkit.focal_loss(x, t, param, **kw)
    if kind == "poly1":
        return logitkit.poly1_cross_entropy(x, t, param, **kw)
    if kind == "comp_sum":
        return logitkit.comp_sum_loss(x, t, param, **kw)
    margin = kw.pop("margin", 2.0)
    return logitkit.ldr_kl_loss(x, t, lam=param, margin=margin, **kw)


CASES = [("focal", 0.0), ("focal", 2.0), ("focal", 0.5), ("poly1", 1.0), ("poly1", -0.5), ("comp_sum", 0.0),
         ("comp_sum", 1.0), ("comp_sum", 1.7), ("comp_sum", 2.0), ("ldr_kl", 1.0), ("ldr_kl", 0.3)]


@pytest.mark.parametrize("kind,param", CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_torch(isa, kind, param, reduction, dtype):
    rng = np.random.default_rng(31)
    for n, c in [(1, 1), (9, 4), (64, 50), (20, 2000)]:
        x = (rng.standard_normal((n, c)) * 3).astype(dtype)
        t = rng.integers(0, c, n)
        t[rng.random(n) < 0.2] = -100
        w = (rng.random(c) + 0.2).astype(dtype)
        sw = (rng.random(n) + 0.5).astype(dtype)
        kw = dict(weight=w, sample_weight=sw, reduction=reduction)
        if kind == "ldr_kl":
            kw["margin"] = 1.5
        loss, grad = call(kind, x, t, param, return_grad=True, grad_output=0.8, **kw)
        ref_loss, ref_grad = torch_loss(kind, x, t, param, weight=w, sw=sw, reduction=reduction, grad_output=0.8,
                                        margin=kw.get("margin", 0.0))
        rtol, atol = (1e-11, 1e-13) if dtype == np.float64 else (1e-4, 1e-6)
        assert np.asarray(loss).dtype == dtype and grad.dtype == dtype
        np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=atol)
        if kind == "focal" and param < 1 and c == 1:
            # p_t = 1: torch's autograd forms 0 * (1 - p)^(gamma - 1) = NaN; the limit is 0
            assert np.isnan(ref_grad[t != -100]).all()
            ref_grad = np.nan_to_num(ref_grad, nan=0.0)
        np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=atol)


def test_identities(isa):
    rng = np.random.default_rng(32)
    x, t = rng.standard_normal((30, 12)) * 2, rng.integers(0, 12, 30)
    ce = logitkit.cross_entropy(x, t, reduction="none")
    np.testing.assert_allclose(logitkit.focal_loss(x, t, 0.0, reduction="none"), ce, rtol=1e-14)
    np.testing.assert_allclose(logitkit.comp_sum_loss(x, t, 1.0, reduction="none"), ce, rtol=1e-14)
    np.testing.assert_allclose(logitkit.poly1_cross_entropy(x, t, 0.0, reduction="none"), ce, rtol=1e-14)
    np.testing.assert_allclose(logitkit.generalized_cross_entropy(x, t, 0.7, reduction="none"),
                               logitkit.comp_sum_loss(x, t, 1.7, reduction="none"), rtol=1e-15)
    p_t = np.exp(-ce)
    np.testing.assert_allclose(logitkit.comp_sum_loss(x, t, 2.0, reduction="none"), 1 - p_t, rtol=1e-12)
    np.testing.assert_allclose(logitkit.comp_sum_loss(x, t, 0.0, reduction="none"), 1 / p_t - 1, rtol=1e-12)
    # LDR-KL: lam -> 0 tends to the max-margin loss max(0, max_{c != t} x_c + margin - x_t)
    other = np.where(np.eye(12, dtype=bool)[t], -np.inf, x).max(-1)
    np.testing.assert_allclose(logitkit.ldr_kl_loss(x, t, lam=1e-4, margin=1.0, reduction="none"),
                               np.maximum(other + 1.0 - x[np.arange(30), t], 0.0), atol=2e-3)
    # focal's alpha: a scalar scales the loss; per class multiplies each row outside the normaliser
    np.testing.assert_allclose(logitkit.focal_loss(x, t, alpha=0.25), 0.25 * logitkit.focal_loss(x, t), rtol=1e-15)
    alpha = rng.random(12)
    t[:4] = -100
    loss, grad = logitkit.focal_loss(x, t, 2.0, alpha, return_grad=True)
    ref_loss, ref_grad = torch_loss("focal", x, t, 2.0, alpha=alpha)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_confident_rows_special_values_and_layouts(isa):
    # p_t near 1: focal's (1 - p_t)^gamma from expm1(log p_t), not from 1 - p_t (which would keep
    # only about 5 digits here)
    x = np.array([[12.0, 0.0, 0.0], [0.0, 40.0, -np.inf], [np.nan, 0.0, 1.0], [1.0, 2.0, 3.0]])
    t = np.array([0, 1, 2, -100])
    loss, grad = logitkit.focal_loss(x, t, 2.0, reduction="none", return_grad=True)
    lp = -np.log1p(2 * np.exp(-12.0))
    np.testing.assert_allclose(loss[0], -(-np.expm1(lp)) ** 2 * lp, rtol=1e-9)
    assert np.isnan(loss[2]) and loss[3] == 0 and (grad[3] == 0).all() and grad[1, 2] == 0
    rng = np.random.default_rng(33)
    x = rng.standard_normal((4, 6, 5))
    t = rng.integers(0, 6, (4, 5))
    for kind, param in CASES[1::2]:
        loss, grad = call(kind, x, t, param, axis=1, reduction="none", return_grad=True)
        ref_loss, ref_grad = torch_loss(kind, np.moveaxis(x, 1, -1), t, param, reduction="none",
                                        margin=2.0 if kind == "ldr_kl" else 0.0)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
        np.testing.assert_allclose(grad, np.moveaxis(ref_grad, -1, 1), rtol=1e-11, atol=1e-14)
        xin = np.ascontiguousarray(x)
        ref = call(kind, xin, t, param, axis=1, return_grad=True)
        loss, grad = call(kind, xin, t, param, axis=1, return_grad=True, out_grad=xin)
        assert grad is xin and loss == ref[0]
        np.testing.assert_array_equal(grad, ref[1])


def test_temperature(isa):
    rng = np.random.default_rng(34)
    x, t = rng.standard_normal((20, 9)) * 3, rng.integers(0, 9, 20)
    for kind, param in [("focal", 2.0), ("poly1", 1.0), ("comp_sum", 1.5)]:
        loss, grad = call(kind, x, t, param, temperature=2.5, return_grad=True)
        ref_loss, ref_grad = torch_loss(kind, x, t, param, temperature=2.5)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-15)


def test_errors_name_the_argument():
    x, t = np.zeros((3, 4)), np.array([0, 1, 2])
    cases = [
        (lambda: logitkit.focal_loss(x, t, -1.0), ValueError, "gamma"),
        (lambda: logitkit.focal_loss(x, t, alpha=np.ones(3)), ValueError, "alpha"),
        (lambda: logitkit.focal_loss(x, t, 2.0, "a"), TypeError, "alpha"),
        (lambda: logitkit.poly1_cross_entropy(x, t, np.inf), ValueError, "epsilon"),
        (lambda: logitkit.comp_sum_loss(x, t, -0.5), ValueError, "tau"),
        (lambda: logitkit.generalized_cross_entropy(x, t, 1.5), ValueError, "q"),
        (lambda: logitkit.ldr_kl_loss(x, t, lam=0.0), ValueError, "lam"),
        (lambda: logitkit.ldr_kl_loss(x, t, margin=-1.0), ValueError, "margin"),
        (lambda: logitkit.focal_loss(x, np.array([0, 4, 1])), ValueError, "target"),
        (lambda: logitkit.focal_loss(x, np.full((3, 4), 0.25)), TypeError, "target"),
        (lambda: logitkit.poly1_cross_entropy(x, t, weight=np.ones(5)), ValueError, "weight"),
        (lambda: logitkit.comp_sum_loss(x, t, reduction="avg"), ValueError, "reduction"),
    ]
    for f, exc, name in cases:
        with pytest.raises(exc, match=name):
            f()
