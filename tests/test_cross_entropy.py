"""cross_entropy (class-index targets) against torch.nn.functional.cross_entropy (loss and autograd
gradient, float64 and float32) on every option torch has, against float64 NumPy for what torch
lacks (sample_weight, temperature, per-row grad_output), on every ISA; plus special values,
layouts, in-place gradients, reduced precision, thread invariance and argument errors."""

from __future__ import annotations

import logitkit
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional


def targets(rng, batch_shape, classes, ignore_index=-100, ignored=0.2):
    t = rng.integers(0, classes, batch_shape)
    t[rng.random(batch_shape) < ignored] = ignore_index
    return t


def torch_ce(x, t, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, axis=-1, grad_output=1.0):
    xt = torch.tensor(np.moveaxis(x, axis, 1) if x.ndim > 1 else x, requires_grad=True)
    w = None if weight is None else torch.tensor(weight)
    loss = F.cross_entropy(xt, torch.tensor(t), weight=w, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)
    loss.backward(torch.as_tensor(grad_output, dtype=loss.dtype).expand_as(loss))
    g = xt.grad.numpy()
    return loss.detach().numpy(), (np.moveaxis(g, 1, axis) if x.ndim > 1 else g)


def ref_ce(x, t, w=None, sw=None, ls=0.0, temperature=1.0, ignore_index=-100):
    """float64 NumPy: per-row losses and row weights (the class axis last)."""
    z = np.asarray(x, np.float64) / temperature
    logp = z - z.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    c = z.shape[-1]
    wc = np.ones(c) if w is None else np.asarray(w, np.float64)
    keep = t != ignore_index
    tt = np.where(keep, t, 0)
    nll = -wc[tt] * np.take_along_axis(logp, tt[..., None], -1)[..., 0]
    smooth = -(logp * wc).sum(-1)
    rows = (1 - ls) * nll + ls / c * smooth
    rw = wc[tt] * (1.0 if sw is None else sw)
    rows = np.where(keep, rows * (1.0 if sw is None else sw), 0.0)
    return rows, np.where(keep, rw, 0.0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_torch(isa, reduction, weighted, label_smoothing, dtype):
    rng = np.random.default_rng(1)
    for n, c in [(1, 1), (7, 5), (64, 33), (130, 1000)]:
        x = (rng.standard_normal((n, c)) * 4).astype(dtype)
        t = targets(rng, (n,), c)
        w = (rng.random(c) + 0.1).astype(dtype) if weighted else None
        loss, grad = logitkit.cross_entropy(x, t, w, reduction=reduction, label_smoothing=label_smoothing,
                                            return_grad=True, grad_output=1.5)
        ref_loss, ref_grad = torch_ce(x, t, w, reduction=reduction, label_smoothing=label_smoothing, grad_output=1.5)
        rtol, atol = (1e-12, 1e-15) if dtype == np.float64 else (2e-5, 2e-7)
        assert np.asarray(loss).dtype == dtype and grad.dtype == dtype
        np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=atol)
        # atol: the terms of A p_c - w_c cancel (to 0 for a single class): eps of the terms (~1)
        np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=atol)
        np.testing.assert_array_equal(
            logitkit.cross_entropy(x, t, w, reduction=reduction, label_smoothing=label_smoothing), loss)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_class_axis(isa, axis):
    rng = np.random.default_rng(2)
    shape = (3, 6, 4)
    x = rng.standard_normal(shape) * 3
    batch = tuple(n for d, n in enumerate(shape) if d != axis % 3)
    t = targets(rng, batch, shape[axis])
    w = rng.random(shape[axis]) + 0.5
    for reduction in ("mean", "sum", "none"):
        loss, grad = logitkit.cross_entropy(x, t, w, axis=axis, reduction=reduction, label_smoothing=0.3,
                                            return_grad=True)
        ref_loss, ref_grad = torch_ce(x, t, w, reduction=reduction, label_smoothing=0.3, axis=axis)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-16)


