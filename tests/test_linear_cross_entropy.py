"""linear_cross_entropy against an independent float64 reference: the logits input @ W.T + b formed
in full by torch in float64, the loss written from its definition (log_softmax, class weights,
label smoothing, z-loss, softcap, sample weights, ignored rows, every reduction) and checked
against torch's own F.cross_entropy where torch defines the same thing; gradients by torch
autograd. Every ISA, odd shapes, several chunks, bfloat16, the gradient filter, accumulation,
thread invariance, memory, and argument errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import logitkit
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional


def reference(x, w, t, *, bias=None, weight=None, sample_weight=None, ignore_index=-100, reduction="mean",
              label_smoothing=0.0, z_loss=0.0, softcap=None, grad_output=1.0):
    """(loss, d_input, d_weight, d_bias) in float64 by torch autograd of the loss's definition."""
    X = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    W = torch.tensor(np.asarray(w, np.float64), requires_grad=True)
    B = None if bias is None else torch.tensor(np.asarray(bias, np.float64), requires_grad=True)
    T = torch.tensor(np.asarray(t, np.int64))
    logits = X @ W.T + (0 if B is None else B)
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    classes = logits.shape[-1]
    cw = torch.ones(classes, dtype=torch.float64) if weight is None else torch.tensor(np.asarray(weight, np.float64))
    sw = torch.ones(T.shape, dtype=torch.float64) if sample_weight is None else torch.tensor(
        np.broadcast_to(np.asarray(sample_weight, np.float64), T.shape).copy())
    valid = T != ignore_index
    tc = torch.where(valid, T, torch.zeros_like(T))
    logp = torch.log_softmax(logits, -1)
    nll = -cw[tc] * logp.gather(-1, tc[..., None])[..., 0]
    smooth = -(logp * cw).sum(-1)
    rows = ((1 - label_smoothing) * nll + label_smoothing / classes * smooth) * sw * valid
    lse = torch.logsumexp(logits, -1)
    zrows = z_loss * lse**2 * sw * valid
    if reduction == "mean":
        loss = rows.sum() / (cw[tc] * sw * valid).sum() + (zrows.sum() / (sw * valid).sum() if z_loss else 0.0)
    elif reduction == "sum":
        loss = rows.sum() + zrows.sum()
    else:
        loss = rows + zrows
    go = torch.tensor(np.broadcast_to(np.asarray(grad_output, np.float64), loss.shape).copy())
    loss.backward(go)
    return (loss.detach().numpy(), X.grad.numpy(), W.grad.numpy(), None if B is None else B.grad.numpy())


