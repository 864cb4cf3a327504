"""Every loss on logits through one harness, beyond each loss's own oracle tests: float16 and
bfloat16 inputs against the float64 result of the same rounded values, transposed and strided
logits against contiguous copies, huge (+-3e38) and -inf (masked) logits against float64, NaN
confined to its row, thread-count invariance, and out_grad's dtype and shape errors."""

from __future__ import annotations

import logitkit
import numpy as np
import pytest

rng0 = np.random.default_rng(50)
C = 12
TARGET = rng0.integers(0, C, 10)
TEACHER = np.round(rng0.standard_normal((10, C)) * 16) / 8  # exact in float16 and bfloat16
PROBS = rng0.random((10, C))
PROBS /= PROBS.sum(-1, keepdims=True)
LQ = -np.round(np.sort(rng0.random((10, 3)), -1) * 32) / 8  # exact in float16 and bfloat16
IDS = np.stack([rng0.permutation(C)[:3] for _ in range(10)])


def _teacher(x, axis):
    t = TEACHER.astype(x.dtype) if x.dtype != np.float64 else TEACHER
    return np.moveaxis(t, -1, axis) if x.ndim == 2 and axis in (0, -2) else t


# name -> call(x, axis, **kw) for x of shape (10, C) with the class axis `axis` (-1, or 0 for x.T)
LOSSES = {
    "cross_entropy": lambda x, axis, **kw: logitkit.cross_entropy(x, TARGET, axis=axis, **kw),
    "cross_entropy_soft": lambda x, axis, **kw: logitkit.cross_entropy(
        x, PROBS.T if axis == 0 else PROBS, axis=axis, **kw),
    "cross_entropy_softcap": lambda x, axis, **kw: logitkit.cross_entropy(x, TARGET, axis=axis, softcap=5.0, **kw),
    "nll_loss": lambda x, axis, **kw: logitkit.nll_loss(x, TARGET, axis=axis, **kw),
    "focal_loss": lambda x, axis, **kw: logitkit.focal_loss(x, TARGET, 2.0, axis=axis, **kw),
    "poly1_cross_entropy": lambda x, axis, **kw: logitkit.poly1_cross_entropy(x, TARGET, axis=axis, **kw),
    "comp_sum_loss": lambda x, axis, **kw: logitkit.comp_sum_loss(x, TARGET, 0.5, axis=axis, **kw),
    "ldr_kl_loss": lambda x, axis, **kw: logitkit.ldr_kl_loss(x, TARGET, axis=axis, **kw),
    "stablemax_cross_entropy": lambda x, axis, **kw: logitkit.stablemax_cross_entropy(x, TARGET, axis=axis, **kw),
    "sparsemax_loss": lambda x, axis, **kw: logitkit.sparsemax_loss(x, TARGET, axis=axis, **kw),
    "entmax15_loss": lambda x, axis, **kw: logitkit.entmax15_loss(x, TARGET, axis=axis, **kw),
    "spherical_z_loss": lambda x, axis, **kw: logitkit.spherical_z_loss(x, TARGET, axis=axis, **kw),
    "kl_div": lambda x, axis, **kw: logitkit.kl_div(x, _teacher(x, axis), axis=axis, temperature=2.0, **kw),
    "kl_div_reverse": lambda x, axis, **kw: logitkit.kl_div(x, _teacher(x, axis), axis=axis, direction="reverse",
                                                            **kw),
    "jsd": lambda x, axis, **kw: logitkit.jsd(x, _teacher(x, axis), axis=axis, **kw),
    "tvd": lambda x, axis, **kw: logitkit.tvd(x, _teacher(x, axis), axis=axis, **kw),
    "kl_div_topk": lambda x, axis, **kw: logitkit.kl_div_topk(
        x, (LQ.T if axis == 0 else LQ).astype(x.dtype if x.dtype != np.float64 else np.float64),
        IDS.T if axis == 0 else IDS, axis=axis, **kw),
    "dkd_loss": lambda x, axis, **kw: logitkit.dkd_loss(x, _teacher(x, axis), TARGET, axis=axis, **kw),
    "nkd_loss": lambda x, axis, **kw: logitkit.nkd_loss(x, _teacher(x, axis), TARGET, axis=axis, **kw),
}
# losses whose input is log-probabilities rather than logits
LOG_PROBS = {"nll_loss"}


