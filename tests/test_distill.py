"""kl_div, jsd and tvd on logits against torch float64 compositions (log_softmax, F.kl_div with
log_target, autograd for the gradient with respect to the student), on every ISA: both KL
directions, the generalised JSD and its beta = 0 / 1 limits, TVD, temperature with and without
T^2, every reduction, sample_weight, per-row grad_output, layouts, in-place gradients, masked
(-inf) classes, reduced precision, thread invariance and argument errors."""

from __future__ import annotations

import logitkit
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_div(s, t, kind, temperature=1.0, squared=True, beta=0.5, reduction="batchmean", sw=None, grad_output=1.0):
    """torch float64 of the divergence per row (class axis last), reduced, with autograd's gradient."""
    st = torch.tensor(np.asarray(s, np.float64), requires_grad=True)
    tt = torch.tensor(np.asarray(t, np.float64))
    lp = F.log_softmax(st / temperature, -1)
    lq = F.log_softmax(tt / temperature, -1)
    p, q = lp.exp(), lq.exp()
    if kind == "forward":
        rows = F.kl_div(lp, lq, log_target=True, reduction="none").sum(-1)
    elif kind == "reverse":
        rows = F.kl_div(lq, lp, log_target=True, reduction="none").sum(-1)
    elif kind == "jsd":
        m = beta * q + (1 - beta) * p
        lm = m.log()
        rows = beta * torch.xlogy(q, q).sum(-1) - beta * (q * lm).sum(-1) + (1 - beta) * (p * (lp - lm)).sum(-1)
    else:
        rows = 0.5 * (p - q).abs().sum(-1)
    if squared:
        rows = rows * temperature**2
    if sw is not None:
        rows = rows * torch.tensor(sw)
    n = rows.numel()
    if reduction == "batchmean":
        loss = rows.sum() / (n if sw is None else float(np.sum(sw)))
    elif reduction == "mean":
        loss = rows.sum() / (n if sw is None else float(np.sum(sw))) / s.shape[-1]
    elif reduction == "sum":
        loss = rows.sum()
    else:
        loss = rows
    loss.backward(torch.as_tensor(grad_output, dtype=loss.dtype).expand_as(loss))
    return loss.detach().numpy(), st.grad.numpy()


CASES = [("forward", {}), ("reverse", {}), ("jsd", {"beta": 0.5}), ("jsd", {"beta": 0.2}), ("tvd", {})]


def call(kind, s, t, **kw):
    if kind in ("forward", "reverse"):
        return logitkit.kl_div(s, t, direction=kind, **kw)
    if kind == "jsd":
        return logitkit.jsd(s, t, **kw)
    return logitkit.tvd(s, t, **kw)


@pytest.mark.parametrize("kind,extra", CASES)
@pytest.mark.parametrize("reduction", ["batchmean", "sum", "none", "mean"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_torch(isa, kind, extra, reduction, dtype):
    rng = np.random.default_rng(21)
    for n, c in [(1, 1), (6, 5), (37, 100), (20, 3001)]:
        s = (rng.standard_normal((n, c)) * 3).astype(dtype)
        t = (s + rng.standard_normal((n, c)) * 2).astype(dtype)
        for temperature, squared in [(1.0, True), (2.5, True), (0.5, False)]:
            loss, grad = call(kind, s, t, temperature=temperature, temperature_squared=squared, reduction=reduction,
                              return_grad=True, grad_output=1.3, **extra)
            ref_loss, ref_grad = torch_div(s, t, kind, temperature, squared, reduction=reduction, grad_output=1.3,
                                           **extra)
            assert np.asarray(loss).dtype == dtype and grad.dtype == dtype
            # float32: the divergence is a difference of terms of size |log p| ~ |x| / T
            rtol, atol = (1e-11, 1e-13) if dtype == np.float64 else (1e-4, 2e-5)
            np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=atol * max(1.0, 1 / temperature))
            # float32 gradient: p (log p - log q - KL) with log-ratio terms of size |x| / T ~ 20
            # each rounded to 2^-24 relative, so near a sign change of the bracket ~1e-5 absolute
            np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=atol * (1e-1 if dtype == np.float64 else 0.5))
            np.testing.assert_array_equal(
                call(kind, s, t, temperature=temperature, temperature_squared=squared, reduction=reduction, **extra),
                loss)