def problem(n, d, v, dtype=np.float32, seed=0, ignore_frac=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(dtype)
    w = (rng.standard_normal((v, d)) * scale / np.sqrt(max(d, 1))).astype(dtype)
    t = rng.integers(0, v, n)
    if ignore_frac:
        t[rng.random(n) < ignore_frac] = -100
    return x, w, t


def assert_close(got, want, dtype, what, scale=None):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(np.abs(want).max(initial=0.0), 1e-30) if scale is None else scale
    tol = (3e-5 if dtype == np.float32 else 1e-11) * scale
    np.testing.assert_allclose(got, want, rtol=0, atol=tol, err_msg=what)


@pytest.mark.parametrize("n,d,v,chunk", [(1, 1, 1, None), (7, 5, 3, None), (129, 17, 257, 8), (40, 64, 1000, 16),
                                         (300, 33, 513, None), (5, 0, 7, None)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_reference_every_isa(isa, n, d, v, chunk, dtype):
    x, w, t = problem(n, d, v, dtype, seed=n + v)
    loss, dx, dw = logitkit.linear_cross_entropy(x, w, t, return_grad=True, chunk_rows=chunk)
    want = reference(x, w, t)
    assert loss.dtype == dtype and dx.dtype == dtype and dw.dtype == dtype
    assert_close(loss, want[0], dtype, "loss")
    assert_close(dx, want[1], dtype, "d_input")
    assert_close(dw, want[2], dtype, "d_linear_weight")
    # the reference's own loss against torch's linear_cross_entropy
    torch_loss = F.linear_cross_entropy(torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64),
                                        torch.tensor(t))
    assert_close(torch_loss.item(), want[0], np.float64, "reference vs torch")


OPTION_SETS = [
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(bias=True),
    dict(weight=True),
    dict(label_smoothing=0.2),
    dict(label_smoothing=0.1, weight=True, reduction="mean"),
    dict(z_loss=1e-3),
    dict(z_loss=1e-2, weight=True, sample_weight=True),
    dict(softcap=3.0, bias=True),
    dict(sample_weight=True, reduction="none", grad_output="rows"),
    dict(bias=True, weight=True, label_smoothing=0.3, z_loss=1e-3, softcap=5.0, sample_weight=True),
    dict(reduction="sum", grad_output=2.5, label_smoothing=1.0),
]


@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_option_against_reference(isa, opts):
    n, d, v = 70, 24, 300
    x, w, t = problem(n, d, v, np.float64, seed=3, ignore_frac=0.2)
    rng = np.random.default_rng(5)
    kw = dict(opts)
    if kw.pop("bias", False):
        kw["bias"] = rng.standard_normal(v)
    if kw.pop("weight", False):
        kw["weight"] = rng.random(v) + 0.5
    if kw.pop("sample_weight", False):
        kw["sample_weight"] = rng.random(n) + 0.1
    if kw.get("grad_output") == "rows":
        kw["grad_output"] = rng.standard_normal(n)
    want = reference(x, w, t, **kw)
    call = {("linear_bias" if k == "bias" else k): val for k, val in kw.items()}
    out = logitkit.linear_cross_entropy(x, w, t, return_grad=True, chunk_rows=16, **call)
    names = ["loss", "d_input", "d_linear_weight", "d_linear_bias"]
    assert len(out) == (4 if "bias" in kw else 3)
    for got, ref, name in zip(out, want, names, strict=False):
        assert_close(got, ref, np.float64, name)
    # the loss alone agrees with the loss computed with the gradients
    loss_only = logitkit.linear_cross_entropy(x, w, t, chunk_rows=16,
                                              **{k: val for k, val in call.items() if k != "grad_output"})
    np.testing.assert_allclose(loss_only, out[0], rtol=1e-14, atol=1e-14)


def test_torch_semantics_for_its_own_options():
    """Options torch's F.linear_cross_entropy has, called the same way on both sides."""
    n, d, v = 50, 16, 200
    x, w, t = problem(n, d, v, np.float64, seed=9, ignore_frac=0.3)
    rng = np.random.default_rng(1)
    b, cw = rng.standard_normal(v), rng.random(v) + 0.2
    for reduction in ("mean", "sum", "none"):
        for ls in (0.0, 0.25):
            got = logitkit.linear_cross_entropy(x, w, t, linear_bias=b, weight=cw, reduction=reduction,
                                                label_smoothing=ls)
            want = F.linear_cross_entropy(torch.tensor(x), torch.tensor(w), torch.tensor(t),
                                          linear_bias=torch.tensor(b), weight=torch.tensor(cw),
                                          reduction=reduction, label_smoothing=ls)
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-11, atol=1e-12)


def test_all_ignored_and_empty_batches():
    x, w, t = problem(9, 4, 11, np.float64)
    t[:] = -100
    loss, dx, dw = logitkit.linear_cross_entropy(x, w, t, return_grad=True)
    assert np.isnan(loss)  # torch: NaN for a mean over no rows
    assert not dx.any() and not dw.any()
    assert logitkit.linear_cross_entropy(x, w, t, reduction="sum") == 0.0
    x0, t0 = np.zeros((0, 4)), np.zeros(0, np.int64)
    loss, dx, dw, db = logitkit.linear_cross_entropy(x0, w, t0, linear_bias=np.ones(11), return_grad=True)
    assert np.isnan(loss) and dx.shape == (0, 4) and not dw.any() and not db.any()


def test_batch_dims_and_strided_operands():
    x, w, t = problem(24, 10, 37, np.float64, seed=2)
    flat = logitkit.linear_cross_entropy(x, w, t, reduction="none", return_grad=True, grad_output=np.arange(24.0))
    x3, t3 = x.reshape(2, 3, 4, 10), t.reshape(2, 3, 4)
    batched = logitkit.linear_cross_entropy(x3, w, t3, reduction="none", return_grad=True,
                                            grad_output=np.arange(24.0).reshape(2, 3, 4))
    assert batched[0].shape == (2, 3, 4) and batched[1].shape == (2, 3, 4, 10)
    np.testing.assert_array_equal(batched[0].ravel(), flat[0])
    np.testing.assert_array_equal(batched[1].reshape(24, 10), flat[1])
    np.testing.assert_array_equal(batched[2], flat[2])
    # int32 targets, and float16 input computed in float32
    as_i32 = logitkit.linear_cross_entropy(x, w, t.astype(np.int32), reduction="none")
    np.testing.assert_array_equal(as_i32, flat[0])
    half = logitkit.linear_cross_entropy(x.astype(np.float16), w.astype(np.float16), t)
    assert half.dtype == np.float32
    want = reference(x.astype(np.float16), w.astype(np.float16), t)[0]
    np.testing.assert_allclose(half, want, rtol=1e-5)
    # a transposed (Fortran-order) weight and a strided input are read in place: same values
    wf = np.asfortranarray(w)
    xs = np.repeat(x, 2, axis=1)[:, ::2]
    strided = logitkit.linear_cross_entropy(xs, wf, t, reduction="none", return_grad=True, grad_output=np.arange(24.0))
    for a, b in zip(strided, flat, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_accumulate_adds_to_the_callers_gradients():
    x, w, t = problem(33, 8, 50, np.float32, seed=4)
    b = np.linspace(-1, 1, 50).astype(np.float32)
    _, dx, dw, db = logitkit.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True)
    rng = np.random.default_rng(0)
    bufs = tuple(rng.standard_normal(a.shape).astype(np.float32) for a in (dx, dw, db))
    start = tuple(a.copy() for a in bufs)
    out = logitkit.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True, out_grads=bufs, accumulate=True)
    for got, s, g in zip(out[1:], start, (dx, dw, db), strict=True):
        np.testing.assert_allclose(got, s + g, rtol=1e-5, atol=1e-6)
    assert out[1] is bufs[0] and out[2] is bufs[1]
    # overwrite into the same buffers: exactly the fresh gradients
    out = logitkit.linear_cross_entropy(x, w, t, linear_bias=b, return_grad=True, out_grads=bufs)
    for got, g in zip(out[1:], (dx, dw, db), strict=True):
        np.testing.assert_array_equal(got, g)