def _x(dtype=np.float64, seed=51):
    x = np.random.default_rng(seed).standard_normal((10, C)) * 3
    return x.astype(dtype)


@pytest.mark.parametrize("name", LOSSES)
def test_reduced_precision_matches_float64_of_the_rounded_values(isa, name):
    fn = LOSSES[name]
    for dtype in ("float16", "bfloat16"):
        if dtype == "bfloat16":
            dt = pytest.importorskip("ml_dtypes").bfloat16
        else:
            dt = np.float16
        x = _x().astype(dt)
        loss, grad = fn(x, -1, return_grad=True)
        ref_loss, ref_grad = fn(x.astype(np.float64), -1, return_grad=True)
        assert np.asarray(loss).dtype == dt and grad.dtype == dt
        # float32 arithmetic, results rounded to the input's dtype
        eps = 1e-2 if dtype == "bfloat16" else 2e-3
        np.testing.assert_allclose(float(loss), ref_loss, rtol=eps, atol=eps * 1e-2)
        np.testing.assert_allclose(grad.astype(np.float64), ref_grad, rtol=4 * eps, atol=eps * np.abs(ref_grad).max())


@pytest.mark.parametrize("name", LOSSES)
def test_transposed_and_strided_logits(isa, name):
    fn = LOSSES[name]
    x = _x()
    ref_loss, ref_grad = fn(x, -1, return_grad=True, reduction="none")
    loss, grad = fn(np.asfortranarray(x).T.copy(order="F").T, -1, return_grad=True, reduction="none")
    np.testing.assert_array_equal(loss, ref_loss)
    np.testing.assert_array_equal(grad, ref_grad)
    loss, grad = fn(x.T, 0, return_grad=True, reduction="none")  # class axis first, a transposed view
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(grad, ref_grad.T, rtol=1e-13, atol=1e-300)
    wide = np.zeros((10, 2 * C))
    wide[:, ::2] = x
    loss, grad = fn(wide[:, ::2], -1, return_grad=True, reduction="none")
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("name", LOSSES)
def test_special_values(isa, name):
    fn = LOSSES[name]
    x = _x()
    if name not in LOG_PROBS:
        x[1] = x[1] / 3 * 3e38 / 10  # huge, finite logits
        x[2, (TARGET[2] + 1) % C] = -np.inf  # a masked class (not the target)
        x[3] = np.where(np.arange(C) % 2 == 0, 3e38, -3e38)
    x[4, 5] = np.nan
    loss, grad = fn(x, -1, return_grad=True, reduction="none")
    x32 = x.astype(np.float32)
    loss32, grad32 = fn(x32, -1, return_grad=True, reduction="none")
    # spherical_z_loss: an infinite logit leaves a row without z-scores (NaN, documented)
    others = [r for r in range(10) if r != 4 and not (name == "spherical_z_loss" and r == 2)]
    if name not in LOG_PROBS:  # nll_loss reads only the target's entry of a row
        assert np.isnan(loss[4]), name
    assert not np.isnan(loss[others]).any(), (name, loss)
    # a finite loss has a gradient without NaN (an overflowing loss, e.g. comp-sum's p_t^(tau - 1)
    # at p_t = e^-1e38, has inf * 0 terms)
    finite = [r for r in others if np.isfinite(loss[r])]
    assert not np.isnan(grad[finite]).any(), name
    # the masked class gets no gradient where the loss has one (softcap maps -inf to -cap)
    if name not in LOG_PROBS and name not in ("cross_entropy_softcap", "spherical_z_loss", "tvd", "jsd"):
        assert grad[2, (TARGET[2] + 1) % C] == 0 or not np.isfinite(loss[2]), name
    # float32 agrees with float64 where both are finite
    fin = np.isfinite(loss) & np.isfinite(loss32)
    np.testing.assert_allclose(loss32[fin], loss[fin], rtol=2e-4, atol=1e-4)


