"""logitkit.route's model presets against the PyTorch references in moe_reference.py (written from
each model's published routing code; sources cited there).

For every preset: logits on a coarse grid (multiples of 1/4 in [-4, 4): exact ties are common,
near-ties impossible for the softmax / raw-logit routers) and standard-normal float32 logits, at the
model's real expert count and at odd counts where the preset allows them, k in {1, the model's k, E}
where valid. Ids must match the float64 reference run on the float32 values exactly (ties to the
lower expert id, columns in descending selection score); weights to rtol 2e-6 / atol 1e-7, and to
the float32 reference (the model's own compute dtype) a little looser. float16 / bfloat16 logits
are compared with the reference on their values widened to float32.

Rows whose selection is decided by rounding rather than by the routing rule are left out of the
comparison: two different selection scores (logits for the softmax / raw-logit routers, score +
bias for deepseek-v3, kimi-k2, deepseek-v4, and the group scores) closer than NEAR_TIE among the top
k+1. An exact tie (the same value in float32 and float64) stays in and must go to the lower id. On
the grid every row stays; on normal logits a few rows of the k = E cases go.

The tests at the bottom check the references themselves (loss normalisations, gradients, the
fill value); tests/test_moe.py compares logitkit's losses with them.
"""

from __future__ import annotations

import zlib

import logitkit
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import moe_reference as ref  # noqa: E402


RTOL, ATOL = 2e-6, 1e-7  # against the float64 reference
RTOL32, ATOL32 = 4e-6, 2e-7  # against the float32 reference (its own rounding on top)
T = 40  # tokens per case
NEAR_TIE = 1e-6  # relative gap below which two different selection scores count as a near-tie

QWEN = ("qwen2-moe", "qwen3-moe", "olmoe")

# Preset defaults as found in the published configs (see moe_reference.py for the sources):
#   k          num_experts_per_tok of the released model
#   E          expert counts of the released models the preset names (first one used by the
#              default-argument test)
#   extra_E    other expert counts the preset's rule is well defined for
#   norm       norm_topk_prob (qwen family only; route's renormalize overrides it)
#   groups     (n_group, topk_group) for the group-limited presets
PRESETS = {
    "mixtral": dict(k=2, E=(8,), extra_E=(6, 60, 160, 384)),
    "qwen2-moe": dict(k=4, E=(60,), extra_E=(6, 160, 384), norm=False),
    # Qwen3MoeConfig's class default is norm_topk_prob=False, the released Qwen3-30B-A3B /
    # Qwen3-235B-A22B configs say true: the preset is taken to follow the released models.
    "qwen3-moe": dict(k=8, E=(128,), extra_E=(6, 60, 384), norm=True),
    "olmoe": dict(k=8, E=(64,), extra_E=(6, 60, 384), norm=False),
    "deepseek-v2": dict(k=6, E=(160,), extra_E=(64, 24), groups=(8, 3)),
    "deepseek-v3": dict(k=8, E=(256,), extra_E=(64, 32), groups=(8, 4), bias=True),
    "kimi-k2": dict(k=8, E=(384,), extra_E=(6, 60, 160), bias=True),
    # DeepSeek-V4-Flash (256 experts, route scale 1.5, the HF DeepseekV4Config default) and V4-Pro
    # (384 experts, route scale 2.5): the preset's scale is V4-Flash's; Pro is tested by override.
    "deepseek-v4": dict(k=6, E=(256, 384), extra_E=(6, 60), bias=True),
    "llama4": dict(k=1, E=(16, 128), extra_E=(6, 60)),
    "gpt-oss": dict(k=4, E=(32, 128), extra_E=(6, 60, 160, 384)),
}