def test_same_bits_for_any_thread_count(threads):
    x, w, t = problem(200, 48, 777, np.float32, seed=8, ignore_frac=0.1)
    results = []
    for n_threads in (1, 2, 3):
        logitkit.set_num_threads(n_threads)
        results.append(logitkit.linear_cross_entropy(x, w, t, return_grad=True, label_smoothing=0.1, chunk_rows=24))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n,d,v,options", [
    (65, 40, 300, {}),
    (7, 1, 5, {}),                                   # K = 1: one pair, half of it padding
    (33, 257, 1000, {"label_smoothing": 0.1, "softcap": 20.0}),  # odd K across a K block
    (129, 64, 700, {"ignore_index": 3, "reduction": "sum", "chunk_rows": 16}),
])
def test_bfloat16_against_float64_every_isa(isa, n, d, v, options):
    """bfloat16 operands: float32 accumulation of exact products, so within float32 rounding of the
    float64 result of the same values on every ISA; without a bfloat16 dot product (all but
    avx512bf16) the values are widened in the packing and the result is the float32 problem's, bit
    for bit. avx512bf16 sums the pairs in its own order: close, not equal."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x, w, t = problem(n, d, v, np.float32, seed=6 + d)
    if "ignore_index" in options:
        t[::9] = options["ignore_index"]
    bias = np.random.default_rng(d).standard_normal(v).astype(np.float32)
    xb, wb = x.astype(ml_dtypes.bfloat16), w.astype(ml_dtypes.bfloat16)
    got = logitkit.linear_cross_entropy(xb, wb, t, linear_bias=bias, return_grad=True, **options)
    assert all(a.dtype == np.float32 for a in got[1:])
    ref_options = {k: o for k, o in options.items() if k != "chunk_rows"}
    want = reference(xb.astype(np.float64), wb.astype(np.float64), t, bias=bias, **ref_options)
    for g, w_, what in zip(got, want, ("loss", "d_input", "d_linear_weight", "d_linear_bias"), strict=True):
        assert_close(g, w_, np.float32, f"bf16 {what} on {isa}")
    if isa != "avx512bf16":
        same = logitkit.linear_cross_entropy(xb.astype(np.float32), wb.astype(np.float32), t, linear_bias=bias,
                                             return_grad=True, **options)
        for a, b in zip(got, same, strict=True):
            np.testing.assert_array_equal(a, b)  # widened in the packing: the same products in the same order


@pytest.mark.parametrize("n,d,v", [(40, 64, 1000), (7, 33, 129)])
def test_bfloat16_gradient_every_isa(isa, threads, n, d, v):
    """bfloat16_gradient=True rounds each chunk's logit gradient to bfloat16 before the d_input and
    d_linear_weight products: the loss and d_linear_bias are those of the default path, the two
    gradients within the rounding's bound of the exact float64 ones (a relative 2^-9 per term),
    and the result still does not depend on the thread count."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x, w, t = problem(n, d, v, np.float32, seed=21 + n)
    bias = np.random.default_rng(v).standard_normal(v).astype(np.float32)
    xb, wb = x.astype(ml_dtypes.bfloat16), w.astype(ml_dtypes.bfloat16)
    exact = logitkit.linear_cross_entropy(xb, wb, t, linear_bias=bias, return_grad=True, chunk_rows=16)
    rounded = logitkit.linear_cross_entropy(xb, wb, t, linear_bias=bias, return_grad=True, chunk_rows=16,
                                            bfloat16_gradient=True)
    np.testing.assert_array_equal(rounded[0], exact[0])
    np.testing.assert_array_equal(rounded[3], exact[3])
    want = reference(xb.astype(np.float64), wb.astype(np.float64), t, bias=bias)
    for got, ref, what in ((rounded[1], want[1], "d_input"), (rounded[2], want[2], "d_linear_weight")):
        assert not np.array_equal(got, exact[1 if what == "d_input" else 2])  # the option is in effect
        np.testing.assert_allclose(got, ref, rtol=0, atol=2.0**-8 * np.abs(ref).max(), err_msg=what)
    logitkit.set_num_threads(1)
    one = logitkit.linear_cross_entropy(xb, wb, t, linear_bias=bias, return_grad=True, chunk_rows=16,
                                        bfloat16_gradient=True)
    logitkit.set_num_threads(3)
    three = logitkit.linear_cross_entropy(xb, wb, t, linear_bias=bias, return_grad=True, chunk_rows=16,
                                          bfloat16_gradient=True)
    logitkit.set_num_threads(2)
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="^bfloat16_gradient: needs bfloat16"):
        logitkit.linear_cross_entropy(x, w, t, return_grad=True, bfloat16_gradient=True)


