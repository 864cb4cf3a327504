"""MoE data movement and auxiliary losses: dispatch-plan invariants (every kept pair exactly once,
capacity respected, both drop policies against a NumPy model, padding and block map), permute /
unpermute against NumPy gathers and weighted sums (every ISA, every float dtype, thread
invariance), expert_choice against a NumPy top-k per expert, expert_counts against np.bincount,
the balancing losses and their gradients against torch.autograd in float64 (references in
tests/moe_reference.py, written from the frameworks' code), update_bias, contrastive_logits, and
argument errors."""

from __future__ import annotations

import logitkit
import numpy as np
import pytest

RNG = np.random.default_rng(99)


def routed(t, e, k, rng=RNG):
    x = rng.standard_normal((t, e)).astype(np.float32)
    w, i = logitkit.route(x, k, renormalize=True)
    return x, w, i


def ref_plan(ids, e, capacity=None, weights=None, block_size=1):
    """Dispatch in plain Python: pairs in (token, slot) order per expert, capacity by policy."""
    t, k = ids.shape
    per = [[] for _ in range(e)]
    for p, ex in enumerate(ids.reshape(-1)):
        per[ex].append(p)
    kept = []
    for ex in range(e):
        pairs = per[ex]
        if capacity is not None and len(pairs) > capacity:
            if weights is None:
                pairs = pairs[:capacity]
            else:
                wf = weights.reshape(-1)
                key = lambda p: (-(wf[p] if wf[p] == wf[p] else -np.inf), p)  # noqa: E731
                pairs = sorted(sorted(pairs, key=key)[:capacity])
        kept.append(pairs)
    offsets = [0]
    for pairs in kept:
        offsets.append(offsets[-1] + -(-len(pairs) // block_size) * block_size)
    position = -np.ones((t, k), np.int64)
    slot_pair = -np.ones(offsets[-1], np.int64)
    for ex, pairs in enumerate(kept):
        for r, p in enumerate(pairs):
            position.reshape(-1)[p] = offsets[ex] + r
            slot_pair[offsets[ex] + r] = p
    return np.bincount(ids.reshape(-1), minlength=e), np.array([len(p) for p in kept]), np.array(offsets), position, slot_pair


@pytest.mark.parametrize("t,e,k", [(1, 1, 1), (37, 6, 2), (500, 60, 4), (2000, 160, 6), (300, 8, 8), (20000, 64, 8)])
@pytest.mark.parametrize("policy", ["position", "probs"])
@pytest.mark.parametrize("block_size", [1, 16])
def test_dispatch_matches_model(t, e, k, policy, block_size):
    _, w, ids = routed(t, e, k)
    cap = max(1, (t * k) // e // 2)
    for capacity in [None, cap]:
        plan = logitkit.dispatch(ids, e, weights=w, capacity=capacity, drop_policy=policy, block_size=block_size)
        counts, kept, offsets, position, slot_pair = ref_plan(
            ids, e, capacity, w if policy == "probs" else None, block_size
        )
        np.testing.assert_array_equal(plan.counts, counts)
        np.testing.assert_array_equal(plan.kept, kept)
        np.testing.assert_array_equal(plan.offsets, offsets)
        np.testing.assert_array_equal(plan.position, position)
        np.testing.assert_array_equal(plan.slot_pair, slot_pair)
        np.testing.assert_array_equal(plan.slot_token, np.where(slot_pair >= 0, slot_pair // k, -1))
        # invariants: every kept pair exactly once, capacity respected, blocks map to their expert
        kept_pairs = plan.slot_pair[plan.slot_pair >= 0]
        assert len(np.unique(kept_pairs)) == len(kept_pairs) == int(plan.kept.sum())
        assert capacity is None or (plan.kept <= capacity).all()
        assert plan.num_slots % block_size == 0
        expected_blocks = np.repeat(np.arange(e), np.diff(plan.offsets) // block_size)
        np.testing.assert_array_equal(plan.block_expert, expected_blocks)
        flat = plan.position.reshape(-1)
        assert ((flat == -1) | (plan.slot_pair[np.maximum(flat, 0)] == np.arange(t * k))).all()


def test_drop_by_probs_ranks_nan_below_minus_inf():
    """drop_policy "probs" keeps an expert's largest weights, NaN lowest: below -inf too (a NaN
    weight has no rank, -inf is the smallest one), ties to the lower token."""
    w = np.array([[np.nan], [-np.inf], [np.nan], [0.5], [-np.inf], [0.5]])
    ids = np.zeros((6, 1), np.int64)
    for capacity, kept in [(1, [3]), (2, [3, 5]), (3, [1, 3, 5]), (4, [1, 3, 4, 5]), (5, [0, 1, 3, 4, 5])]:
        plan = logitkit.dispatch(ids, 1, weights=w, capacity=capacity, drop_policy="probs")
        np.testing.assert_array_equal(np.flatnonzero(plan.position[:, 0] >= 0), kept, err_msg=f"capacity {capacity}")
        np.testing.assert_array_equal(plan.slot_token[:capacity], kept)  # kept pairs in token order


def test_capacity_factor_and_stats():
    _, w, ids = routed(1000, 16, 2)
    plan = logitkit.dispatch(ids, 16, capacity_factor=1.0)
    assert plan.capacity == max(4, int(np.ceil(1000 * 2 / 16)))
    plan2 = logitkit.dispatch(ids, 16, capacity_factor=0.001, min_capacity=7)
    assert plan2.capacity == 7 and (plan2.kept <= 7).all()
    s = plan2.load_stats()
    counts = np.bincount(ids.reshape(-1), minlength=16)
    assert s["max_load"] == counts.max() and s["mean_load"] == counts.mean()
    assert s["dropped"] == counts.sum() - np.minimum(counts, 7).sum()
    np.testing.assert_allclose(s["fraction_dropped"], s["dropped"] / counts.sum())


@pytest.mark.parametrize("shape", [(0, 2), (5, 0), (0, 0)])
def test_capacity_factor_with_no_pairs(shape):
    # no (token, expert) pairs: any finite factor, however large, gives capacity min_capacity and
    # an empty plan; a factor near DBL_MAX times 0 pairs once formed inf * 0 = NaN
    ids = np.zeros(shape, np.int32)
    for factor in [1.0, 1e308, np.finfo(np.float64).max]:
        plan = logitkit.dispatch(ids, 4, capacity_factor=factor, min_capacity=0)
        assert plan.capacity == 0 and plan.num_slots == 0 and plan.kept.sum() == 0
        assert logitkit.dispatch(ids, 4, capacity_factor=factor, min_capacity=3).capacity == 3


def test_capacity_factor_beyond_all_pairs():
    # the reported capacity is the one applied: capped at T k (no expert can receive more), also
    # for a factor whose product overflows a double
    _, w, ids = routed(100, 8, 2)
    for factor in [1.0, 9.0, 1e300, np.finfo(np.float64).max]:
        plan = logitkit.dispatch(ids, 8, capacity_factor=factor, min_capacity=0)
        assert plan.capacity == min(200, int(np.ceil(np.float64(factor) * 200 / 8)) if factor < 1e300 else 200)
        np.testing.assert_array_equal(plan.kept, np.minimum(plan.counts, plan.capacity))


def test_dispatch_thread_invariant(threads):
    _, w, ids = routed(40000, 64, 8)
    plans = []
    for n in [1, 2, 3]:
        logitkit.set_num_threads(n)
        plans.append(logitkit.dispatch(ids, 64, weights=w, capacity=3000, drop_policy="probs", block_size=8))
    for p in plans[1:]:
        np.testing.assert_array_equal(p.position, plans[0].position)
        np.testing.assert_array_equal(p.slot_pair, plans[0].slot_pair)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_permute_unpermute(isa, dtype, threads):
    if dtype == "bfloat16":
        dt = np.dtype(pytest.importorskip("ml_dtypes").bfloat16)
    else:
        dt = np.dtype(dtype)
    t, e, k, h = 300, 12, 3, 77
    _, w, ids = routed(t, e, k)
    hidden = RNG.standard_normal((t, h)).astype(dt)
    plan = logitkit.dispatch(ids, e, capacity=60, block_size=4)
    p = logitkit.permute(hidden, plan)
    assert p.dtype == dt and p.shape == (plan.num_slots, h)
    for s in range(plan.num_slots):
        tok = plan.slot_token[s]
        np.testing.assert_array_equal(p[s].view(np.uint8), (hidden[tok] if tok >= 0 else np.zeros(h, dt)).view(np.uint8))
    # a per-slot transform, combined back
    expert_out = (p.astype(np.float64) * (1 + np.arange(plan.num_slots))[:, None] / 100).astype(dt)
    out = logitkit.unpermute(expert_out, plan, w)
    assert out.dtype == dt
    ref = np.zeros((t, h))
    for tok in range(t):
        for j in range(k):
            s = plan.position[tok, j]
            if s >= 0:
                ref[tok] += float(w[tok, j]) * expert_out[s].astype(np.float64)
    tol = {"float64": 1e-14, "float32": 1e-6, "float16": 2e-3, "bfloat16": 1e-2}[dtype]
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=tol, atol=tol)
    # out=: the same bits written into caller buffers (a strided one for unpermute)
    p_out = np.full_like(p, 7)
    assert logitkit.permute(hidden, plan, out=p_out) is p_out
    np.testing.assert_array_equal(p_out.view(np.uint8), p.view(np.uint8))
    u_out = np.zeros((h, t), dt).T
    assert logitkit.unpermute(expert_out, plan, w, out=u_out) is u_out
    np.testing.assert_array_equal(np.ascontiguousarray(u_out).view(np.uint8), out.view(np.uint8))
    # identity experts and renormalised weights without drops: the round trip gives hidden back
    # (the float32 weights sum to 1 within float32 rounding)
    full = logitkit.dispatch(ids, e)
    back = logitkit.unpermute(logitkit.permute(hidden, full), full, w)
    rt = max(tol * 4, 1e-6)
    np.testing.assert_allclose(back.astype(np.float64), hidden.astype(np.float64), rtol=rt, atol=rt)
    res = []
    for n in [1, 2]:
        logitkit.set_num_threads(n)
        res.append(logitkit.unpermute(expert_out, plan, w))
    np.testing.assert_array_equal(res[0].view(np.uint8), res[1].view(np.uint8))


def test_permute_unpermute_out_errors():
    _, w, ids = routed(40, 8, 2)
    hidden = RNG.standard_normal((40, 16)).astype(np.float32)
    plan = logitkit.dispatch(ids, 8)
    with pytest.raises(ValueError, match="^out: shape"):
        logitkit.permute(hidden, plan, out=np.empty((plan.num_slots + 1, 16), np.float32))
    with pytest.raises(TypeError, match="^out: dtype"):
        logitkit.permute(hidden, plan, out=np.empty((plan.num_slots, 16), np.float64))
    with pytest.raises(ValueError, match="^out: rows must be contiguous"):
        logitkit.permute(hidden, plan, out=np.empty((plan.num_slots, 32), np.float32)[:, ::2])
    shared = np.zeros((40 + plan.num_slots, 16), np.float32)
    with pytest.raises(ValueError, match="^out: must not overlap hidden"):
        logitkit.permute(shared[:40], plan, out=shared[20 : 20 + plan.num_slots])
    with pytest.raises(ValueError, match="^out: array is read-only"):
        ro = np.empty((plan.num_slots, 16), np.float32)
        ro.flags.writeable = False
        logitkit.permute(hidden, plan, out=ro)
    expert_out = logitkit.permute(hidden, plan)
    with pytest.raises(ValueError, match="^out: shape"):
        logitkit.unpermute(expert_out, plan, w, out=np.empty((41, 16), np.float32))
    with pytest.raises(TypeError, match="^out: dtype"):
        logitkit.unpermute(expert_out, plan, w, out=np.empty((40, 16), np.float64))
    with pytest.raises(ValueError, match="^out: must not overlap expert_out"):
        logitkit.unpermute(expert_out, plan, w, out=expert_out[:40])


def test_expert_choice(isa):
    x = (RNG.integers(-8, 8, (50, 10)) / 4).astype(np.float32)  # ties between tokens
    w, tok = logitkit.expert_choice(x, 7)
    p = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert w.shape == tok.shape == (10, 7)
    for e in range(10):
        order = sorted(range(50), key=lambda t: (-p[t, e], t))[:7]
        np.testing.assert_array_equal(tok[e], order)
        np.testing.assert_allclose(w[e], p[order, e], rtol=2e-6)


def test_expert_counts():
    ids = RNG.integers(0, 37, (123, 5)).astype(np.int64)
    np.testing.assert_array_equal(logitkit.expert_counts(ids, 37), np.bincount(ids.reshape(-1), minlength=37))
    np.testing.assert_array_equal(logitkit.expert_counts(ids[:, ::2].T, 40), np.bincount(ids[:, ::2].reshape(-1), minlength=40))
    np.testing.assert_array_equal(logitkit.expert_counts(np.int32(3), 4), [0, 0, 0, 1])


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("norm", ["switch", "deepspeed", "hf_mixtral"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_load_balancing_loss(isa, norm, dtype):
    torch = _torch()
    import moe_reference as ref  # noqa: PLC0415 (needs torch)
    t, e, k = 257, 24, 4
    x, _, ids = routed(t, e, k)
    x = x.astype(dtype)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    it = torch.tensor(ids.astype(np.int64))
    if norm == "switch":
        loss_t = ref.switch_load_balancing_loss(xt, it, e, k, alpha=0.01)
    elif norm == "deepspeed":
        loss_t = 0.01 * ref.deepspeed_topk_load_balancing_loss(xt, k, ids=it)
    else:
        loss_t = 0.01 * ref.hf_mixtral_load_balancing_loss(xt, e, k, ids=it)
    (g_t,) = torch.autograd.grad(loss_t * 3.0, xt)
    loss, g = logitkit.load_balancing_loss(x, ids, normalization=norm, alpha=0.01, return_grad=True, grad_output=3.0)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(loss, loss_t.item(), rtol=tol)
    assert g.dtype == dtype
    np.testing.assert_allclose(g, g_t.numpy(), rtol=tol * 10, atol=tol * 1e-3)


def test_router_z_and_sequence_losses(isa):
    torch = _torch()
    import moe_reference as ref  # noqa: PLC0415 (needs torch)
    x, _, ids = routed(240, 16, 3)
    x64 = x.astype(np.float64)
    for dtype, tol in [(np.float64, 1e-12), (np.float32, 2e-6)]:
        xt = torch.tensor(x64, requires_grad=True)
        lz = ref.router_z_loss(xt)
        (gz,) = torch.autograd.grad(lz, xt)
        loss, g = logitkit.router_z_loss(x.astype(dtype), return_grad=True)
        np.testing.assert_allclose(loss, lz.item(), rtol=tol)
        np.testing.assert_allclose(g, gz.numpy(), rtol=tol * 10, atol=tol * 1e-3)
        for seq_len in [1, 24, 240]:
            xt = torch.tensor(x64, requires_grad=True)
            ls = ref.sequence_balance_loss(xt, torch.tensor(ids.astype(np.int64)), 3, 0.001, seq_len)
            (gs,) = torch.autograd.grad(ls * 2, xt)
            loss, g = logitkit.sequence_balance_loss(x.astype(dtype), ids, seq_len, alpha=0.001, return_grad=True,
                                                     grad_output=2.0)
            np.testing.assert_allclose(loss, ls.item(), rtol=tol)
            np.testing.assert_allclose(g, gs.numpy(), rtol=tol * 10, atol=1e-12)


def test_update_bias():
    counts = np.array([10, 2, 6, 6, 0, 12])  # mean 6
    b = logitkit.update_bias(np.zeros(6, np.float32), counts, 0.001)
    np.testing.assert_allclose(b, [-0.001, 0.001, 0, 0, 0.001, -0.001], rtol=1e-6)
    assert b.dtype == np.float32


def test_contrastive_logits(isa):
    s = RNG.standard_normal((9, 301)).astype(np.float32)
    w = RNG.standard_normal((9, 301)).astype(np.float32)
    for beta, alpha in [(0.5, 0.1), (1.0, 0.5), (0.0, 0.0), (2.0, 1.0)]:
        out = logitkit.contrastive_logits(s, w, beta=beta, alpha=alpha)
        s64, w64 = s.astype(np.float64), w.astype(np.float64)
        with np.errstate(divide="ignore"):
            keep = s64 >= np.log(alpha) + s64.max(-1, keepdims=True)
        ref = np.where(keep, (1 + beta) * s64 - beta * w64, -np.inf)
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
        assert (np.isinf(out) == ~keep).all()
    # (1 + beta) s - beta w = s + beta (s - w): where the two routers agree the result is s itself,
    # for any beta float32 holds (the product form overflowed to inf - inf = NaN there)
    for beta in [1e30, 3e38, -3e38]:
        out = logitkit.contrastive_logits(s, s, beta=beta, alpha=0.1)
        keep = s >= np.float32(np.log(0.1)) + s.max(-1, keepdims=True)
        np.testing.assert_array_equal(out[keep], s[keep])
        assert not np.isnan(out).any()


def test_bad_arguments():
    ids = np.array([[0, 1], [2, 3]], np.int32)
    with pytest.raises(ValueError, match="experts"):
        logitkit.dispatch([[0, 4]], 4)
    with pytest.raises(ValueError, match="experts"):
        logitkit.dispatch([[0, -1]], 4)
    with pytest.raises(ValueError, match="capacity"):
        logitkit.dispatch(ids, 4, capacity=-2)
    with pytest.raises(ValueError, match="capacity_factor"):
        logitkit.dispatch(ids, 4, capacity_factor=-1.0)
    with pytest.raises(ValueError, match="block_size"):
        logitkit.dispatch(ids, 4, block_size=0)
    with pytest.raises(ValueError, match="drop_policy"):
        logitkit.dispatch(ids, 4, drop_policy="random")
    with pytest.raises(ValueError, match="weights"):
        logitkit.dispatch(ids, 4, capacity=1, drop_policy="probs")
    with pytest.raises(ValueError, match="num_experts"):
        logitkit.dispatch(ids, 0)
    with pytest.raises(TypeError, match="experts"):
        logitkit.dispatch(np.zeros((2, 2)), 4)
    plan = logitkit.dispatch(ids, 4)
    with pytest.raises(ValueError, match="hidden"):
        logitkit.permute(np.zeros((3, 4)), plan)
    with pytest.raises(ValueError, match="expert_out"):
        logitkit.unpermute(np.zeros((3, 4)), plan, np.ones((2, 2)))
    with pytest.raises(ValueError, match="weights"):
        logitkit.unpermute(np.zeros((4, 4)), plan, np.ones((2, 3)))
    with pytest.raises(TypeError, match="plan"):
        logitkit.permute(np.zeros((2, 4)), {})
    with pytest.raises(ValueError, match="capacity"):
        logitkit.expert_choice(np.zeros((3, 4)), 4)
    with pytest.raises(ValueError, match="experts"):
        logitkit.expert_counts([5], 4)
    with pytest.raises(ValueError, match="seq_len"):
        logitkit.sequence_balance_loss(np.zeros((4, 4)), ids.repeat(2, 0), 3)
    with pytest.raises(ValueError, match="experts"):
        logitkit.load_balancing_loss(np.zeros((3, 4)), ids)
    with pytest.raises(ValueError, match="normalization"):
        logitkit.load_balancing_loss(np.zeros((2, 4)), ids, normalization="megablocks")
    with pytest.raises(ValueError, match="counts"):
        logitkit.update_bias(np.zeros(4), np.zeros(3, np.int64), 0.1)
    with pytest.raises(ValueError, match="alpha"):
        logitkit.contrastive_logits(np.zeros(4), np.zeros(4), alpha=2.0)
    with pytest.raises(ValueError, match="weak"):
        logitkit.contrastive_logits(np.zeros(4), np.zeros(5))
