"""nll_loss against torch.nn.functional.nll_loss (loss and autograd gradient, float64 and float32)
on every option combination torch has, against float64 NumPy for what torch lacks
(sample_weight, per-row grad_output), on every ISA; plus layouts, in-place gradients, thread
invariance and argument errors."""

from __future__ import annotations

import itertools

import logitkit
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional


def log_probs(rng, shape, dtype=np.float64, axis=-1):
    x = rng.standard_normal(shape) * 3
    lp = x - np.log(np.exp(x - x.max(axis, keepdims=True)).sum(axis, keepdims=True)) - x.max(axis, keepdims=True)
    return lp.astype(dtype)


def targets(rng, batch_shape, classes, ignore_index=-100, ignored=0.2):
    t = rng.integers(0, classes, batch_shape)
    t[rng.random(batch_shape) < ignored] = ignore_index
    return t


def torch_nll(lp, t, weight=None, ignore_index=-100, reduction="mean", axis=-1, grad_output=1.0):
    """torch's loss and gradient, with the class axis moved to torch's dimension 1."""
    x = torch.tensor(np.moveaxis(lp, axis, 1) if lp.ndim > 1 else lp, requires_grad=True)
    w = None if weight is None else torch.tensor(weight)
    loss = F.nll_loss(x, torch.tensor(t), weight=w, ignore_index=ignore_index, reduction=reduction)
    loss.backward(torch.as_tensor(grad_output, dtype=loss.dtype).expand_as(loss))
    g = x.grad.numpy()
    return loss.detach().numpy(), (np.moveaxis(g, 1, axis) if lp.ndim > 1 else g)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore_index", [-100, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_torch(isa, reduction, weighted, ignore_index, dtype):
    rng = np.random.default_rng(1)
    for n, c in [(1, 1), (7, 5), (64, 33), (300, 1000)]:
        lp = log_probs(rng, (n, c), dtype)
        t = targets(rng, (n,), c, ignore_index)
        w = (rng.random(c) + 0.1).astype(dtype) if weighted else None
        loss, grad = logitkit.nll_loss(lp, t, w, ignore_index=ignore_index, reduction=reduction, return_grad=True,
                                       grad_output=1.5)
        ref_loss, ref_grad = torch_nll(lp, t, w, ignore_index, reduction, grad_output=1.5)
        rtol = 1e-13 if dtype == np.float64 else 3e-6
        assert np.asarray(loss).dtype == dtype and grad.dtype == dtype and grad.shape == lp.shape
        np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=0, equal_nan=True)
        np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=0, equal_nan=True)
        assert np.array_equal(logitkit.nll_loss(lp, t, w, ignore_index=ignore_index, reduction=reduction), loss,
                              equal_nan=True)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_class_axis_and_batch_dims(isa, axis):
    rng = np.random.default_rng(2)
    shape = (3, 6, 4)
    lp = log_probs(rng, shape, axis=axis)
    batch = tuple(n for d, n in enumerate(shape) if d != axis % 3)
    t = targets(rng, batch, shape[axis])
    w = rng.random(shape[axis]) + 0.5
    for reduction in ("mean", "sum", "none"):
        loss, grad = logitkit.nll_loss(lp, t, w, axis=axis, reduction=reduction, return_grad=True)
        ref_loss, ref_grad = torch_nll(lp, t, w, reduction=reduction, axis=axis)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-13)