def test_jsd_limits_and_identities(isa):
    rng = np.random.default_rng(22)
    s, t = rng.standard_normal((8, 30)), rng.standard_normal((8, 30)) * 2
    np.testing.assert_array_equal(logitkit.jsd(s, t, beta=0.0), logitkit.kl_div(s, t))
    np.testing.assert_array_equal(logitkit.jsd(s, t, beta=1.0), logitkit.kl_div(s, t, direction="reverse"))
    # beta -> 0: JSD_beta / beta -> KL(q || p) (the limit the convention follows)
    np.testing.assert_allclose(logitkit.jsd(s, t, beta=1e-6) / 1e-6, logitkit.kl_div(s, t), rtol=1e-4)
    # the symmetric JSD is symmetric and at most log 2; every divergence of a row with itself is 0
    np.testing.assert_allclose(logitkit.jsd(s, t), logitkit.jsd(t, s), rtol=1e-13)
    assert logitkit.jsd(s, t, reduction="none").max() <= np.log(2)
    for kind, extra in CASES:
        loss, grad = call(kind, s, s, return_grad=True, reduction="none", **extra)
        np.testing.assert_allclose(loss, 0, atol=1e-14)
        np.testing.assert_allclose(grad, 0, atol=1e-15)
    # shifting either row by a constant changes nothing
    np.testing.assert_allclose(logitkit.kl_div(s + 100, t - 7), logitkit.kl_div(s, t), rtol=1e-12)


def test_masked_classes_and_special_values(isa):
    s = np.array([[0.0, -np.inf, 1.0, 2.0], [1.0, 2.0, -np.inf, 0.5], [3e38, 3e38, -3e38, 0.0]])
    t = np.array([[1.0, -np.inf, 0.0, 0.5], [0.0, 1.0, 2.0, 0.0], [3e38, 0.0, -3e38, 0.0]])
    # both masked: the class adds nothing; only the student's masked (row 1): forward KL infinite,
    # reverse KL finite
    fwd = logitkit.kl_div(s, t, reduction="none")
    rev = logitkit.kl_div(s, t, direction="reverse", reduction="none")
    # float64 NumPy with 0 log 0 = 0 (torch's kl_div gives NaN where both are -inf)
    def log_softmax(x):
        z = x - x.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    lp, lq = log_softmax(s[:2]), log_softmax(t[:2])
    with np.errstate(invalid="ignore"):
        ref_f = np.where(lq > -np.inf, np.exp(lq) * (lq - lp), 0.0).sum(-1)
        ref_r = np.where(lp > -np.inf, np.exp(lp) * (lp - lq), 0.0).sum(-1)
    assert np.isnan(torch_div(s[:1], t[:1], "forward", reduction="none")[0][0])
    np.testing.assert_allclose(fwd[0], ref_f[0], rtol=1e-13)
    assert fwd[1] == np.inf
    np.testing.assert_allclose(rev[:2], ref_r, rtol=1e-13)
    assert np.isfinite(fwd[2]) and np.isfinite(rev[2])
    for kind, extra in CASES:
        loss, grad = call(kind, s[[0]], t[[0]], reduction="none", return_grad=True, **extra)
        assert np.isfinite(loss).all() and np.isfinite(grad).all() and grad[0, 1] == 0
        assert np.isnan(call(kind, np.array([[np.nan, 0.0]]), np.zeros((1, 2)), **extra))