def test_bfloat16_dot_product_is_used_where_available():
    """On avx512bf16 the logits come from vdpbf16ps: the result differs from the widened float32
    path in the last bits somewhere in a long row (if it never did, the kernel would not be in use)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    if "avx512bf16" not in logitkit.available_isas():
        pytest.skip("no bfloat16 dot product on this CPU")
    x, w, t = problem(64, 1024, 4096, np.float32, seed=11)
    xb, wb = x.astype(ml_dtypes.bfloat16), w.astype(ml_dtypes.bfloat16)
    with logitkit.use_isa("avx512bf16"):
        dot = logitkit.linear_cross_entropy(xb, wb, t, reduction="none")
    with logitkit.use_isa("avx512"):
        widened = logitkit.linear_cross_entropy(xb, wb, t, reduction="none")
    assert not np.array_equal(dot, widened)
    np.testing.assert_allclose(dot, widened, rtol=1e-5)


def test_gradient_filter_skips_blocks_and_stays_close():
    # peaked rows: most vocabulary blocks hold probabilities far below the threshold
    x, w, t = problem(64, 32, 8192, np.float64, seed=7, scale=60.0)
    exact = logitkit.linear_cross_entropy(x, w, t, return_grad=True, return_stats=True, chunk_rows=4)
    assert exact[-1]["skipped"] == 0 and exact[-1]["blocks"] > 0
    tiny = logitkit.linear_cross_entropy(x, w, t, return_grad=True, return_stats=True, filter_eps=1e-300,
                                         chunk_rows=4)
    for a, b in zip(tiny[:-1], exact[:-1], strict=True):
        np.testing.assert_array_equal(a, b)
    eps = 1e-6
    filt = logitkit.linear_cross_entropy(x, w, t, return_grad=True, return_stats=True, filter_eps=eps,
                                         chunk_rows=4)
    stats = filt[-1]
    assert 0 < stats["skipped"] < stats["blocks"]
    assert filt[0] == exact[0]  # the loss is never filtered
    # each skipped entry is below eps / N in gradient units; a row of d_input sums at most V of them
    # times |w|, a row of d_linear_weight N of them times |x|
    n, v = x.shape[0], w.shape[0]
    np.testing.assert_allclose(filt[1], exact[1], rtol=0, atol=eps / n * v * np.abs(w).max())
    np.testing.assert_allclose(filt[2], exact[2], rtol=0, atol=eps / n * n * np.abs(x).max())


def test_peak_memory_is_a_chunk_not_the_logits():
    """Peak RSS over the inputs and gradient buffers, in a fresh process: the logits would be
    N * V * 4 = 64 MB; the chunk is 32 rows of them (1.6%) plus packing buffers."""
    code = textwrap.dedent("""
        import numpy as np, logitkit
        def status(field):
            for line in open('/proc/self/status'):
                if line.startswith(field + ':'):
                    return int(line.split()[1]) * 1024
        n, d, v = 2048, 64, 8000
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, d), dtype=np.float32)
        w = rng.standard_normal((v, d), dtype=np.float32) * np.float32(0.1)
        t = rng.integers(0, v, n)
        grads = (np.zeros_like(x), np.zeros_like(w))
        logitkit.linear_cross_entropy(x, w, t, return_grad=True, out_grads=grads)
        open('/proc/self/clear_refs', 'w').write('5')
        base = status('VmRSS')
        logitkit.linear_cross_entropy(x, w, t, return_grad=True, out_grads=grads)
        print(status('VmHWM') - base)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    extra = int(out.stdout.strip())
    logits_bytes = 2048 * 8000 * 4
    assert extra < 0.05 * logits_bytes, f"peak extra memory {extra} bytes, {extra / logits_bytes:.1%} of the logits"


