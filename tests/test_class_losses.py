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


# --- losses with their own row function: StableMax CE, Fenchel-Young (sparsemax, 1.5-entmax), Z-loss


def np_sparsemax(z):
    zs = -np.sort(-z, -1)
    cs = np.cumsum(zs, -1)
    k = np.arange(1, z.shape[-1] + 1)
    support = 1 + k * zs > cs
    kk = support.sum(-1, keepdims=True)
    tau = (np.take_along_axis(cs, kk - 1, -1) - 1) / kk
    return np.maximum(z - tau, 0.0)


def np_entmax15(z):
    """[z/2 - tau]_+^2 summing to 1, tau by bisection in float64 (to the last bit)."""
    h = z / 2
    lo = h.max(-1, keepdims=True) - 1.0
    hi = h.max(-1, keepdims=True)
    for _ in range(200):
        mid = (lo + hi) / 2
        big = (np.maximum(h - mid, 0.0) ** 2).sum(-1, keepdims=True) >= 1
        lo, hi = np.where(big, mid, lo), np.where(big, hi, mid)
    p = np.maximum(h - lo, 0.0) ** 2
    return p / p.sum(-1, keepdims=True)


def fy_reference(kind, x, t, temperature=1.0):
    z = np.asarray(x, np.float64) / temperature
    p = np_sparsemax(z) if kind == "sparsemax" else np_entmax15(z)
    onehot = np.eye(z.shape[-1])[t]
    reg = 0.5 * (1 - (p**2).sum(-1)) if kind == "sparsemax" else (1 - (p**1.5).sum(-1)) / 0.75
    return ((p - onehot) * z).sum(-1) + reg, (p - onehot) / temperature


@pytest.mark.parametrize("kind", ["sparsemax", "entmax15"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fenchel_young_losses(isa, kind, dtype):
    rng = np.random.default_rng(41)
    fn = logitkit.sparsemax_loss if kind == "sparsemax" else logitkit.entmax15_loss
    for n, c in [(1, 1), (7, 3), (40, 100), (8, 3000)]:
        x = (rng.standard_normal((n, c)) * 2).astype(dtype)
        t = rng.integers(0, c, n)
        for temperature in (1.0, 0.5):
            rows, g_rows = fy_reference(kind, x, t, temperature)
            loss, grad = fn(x, t, temperature=temperature, reduction="none", return_grad=True)
            rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 2e-5)
            np.testing.assert_allclose(loss, rows, rtol=rtol, atol=atol)
            np.testing.assert_allclose(grad, g_rows, rtol=rtol, atol=atol)
    # weights, ignored rows and the weighted mean; 0 exactly at a one-hot prediction
    x = rng.standard_normal((30, 6))
    t = rng.integers(0, 6, 30)
    t[:5] = -100
    w, sw = rng.random(6) + 0.5, rng.random(30) + 0.5
    rows, g_rows = fy_reference(kind, x, np.where(t < 0, 0, t))
    wr = np.where(t < 0, 0.0, w[np.where(t < 0, 0, t)] * sw)
    loss, grad = fn(x, t, w, sample_weight=sw, return_grad=True)
    np.testing.assert_allclose(loss, (wr * rows).sum() / wr.sum(), rtol=1e-11)
    np.testing.assert_allclose(grad, wr[:, None] * g_rows / wr.sum(), rtol=1e-10, atol=1e-14)
    confident = np.array([[10.0, 0.0, -3.0]])
    assert fn(confident, np.array([0])) == 0.0
    assert fn(confident, np.array([1])) > 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stablemax_cross_entropy_matches_torch(isa, dtype):
    rng = np.random.default_rng(42)

    def ref(x, t, w=None, temperature=1.0, reduction="mean"):
        xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
        z = xt / temperature
        s = torch.where(z >= 0, z + 1, 1 / (1 - torch.where(z >= 0, torch.zeros_like(z), z)))
        lp = torch.log(s / s.sum(-1, keepdim=True))
        loss = F.nll_loss(lp, torch.tensor(t), weight=None if w is None else torch.tensor(w, dtype=torch.float64),
                          reduction=reduction)
        loss.backward(torch.ones_like(loss))
        return loss.detach().numpy(), xt.grad.numpy()

    for n, c in [(1, 1), (9, 5), (50, 300), (6, 5000)]:
        x = (rng.standard_normal((n, c)) * 5).astype(dtype)
        t = rng.integers(0, c, n)
        t[rng.random(n) < 0.2] = -100
        w = (rng.random(c) + 0.2).astype(dtype)
        for reduction in ("mean", "sum", "none"):
            for temperature in (1.0, 0.3):
                loss, grad = logitkit.stablemax_cross_entropy(x, t, w, temperature=temperature, reduction=reduction,
                                                              return_grad=True)
                ref_loss, ref_grad = ref(x, t, w, temperature, reduction)
                rtol, atol = (1e-11, 1e-13) if dtype == np.float64 else (1e-4, 1e-6)
                np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=atol)
                np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=atol)
    # a confident row keeps its digits (1 - p_t = rest / S), and overflowing c x uses the exact path
    x = np.array([[1e12, 0.0, -1.0], [3e38, 1.0, 2.0]])
    loss = logitkit.stablemax_cross_entropy(x, np.array([0, 0]), reduction="none")
    np.testing.assert_allclose(loss[0], np.log1p(1.5 / (1e12 + 1)), rtol=1e-12)
    loss = logitkit.stablemax_cross_entropy(x.astype(np.float32), np.array([0, 0]), temperature=0.25,
                                            reduction="none")
    assert np.isfinite(loss).all() and (loss >= 0).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_spherical_z_loss_matches_torch(isa, dtype):
    rng = np.random.default_rng(43)

    def ref(x, t, a, b, reduction="mean", sw=None):
        xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
        z = (xt - xt.mean(-1, keepdim=True)) / xt.std(-1, unbiased=False, keepdim=True)
        keep = torch.tensor(t != -100)
        zt = z.gather(-1, torch.tensor(np.where(t != -100, t, 0))[:, None])[:, 0]
        rows = F.softplus(a * (b - zt)) / a
        wr = torch.where(keep, torch.ones_like(rows) if sw is None else torch.tensor(sw), torch.zeros_like(rows))
        rows = rows * wr
        loss = {"mean": lambda: rows.sum() / wr.sum(), "sum": rows.sum, "none": lambda: rows}[reduction]()
        loss.backward(torch.ones_like(loss))
        return loss.detach().numpy(), xt.grad.numpy()

    for n, c in [(3, 2), (20, 10), (16, 1000)]:
        x = (rng.standard_normal((n, c)) * 3 + 1).astype(dtype)
        t = rng.integers(0, c, n)
        t[0] = -100
        sw = (rng.random(n) + 0.5).astype(dtype)
        for a, b in [(0.1, 10.0), (1.0, 1.0), (3.0, -2.0)]:
            for reduction in ("mean", "sum", "none"):
                loss, grad = logitkit.spherical_z_loss(x, t, a, b, reduction=reduction, sample_weight=sw,
                                                       return_grad=True)
                ref_loss, ref_grad = ref(x, t, a, b, reduction, sw)
                rtol, atol = (1e-11, 1e-13) if dtype == np.float64 else (1e-4, 1e-6)
                np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=atol)
                np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=atol)
    # shift and scale invariance; a constant row has no z-scores
    x, t = rng.standard_normal((5, 7)), rng.integers(0, 7, 5)
    np.testing.assert_allclose(logitkit.spherical_z_loss(3 * x + 100, t, reduction="none"),
                               logitkit.spherical_z_loss(x, t, reduction="none"), rtol=1e-11)
    assert np.isnan(logitkit.spherical_z_loss(np.ones((1, 4)), np.array([1])))


