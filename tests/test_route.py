"""logitkit.route against a float64 NumPy reference written from the documented rules (not from
the C++ code), on every ISA: every scoring, activation, softcap, temperature, weights_from,
renormalisation and scaling; bias for selection; group-limited selection (max and top-2 sum, one
group, one expert per group); masks and forced experts; NaN, -inf, +inf and tied logits; the
"k distinct ids in range" guarantee on adversarial rows; E from 1 to 1024 with odd counts; k from
1 to E; float16/bfloat16/float64 logits; batch shapes and strides; noise determinism and
statistics; thread invariance; argument errors.

Logits are drawn from a coarse grid (multiples of 1/4) so exact ties are common and near-ties
(where float32 and float64 rounding could order keys differently) cannot occur: ids are compared
exactly."""

from __future__ import annotations

import logitkit
import numpy as np
import pytest

RNG = np.random.default_rng(1234)


def grid(shape, lo=-16, hi=16, rng=RNG):
    return (rng.integers(lo, hi, size=shape) / 4).astype(np.float32)


def ref_route(x, k, *, scoring="softmax", softcap=None, temperature=1.0, activation=None,
              weights_from="scores", renormalize=False, renormalize_eps=0.0, scaling_factor=1.0,
              bias=None, n_group=1, topk_group=None, group_score="max", expert_mask=None, force=None):
    """The documented routing rules in float64, one token at a time, selection by a stable sort
    on (class, key, id)."""
    x = np.asarray(x, np.float64)
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    t_count, e_count = x.shape
    mask = np.ones_like(x, bool) if expert_mask is None else np.broadcast_to(expert_mask, shape).reshape(x.shape)
    forced = np.zeros_like(x, bool) if force is None else np.broadcast_to(force, shape).reshape(x.shape)
    out_w = np.zeros((t_count, k))
    out_i = np.zeros((t_count, k), np.int64)
    with np.errstate(all="ignore"):
        for t in range(t_count):
            y = x[t].copy()
            if softcap is not None:
                y = softcap * np.tanh(y / softcap)
            if activation == "tanh":
                y = np.tanh(y)
            elif activation == "sigmoid":
                y = 1 / (1 + np.exp(-y))
            elif activation == "relu":
                y = np.where(np.isnan(y), y, np.maximum(y, 0))
            y = y / temperature
            usable = mask[t] & ~np.isnan(y)
            if scoring == "softmax":
                s = np.zeros(e_count)
                if usable.any() and np.max(y[usable]) > -np.inf:
                    m = np.max(y[usable])
                    s[usable] = np.exp(y[usable] - m)
                    s /= s.sum()
            elif scoring == "sigmoid":
                s = 1 / (1 + np.exp(-y))
            elif scoring == "sqrtsoftplus":
                s = np.sqrt(np.logaddexp(0, y))
            else:
                s = y.copy()
            s[~usable] = 0
            from_scores = bias is not None or (n_group > 1 and group_score == "top2_sum")
            key = s + (0 if bias is None else np.asarray(bias, np.float64)) if from_scores else y.copy()
            cls = np.full(e_count, 2)
            cls[np.isnan(y) | np.isnan(key)] = 1
            cls[~mask[t]] = 0
            cls[forced[t]] = 3
            key[cls <= 1] = 0
            key[(cls == 3) & np.isnan(key)] = -np.inf
            tg = n_group if topk_group is None else topk_group
            if n_group > 1 and tg < n_group:
                size = e_count // n_group
                gk = []
                for g in range(n_group):
                    vals = sorted((key[e] for e in range(g * size, (g + 1) * size) if cls[e] >= 2), reverse=True)
                    vals += [-np.inf, -np.inf]
                    v = vals[0] + vals[1] if group_score == "top2_sum" and size > 1 else vals[0]
                    gk.append(-np.inf if np.isnan(v) else v)
                kept = sorted(range(n_group), key=lambda g: (-gk[g], g))[:tg]
                for e in range(e_count):
                    if cls[e] == 2 and e // size not in kept:
                        key[e] = -np.inf
            order = sorted(range(e_count), key=lambda e: (-cls[e], -key[e], e))[:k]
            ok = np.array([cls[e] != 0 and not np.isnan(y[e]) and y[e] != -np.inf for e in order])
            if weights_from == "selected":
                ys = y[order]
                w = np.zeros(k)
                finite = ok & (ys > -np.inf)
                if finite.any():
                    m = ys[ok].max()
                    w[ok] = np.exp(ys[ok] - m)
                    w /= w.sum()
            else:
                w = np.where(ok, s[order], 0.0)
            if renormalize and (w.sum() + renormalize_eps) != 0:
                w = w / (w.sum() + renormalize_eps)
            out_w[t] = w * scaling_factor
            out_i[t] = order
    return out_w.reshape(shape[:-1] + (k,)), out_i.reshape(shape[:-1] + (k,))


