"""cross_entropy beyond class indices: soft targets (probabilities) against torch's
F.cross_entropy on probability targets (float64, float32, every option torch has), the logit
softcap against torch composing c * tanh(x / c) with cross-entropy (autograd gradient), and the
extra outputs (lse, z_loss, accuracy, predicted) against NumPy; every ISA."""

from __future__ import annotations

import logitkit
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional


def probabilities(rng, shape, zeros=0.3):
    p = rng.random(shape)
    p[rng.random(shape) < zeros] = 0.0
    p[..., 0] += 1e-3  # no row of zeros
    return p / p.sum(-1, keepdims=True)


def torch_ce(x, t, weight=None, reduction="mean", label_smoothing=0.0, softcap=None, temperature=1.0,
             grad_output=1.0, ignore_index=-100):
    """torch float64 autograd of cross_entropy(softcap(x) / temperature, t), the class axis last."""
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    z = xt if softcap is None else softcap * torch.tanh(xt / softcap)
    z = z / temperature
    zt = z.reshape(-1, z.shape[-1])
    tt = torch.tensor(t)
    tt = tt.reshape(-1, tt.shape[-1]) if tt.is_floating_point() else tt.reshape(-1)
    if tt.is_floating_point():
        tt = tt.to(torch.float64)
    loss = F.cross_entropy(zt, tt, weight=None if weight is None else torch.tensor(weight, dtype=torch.float64),
                           reduction=reduction, label_smoothing=label_smoothing, ignore_index=ignore_index)
    if reduction == "none":
        loss = loss.reshape(x.shape[:-1])
    loss.backward(torch.as_tensor(grad_output, dtype=loss.dtype).expand_as(loss))
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_soft_targets_match_torch(isa, reduction, weighted, label_smoothing, dtype):
    rng = np.random.default_rng(11)
    for n, c in [(1, 1), (5, 3), (33, 17), (70, 1000)]:
        x = (rng.standard_normal((n, c)) * 4).astype(dtype)
        y = probabilities(rng, (n, c)).astype(dtype)
        w = (rng.random(c) + 0.1).astype(dtype) if weighted else None
        loss, grad = logitkit.cross_entropy(x, y, w, reduction=reduction, label_smoothing=label_smoothing,
                                            return_grad=True, grad_output=0.7)
        ref_loss, ref_grad = torch_ce(x, y, w, reduction=reduction, label_smoothing=label_smoothing, grad_output=0.7)
        rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (3e-5, 3e-7)
        assert np.asarray(loss).dtype == dtype and grad.dtype == dtype
        np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=atol)
        np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=atol)


def test_soft_targets_layouts_sample_weight_and_ignore_index(isa):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 6, 5)) * 2
    y = probabilities(rng, (4, 6, 5))
    # class axis 1: the same as moving it last
    xa, ya = np.moveaxis(x, -1, 1), np.moveaxis(y, -1, 1)
    loss, grad = logitkit.cross_entropy(xa, ya, axis=1, reduction="none", return_grad=True)
    ref_loss, ref_grad = torch_ce(x, y, reduction="none")
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(grad, np.moveaxis(ref_grad, -1, 1), rtol=1e-12, atol=1e-15)
    # ignore_index has no effect on probabilities (as torch)
    np.testing.assert_array_equal(logitkit.cross_entropy(x, y, ignore_index=0), logitkit.cross_entropy(x, y))
    # sample_weight: rows scaled, "mean" divides by the summed sample weights
    sw = rng.random((4, 6)) + 0.2
    rows, _ = torch_ce(x, y, reduction="none")
    loss, grad = logitkit.cross_entropy(x, y, sample_weight=sw, return_grad=True)
    np.testing.assert_allclose(loss, (rows * sw).sum() / sw.sum(), rtol=1e-12)
    _, g1 = torch_ce(x, y, reduction="none", grad_output=sw / sw.sum())
    np.testing.assert_allclose(grad, g1, rtol=1e-12, atol=1e-15)
    # strided, non-contiguous probabilities and logits
    xs, ys = x[:, ::2, :], y[:, ::2, :]
    np.testing.assert_allclose(logitkit.cross_entropy(xs, ys, reduction="sum"),
                               torch_ce(np.ascontiguousarray(xs), np.ascontiguousarray(ys), reduction="sum")[0],
                               rtol=1e-12)


def test_soft_targets_special_values(isa):
    x = np.array([[0.0, -np.inf, 1.0, 2.0], [3e38, -3e38, 0.0, 3e38], [1.0, 2.0, 3.0, 4.0]])
    y = np.array([[0.5, 0.0, 0.25, 0.25], [0.5, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 1.0]])
    loss, grad = logitkit.cross_entropy(x, y, reduction="none", return_grad=True)
    # float64 reference with 0 log 0 = 0 (torch gives NaN for the masked class's 0 * -inf)
    z = x - x.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ref = -np.where(y > 0, y * np.where(y > 0, logp, 0.0), 0.0).sum(-1)
    np.testing.assert_allclose(loss, ref, rtol=1e-13)
    p = np.exp(logp)
    np.testing.assert_allclose(grad, p - y, rtol=1e-13, atol=1e-300)
    assert np.isnan(torch_ce(x, y, reduction="none")[0][0])  # what the docstring says torch does
    # rows equal to a one-hot target give the class-index loss exactly
    onehot = np.eye(4)[[2, 3, 1]]
    xr = np.random.default_rng(1).standard_normal((3, 4))
    np.testing.assert_allclose(logitkit.cross_entropy(xr, onehot, reduction="none"),
                               logitkit.cross_entropy(xr, np.array([2, 3, 1]), reduction="none"), rtol=1e-15)