def test_special_values_as_torch(isa):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 7)) * 2
    x[0, 3] = -np.inf  # a masked vocabulary entry
    x[1, :] = [3e38, -3e38, 1e38, 0, -1, 2e38, 3e38]  # huge logits, tied maxima
    x[2, 1] = np.nan
    x[3, :] = -np.inf
    x[3, 2] = 0.0  # one finite logit: p = 1 there
    t = np.array([1, 0, 4, 2, -100, 6])
    for reduction in ("none", "sum"):
        loss, grad = logitkit.cross_entropy(x, t, reduction=reduction, return_grad=True)
        ref_loss, ref_grad = torch_ce(x, t, reduction=reduction)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-13, equal_nan=True)
        np.testing.assert_allclose(grad[[0, 1, 3, 4, 5]], ref_grad[[0, 1, 3, 4, 5]], rtol=1e-13, atol=1e-300)
        assert np.isnan(grad[2]).all() and np.isnan(ref_grad[2]).all()
    # every row ignored: NaN mean, zero gradient; zero class weight on every target: NaN (torch)
    t = np.full(6, -100)
    loss, grad = logitkit.cross_entropy(x[[0, 4, 5]], t[:3], return_grad=True)
    ref_loss, ref_grad = torch_ce(x[[0, 4, 5]], t[:3])
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(grad, ref_grad)
    w = np.zeros(7)
    y = rng.standard_normal((4, 7))
    np.testing.assert_array_equal(logitkit.cross_entropy(y, np.array([1, 2, 3, 4]), w),
                                  torch_ce(y, np.array([1, 2, 3, 4]), w)[0])


def test_sample_weight_temperature_and_per_row_grad_output(isa):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 11)) * 5
    t = targets(rng, (40,), 11)
    w = rng.random(11) + 0.2
    sw = rng.random(40)
    for temperature in (1.0, 0.5, 3.0):
        rows, rw = ref_ce(x, t, w, sw, ls=0.2, temperature=temperature)
        got = logitkit.cross_entropy(x, t, w, sample_weight=sw, label_smoothing=0.2, temperature=temperature,
                                     reduction="none")
        np.testing.assert_allclose(got, rows, rtol=1e-13)
        mean = logitkit.cross_entropy(x, t, w, sample_weight=sw, label_smoothing=0.2, temperature=temperature)
        np.testing.assert_allclose(mean, rows.sum() / rw.sum(), rtol=1e-13)
        # the gradient: autograd through the same formula in torch (float64)
        xt = torch.tensor(x, requires_grad=True)
        logp = torch.log_softmax(xt / temperature, -1)
        keep = torch.tensor(t != -100)
        tt = torch.tensor(np.where(t != -100, t, 0))
        wt = torch.tensor(w)
        nll = -wt[tt] * logp.gather(1, tt[:, None])[:, 0]
        smooth = -(logp * wt).sum(-1)
        per_row = torch.where(keep, (0.8 * nll + 0.2 / 11 * smooth) * torch.tensor(sw), torch.zeros(()))
        go = rng.standard_normal(40)
        per_row.backward(torch.tensor(go))
        _, grad = logitkit.cross_entropy(x, t, w, sample_weight=sw, label_smoothing=0.2, temperature=temperature,
                                         reduction="none", return_grad=True, grad_output=go)
        np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_reduced_precision(isa):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, 50)) * 4
    x[0, 7] = 30.0  # a confident row: p_t - 1 cancels
    t = targets(rng, (32,), 50)
    t[0] = 7
    ref_loss, ref_grad = torch_ce(x.astype(np.float16).astype(np.float64), t)
    loss, grad = logitkit.cross_entropy(x.astype(np.float16), t, return_grad=True)
    assert np.asarray(loss).dtype == np.float16 and grad.dtype == np.float16
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-3)
    np.testing.assert_allclose(grad.astype(np.float64), ref_grad, rtol=2e-3, atol=1e-7)
    bf16 = pytest.importorskip("ml_dtypes").bfloat16
    xb = x.astype(bf16)
    ref_loss, ref_grad = torch_ce(xb.astype(np.float64), t)
    loss, grad = logitkit.cross_entropy(xb, t, return_grad=True)
    assert grad.dtype == bf16
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-2)
    np.testing.assert_allclose(grad.astype(np.float64), ref_grad, rtol=1e-2, atol=1e-6)