def test_own_driver_losses_layouts_in_place_threads_and_errors(isa):
    rng = np.random.default_rng(44)
    x = rng.standard_normal((3, 8, 5)) * 2
    t = rng.integers(0, 8, (3, 5))
    fns = [logitkit.stablemax_cross_entropy, logitkit.sparsemax_loss, logitkit.entmax15_loss,
           logitkit.spherical_z_loss]
    for fn in fns:
        loss, grad = fn(x, t, axis=1, reduction="none", return_grad=True)
        ref_loss, ref_grad = fn(np.moveaxis(x, 1, -1).copy(), t, reduction="none", return_grad=True)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
        np.testing.assert_allclose(grad, np.moveaxis(ref_grad, -1, 1), rtol=1e-13, atol=1e-16)
        xin = x.copy()
        loss2, grad2 = fn(xin, t, axis=1, reduction="sum", return_grad=True, out_grad=xin)
        assert grad2 is xin
        np.testing.assert_array_equal(grad2, fn(x, t, axis=1, reduction="sum", return_grad=True)[1])
        with pytest.raises(ValueError, match="target"):
            fn(x, np.full((3, 5), 8), axis=1)
        with pytest.raises(ValueError, match="weight"):
            fn(x, t, axis=1, weight=np.ones(3))
    big = rng.standard_normal((3000, 200), dtype=np.float32)
    tb = rng.integers(0, 200, 3000)
    saved = logitkit.get_num_threads()
    try:
        for fn in fns:
            out = []
            for threads in (1, 2, 3):
                logitkit.set_num_threads(threads)
                lo, gr = fn(big, tb, return_grad=True)
                out.append((lo.tobytes(), gr.tobytes()))
            assert out[0] == out[1] == out[2]
    finally:
        logitkit.set_num_threads(saved)
    with pytest.raises(ValueError, match="a"):
        logitkit.spherical_z_loss(x, t, a=0.0, axis=1)
    with pytest.raises(ValueError, match="b"):
        logitkit.spherical_z_loss(x, t, b=np.inf, axis=1)
    with pytest.raises(ValueError, match="temperature"):
        logitkit.sparsemax_loss(x, t, temperature=-1.0, axis=1)


def test_bias_loss_recipe(isa):
    # README's Bias Loss recipe: cross-entropy scaled per sample by exp(alpha v) - beta, over N
    rng = np.random.default_rng(45)
    n, c = 16, 10
    feats = rng.standard_normal((n, 4, 3, 3)) * rng.random((n, 1, 1, 1))
    logits, target = rng.standard_normal((n, c)), rng.integers(0, c, n)
    v = feats.reshape(n, -1).var(axis=1)
    v = (v - v.min()) / (v.max() - v.min())
    w = np.exp(0.3 * v) - 0.3
    loss, grad = logitkit.cross_entropy(logits, target, sample_weight=w, reduction="sum", return_grad=True,
                                        grad_output=1.0 / n)
    xt = torch.tensor(logits, requires_grad=True)
    ref = (torch.tensor(w) * F.cross_entropy(xt, torch.tensor(target), reduction="none")).mean()
    ref.backward()
    np.testing.assert_allclose(loss / n, ref.item(), rtol=1e-13)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-16)