def test_sample_weight_grad_output_rows_layouts_and_in_place(isa):
    rng = np.random.default_rng(23)
    s = rng.standard_normal((3, 7, 5)) * 2
    t = rng.standard_normal((3, 7, 5)) * 2
    sw = rng.random((3, 5)) + 0.1
    go = rng.standard_normal((3, 5))
    for kind, extra in CASES:
        # the class axis in the middle
        sm, tm = np.moveaxis(s, 1, -1), np.moveaxis(t, 1, -1)
        loss, grad = call(kind, s, t, axis=1, sample_weight=sw, return_grad=True, temperature=1.7, **extra)
        ref_loss, ref_grad = torch_div(sm, tm, kind, 1.7, sw=sw, **extra)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
        np.testing.assert_allclose(grad, np.moveaxis(ref_grad, -1, 1), rtol=1e-11, atol=1e-14)
        loss, grad = call(kind, s, t, axis=1, reduction="none", return_grad=True, grad_output=go, **extra)
        ref_loss, ref_grad = torch_div(sm, tm, kind, reduction="none", grad_output=go, **extra)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(grad, np.moveaxis(ref_grad, -1, 1), rtol=1e-11, atol=1e-14)
        # strided student and teacher; the gradient in place over the student
        ss, ts = s[:, ::2, :], t[:, 1::2, :][:, :3]
        ref = call(kind, np.ascontiguousarray(ss[:, :3]), np.ascontiguousarray(ts), axis=1, return_grad=True, **extra)
        x = np.ascontiguousarray(ss[:, :3])
        loss, grad = call(kind, x, ts, axis=1, return_grad=True, out_grad=x, **extra)
        assert grad is x and loss == ref[0]
        np.testing.assert_array_equal(grad, ref[1])


def test_long_rows_streamed_and_threads():
    rng = np.random.default_rng(24)
    s = rng.standard_normal((100, 1 << 17), dtype=np.float32) * 2
    t = rng.standard_normal((100, 1 << 17), dtype=np.float32) * 2
    loss, grad = logitkit.kl_div(s, t, temperature=2.0, return_grad=True)
    ref_loss, ref_grad = torch_div(s, t, "forward", 2.0)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-3, atol=1e-10)
    saved = logitkit.get_num_threads()
    try:
        out = []
        for threads in (1, 2, 3):
            logitkit.set_num_threads(threads)
            lo, gr = logitkit.jsd(s[:, :5000], t[:, :5000], beta=0.3, return_grad=True)
            out.append((lo.tobytes(), gr.tobytes()))
        assert out[0] == out[1] == out[2]
    finally:
        logitkit.set_num_threads(saved)


def test_reduced_precision(isa):
    rng = np.random.default_rng(25)
    s = rng.standard_normal((40, 300)).astype(np.float16)
    t = rng.standard_normal((40, 300)).astype(np.float16)
    loss, grad = logitkit.kl_div(s, t, return_grad=True)
    ref_loss, ref_grad = torch_div(s.astype(np.float64), t.astype(np.float64), "forward")
    assert loss.dtype == np.float16 and grad.dtype == np.float16
    np.testing.assert_allclose(float(loss), ref_loss, rtol=2e-3)
    np.testing.assert_allclose(grad.astype(np.float64), ref_grad, rtol=1e-2, atol=1e-5)


def test_errors_name_the_argument():
    s, t = np.zeros((3, 4)), np.zeros((3, 4))
    cases = [
        (lambda: logitkit.kl_div(s, np.zeros((3, 5))), ValueError, "teacher_logits"),
        (lambda: logitkit.kl_div(s, np.array([["a"] * 4] * 3)), TypeError, "teacher_logits"),
        (lambda: logitkit.kl_div(np.ones((3, 4), bool), t), TypeError, "student_logits"),
        (lambda: logitkit.kl_div(s, t, direction="both"), ValueError, "direction"),
        (lambda: logitkit.kl_div(s, t, reduction="avg"), ValueError, "reduction"),
        (lambda: logitkit.kl_div(s, t, temperature=0), ValueError, "temperature"),
        (lambda: logitkit.kl_div(s, t, temperature_squared="yes"), TypeError, "temperature_squared"),
        (lambda: logitkit.jsd(s, t, beta=1.5), ValueError, "beta"),
        (lambda: logitkit.tvd(s, t, sample_weight=np.ones(4)), ValueError, "sample_weight"),
        (lambda: logitkit.tvd(s, t, axis=2), np.exceptions.AxisError, "axis"),
        (lambda: logitkit.kl_div(s, t, return_grad=True, out_grad=np.zeros((4, 3))), ValueError, "out_grad"),
        (lambda: logitkit.kl_div(s, t, return_grad=True, grad_output=np.ones(3)), ValueError, "grad_output"),
        (lambda: logitkit.kl_div(s, t, out_grad=np.zeros((3, 4))), ValueError, "out_grad"),
    ]
    for f, exc, name in cases:
        with pytest.raises(exc, match=name):
            f()