def test_layouts_and_in_place_gradient(isa):
    rng = np.random.default_rng(6)
    base = rng.standard_normal((64, 80)) * 3
    t = targets(rng, (64,), 40)
    strided = base[:, ::2]
    loss, grad = logitkit.cross_entropy(strided, t, label_smoothing=0.1, return_grad=True)
    ref_loss, ref_grad = torch_ce(np.ascontiguousarray(strided), t, label_smoothing=0.1)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-17)
    x = rng.standard_normal((64, 40))
    ref_loss, ref_grad = torch_ce(x, t, reduction="sum")
    inplace = x.copy()
    loss, grad = logitkit.cross_entropy(inplace, t, reduction="sum", return_grad=True, out_grad=inplace)
    assert grad is inplace
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    np.testing.assert_allclose(inplace, ref_grad, rtol=1e-12, atol=1e-17)
    xt = np.ascontiguousarray(x.T)  # class axis first, gradient over the logits in place
    loss, grad = logitkit.cross_entropy(xt, t, axis=0, reduction="sum", return_grad=True, out_grad=xt)
    np.testing.assert_allclose(grad.T, ref_grad, rtol=1e-12, atol=1e-17)


def test_long_rows_streamed_gradient():
    # rows of 2^16 classes, 40 MB of float32 gradient: past the last-level cache of most machines,
    # so the streaming-store path writes it
    rng = np.random.default_rng(9)
    x = rng.standard_normal((160, 1 << 16), dtype=np.float32) * 3
    t = rng.integers(0, 1 << 16, 160)
    loss, grad = logitkit.cross_entropy(x, t, return_grad=True)
    ref_loss, ref_grad = torch_ce(x, t)
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=2e-4, atol=1e-10)


def test_thread_count_invariance():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5000, 300), dtype=np.float32)
    t = targets(rng, (5000,), 300)
    w = rng.random(300).astype(np.float32)
    saved = logitkit.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            logitkit.set_num_threads(threads)
            loss, grad = logitkit.cross_entropy(x, t, w, label_smoothing=0.1, return_grad=True)
            results.append((loss.tobytes(), grad.tobytes()))
        assert results[0] == results[1] == results[2]
    finally:
        logitkit.set_num_threads(saved)