def reference(name, x, bias=None, k=None, **over):
    """The reference router for preset `name` on torch tensor x (its dtype is the compute dtype),
    with the preset's defaults unless overridden (route's argument names: renormalize,
    scaling_factor, n_group, topk_group)."""
    spec = PRESETS[name]
    k = spec["k"] if k is None else k
    b = None if bias is None else torch.as_tensor(np.asarray(bias, np.float32)).to(x.dtype)
    if name == "mixtral":
        return ref.mixtral(x, k)
    if name in QWEN:
        return ref.qwen_moe(x, k, over.get("renormalize", spec["norm"]))
    if name == "deepseek-v2":
        return ref.deepseek_v2(
            x,
            k,
            n_group=over.get("n_group", 8),
            topk_group=over.get("topk_group", 3),
            routed_scaling_factor=over.get("scaling_factor", 16.0),
        )
    if name == "deepseek-v3":
        return ref.deepseek_v3(
            x,
            b,
            k,
            n_group=over.get("n_group", 8),
            topk_group=over.get("topk_group", 4),
            routed_scaling_factor=over.get("scaling_factor", 2.5),
        )
    if name == "kimi-k2":
        return ref.kimi_k2(x, b, k, routed_scaling_factor=over.get("scaling_factor", 2.827))
    if name == "deepseek-v4":
        return ref.deepseek_v4(x, b, k, routed_scaling_factor=over.get("scaling_factor", 1.5))
    if name == "llama4":
        return ref.llama4(x, k)
    if name == "gpt-oss":
        return ref.gpt_oss(x, k)
    raise KeyError(name)