def check(x, k, rtol=2e-5, atol=1e-7, **kw):
    w, i = logitkit.route(x, k, **kw)
    rw, ri = ref_route(x, k, **kw)
    assert i.dtype == np.int32 and i.shape == ri.shape
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(w, rw, rtol=rtol, atol=atol)
    return w, i


@pytest.mark.parametrize("scoring", ["softmax", "sigmoid", "sqrtsoftplus", "none"])
@pytest.mark.parametrize("weights_from", ["scores", "selected"])
@pytest.mark.parametrize("renormalize", [False, True])
def test_scorings(isa, scoring, weights_from, renormalize):
    for e, k in [(1, 1), (6, 2), (8, 8), (60, 4), (64, 8), (160, 6), (384, 8), (1024, 3), (33, 33)]:
        check(grid((7, e)), k, scoring=scoring, weights_from=weights_from, renormalize=renormalize)


@pytest.mark.parametrize("activation", [None, "tanh", "sigmoid", "relu"])
def test_transforms(isa, activation):
    x = grid((20, 48))
    # tanh and the softcap are accurate to about 2 ulp; float32 throughout, hence the tolerance
    check(x, 5, activation=activation, temperature=0.7, rtol=3e-5, atol=2e-6)
    check(x, 5, activation=activation, softcap=3.0, scoring="sigmoid", rtol=3e-5, atol=2e-6)
    check(x, 5, activation=activation, temperature=2.0, weights_from="selected", rtol=3e-5, atol=2e-6)


def test_renormalize_eps_and_scaling(isa):
    x = grid((10, 32))
    check(x, 4, scoring="sigmoid", renormalize=True, renormalize_eps=0.25, scaling_factor=2.5)
    check(x, 4, scoring="softmax", renormalize=True, renormalize_eps=1e-20, scaling_factor=-1.5)
    # softmax renormalised: weights sum to scaling_factor
    w, _ = logitkit.route(x, 4, renormalize=True, scaling_factor=16.0)
    np.testing.assert_allclose(w.sum(-1), 16.0, rtol=1e-6)


def test_bias_selects_but_does_not_weigh(isa):
    x = grid((30, 64))
    b = (RNG.integers(-8, 8, 64) / 8).astype(np.float32)
    for scoring in ["sigmoid", "softmax", "sqrtsoftplus", "none"]:
        w, i = check(x, 8, scoring=scoring, bias=b)
    # a huge bias on expert 5 forces it in everywhere; its weight is its unbiased score
    b2 = np.zeros(64, np.float32)
    b2[5] = 100
    w, i = logitkit.route(x, 8, scoring="sigmoid", bias=b2)
    assert (i[:, 0] == 5).all()
    np.testing.assert_allclose(w[:, 0], 1 / (1 + np.exp(-x[:, 5].astype(np.float64))), rtol=1e-6)


@pytest.mark.parametrize("group_score", ["max", "top2_sum"])
def test_groups(isa, group_score):
    for e, ng, tg, k in [(64, 8, 3, 6), (256, 8, 4, 8), (16, 16, 4, 4), (12, 1, 1, 5), (60, 6, 2, 7), (24, 24, 24, 24)]:
        x = grid((25, e), -4, 4)  # many tied groups
        b = (RNG.integers(-4, 4, e) / 8).astype(np.float32)
        check(x, k, n_group=ng, topk_group=tg, group_score=group_score, scoring="sigmoid")
        check(x, k, n_group=ng, topk_group=tg, group_score=group_score, scoring="sigmoid", bias=b)
        check(x, k, n_group=ng, topk_group=tg, group_score=group_score, scoring="softmax")