def test_edge_cases_as_torch(isa):
    rng = np.random.default_rng(3)
    lp = log_probs(rng, (4, 5))
    # every row ignored: mean is 0/0 = NaN, the gradient 0 (torch's exact behaviour)
    t = np.full(4, -100)
    for reduction in ("mean", "sum", "none"):
        loss, grad = logitkit.nll_loss(lp, t, reduction=reduction, return_grad=True)
        ref_loss, ref_grad = torch_nll(lp, t, reduction=reduction)
        np.testing.assert_array_equal(loss, ref_loss)
        np.testing.assert_array_equal(grad, ref_grad)
    # zero class weights on every target: NaN mean and NaN gradient entries, as torch
    t = np.array([1, 1, -100, 3])
    w = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
    loss, grad = logitkit.nll_loss(lp, t, w, return_grad=True)
    ref_loss, ref_grad = torch_nll(lp, t, w)
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(grad, ref_grad)
    # -inf log-probabilities give inf losses; negative weights are allowed
    lp2 = lp.copy()
    lp2[0, 2] = -np.inf
    t = np.array([2, 0, 1, 4])
    w = np.array([1.0, -2.0, 0.5, 1.0, 3.0])
    for reduction in ("mean", "sum", "none"):
        np.testing.assert_array_equal(logitkit.nll_loss(lp2, t, w, reduction=reduction),
                                      torch_nll(lp2, t, w, reduction=reduction)[0])
    # no rows: mean NaN, sum 0 (torch)
    empty = np.zeros((0, 5))
    for reduction in ("mean", "sum"):
        np.testing.assert_array_equal(logitkit.nll_loss(empty, np.zeros(0, np.int64), reduction=reduction),
                                      torch_nll(empty, np.zeros(0, np.int64), reduction=reduction)[0])
    # 1-D log_probs: one row, a scalar loss
    v = log_probs(rng, (6,))
    np.testing.assert_allclose(logitkit.nll_loss(v, np.array(4)), -v[4], rtol=0)


def test_sample_weight_and_per_row_grad_output(isa):
    rng = np.random.default_rng(4)
    lp = log_probs(rng, (50, 9))
    t = targets(rng, (50,), 9)
    w = rng.random(9) + 0.2
    sw = rng.random(50)
    picked = np.where(t >= 0, lp[np.arange(50), np.clip(t, 0, None)], 0.0)
    wr = np.where(t >= 0, w[np.clip(t, 0, None)] * sw, 0.0)
    rows = -wr * picked
    np.testing.assert_allclose(logitkit.nll_loss(lp, t, w, sample_weight=sw, reduction="none"), rows, rtol=1e-15)
    np.testing.assert_allclose(logitkit.nll_loss(lp, t, w, sample_weight=sw, reduction="sum"), rows.sum(), rtol=1e-14)
    mean, grad = logitkit.nll_loss(lp, t, w, sample_weight=sw, return_grad=True, grad_output=2.0)
    np.testing.assert_allclose(mean, rows.sum() / wr.sum(), rtol=1e-14)
    expected = np.zeros_like(lp)
    keep = t >= 0
    expected[np.arange(50)[keep], t[keep]] = -wr[keep] * 2.0 / wr.sum()
    np.testing.assert_allclose(grad, expected, rtol=1e-14, atol=0)
    # reduction="none" with per-row upstream gradients
    go = rng.standard_normal(50)
    _, grad = logitkit.nll_loss(lp, t, w, sample_weight=sw, reduction="none", return_grad=True, grad_output=go)
    expected[np.arange(50)[keep], t[keep]] = -wr[keep] * go[keep]
    np.testing.assert_allclose(grad, expected, rtol=1e-15, atol=0)
    # a broadcast sample_weight
    np.testing.assert_allclose(logitkit.nll_loss(lp, t, sample_weight=np.float64(3.0), reduction="sum"),
                               3.0 * logitkit.nll_loss(lp, t, reduction="sum"), rtol=1e-15)


def test_reduced_precision_and_int_targets(isa):
    rng = np.random.default_rng(5)
    lp = log_probs(rng, (40, 12))
    t = targets(rng, (40,), 12)
    ref = torch_nll(lp, t)[0]
    for tdt in (np.int32, np.int64, np.int16, np.uint8):
        tt = np.where(t < 0, 11, t).astype(tdt)  # unsigned: no negative ignore
        np.testing.assert_allclose(logitkit.nll_loss(lp, tt), torch_nll(lp, tt.astype(np.int64))[0], rtol=1e-14)
    loss, grad = logitkit.nll_loss(lp.astype(np.float16), t, return_grad=True)
    assert np.asarray(loss).dtype == np.float16 and grad.dtype == np.float16
    np.testing.assert_allclose(float(loss), ref, rtol=2e-3)
    np.testing.assert_allclose(logitkit.nll_loss(lp.astype(np.int64), t), torch_nll(lp.astype(np.int64).astype(float), t)[0])