def _valid_ks(name, e):
    spec = PRESETS[name]
    ks = {1, spec["k"], e}
    if "groups" in spec:  # k may not exceed the experts of the kept groups
        n_group, topk_group = spec["groups"]
        ks = {k for k in ks if k <= topk_group * e // n_group}
    return sorted(k for k in ks if k <= e)


def _cases():
    for name, spec in PRESETS.items():
        for e in spec["E"] + spec["extra_E"]:
            for k in _valid_ks(name, e):
                yield pytest.param(name, e, k, id=f"{name}-E{e}-k{k}")


def _logits(kind, e, seed, rows=T):
    rng = np.random.default_rng(seed)
    if kind == "grid":
        return (rng.integers(-16, 16, size=(rows, e)) / 4).astype(np.float32)
    return rng.standard_normal((rows, e)).astype(np.float32)


def _bias(kind, e, seed):
    rng = np.random.default_rng(seed + 7919)
    if kind == "grid":  # multiples of 1/8: exact ties of score + bias stay possible
        return (rng.integers(-4, 5, size=e) / 8).astype(np.float32)
    return (0.25 * rng.standard_normal(e)).astype(np.float32)


def _seed(*parts):
    """A fixed seed per test case (Python's str hash is salted per process)."""
    return zlib.crc32(repr(parts).encode())


def _selection_scores(name, x, bias, **over):
    """(choice, group_scores, topk_group): what the preset's rule ranks, on torch tensor x, for the
    near-tie check. For the softmax routers that is (equivalently) the logits themselves."""
    if name in ("deepseek-v3", "kimi-k2", "deepseek-v4"):
        b = torch.as_tensor(bias).to(x.dtype)
        s = ref.sqrt_softplus(x) if name == "deepseek-v4" else torch.sigmoid(x)
        if name != "deepseek-v3":
            return s + b, None, None
        n_group, topk_group = over.get("n_group", 8), over.get("topk_group", 4)
        choice, gscore = ref.deepseek_group_limited_choice(s + b, n_group, topk_group, "top2_sum", ref.NEG_INF)
        return choice, gscore, topk_group
    if name == "deepseek-v2":  # softmax is monotone: groups and experts rank as their logits do
        n_group, topk_group = over.get("n_group", 8), over.get("topk_group", 3)
        choice, gscore = ref.deepseek_group_limited_choice(x, n_group, topk_group, "max", ref.NEG_INF)
        return choice, gscore, topk_group
    return x, None, None


def _gaps_ok(v64, v32, n):
    """Rows whose n+1 largest values (float64 ranking) have, between neighbours, either an exact
    tie in both precisions or a gap above NEAR_TIE in both."""
    n = min(n + 1, v64.shape[1])
    o = torch.sort(-v64, dim=1, stable=True).indices[:, :n]
    a, b = v64.gather(1, o), v32.to(torch.float64).gather(1, o)
    ok = torch.ones(v64.shape[0], dtype=torch.bool)
    for j in range(n - 1):
        for v in (a, b):
            hi, lo = v[:, j], v[:, j + 1]
            finite = torch.isfinite(hi) & torch.isfinite(lo)
            gap = hi - lo
            scale = 1 + torch.maximum(hi.abs(), lo.abs())
            near = finite & (gap != 0) & (gap.abs() < NEAR_TIE * scale)
            ok &= ~near
        tie64 = a[:, j] == a[:, j + 1]
        tie32 = b[:, j] == b[:, j + 1]
        ok &= tie64 == tie32
    return ok


def _clean_rows(name, x32, bias, k, **over):
    """Rows on which the preset's selection is decided by the rule, not by rounding: no two
    different selection scores (or group scores) among the top k+1 closer than NEAR_TIE."""
    sel64 = _selection_scores(name, torch.as_tensor(x32).to(torch.float64), bias, **over)
    sel32 = _selection_scores(name, torch.as_tensor(x32), bias, **over)
    ok = _gaps_ok(sel64[0], sel32[0], k)
    if sel64[1] is not None:
        ok &= _gaps_ok(sel64[1], sel32[1], sel64[2])
    return ok.numpy()


def _route(x, name, k=None, bias=None, **over):
    kw = dict(over)
    if bias is not None:
        kw["bias"] = bias
    if k is not None:
        kw["k"] = k
    w, ids = logitkit.route(x, preset=name, **kw)
    w, ids = np.asarray(w), np.asarray(ids)
    assert w.dtype == np.float32 and ids.dtype == np.int32
    return w, ids


def _check(name, x, k=None, bias=None, x_ref=None, check32=True, min_clean=0.5, **over):
    """route(x, preset=name, ...) against the float64 (and float32) reference on x_ref (x itself
    unless given, e.g. float16 logits widened to float32)."""
    x_ref = x if x_ref is None else x_ref
    kk = PRESETS[name]["k"] if k is None else k
    w, ids = _route(x, name, k=k, bias=bias, **over)
    assert w.shape == ids.shape == (x.shape[0], kk)
    w64, i64 = reference(name, torch.as_tensor(x_ref).to(torch.float64), bias, k, **over)
    rows = _clean_rows(name, x_ref, bias, kk, **over)
    assert rows.mean() >= min_clean, f"only {rows.mean():.0%} of the rows are free of near-ties"
    np.testing.assert_array_equal(ids[rows], i64.numpy()[rows])
    np.testing.assert_allclose(w[rows], w64.numpy()[rows], rtol=RTOL, atol=ATOL)
    if check32:  # weights column by column: a float32 rounding tie changes an id, not a weight
        w32, _ = reference(name, torch.as_tensor(x_ref), bias, k, **over)
        np.testing.assert_allclose(w[rows], w32.numpy()[rows], rtol=RTOL32, atol=ATOL32)


# --------------------------------------------------------------------------------------------
# logitkit.route against the references
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["grid", "normal"])
@pytest.mark.parametrize(("name", "e", "k"), list(_cases()))
def test_preset_matches_reference(name, e, k, kind):
    seed = _seed(name, kind, e, k)
    x = _logits(kind, e, seed)
    bias = _bias(kind, e, seed) if PRESETS[name].get("bias") else None
    if name in QWEN:
        for norm in (False, True):
            _check(name, x, k=k, bias=bias, renormalize=norm)
    else:
        _check(name, x, k=k, bias=bias)


@pytest.mark.parametrize("kind", ["grid", "normal"])
@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_defaults(name, kind):
    """route(x, preset=name) with nothing but the bias: the preset's own k, scale, groups, norm."""
    e = PRESETS[name]["E"][0]
    seed = _seed(name, kind, e, 0)
    x = _logits(kind, e, seed)
    bias = _bias(kind, e, seed) if PRESETS[name].get("bias") else None
    _check(name, x, bias=bias)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("kind", ["grid", "normal"])