# --- kl_div_topk: the sparse teacher


def topk_reference(s, lq, ids, temperature=1.0, squared=True, reduction="batchmean", sw=None, grad_output=1.0):
    """torch float64: the dense KL against the teacher scattered to its ids (q = 0 elsewhere)."""
    st = torch.tensor(np.asarray(s, np.float64), requires_grad=True)
    lp = F.log_softmax(st / temperature, -1)
    q_k = torch.softmax(torch.tensor(np.asarray(lq, np.float64)) / temperature, -1)
    q = torch.zeros_like(lp).scatter(-1, torch.tensor(ids), q_k)
    rows = (torch.xlogy(q, q) - q * lp).sum(-1) * (temperature**2 if squared else 1.0)
    if sw is not None:
        rows = rows * torch.tensor(sw)
    total = rows.numel() if sw is None else float(np.sum(sw))
    loss = {"batchmean": lambda: rows.sum() / total, "sum": rows.sum, "none": lambda: rows,
            "mean": lambda: rows.sum() / total / s.shape[-1]}[reduction]()
    loss.backward(torch.as_tensor(grad_output, dtype=loss.dtype).expand_as(loss))
    return loss.detach().numpy(), st.grad.numpy()


def sparse_teacher(rng, n, c, k):
    ids = np.argsort(rng.random((n, c)), -1)[:, :k]
    t = rng.standard_normal((n, c)) * 2
    lq = (t - np.log(np.exp(t).sum(-1, keepdims=True)))
    return np.take_along_axis(lq, ids, -1), ids


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "none", "mean"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kl_div_topk_matches_dense_torch(isa, reduction, dtype):
    rng = np.random.default_rng(26)
    for n, c, k in [(1, 1, 1), (7, 10, 3), (30, 500, 20), (5, 4000, 64)]:
        s = (rng.standard_normal((n, c)) * 2).astype(dtype)
        lq, ids = sparse_teacher(rng, n, c, k)
        lq = lq.astype(dtype)
        for temperature, squared in [(1.0, True), (2.0, True), (0.5, False)]:
            loss, grad = logitkit.kl_div_topk(s, lq, ids, temperature=temperature, temperature_squared=squared,
                                              reduction=reduction, return_grad=True, grad_output=0.9)
            ref_loss, ref_grad = topk_reference(s, lq, ids, temperature, squared, reduction, grad_output=0.9)
            rtol, atol = (1e-11, 1e-13) if dtype == np.float64 else (1e-4, 1e-6)
            np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=atol)
            np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=atol)


def test_kl_div_topk_equals_dense_kl_when_k_is_c_and_more(isa):
    rng = np.random.default_rng(27)
    s, t = rng.standard_normal((6, 9)), rng.standard_normal((6, 9))
    lq = t - np.log(np.exp(t).sum(-1, keepdims=True))
    perm = np.argsort(rng.random((6, 9)), -1)
    a = logitkit.kl_div_topk(s, np.take_along_axis(lq, perm, -1), perm, temperature=1.5, return_grad=True)
    b = logitkit.kl_div(s, t, temperature=1.5, return_grad=True)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-11, atol=1e-15)
    # class axis first, int32 ids, sample weights, per-row grad_output, in place, -inf teacher entries
    lq_k, ids = sparse_teacher(rng, 6, 9, 4)
    lq_k[0, 1] = -np.inf
    sw, go = rng.random(6) + 0.5, rng.standard_normal(6)
    loss, grad = logitkit.kl_div_topk(s.T, lq_k.T, ids.T.astype(np.int32), axis=0, sample_weight=sw,
                                      reduction="none", return_grad=True, grad_output=go)
    ref_loss, ref_grad = topk_reference(s, lq_k, ids, reduction="none", sw=sw, grad_output=go)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_grad.T, rtol=1e-11, atol=1e-15)
    x = s.copy()
    ref = logitkit.kl_div_topk(s, lq_k, ids, return_grad=True)
    out = logitkit.kl_div_topk(x, lq_k, ids, return_grad=True, out_grad=x)
    assert out[1] is x and out[0] == ref[0]
    np.testing.assert_array_equal(x, ref[1])