def test_group_exclusion_is_minus_inf_not_zero(isa):
    # Negative biased scores in kept groups: HF's old 0.0 fill would pick the excluded experts.
    x = np.zeros((1, 8), np.float32)
    b = np.array([-2, -2, -2, -2, -3, -3, -3, -3], np.float32)
    w, i = logitkit.route(x, 2, scoring="sigmoid", bias=b, n_group=2, topk_group=1, group_score="top2_sum")
    assert set(i[0]) <= {0, 1, 2, 3}
    np.testing.assert_array_equal(i[0], [0, 1])


def test_masks_and_force(isa):
    x = grid((40, 32))
    mask = RNG.random(32) < 0.7
    mask_t = RNG.random((40, 32)) < 0.5
    check(x, 4, expert_mask=mask)
    check(x, 4, expert_mask=mask_t, scoring="sigmoid")
    check(x, 6, expert_mask=mask_t, weights_from="selected", renormalize=True)
    force = np.zeros(32, bool)
    force[[3, 17]] = True
    w, i = check(x, 4, force=force)
    assert (np.sort(i[:, :2], axis=1) == [3, 17]).all()
    w2, i2 = logitkit.route(x, 4, force=[17, 3])
    np.testing.assert_array_equal(i2, i)
    allowed = mask_t | force
    check(x, 5, force=force, expert_mask=allowed, renormalize=True)
    # all experts masked: k distinct ids, all weights 0
    w, i = logitkit.route(x, 4, expert_mask=np.zeros(32, bool))
    np.testing.assert_array_equal(i, np.broadcast_to(np.arange(4), i.shape))
    assert (w == 0).all()


def test_nan_inf_and_fill(isa):
    nan, inf = np.nan, np.inf
    x = np.array(
        [
            [nan, -inf, 1.0, nan, 0.5, -inf],
            [nan, nan, nan, nan, nan, nan],
            [-inf, -inf, -inf, -inf, -inf, -inf],
            [2.0, 2.0, nan, 2.0, -inf, 2.0],
            [0.0, -0.0, 0.0, -0.0, 1.0, nan],
        ],
        np.float32,
    )
    for scoring in ["softmax", "sigmoid", "sqrtsoftplus", "none"]:
        for k in [1, 3, 6]:
            for wf in ["scores", "selected"]:
                check(x, k, scoring=scoring, weights_from=wf, renormalize=True)
    w, i = logitkit.route(x, 6)
    np.testing.assert_array_equal(i[0], [2, 4, 1, 5, 0, 3])  # scored, then -inf by id, then NaN by id
    np.testing.assert_array_equal(i[1], np.arange(6))
    assert (w[1] == 0).all() and (w[2] == 0).all()
    np.testing.assert_array_equal(i[4, :4], [4, 0, 1, 2])  # -0 == +0: ties by id


def test_plus_inf_softmax_is_nan_like_torch(isa):
    w, i = logitkit.route(np.array([[np.inf, 1.0, 2.0]], np.float32), 2)
    assert i[0, 0] == 0 and np.isnan(w[0]).all()
    w, i = logitkit.route(np.array([[np.inf, 1.0, 2.0]], np.float32), 2, scoring="sigmoid")
    np.testing.assert_array_equal(i[0], [0, 2])
    np.testing.assert_allclose(w[0], [1.0, 1 / (1 + np.exp(-2.0))], rtol=1e-6)