def test_soft_targets_bad_values_raise_before_writing():
    x = np.zeros((3, 4))
    for bad in (np.nan, np.inf, -np.inf):
        y = np.full((3, 4), 0.25)
        y[1, 2] = bad
        with pytest.raises(ValueError, match="target"):
            logitkit.cross_entropy(x, y)
        g = np.ones((3, 4))
        with pytest.raises(ValueError, match="target"):
            logitkit.cross_entropy(x, y, return_grad=True, out_grad=g)
    with pytest.raises(ValueError, match="target"):
        logitkit.cross_entropy(x, np.full((3, 5), 0.2))
    with pytest.raises(ValueError, match="extras"):
        logitkit.cross_entropy(x, np.full((3, 4), 0.25), extras=["accuracy"])


def test_soft_targets_reduced_precision_and_threads(isa):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((300, 257)).astype(np.float16)
    y = probabilities(rng, (300, 257)).astype(np.float32)
    loss, grad = logitkit.cross_entropy(x, y, return_grad=True)
    ref_loss, ref_grad = torch_ce(x.astype(np.float64), y.astype(np.float64))
    assert loss.dtype == np.float16 and grad.dtype == np.float16
    np.testing.assert_allclose(float(loss), ref_loss, rtol=2e-3)
    np.testing.assert_allclose(grad.astype(np.float64), ref_grad, rtol=1e-2, atol=1e-6)
    saved = logitkit.get_num_threads()
    xs = rng.standard_normal((4000, 300), dtype=np.float32)
    ys = probabilities(rng, (4000, 300)).astype(np.float32)
    try:
        out = []
        for threads in (1, 2, 3):
            logitkit.set_num_threads(threads)
            lo, gr = logitkit.cross_entropy(xs, ys, label_smoothing=0.1, softcap=5.0, return_grad=True)
            out.append((lo.tobytes(), gr.tobytes()))
        assert out[0] == out[1] == out[2]
    finally:
        logitkit.set_num_threads(saved)


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softcap_matches_torch_composition(isa, soft, dtype):
    rng = np.random.default_rng(14)
    for n, c, cap in [(1, 1, 1.0), (9, 7, 3.0), (40, 513, 30.0)]:
        x = (rng.standard_normal((n, c)) * 3 * cap).astype(dtype)
        t = probabilities(rng, (n, c)).astype(dtype) if soft else rng.integers(0, c, n)
        w = (rng.random(c) + 0.5).astype(dtype)
        for temperature, ls in [(1.0, 0.0), (0.7, 0.1)]:
            loss, grad = logitkit.cross_entropy(x, t, w, softcap=cap, temperature=temperature, label_smoothing=ls,
                                                return_grad=True)
            ref_loss, ref_grad = torch_ce(x, t, w, softcap=cap, temperature=temperature, label_smoothing=ls)
            # the capped logits to about 2 ulp; the loss sums many of them
            rtol = 1e-12 if dtype == np.float64 else 5e-5
            atol = rtol * max(cap, 1.0)
            np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=atol)
            np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softcap_far_above_the_logits(isa, dtype):
    """A cap far above the logits leaves them almost unchanged (cap tanh(x / cap) ~ x): the loss and
    gradient are the uncapped ones to the dtype's precision, not flattened (the exp form alone kept
    only cap ulp(1) of each logit: at cap 1e8 in float32 every logit became 0)."""
    rng = np.random.default_rng(15)
    x = (rng.standard_normal((12, 37)) * 2).astype(dtype)
    t = rng.integers(0, 37, 12)
    for cap in [1e4, 1e8, 1e20 if dtype == np.float64 else 1e30]:
        loss, grad = logitkit.cross_entropy(x, t, softcap=cap, return_grad=True)
        ref_loss, ref_grad = torch_ce(x, t, None, softcap=cap)
        rtol = 1e-13 if dtype == np.float64 else 2e-6
        np.testing.assert_allclose(loss, ref_loss, rtol=rtol)
        np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=rtol * 1e-2)