def test_errors_name_the_argument():
    x, w, t = problem(6, 4, 9, np.float32)
    lce = logitkit.linear_cross_entropy
    with pytest.raises(ValueError, match="linear_weight"):
        lce(x, w[:, :3], t)
    with pytest.raises(ValueError, match="linear_weight"):
        lce(x, w.ravel(), t)
    with pytest.raises(ValueError, match="target"):
        lce(x, w, np.array([0, 1, 2, 3, 4, 9]))
    with pytest.raises(ValueError, match="target"):
        lce(x, w, t[:5])
    with pytest.raises(TypeError, match="target"):
        lce(x, w, t.astype(np.float32))
    with pytest.raises(TypeError, match="input"):
        lce(x.astype(np.complex64), w, t)
    with pytest.raises(ValueError, match="linear_bias"):
        lce(x, w, t, linear_bias=np.zeros(8))
    with pytest.raises(ValueError, match="weight"):
        lce(x, w, t, weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight"):
        lce(x, w, t, sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="reduction"):
        lce(x, w, t, reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        lce(x, w, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="filter_eps"):
        lce(x, w, t, filter_eps=-1.0)
    with pytest.raises(ValueError, match="softcap"):
        lce(x, w, t, softcap=0.0)
    with pytest.raises(ValueError, match="chunk_rows"):
        lce(x, w, t, chunk_rows=0)
    with pytest.raises(ValueError, match="out_grads"):
        lce(x, w, t, return_grad=True, out_grads=(np.zeros_like(x),))
    with pytest.raises(ValueError, match="out_grads"):
        lce(x, w, t, out_grads=(np.zeros_like(x), np.zeros_like(w)))
    with pytest.raises(ValueError, match="accumulate"):
        lce(x, w, t, return_grad=True, accumulate=True)
    with pytest.raises(ValueError, match="grad_output"):
        lce(x, w, t, return_grad=True, grad_output=np.ones(6))
    with pytest.raises(ValueError, match="linear_weight"):
        lce(x, np.zeros((0, 4), np.float32), t)