def test_ids_always_distinct_and_in_range(isa):
    rng = np.random.default_rng(7)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 1.0, 3e38, -3e38], np.float32)
    for e in [1, 2, 3, 6, 17, 60, 160]:
        x = rng.choice(specials, size=(50, e))
        mask = rng.random((50, e)) < 0.6
        for k in sorted({1, max(1, e // 3), e}):
            for kw in [{}, {"scoring": "sigmoid", "bias": rng.standard_normal(e).astype(np.float32)},
                       {"expert_mask": mask}, {"scoring": "none", "weights_from": "selected"}]:
                w, i = logitkit.route(x, k, **kw)
                assert ((i >= 0) & (i < e)).all()
                assert all(len(set(row)) == k for row in i.tolist())
                rw, ri = ref_route(x, k, **kw)
                np.testing.assert_array_equal(i, ri)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64", "int64"])
def test_dtypes(isa, dtype):
    x = grid((16, 40))
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        xd = x.astype(ml_dtypes.bfloat16)
    elif dtype == "int64":
        xd = (x * 4).astype(np.int64)
    else:
        xd = x.astype(dtype)
    w, i = logitkit.route(xd, 5, scoring="sigmoid", renormalize=True)
    assert w.dtype == (np.float64 if dtype in ("float64", "int64") else np.float32)
    rw, ri = ref_route(np.asarray(xd, np.float64), 5, scoring="sigmoid", renormalize=True)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(w, rw, rtol=1e-13 if w.dtype == np.float64 else 2e-6)


def test_batch_shapes_and_strides(isa):
    x = grid((3, 4, 2 * 24))[..., ::2]  # strided experts axis
    w, i = logitkit.route(x, 3, scoring="sigmoid")
    assert w.shape == (3, 4, 3)
    rw, ri = ref_route(x, 3, scoring="sigmoid")
    np.testing.assert_array_equal(i, ri)
    xt = np.asfortranarray(grid((30, 16)))
    check(xt, 4)


def test_thread_invariance_and_noise(threads):
    x = np.random.default_rng(3).standard_normal((3000, 64)).astype(np.float32)
    results = []
    for n in [1, 2, 3]:
        logitkit.set_num_threads(n)
        results.append(logitkit.route(x, 8, noise="gaussian", noise_std=0.5, seed=11))
    for w, i in results[1:]:
        np.testing.assert_array_equal(w, results[0][0])
        np.testing.assert_array_equal(i, results[0][1])
    # the same token's noise does not depend on the batch it is routed in
    w_part, i_part = logitkit.route(x[1000:1010], 8, noise="gaussian", noise_std=0.5, seed=11)
    assert not np.array_equal(i_part, results[0][1][:10])  # token index is the counter
    w_other, _ = logitkit.route(x, 8, noise="gaussian", noise_std=0.5, seed=12)
    assert not np.array_equal(w_other, results[0][0])


@pytest.mark.parametrize("noise,mean,var", [("gaussian", 0.0, 1.0), ("gumbel", 0.5772156649, np.pi**2 / 6)])
def test_noise_statistics(noise, mean, var):
    # one expert with logit 0, scoring "none": the weight is the noise sample itself
    n = 200_000
    w, _ = logitkit.route(np.zeros((n, 1), np.float32), 1, scoring="none", noise=noise, seed=5)
    s = w[:, 0].astype(np.float64)
    assert abs(s.mean() - mean) < 5 * np.sqrt(var / n)
    assert abs(s.var() - var) < 0.02 * var
    w2, _ = logitkit.route(np.zeros((n, 1), np.float32), 1, scoring="none", noise=noise, seed=5, noise_std=3.0)
    np.testing.assert_allclose(w2[:, 0], 3 * w[:, 0], rtol=1e-6, atol=1e-6)


def test_jitter_and_per_expert_std():
    x = np.ones((50_000, 4), np.float32)
    w, i = logitkit.route(x, 4, scoring="none", noise="jitter", noise_std=0.01, seed=1)
    assert w.min() >= 0.99 and w.max() <= 1.01 and abs(w.mean() - 1) < 1e-3
    std = np.array([0, 0, 0, 1], np.float32)  # only expert 3 is noisy
    w, i = logitkit.route(np.zeros((1000, 4), np.float32), 4, scoring="none", noise="gaussian", noise_std=std, seed=2)
    vals = np.take_along_axis(w, np.argsort(i, axis=1), axis=1)
    assert (vals[:, :3] == 0).all() and vals[:, 3].std() > 0.5


def test_bad_arguments():
    x = np.zeros((4, 8), np.float32)
    cases = [
        (dict(k=0), "k"), (dict(k=9), "k"), (dict(k=2, n_group=3), "n_group"),
        (dict(k=2, n_group=4, topk_group=5), "topk_group"), (dict(k=5, n_group=4, topk_group=2), "topk_group"),
        (dict(k=2, bias=np.zeros(7)), "bias"), (dict(k=2, bias=[0, 0, 0, 0, 0, 0, 0, np.nan]), "bias"),
        (dict(k=2, expert_mask=np.ones(7, bool)), "expert_mask"), (dict(k=2, scoring="relu"), "scoring"),
        (dict(k=2, temperature=0.0), "temperature"), (dict(k=2, softcap=-1.0), "softcap"),
        (dict(k=2, force=[1, 2, 3]), "force"), (dict(k=2, force=[9]), "force"), (dict(k=2, force=[1, 1]), "force"),
        (dict(k=2, force=[1], expert_mask=np.arange(8) != 1), "force"), (dict(k=2, noise="uniform"), "noise"),
        (dict(k=2, noise="gaussian", noise_std=-1.0), "noise_std"), (dict(k=2, preset="mixtral8x7b"), "preset"),
        (dict(k=2, weights_from="all"), "weights_from"), (dict(k=2, group_score="sum"), "group_score"),
        (dict(k=2, seed=-1), "seed"), (dict(k=2, scaling_factor=np.inf), "scaling_factor"),
    ]
    for kw, name in cases:
        with pytest.raises(ValueError, match=name):
            logitkit.route(x, **kw)
    with pytest.raises(TypeError, match="k"):
        logitkit.route(x)
    with pytest.raises(TypeError, match="expert_mask"):
        logitkit.route(x, 2, expert_mask=np.ones(8))
    with pytest.raises(ValueError, match="logits"):
        logitkit.route(np.float32(1.0), 1)


def test_presets_resolve_and_override():
    x = grid((6, 64))
    w, i = logitkit.route(x, preset="mixtral")
    assert i.shape == (6, 2)
    np.testing.assert_allclose(w.sum(-1), 1, rtol=1e-6)
    w, i = logitkit.route(x, 3, preset="mixtral", renormalize=False)
    rw, ri = ref_route(x, 3)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(w, rw, rtol=2e-6)


@pytest.mark.parametrize("kw", [
    dict(renormalize=True), dict(), dict(scoring="sigmoid"), dict(scoring="sigmoid", bias=True, renormalize=True,
                                                                   scaling_factor=2.5),
    dict(scoring="none", weights_from="selected"), dict(scoring="sqrtsoftplus", renormalize=True, renormalize_eps=0.5),
    dict(temperature=0.5, softcap=4.0, renormalize=True), dict(activation="tanh", weights_from="selected"),
])
@pytest.mark.parametrize("e,k", [(8, 2), (6, 1), (16, 4), (3, 3), (64, 8), (130, 7), (256, 3)])
def test_batched_tokens_equal_tokens_alone(isa, kw, e, k):
    """Batches of routers with up to 256 experts and k <= 8 go through the many-tokens-per-vector
    path (37 rows: whole vectors of tokens, then a padded partial one), single tokens through the
    one-token path: the same bits either way (and NaN tokens inside a batch are rerouted)."""
    x = np.random.default_rng(e * 10 + k).standard_normal((37, e)).astype(np.float32)
    x[5, 1] = np.nan
    x[9, 0] = np.inf
    kw = dict(kw)
    if kw.pop("bias", False):
        kw["bias"] = (np.arange(e) % 3 / 10).astype(np.float32)
    w, i = logitkit.route(x, k, **kw)
    for t in range(x.shape[0]):
        w1, i1 = logitkit.route(x[t : t + 1], k, **kw)
        np.testing.assert_array_equal(i[t], i1[0])
        np.testing.assert_array_equal(w[t].view(np.uint32), w1[0].view(np.uint32))
    rw, ri = ref_route(x, k, **kw)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(w, rw, rtol=3e-5, atol=2e-6)


def test_random_option_combinations(isa):
    """Seeded random combinations of every option that changes the path a token takes (fast,
    many-tokens, general): masks, forced experts, groups, bias, NaN/-inf entries, scorings,
    weights_from, renormalisation, transforms, against the reference."""
    rng = np.random.default_rng(2024)
    for case in range(150):
        e = int(rng.choice([1, 2, 3, 6, 8, 12, 16, 24, 60, 64, 96]))
        divisors = [d for d in range(1, e + 1) if e % d == 0]
        n_group = int(rng.choice(divisors))
        size = e // n_group
        topk_group = int(rng.integers(1, n_group + 1))
        k = int(rng.integers(1, topk_group * size + 1))
        x = grid((int(rng.integers(1, 30)), e), -8, 8, rng)
        if rng.random() < 0.3:
            x[rng.random(x.shape) < 0.1] = np.nan
        if rng.random() < 0.3:
            x[rng.random(x.shape) < 0.1] = -np.inf
        kw = dict(
            scoring=str(rng.choice(["softmax", "sigmoid", "sqrtsoftplus", "none"])),
            weights_from=str(rng.choice(["scores", "selected"])),
            renormalize=bool(rng.random() < 0.5),
            scaling_factor=float(rng.choice([1.0, 2.5])),
            n_group=n_group,
            topk_group=topk_group,
            group_score=str(rng.choice(["max", "top2_sum"])),
        )
        if rng.random() < 0.3:
            kw["temperature"] = 0.5
        if rng.random() < 0.4:
            kw["bias"] = (rng.integers(-4, 4, e) / 8).astype(np.float32)
        if rng.random() < 0.3:
            kw["expert_mask"] = rng.random(x.shape) < 0.7
        if rng.random() < 0.2 and k >= 1:
            f = np.zeros(e, bool)
            f[rng.choice(e, size=int(rng.integers(1, k + 1)), replace=False)] = True
            if "expert_mask" in kw:
                kw["expert_mask"] = kw["expert_mask"] | f
            kw["force"] = f
        w, i = logitkit.route(x, k, **kw)
        rw, ri = ref_route(x, k, **kw)
        np.testing.assert_array_equal(i, ri, err_msg=f"case {case}: {kw}")
        np.testing.assert_allclose(w, rw, rtol=3e-5, atol=2e-6, err_msg=f"case {case}: {kw}")


def near_tie_rows(rng, tokens, e, k, kind):
    """Rows whose k + 1 largest logits sit close together, in one of four ways: within a few
    hundred ulps of each other, distinct ("ulps"; both orders against the ids), bfloat16 values
    with exact ties ("bf16"), bfloat16 ties plus one logit elsewhere with low mantissa bits
    ("mixed"), or signed zeros and tiny values ("zeros")."""
    x = rng.standard_normal((tokens, e)).astype(np.float32) - 4
    top = rng.choice(e, size=(tokens, k + 1 + int(rng.integers(0, 3))), replace=True)
    rows = np.arange(tokens)[:, None]
    if kind == "ulps":
        base = rng.standard_normal((tokens, 1)).astype(np.float32)
        steps = rng.integers(-300, 300, size=top.shape).astype(np.int32)
        x[rows, top] = (base.view(np.int32) + steps).view(np.float32)
    elif kind in ("bf16", "mixed"):
        x = (x.view(np.uint32) & 0xFFFF0000).view(np.float32)
        x[rows, top] = (rng.integers(-2, 3, size=top.shape) / 8).astype(np.float32)
        if kind == "mixed":
            x[:, int(rng.integers(0, e))] = np.float32(-7.123456)
    else:
        x[rows, top] = rng.choice(np.array([-0.0, 0.0, 1e-45, -1e-45], np.float32), size=top.shape)
    return x


@pytest.mark.parametrize("kind", ["ulps", "bf16", "mixed", "zeros"])
@pytest.mark.parametrize("e,k", [(16, 4), (32, 3), (64, 8), (64, 5), (130, 7), (256, 8)])
def test_batched_selection_near_ties(isa, kind, e, k):
    """The many-tokens path packs a key's upper bits and the expert id into one integer (float32
    on SIMD layers, k >= 3, E k >= 96): exact where keys are whole buckets (bfloat16 ties), and
    tokens whose k + 1 best share a bucket with different low bits go the one-token way.
    Near-ties and signed zeros against the float64 reference (ids exactly) and against tokens
    routed alone (bits)."""
    rng = np.random.default_rng(e * 100 + k + len(kind))
    x = near_tie_rows(rng, 50, e, k, kind)
    for kw in [dict(scoring="none"), dict(renormalize=True), dict(scoring="sigmoid"),
               dict(scoring="sigmoid", bias=(np.arange(e) % 4 / 8).astype(np.float32), renormalize=True)]:
        w, i = logitkit.route(x, k, **kw)
        for t in range(x.shape[0]):
            w1, i1 = logitkit.route(x[t : t + 1], k, **kw)
            np.testing.assert_array_equal(i[t], i1[0], err_msg=f"token {t} {kw}")
            np.testing.assert_array_equal(w[t].view(np.uint32), w1[0].view(np.uint32), err_msg=f"token {t} {kw}")
        if "bias" in kw and kind == "ulps":
            continue  # float32 sums of near-tied scores and the bias may order unlike float64's
        rw, ri = ref_route(x, k, **kw)
        np.testing.assert_array_equal(i, ri, err_msg=str(kw))
        np.testing.assert_allclose(w, rw, rtol=3e-5, atol=2e-6, err_msg=str(kw))


def test_group_limit_whole_vector_groups(isa):
    """Groups of whole vectors, up to one per lane (the fold-tree group limit on SIMD layers, the
    loop elsewhere): group counts that are and are not powers of two, many tied group keys (a coarse
    grid), masked experts and whole masked groups, a bias, both group scores, every topk_group,
    float32 and float64, against the reference."""
    rng = np.random.default_rng(77)
    for e, n_group in [(48, 3), (96, 6), (128, 8), (256, 8), (64, 4), (192, 12), (256, 16), (64, 16), (32, 2)]:
        for case in range(6):
            topk_group = int(rng.integers(1, n_group + 1))
            size = e // n_group
            # k past 2N (the insertion path over the kept groups' spans) in some cases
            k = int(rng.integers(1, min(8 if case < 3 else 64, topk_group * size) + 1))
            dtype = np.float32 if case % 2 == 0 else np.float64
            x = (rng.integers(-3, 4, (int(rng.integers(1, 40)), e)) / 2).astype(dtype)  # many exact ties
            kw = dict(scoring=str(rng.choice(["sigmoid", "none", "softmax"])), n_group=n_group, topk_group=topk_group,
                      group_score=str(rng.choice(["max", "top2_sum"])), renormalize=bool(case % 3 == 0))
            if case % 2 == 1:
                kw["bias"] = (rng.integers(-2, 3, e) / 4).astype(dtype)
            if case >= 4:
                mask = rng.random(x.shape) < 0.8
                mask[0, :size] = False  # a whole group masked out in the first token
                mask[:, rng.integers(0, e)] = True
                kw["expert_mask"] = mask
            w, i = logitkit.route(x, k, **kw)
            rw, ri = ref_route(x, k, **kw)
            np.testing.assert_array_equal(i, ri, err_msg=f"E={e} groups={n_group} case {case}: {kw}")
            np.testing.assert_allclose(w, rw, rtol=3e-5, atol=2e-6, err_msg=f"E={e} groups={n_group} case {case}: {kw}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k", [((8,), 2), ((1, 8), 2), ((5, 64), 8), ((2, 3, 16), 16), ((37, 256), 1)])
def test_plain_call_fast_path_matches_general_path(isa, dtype, shape, k):
    """route(logits, k) with no keyword on a plain array is answered by a C++ fast path (decode
    latency): the same bits, dtypes and shapes as the general path (which an explicit default
    scaling_factor=1.0 takes), ties and NaN included; bad k still raises from the general path."""
    x = np.round(np.random.default_rng(k).standard_normal(shape) * 2).astype(dtype)  # many ties
    x.reshape(-1)[3] = np.nan
    w, i = logitkit.route(x, k)
    w2, i2 = logitkit.route(x, k, scaling_factor=1.0)
    assert w.dtype == w2.dtype == dtype and i.dtype == i2.dtype == np.int32 and w.shape == w2.shape == shape[:-1] + (k,)
    np.testing.assert_array_equal(i, i2)
    np.testing.assert_array_equal(w.view(np.uint8), w2.view(np.uint8))
    rw, ri = ref_route(x.reshape(-1, shape[-1]), k)
    np.testing.assert_array_equal(i.reshape(-1, k), ri)
    with pytest.raises(ValueError, match="^k"):
        logitkit.route(x, shape[-1] + 1)



@pytest.mark.parametrize("scoring", ["sigmoid", "sqrtsoftplus"])
def test_saturating_scores_beside_ordinary_ones(isa, scoring):
    """Rows that mix ordinary logits with ones beyond the exp's fast range (|x| > 87: a sigmoid of
    exactly 1 or a denormal one, the square root of a denormal softplus) in the same vectors: the
    fast path defers its range check to the end of the row and must then redo the row with the full
    exp. With and without a bias, grouped (DeepSeek-V3-like) and ungrouped (Kimi-K2-like)."""
    rng = np.random.default_rng(4096)
    # sigmoid(100) and sigmoid(300) are exactly 1 in float64 as in float32, so their ties order
    # the same way in the reference; sqrt(softplus(x)) stays distinct on both sides
    far = np.array([-200.0, -150.5, -100.25, -88.0, 100.0, 300.0] + ([88.0, 90.5] if scoring == "sqrtsoftplus" else []),
                   np.float32)
    for e, n_group, topk_group in [(384, 1, 1), (256, 8, 4), (64, 1, 1), (40, 1, 1), (160, 4, 2)]:
        x = grid((24, e), -12, 12, rng)
        at = rng.random(x.shape) < 0.1
        x[at] = rng.choice(far, size=int(at.sum()))
        x[0, :] = -88.0  # a whole row out of range (a denormal sigmoid: exp(-x) below overflow)
        x[1, ::2] = -95.0
        for bias in [None, (rng.integers(-4, 4, e) / 8).astype(np.float32)]:
            check(x, 8, scoring=scoring, bias=bias, n_group=n_group, topk_group=topk_group, renormalize=True,
                  group_score="top2_sum" if n_group > 1 else "max")


def test_options_must_fit_the_compute_dtype():
    """The options are applied in the compute dtype: a value that overflows float32 (or rounds to 0
    where it must be > 0) is refused for float32/float16/bfloat16 logits, naming the argument,
    instead of giving NaN weights (0 * inf) or dividing by 0; float64 logits take it. (Fuzz finding:
    scaling_factor -1.2e290 gave a NaN weight.)"""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 30)).astype(np.float32)
    cases = [("scaling_factor", dict(scaling_factor=-1.2e290)), ("scaling_factor", dict(scaling_factor=3.5e38)),
             ("temperature", dict(temperature=1e-300)), ("temperature", dict(temperature=1e39)),
             ("softcap", dict(softcap=1e-300)), ("softcap", dict(softcap=1e300)), ("softcap", dict(softcap=1e-45)),
             ("renormalize_eps", dict(renormalize_eps=1e300, renormalize=True))]
    for name, kw in cases:
        for dtype in [np.float32, np.float16]:
            with pytest.raises(ValueError, match=f"^{name}: .*float32"):
                logitkit.route(x.astype(dtype), 2, **kw)
        w, i = logitkit.route(x.astype(np.float64), 2, **kw)  # float64 takes them
        assert not np.isnan(w).any() and all(len(set(r)) == 2 for r in i.tolist())
        rw, ri = ref_route(x.astype(np.float64), 2, **kw)
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_allclose(w, rw, rtol=1e-12)
    # the largest factor that still fits float32 is taken
    w, i = logitkit.route(x, 2, scaling_factor=3.4e38, renormalize=True)
    rw, ri = ref_route(x, 2, scaling_factor=3.4e38, renormalize=True)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_allclose(w, rw.astype(np.float32), rtol=2e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softcap_and_tanh_relative_accuracy(isa, dtype):
    """cap tanh(x / cap) and tanh(x) to a few ulp relative to the float64 value over 60 decades of
    |x| and caps from 1 to far above the logits (where the exp form alone cancelled to nothing: the
    lowest ids were picked with weight 0), compared through route's scoring "none" weights."""
    t = np.concatenate([np.logspace(-30, 1.5, 700), -np.logspace(-30, 1.5, 700), [0.0, 0.25, 0.5, 0.2499999]])
    t = t.astype(dtype)[None]
    for cap in [None, 1.0, 30.0, 1e4, 1e20 if dtype == np.float64 else 1e30]:
        kw = dict(activation="tanh") if cap is None else dict(softcap=cap)
        w, i = logitkit.route(t, t.shape[1], scoring="none", **kw)
        got = np.empty_like(w)
        got[0, i[0]] = w[0]
        c = 1.0 if cap is None else cap
        ref = c * np.tanh(t.astype(np.float64) / c)
        nz = ref != 0
        assert (got[~nz] == 0).all()
        rel = np.abs(got[nz] - ref[nz]) / np.abs(ref[nz])
        assert rel.max() <= 3 * np.finfo(dtype).eps, (cap, rel.max() / np.finfo(dtype).eps)
    x = np.array([[0.10, 0.30, 0.20, -0.5]], np.float32)  # the audit's case
    for cap in [1e4, 1e6, 1e8]:
        w, i = logitkit.route(x, 2, softcap=cap, scoring="none")
        np.testing.assert_array_equal(i, [[1, 2]])
        np.testing.assert_allclose(w, [[0.3, 0.2]], rtol=1e-6)