def test_layouts_and_in_place_gradient(isa):
    rng = np.random.default_rng(6)
    base = log_probs(rng, (64, 40))
    t = targets(rng, (64,), 20)
    strided = base[:, ::2]  # classes strided
    loss, grad = logitkit.nll_loss(strided, t, return_grad=True)
    ref_loss, ref_grad = torch_nll(np.ascontiguousarray(strided), t)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-14)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-14)
    # the gradient written into the log-probabilities themselves (Liger-style in place), and into
    # a strided out_grad
    lp = log_probs(rng, (64, 20))
    ref_loss, ref_grad = torch_nll(lp, t, reduction="sum")
    inplace = lp.copy()
    loss, grad = logitkit.nll_loss(inplace, t, reduction="sum", return_grad=True, out_grad=inplace)
    assert grad is inplace
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-14)
    np.testing.assert_array_equal(inplace, ref_grad)
    out = np.empty((20, 64)).T
    assert logitkit.nll_loss(lp, t, return_grad=True, out_grad=out)[1] is out
    np.testing.assert_allclose(out, torch_nll(lp, t)[1], rtol=1e-14)


def test_thread_count_invariance():
    rng = np.random.default_rng(7)
    lp = log_probs(rng, (20000, 30), np.float32)
    t = targets(rng, (20000,), 30)
    w = rng.random(30).astype(np.float32)
    saved = logitkit.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            logitkit.set_num_threads(threads)
            loss, grad = logitkit.nll_loss(lp, t, w, return_grad=True)
            results.append((loss.tobytes(), grad.tobytes()))
        assert results[0] == results[1] == results[2]
    finally:
        logitkit.set_num_threads(saved)


def test_large_batch_sum_is_exact():
    # 2^20 rows of -log p = 0.1 (float32): the float64 compensated ordered sum is the correctly
    # rounded float32 of the exact sum; a float32 running sum would be off by percent
    lp = np.full((1 << 20, 2), np.float32(-0.1))
    t = np.zeros(1 << 20, np.int64)
    got = logitkit.nll_loss(lp, t, reduction="sum")
    assert got == np.float32(float(np.float32(0.1)) * (1 << 20))


def test_errors_name_the_argument():
    lp = np.zeros((3, 4))
    t = np.array([0, 1, 2])
    cases = [
        (dict(target=np.array([0, 4, 1])), ValueError, "target"),
        (dict(target=np.array([0, -1, 1])), ValueError, "target"),
        (dict(target=np.array([0.0, 1.0, 2.0])), TypeError, "target"),
        (dict(target=np.array([True, False, True])), TypeError, "target"),
        (dict(target=np.array([[0, 1, 2]])), ValueError, "target"),
        (dict(weight=np.ones(3)), ValueError, "weight"),
        (dict(sample_weight=np.ones(4)), ValueError, "sample_weight"),
        (dict(reduction="avg"), ValueError, "reduction"),
        (dict(axis=2), np.exceptions.AxisError, "axis"),
        (dict(axis=(0, 1)), TypeError, "axis"),
        (dict(ignore_index=1.5), TypeError, "ignore_index"),
        (dict(return_grad=True, grad_output=np.ones(3)), ValueError, "grad_output"),
        (dict(return_grad=True, out_grad=np.zeros((3, 5))), ValueError, "out_grad"),
        (dict(return_grad=True, out_grad=np.zeros((3, 4), np.float32)), TypeError, "out_grad"),
        (dict(out_grad=np.zeros((3, 4))), ValueError, "out_grad"),
    ]
    for kwargs, exc, name in cases:
        args = dict(log_probs=lp, target=t)
        args.update(kwargs)
        with pytest.raises(exc, match=name):
            logitkit.nll_loss(**args)
    with pytest.raises(ValueError, match="log_probs"):
        logitkit.nll_loss(np.float64(1.0), np.array(0))
    with pytest.raises(ValueError, match=r"target: class index 7 \(row 1\)"):
        logitkit.nll_loss(lp, np.array([0, 7, 9]))


@pytest.mark.parametrize("reduction,weighted", itertools.product(["mean", "sum"], [False, True]))
def test_many_random_problems(reduction, weighted):
    # shapes, ignore fractions and class counts drawn at random, float64 against torch
    rng = np.random.default_rng(8)
    for _ in range(30):
        n, c = int(rng.integers(1, 300)), int(rng.integers(1, 70))
        lp = log_probs(rng, (n, c))
        t = targets(rng, (n,), c, ignored=float(rng.random()))
        w = rng.random(c) if weighted else None
        loss, grad = logitkit.nll_loss(lp, t, w, reduction=reduction, return_grad=True)
        ref_loss, ref_grad = torch_nll(lp, t, w, reduction=reduction)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, equal_nan=True)