def test_softcap_special_values_and_in_place(isa):
    x = np.array([[3e38, -3e38, 0.0, 1e-30], [-np.inf, np.inf, 2.0, -2.0], [1.0, np.nan, 0.0, 0.0]])
    t = np.array([0, 2, 0])
    loss, grad = logitkit.cross_entropy(x, t, softcap=2.0, reduction="none", return_grad=True)
    capped = 2.0 * np.tanh(x / 2.0)
    z = capped - capped.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ref = -logp[np.arange(3), t]
    np.testing.assert_allclose(loss[:2], ref[:2], rtol=1e-14)
    assert np.isnan(loss[2])
    onehot = np.eye(4)[t]
    ref_grad = (np.exp(logp) - onehot) * (1 - np.tanh(x / 2.0) ** 2)
    np.testing.assert_allclose(grad[:2], ref_grad[:2], rtol=1e-12, atol=1e-16)
    # in place over the logits, streamed and cached rows alike
    rng = np.random.default_rng(15)
    xs = rng.standard_normal((64, 3000)).astype(np.float32) * 40
    ts = rng.integers(0, 3000, 64)
    ref_loss, ref_grad = logitkit.cross_entropy(xs, ts, softcap=30.0, return_grad=True)
    xin = xs.copy()
    loss, grad = logitkit.cross_entropy(xin, ts, softcap=30.0, return_grad=True, out_grad=xin)
    assert grad is xin and loss == ref_loss
    np.testing.assert_array_equal(grad, ref_grad)
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="softcap"):
            logitkit.cross_entropy(x, t, softcap=bad)


def test_long_rows_streamed_soft_and_capped():
    # 160 rows of 2^16 classes: the gradient streams past the last-level cache, the capped row and
    # the exp values sit in scratch
    rng = np.random.default_rng(16)
    x = rng.standard_normal((160, 1 << 16), dtype=np.float32) * 20
    y = probabilities(rng, (160, 1 << 16), zeros=0.9).astype(np.float32)
    loss, grad = logitkit.cross_entropy(x, y, softcap=15.0, return_grad=True)
    ref_loss, ref_grad = torch_ce(x, y, softcap=15.0)
    np.testing.assert_allclose(loss, ref_loss, rtol=5e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=5e-4, atol=2e-9)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_extras(isa, reduction):
    rng = np.random.default_rng(17)
    x = rng.integers(-3, 4, (50, 9)).astype(np.float64)  # many tied maxima
    x[3, 4] = np.nan
    t = rng.integers(0, 9, 50)
    t[:7] = -100
    sw = rng.random(50) + 0.5
    loss, grad, ex = logitkit.cross_entropy(x, t, sample_weight=sw, z_loss=1e-2, temperature=2.0, softcap=5.0,
                                            reduction=reduction, return_grad=True,
                                            extras=("lse", "z_loss", "accuracy", "predicted"))
    capped = 5.0 * np.tanh(x / 5.0) / 2.0
    m = capped.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(capped - m).sum(-1, keepdims=True)))[:, 0]
    keep = t != -100
    np.testing.assert_allclose(ex["lse"][keep], lse[keep], rtol=1e-13)
    assert (ex["lse"][~keep] == 0).all()
    z_rows = np.where(keep, 1e-2 * sw * lse**2, 0.0)
    z_ref = {"mean": z_rows.sum() / sw[keep].sum(), "sum": z_rows.sum(), "none": z_rows.sum()}[reduction]
    np.testing.assert_allclose(ex["z_loss"], z_ref, rtol=1e-12)
    predicted = np.argmax(x, -1)  # ties: the lowest index; NaN counted largest (row 3)
    assert ex["predicted"].dtype == np.int64
    np.testing.assert_array_equal(ex["predicted"], predicted)
    assert ex["predicted"][3] == 4
    np.testing.assert_allclose(ex["accuracy"], np.mean(predicted[keep] == t[keep]), rtol=1e-15)
    # asking for extras changes nothing else
    loss2, grad2 = logitkit.cross_entropy(x, t, sample_weight=sw, z_loss=1e-2, temperature=2.0, softcap=5.0,
                                          reduction=reduction, return_grad=True)
    np.testing.assert_array_equal(loss, loss2)
    np.testing.assert_array_equal(grad, grad2)
    # without the gradient, and all rows ignored
    loss3, ex3 = logitkit.cross_entropy(x, np.full(50, -100), extras=["accuracy", "lse"])
    assert np.isnan(loss3) and np.isnan(ex3["accuracy"]) and (ex3["lse"] == 0).all()
    with pytest.raises(ValueError, match="extras"):
        logitkit.cross_entropy(x, t, extras=["argmax"])
    with pytest.raises(TypeError, match="extras"):
        logitkit.cross_entropy(x, t, extras=3)


def test_extras_batch_shapes(isa):
    rng = np.random.default_rng(18)
    x = rng.standard_normal((2, 3, 5, 4))
    t = rng.integers(0, 5, (2, 3, 4))
    loss, ex = logitkit.cross_entropy(x, t, axis=2, extras=["lse", "predicted"])
    assert ex["lse"].shape == (2, 3, 4) and ex["predicted"].shape == (2, 3, 4)
    np.testing.assert_array_equal(ex["predicted"], np.argmax(x, 2))
    xm = np.moveaxis(x, 2, -1)
    m = xm.max(-1)
    np.testing.assert_allclose(ex["lse"], m + np.log(np.exp(xm - m[..., None]).sum(-1)), rtol=1e-14)