@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_half_precision(name, kind, dtype):
    if dtype == "bfloat16":
        dt = pytest.importorskip("ml_dtypes").bfloat16
    else:
        dt = np.float16
    e = PRESETS[name]["E"][-1]
    seed = _seed(name, kind, dtype)
    x = _logits(kind, e, seed).astype(dt)  # bfloat16 rounding of normals makes exact ties common
    bias = _bias(kind, e, seed) if PRESETS[name].get("bias") else None
    _check(name, x, bias=bias, x_ref=x.astype(np.float32))


@pytest.mark.parametrize(
    ("name", "e", "k", "over"),
    [
        ("deepseek-v3", 256, 4, dict(n_group=4, topk_group=2, scaling_factor=1.0)),
        ("deepseek-v3", 256, 8, dict(n_group=16, topk_group=8)),
        ("deepseek-v2", 160, 6, dict(n_group=4, topk_group=2, scaling_factor=1.0)),
        ("deepseek-v4", 384, 6, dict(scaling_factor=2.5)),  # DeepSeek-V4-Pro
        ("kimi-k2", 384, 8, dict(scaling_factor=1.0)),
    ],
    ids=lambda v: str(v) if not isinstance(v, dict) else "-".join(f"{a}{b}" for a, b in v.items()),
)
def test_preset_overrides(name, e, k, over):
    """Explicit arguments win over the preset's."""
    seed = _seed(name, e, k, len(over))
    x = _logits("normal", e, seed)
    bias = _bias("normal", e, seed) if PRESETS[name].get("bias") else None
    _check(name, x, k=k, bias=bias, **over)


def test_deepseek_v3_losing_groups_are_minus_inf():
    """Biases that make every score + bias negative: with the HF fill (0.0) the experts of the
    losing groups outrank the kept ones; DeepSeek's model.py (-inf) keeps the selection inside the
    kept groups. route must follow the official -inf."""
    rng = np.random.default_rng(2412)
    e = 256
    x = rng.standard_normal((T, e)).astype(np.float32)
    bias = (-2.0 + 0.1 * rng.standard_normal(e)).astype(np.float32)
    x64, b64 = torch.as_tensor(x).double(), torch.as_tensor(bias).double()
    w_inf, i_inf = ref.deepseek_v3(x64, b64)
    w_zero, i_zero = ref.deepseek_v3(x64, b64, fill=0.0)
    assert (i_inf.numpy() != i_zero.numpy()).any(axis=1).all()  # the case separates the two
    w, ids = _route(x, "deepseek-v3", bias=bias)
    rows = _clean_rows("deepseek-v3", x, bias, 8)
    assert rows.mean() >= 0.5
    np.testing.assert_array_equal(ids[rows], i_inf.numpy()[rows])
    np.testing.assert_allclose(w[rows], w_inf.numpy()[rows], rtol=RTOL, atol=ATOL)
    assert not (ids == i_zero.numpy()).all(axis=1).any()


@pytest.mark.parametrize("name", ["mixtral", "qwen3-moe", "deepseek-v2", "deepseek-v3", "llama4", "gpt-oss"])
def test_all_equal_logits_pick_lowest_ids(name):
    """A row of equal logits: every rule ties everywhere, so the first k expert ids, in order."""
    e = PRESETS[name]["E"][0]
    k = PRESETS[name]["k"]
    x = np.full((3, e), 0.5, np.float32)
    bias = np.zeros(e, np.float32) if PRESETS[name].get("bias") else None
    _, ids = _route(x, name, bias=bias)
    np.testing.assert_array_equal(ids, np.tile(np.arange(k, dtype=np.int32), (3, 1)))


# --------------------------------------------------------------------------------------------
# The references themselves (no logitkit needed)
# --------------------------------------------------------------------------------------------