def test_kl_div_topk_errors():
    s = np.zeros((3, 5))
    lq = np.log(np.full((3, 2), 0.5))
    ids = np.array([[0, 1], [2, 3], [4, 0]])
    g = np.full((3, 5), 7.0)
    for bad, msg in [(np.array([[0, 1], [2, 5], [4, 0]]), "out of range"),
                     (np.array([[0, 1], [2, 2], [4, 0]]), "twice"),
                     (np.array([[0, -1], [2, 3], [4, 0]]), "out of range")]:
        with pytest.raises(ValueError, match="teacher_ids"):
            logitkit.kl_div_topk(s, lq, bad)
        with pytest.raises(ValueError, match=msg):
            logitkit.kl_div_topk(s, lq, bad, return_grad=True, out_grad=g)
        assert (g == 7.0).all()  # nothing written before the ids are checked
    with pytest.raises(ValueError, match="teacher_ids"):
        logitkit.kl_div_topk(s, lq, ids[:, :1])
    with pytest.raises(ValueError, match="teacher_logprobs"):
        logitkit.kl_div_topk(s, lq[:2], ids[:2])
    with pytest.raises(TypeError, match="teacher_ids"):
        logitkit.kl_div_topk(s, lq, ids.astype(float))
    with pytest.raises(ValueError, match="teacher_ids"):
        logitkit.kl_div_topk(s[:, :1], lq, ids)


# --- dkd_loss and nkd_loss against torch float64 compositions of the authors' formulas