def test_errors_name_the_argument():
    x = np.zeros((3, 4))
    t = np.array([0, 1, 2])
    cases = [
        (dict(target=np.array([0, 4, 1])), ValueError, "target"),
        (dict(target=np.array([0, -2, 1])), ValueError, "target"),
        (dict(target=np.array([0.0, 1.0, 2.0])), ValueError, "target"),  # probabilities of the wrong shape
        (dict(target=np.array(["a", "b", "c"])), TypeError, "target"),
        (dict(target=np.array([[0, 1, 2]])), ValueError, "target"),
        (dict(weight=np.ones(5)), ValueError, "weight"),
        (dict(sample_weight=np.ones(2)), ValueError, "sample_weight"),
        (dict(reduction="batchmean"), ValueError, "reduction"),
        (dict(label_smoothing=1.5), ValueError, "label_smoothing"),
        (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
        (dict(label_smoothing="a"), TypeError, "label_smoothing"),
        (dict(temperature=0.0), ValueError, "temperature"),
        (dict(axis=3), np.exceptions.AxisError, "axis"),
        (dict(return_grad=True, out_grad=np.zeros((4, 3))), ValueError, "out_grad"),
        (dict(return_grad=True, out_grad=np.zeros((3, 4), np.float32)), TypeError, "out_grad"),
    ]
    for kwargs, exc, name in cases:
        args = dict(logits=x, target=t)
        args.update(kwargs)
        with pytest.raises(exc, match=name):
            logitkit.cross_entropy(**args)
    # a bad target writes no gradient
    g = np.full((3, 4), 7.0)
    with pytest.raises(ValueError, match=r"target: class index 9 \(row 2\)"):
        logitkit.cross_entropy(x, np.array([0, 1, 9]), return_grad=True, out_grad=g)
    assert (g == 7.0).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_z_loss(isa, reduction):
    # the PaLM / ST-MoE z-loss: z * logsumexp(logits)^2 per row not ignored, its "mean" over those
    # rows (Liger-Kernel's convention), added to the (weighted) cross-entropy; the gradient through
    # torch autograd of the same formula in float64
    rng = np.random.default_rng(10)
    x = rng.standard_normal((30, 17)) * 4
    t = targets(rng, (30,), 17)
    w = rng.random(17) + 0.3
    z = 1e-2
    xt = torch.tensor(x, requires_grad=True)
    keep = torch.tensor(t != -100)
    ce = F.cross_entropy(xt, torch.tensor(t), weight=torch.tensor(w), reduction=reduction, label_smoothing=0.1)
    lse = torch.logsumexp(xt, -1)
    zl = torch.where(keep, z * lse**2, torch.zeros(()))
    zl = {"mean": zl.sum() / keep.sum(), "sum": zl.sum(), "none": zl}[reduction]
    ref = ce + zl
    ref.backward(torch.ones_like(ref))
    loss, grad = logitkit.cross_entropy(x, t, w, reduction=reduction, label_smoothing=0.1, z_loss=z, return_grad=True)
    np.testing.assert_allclose(loss, ref.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-12, atol=1e-16)
    with pytest.raises(ValueError, match="z_loss"):
        logitkit.cross_entropy(x, t, z_loss=-1.0)


def test_strided_class_weight(isa):
    # a class weight read through a stride (a copy for the kernels) and a contiguous one agree with torch
    rng = np.random.default_rng(11)
    x = rng.standard_normal((20, 9)) * 3
    t = targets(rng, (20,), 9)
    w2 = rng.random(18) + 0.1
    for w in (w2[::2], np.ascontiguousarray(w2[::2])):
        loss, grad = logitkit.cross_entropy(x, t, w, label_smoothing=0.2, return_grad=True)
        ref_loss, ref_grad = torch_ce(x, t, np.ascontiguousarray(w), label_smoothing=0.2)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("return_grad", [False, True])
def test_common_call_fast_path_matches_general_path(isa, dtype, index, reduction, return_grad):
    """cross_entropy(logits, target[, ignore_index, reduction, return_grad]) on plain 2-D arrays is
    answered by a C++ fast path (small-call latency): the same bits, types and shapes as the
    general path, which an explicitly passed default (a new 0.0 object) takes."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((9, 33)) * 3).astype(dtype)
    t = rng.integers(0, 33, 9).astype(index)
    t[4] = 7
    fast = logitkit.cross_entropy(x, t, ignore_index=7, reduction=reduction, return_grad=return_grad)
    general = logitkit.cross_entropy(x, t, ignore_index=7, reduction=reduction, return_grad=return_grad,
                                     label_smoothing=float("0"))
    fast, general = (fast, general) if return_grad else ((fast,), (general,))
    for a, b in zip(fast, general, strict=True):
        assert type(a) is type(b) and np.shape(a) == np.shape(b) and np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_array_equal(a, b)
    want = F.cross_entropy(torch.tensor(x.astype(np.float64)), torch.tensor(t.astype(np.int64)), ignore_index=7,
                           reduction=reduction).numpy()
    np.testing.assert_allclose(fast[0], want, rtol=2e-6 if dtype == np.float32 else 1e-13)
    with pytest.raises(ValueError, match="^target"):
        logitkit.cross_entropy(x, np.full(9, 40, index))