def test_reference_topk_lowest_id_breaks_ties_by_id():
    v = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0, float("-inf")], [0.0, 0.0, -0.0, 0.0, 1.0, 0.0]])
    vals, ids = ref.topk_lowest_id(v, 5)
    assert ids.tolist() == [[1, 2, 4, 3, 0], [4, 0, 1, 2, 3]]
    assert vals[0].tolist() == [3.0, 3.0, 3.0, 2.0, 1.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reference_weight_sums(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 256, generator=g, dtype=dtype)
    b = 0.1 * torch.randn(256, generator=g, dtype=dtype)
    tol = dict(rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
    one = torch.ones(32, dtype=dtype)
    torch.testing.assert_close(ref.mixtral(x)[0].sum(-1), one, **tol)
    torch.testing.assert_close(ref.qwen_moe(x, 8, True)[0].sum(-1), one, **tol)
    torch.testing.assert_close(ref.gpt_oss(x)[0].sum(-1), one, **tol)
    torch.testing.assert_close(ref.deepseek_v3(x, b)[0].sum(-1), 2.5 * one, **tol)
    torch.testing.assert_close(ref.deepseek_v4(x, b)[0].sum(-1), 1.5 * one, **tol)
    x384 = torch.randn(32, 384, generator=g, dtype=dtype)
    torch.testing.assert_close(ref.kimi_k2(x384, torch.zeros(384, dtype=dtype))[0].sum(-1), 2.827 * one, **tol)
    # un-normalised routers: the raw probabilities / sigmoids of the chosen experts
    p = torch.softmax(x, -1)
    w, ids = ref.qwen_moe(x, 4, False)
    torch.testing.assert_close(w, p.gather(1, ids))
    w, ids = ref.llama4(x)
    torch.testing.assert_close(w, torch.sigmoid(x.gather(1, ids)))
    x160 = torch.randn(32, 160, generator=g, dtype=dtype)
    w, ids = ref.deepseek_v2(x160)
    torch.testing.assert_close(w, 16.0 * torch.softmax(x160, -1).gather(1, ids))


def test_reference_columns_follow_selection_score():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 256, generator=g, dtype=torch.float64)
    b = 0.5 * torch.randn(256, generator=g, dtype=torch.float64)
    _, ids = ref.deepseek_v3(x, b)
    choice = torch.sigmoid(x) + b
    sel = choice.gather(1, ids)
    assert (sel[:, :-1] >= sel[:, 1:]).all()  # ordered by biased score ...
    w = torch.sigmoid(x).gather(1, ids)
    assert not (w[:, :-1] >= w[:, 1:]).all()  # ... which is not the order of the weights
    for row in ids:  # the selection stays inside topk_group=4 groups of 32
        assert len(set((row // 32).tolist())) <= 4


def test_reference_deepseek_v3_fill_values_differ():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 256, generator=g, dtype=torch.float64)
    b = torch.full((256,), -2.0, dtype=torch.float64)
    _, i_inf = ref.deepseek_v3(x, b)
    _, i_zero = ref.deepseek_v3(x, b, fill=0.0)
    for a, z in zip(i_inf, i_zero):
        assert len(set((a // 32).tolist())) <= 4
        assert set(z.tolist()) != set(a.tolist())
    # with positive scores + bias the two fills agree
    _, j_inf = ref.deepseek_v3(x, torch.zeros(256, dtype=torch.float64))
    _, j_zero = ref.deepseek_v3(x, torch.zeros(256, dtype=torch.float64), fill=0.0)
    assert torch.equal(j_inf, j_zero)


def test_reference_deepseek_v4_bias_selects_only():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 256, generator=g, dtype=torch.float64)
    b = torch.zeros(256, dtype=torch.float64)
    b[:6] = 100.0  # forces experts 0..5
    w, ids = ref.deepseek_v4(x, b)
    assert ids.sort(1).values.tolist() == [list(range(6))] * 16
    s = torch.sqrt(torch.nn.functional.softplus(x)).gather(1, ids)  # unbiased scores, in id order
    assert (s[:, :-1] >= s[:, 1:]).all()  # equal biases: the order is the scores'
    torch.testing.assert_close(w, 1.5 * s / s.sum(-1, keepdim=True))


def _loss_inputs(seed, t=64, e=16, k=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t, e, generator=g, dtype=torch.float64, requires_grad=True)
    _, ids = ref.mixtral(x.detach(), k)
    return x, ids, e, k


def test_reference_loss_normalisations():
    x, ids, e, k = _loss_inputs(4)
    switch = ref.switch_load_balancing_loss(x, ids, e, k, alpha=1.0)
    hf = ref.hf_mixtral_load_balancing_loss(x, e, k)
    ds = ref.deepspeed_topk_load_balancing_loss(x, k)
    torch.testing.assert_close(hf, k * switch)  # HF: fraction per token, k times Switch
    torch.testing.assert_close(ds, switch)  # DeepSpeed topkgating: exactly Switch
    torch.testing.assert_close(ref.switch_load_balancing_loss(x, ids, e, k, alpha=0.01), 0.01 * switch)
    # HF's tuple-of-layers input is the concatenation
    torch.testing.assert_close(ref.hf_mixtral_load_balancing_loss((x[:32], x[32:]), e, k), hf)
    # a uniform router: Switch gives alpha, HF gives k
    u = torch.zeros(64, e, dtype=torch.float64)
    uid = ref.mixtral(u, k)[1]
    assert ref.switch_load_balancing_loss(u, uid, e, k, alpha=0.3).item() == pytest.approx(0.3)
    assert ref.hf_mixtral_load_balancing_loss(u, e, k).item() == pytest.approx(k)
    assert ref.sequence_balance_loss(u, uid, k, 0.1, 16).item() == pytest.approx(0.1)
    # z-loss by hand
    z = torch.log(torch.exp(x.detach()).sum(-1)).square().mean()
    torch.testing.assert_close(ref.router_z_loss(x.detach()), z)


def test_reference_sequence_loss_is_mean_over_sequences():
    x, _, e, _ = _loss_inputs(5, t=48, e=32)
    b = torch.zeros(e, dtype=torch.float64)
    _, ids = ref.deepseek_v3(x.detach(), b, k=4, n_group=4, topk_group=2)
    whole = ref.sequence_balance_loss(x, ids, 4, 1e-3, 16)
    parts = [ref.sequence_balance_loss(x[i : i + 16], ids[i : i + 16], 4, 1e-3, 16) for i in (0, 16, 32)]
    torch.testing.assert_close(whole, sum(parts) / 3)
    # one sequence by the report's formulas, term by term
    s = torch.sigmoid(x[:16].detach())
    sp = s / s.sum(-1, keepdim=True)
    f = torch.stack([(ids[:16] == i).sum() for i in range(e)]).double() * e / (4 * 16)
    torch.testing.assert_close(parts[0].detach(), 1e-3 * (f * sp.mean(0)).sum())


@pytest.mark.parametrize(
    "loss",
    [
        lambda x, ids, e, k: ref.switch_load_balancing_loss(x, ids, e, k, alpha=0.01),
        lambda x, ids, e, k: ref.hf_mixtral_load_balancing_loss(x, e, k, ids=ids),
        lambda x, ids, e, k: ref.deepspeed_topk_load_balancing_loss(x, k, ids=ids),
        lambda x, ids, e, k: ref.router_z_loss(x),
        lambda x, ids, e, k: ref.sequence_balance_loss(x, ids, k, 1e-3, 16),
    ],
    ids=["switch", "hf_mixtral", "deepspeed_topk", "z_loss", "sequence"],
)
def test_reference_losses_are_differentiable(loss):
    x, ids, e, k = _loss_inputs(6, t=32, e=8, k=2)
    assert torch.autograd.gradcheck(lambda t: loss(t, ids, e, k), (x,), fast_mode=True)
    g = torch.autograd.grad(loss(x, ids, e, k), x)[0]
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_reference_update_bias():
    b = torch.tensor([0.5, 0.0, -0.5, 0.25], dtype=torch.float64)
    counts = torch.tensor([10, 2, 5, 7])  # mean 6: overloaded 0 and 3, underloaded 1 and 2
    out = ref.update_bias(b, counts, rate=0.01)
    torch.testing.assert_close(out, torch.tensor([0.49, 0.01, -0.49, 0.24], dtype=torch.float64))
    torch.testing.assert_close(ref.update_bias(b, torch.tensor([3, 3, 3, 3])), b)