@pytest.mark.parametrize("name", LOSSES)
def test_threads_and_out_grad_errors(name):
    fn = LOSSES[name]
    x = np.random.default_rng(52).standard_normal((10, C)).astype(np.float32)
    saved = logitkit.get_num_threads()
    try:
        out = []
        for threads in (1, 2, 3):
            logitkit.set_num_threads(threads)
            loss, grad = fn(x, -1, return_grad=True)
            out.append((np.asarray(loss).tobytes(), grad.tobytes()))
        assert out[0] == out[1] == out[2]
    finally:
        logitkit.set_num_threads(saved)
    with pytest.raises(TypeError, match="out_grad"):
        fn(x, -1, return_grad=True, out_grad=np.zeros((10, C), np.float64))
    with pytest.raises(ValueError, match="out_grad"):
        fn(x, -1, return_grad=True, out_grad=np.zeros((C, 10), np.float32))
    with pytest.raises(ValueError, match="out_grad"):
        fn(x, -1, out_grad=np.zeros((10, C), np.float32))
    with pytest.raises(ValueError, match="reduction"):
        fn(x, -1, reduction="avg")


@pytest.mark.parametrize("n,c", [(0, 3), (3, 0), (0, 0), (1, 1), (4, 1), (3, 2)])
def test_degenerate_shapes(n, c):
    # empty batches, no classes (every target ignored), one class: results as PyTorch gives them
    # (an empty or all-ignored "mean" is NaN, "sum" 0), gradients of the input's shape, no exception
    rng = np.random.default_rng(53)
    x = rng.standard_normal((n, c))
    t = np.full(n, -100) if c == 0 else rng.integers(0, c, n)
    y = np.full((n, c), 1.0 / max(c, 1))
    k = min(c, 1)
    calls = {
        "cross_entropy": lambda **kw: logitkit.cross_entropy(x, t, label_smoothing=0.1, z_loss=0.1, **kw),
        "cross_entropy_soft": lambda **kw: logitkit.cross_entropy(x, y, softcap=2.0, **kw),
        "focal_alpha": lambda **kw: logitkit.focal_loss(x, t, alpha=0.5, **kw),
        "ldr_kl_loss": lambda **kw: logitkit.ldr_kl_loss(x, t, **kw),
        "stablemax_cross_entropy": lambda **kw: logitkit.stablemax_cross_entropy(x, t, **kw),
        "sparsemax_loss": lambda **kw: logitkit.sparsemax_loss(x, t, **kw),
        "entmax15_loss": lambda **kw: logitkit.entmax15_loss(x, t, **kw),
        "spherical_z_loss": lambda **kw: logitkit.spherical_z_loss(x, t, **kw),
        "kl_div": lambda **kw: logitkit.kl_div(x, y, **kw),
        "jsd": lambda **kw: logitkit.jsd(x, y, **kw),
        "tvd": lambda **kw: logitkit.tvd(x, y, **kw),
        "kl_div_topk": lambda **kw: logitkit.kl_div_topk(x, np.zeros((n, k)), np.zeros((n, k), np.int64), **kw),
        "dkd_loss": lambda **kw: logitkit.dkd_loss(x, y, t, **kw),
        "nkd_loss": lambda **kw: logitkit.nkd_loss(x, y, t, **kw),
    }
    for name, fn in calls.items():
        loss, grad = fn(return_grad=True, reduction="sum")
        assert grad.shape == x.shape, name
        if n == 0 or c == 0:
            assert loss == 0, name
            divergence = name in ("kl_div", "jsd", "tvd", "kl_div_topk")
            mean = fn(reduction="batchmean" if divergence else "mean")
            if n == 0 or not (divergence or name == "cross_entropy_soft"):
                assert np.isnan(mean), name  # an empty batch, or every class-index target ignored
            else:
                assert mean == 0, name  # rows of empty sums, still counted
        assert fn(reduction="none").shape == (n,), name