def torch_dkd(s, t, target, alpha, beta, temperature):
    """Per-row DKD as the authors' dkd_loss computes it (TCKD on the binary split, NCKD with the
    target masked out), before the batch mean."""
    st = torch.tensor(np.asarray(s, np.float64), requires_grad=True)
    tt = torch.tensor(np.asarray(t, np.float64))
    gt = F.one_hot(torch.tensor(target), s.shape[-1]).bool()
    ps, pt = F.softmax(st / temperature, -1), F.softmax(tt / temperature, -1)
    bs = torch.stack([(ps * gt).sum(-1), (ps * ~gt).sum(-1)], -1)
    bt = torch.stack([(pt * gt).sum(-1), (pt * ~gt).sum(-1)], -1)
    tckd = (torch.xlogy(bt, bt) - bt * torch.log(bs)).sum(-1)
    big = torch.where(gt, torch.tensor(-torch.inf, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    lps2 = F.log_softmax(st / temperature + big, -1)
    lpt2 = F.log_softmax(tt / temperature + big, -1)
    pt2 = lpt2.exp()
    nckd = torch.where(gt, torch.zeros_like(pt2), pt2 * (lpt2 - lps2)).sum(-1)
    return (alpha * tckd + beta * nckd) * temperature**2, st


def torch_nkd(s, t, target, gamma, temperature):
    """Per-row NKD as the authors' NKDLoss computes it, before the batch mean."""
    st = torch.tensor(np.asarray(s, np.float64), requires_grad=True)
    tt = torch.tensor(np.asarray(t, np.float64))
    idx = torch.tensor(target)[:, None]
    s_t = F.log_softmax(st, -1).gather(-1, idx)[:, 0]
    t_t = F.softmax(tt, -1).gather(-1, idx)[:, 0]
    gt = F.one_hot(idx[:, 0], s.shape[-1]).bool()
    n, c = s.shape
    s_non = st[~gt].reshape(n, c - 1)
    t_non = tt[~gt].reshape(n, c - 1)
    non = (F.softmax(t_non / temperature, -1) * F.log_softmax(s_non / temperature, -1)).sum(-1)
    return -t_t * s_t - gamma * temperature**2 * non, st


@pytest.mark.parametrize("kind", ["dkd", "nkd"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_target_distillation_matches_torch(isa, kind, dtype):
    rng = np.random.default_rng(28)
    for n, c in [(1, 2), (8, 5), (40, 300), (6, 3000)]:
        s = (rng.standard_normal((n, c)) * 3).astype(dtype)
        t = (s + rng.standard_normal((n, c)) * 2).astype(dtype)
        target = rng.integers(0, c, n)
        t[0, target[0]] += 25  # a confident teacher: q_t near 1, NCKD from the rest without cancellation
        sw = (rng.random(n) + 0.5).astype(dtype)
        settings = [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)] if kind == "dkd" else [(1.5, 1.0), (1.0, 3.0)]
        for params in settings:
            if kind == "dkd":
                rows, st = torch_dkd(s, t, target, *params)
                kw = dict(alpha=params[0], beta=params[1], temperature=params[2])
                fn = logitkit.dkd_loss
            else:
                rows, st = torch_nkd(s, t, target, *params)
                kw = dict(gamma=params[0], temperature=params[1])
                fn = logitkit.nkd_loss
            ref = (rows * torch.tensor(sw)).sum() / float(np.sum(sw))
            ref.backward()
            loss, grad = fn(s, t, target, sample_weight=sw, return_grad=True, **kw)
            rtol, atol = (1e-10, 1e-12) if dtype == np.float64 else (2e-4, 1e-5)
            np.testing.assert_allclose(loss, ref.item(), rtol=rtol, atol=atol)
            np.testing.assert_allclose(grad, st.grad.numpy(), rtol=rtol, atol=atol)
            rows_got = fn(s, t, target, reduction="none", **kw)
            np.testing.assert_allclose(rows_got, rows.detach().numpy(), rtol=rtol, atol=atol)


def test_target_distillation_layouts_ignored_rows_and_errors(isa):
    rng = np.random.default_rng(29)
    s, t = rng.standard_normal((4, 7, 3)), rng.standard_normal((4, 7, 3))
    target = rng.integers(0, 7, (4, 3))
    target[0, 0] = -100
    for fn in (logitkit.dkd_loss, logitkit.nkd_loss):
        loss, grad = fn(s, t, target, axis=1, reduction="none", return_grad=True)
        ref_loss, ref_grad = fn(np.moveaxis(s, 1, -1).copy(), np.moveaxis(t, 1, -1).copy(), target,
                                reduction="none", return_grad=True)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
        np.testing.assert_allclose(grad, np.moveaxis(ref_grad, -1, 1), rtol=1e-13, atol=1e-16)
        assert loss[0, 0] == 0 and (grad[0, :, 0] == 0).all()
        x = s.copy()
        out = fn(x, t, target, axis=1, return_grad=True, out_grad=x)
        assert out[1] is x
        np.testing.assert_array_equal(x, fn(s, t, target, axis=1, return_grad=True)[1])
        with pytest.raises(ValueError, match="teacher_logits"):
            fn(s, t[:2], target, axis=1)
        with pytest.raises(ValueError, match="target"):
            fn(s, t, np.full((4, 3), 7), axis=1)
    with pytest.raises(ValueError, match="beta"):
        logitkit.dkd_loss(s, t, target, axis=1, beta=np.inf)
    with pytest.raises(ValueError, match="temperature"):
        logitkit.nkd_loss(s, t, target, axis=1, temperature=0.0)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kl_of_rows_far_apart_does_not_cancel(isa, direction, dtype):
    """KL between rows offset by a large constant from each other: the sums take each row relative
    to its maximum, so the offset never meets the float sum (uniform rows 131072 apart gave -0.003
    in float32, a libFuzzer finding). Against float64 torch on the very same (rounded) values."""
    rng = np.random.default_rng(9)
    t = (rng.standard_normal((4, 29)) / 4).astype(dtype)
    t[0] = -0.03125  # the finding: uniform rows, KL exactly 0
    for offset, noise in ((131072, 0.0), (65536, 1 / 8), (1e6, 1.0)):
        s = (t + (rng.standard_normal(t.shape) * noise) - offset).astype(dtype)
        got = logitkit.kl_div(s, t, direction=direction, reduction="none")
        lp = torch.log_softmax(torch.tensor(s.astype(np.float64)), -1)
        lq = torch.log_softmax(torch.tensor(t.astype(np.float64)), -1)
        want = (lq.exp() * (lq - lp)).sum(-1) if direction == "forward" else (lp.exp() * (lp - lq)).sum(-1)
        tol = 2e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(got, want.numpy(), rtol=tol, atol=tol, err_msg=f"offset {offset}")
        assert got[0] == 0 or noise > 0
