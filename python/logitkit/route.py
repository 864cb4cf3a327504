"""Mixture-of-Experts top-k routing: NumPy front end of cpp/include/logitkit/route.h."""

from __future__ import annotations

import functools
import math

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _arrays, _core
from ._arrays import FloatArray

__all__ = ["PRESETS", "route"]

# Each preset reproduces a production router's published code (tests/moe_reference.py has the
# PyTorch references they are tested against, with their sources). Explicit arguments override.
PRESETS: Mapping[str, Mapping[str, Any]] = {
    # HF MixtralSparseMoeBlock: softmax in float32, top-2, divided by the selected sum
    "mixtral": {"k": 2, "scoring": "softmax", "renormalize": True},
    # HF Qwen2-MoE / Qwen3-MoE / OLMoE: softmax, top-k, renormalised only when norm_topk_prob
    "qwen2-moe": {"k": 4, "scoring": "softmax", "renormalize": False},
    "qwen3-moe": {"k": 8, "scoring": "softmax", "renormalize": True},
    "olmoe": {"k": 8, "scoring": "softmax", "renormalize": False},
    # DeepSeek-V2 MoEGate (group_limited_greedy): group score = the group's max softmax score
    "deepseek-v2": {
        "k": 6,
        "scoring": "softmax",
        "n_group": 8,
        "topk_group": 3,
        "group_score": "max",
        "renormalize": False,
        "scaling_factor": 16.0,
    },
    # DeepSeek-V3 (noaux_tc): sigmoid, bias for selection, group = sum of its top-2 biased scores
    "deepseek-v3": {
        "k": 8,
        "scoring": "sigmoid",
        "n_group": 8,
        "topk_group": 4,
        "group_score": "top2_sum",
        "renormalize": True,
        "renormalize_eps": 1e-20,
        "scaling_factor": 2.5,
    },
    # Kimi-K2: DeepSeek-V3's router over 384 experts in one group
    "kimi-k2": {
        "k": 8,
        "scoring": "sigmoid",
        "n_group": 1,
        "topk_group": 1,
        "group_score": "top2_sum",
        "renormalize": True,
        "renormalize_eps": 1e-20,
        "scaling_factor": 2.827,
    },
    # DeepSeek-V4: sqrt(softplus) scores, bias for selection, renormalised, routed scaling
    "deepseek-v4": {
        "k": 6,
        "scoring": "sqrtsoftplus",
        "renormalize": True,
        "renormalize_eps": 1e-20,
        "scaling_factor": 1.5,
    },
    # Llama 4: top-1 on the raw logits, weight = sigmoid of the selected logit
    "llama4": {"k": 1, "scoring": "sigmoid", "renormalize": False},
    # gpt-oss: top-k on the raw logits, softmax over the k selected
    "gpt-oss": {"k": 4, "scoring": "none", "weights_from": "selected", "renormalize": False},
}

_DEFAULTS: Mapping[str, Any] = {
    "k": None,
    "scoring": "softmax",
    "softcap": None,
    "temperature": 1.0,
    "activation": None,
    "weights_from": "scores",
    "renormalize": False,
    "renormalize_eps": 0.0,
    "scaling_factor": 1.0,
    "n_group": 1,
    "topk_group": None,
    "group_score": "max",
    "noise": None,
    "noise_std": 1.0,
    "seed": 0,
}

_CHOICES = {
    "scoring": ("softmax", "sigmoid", "sqrtsoftplus", "none"),
    "activation": ("tanh", "sigmoid", "relu"),
    "weights_from": ("scores", "selected"),
    "group_score": ("max", "top2_sum"),
    "noise": ("gaussian", "gumbel", "jitter"),
}


def _choice(value, name: str, allow_none: bool = False) -> str:
    if value is None and allow_none:
        return "none"
    if not isinstance(value, str) or value not in _CHOICES[name]:
        accepted = ", ".join(repr(c) for c in _CHOICES[name]) + (" or None" if allow_none else "")
        raise ValueError(f"{name}: expected one of {accepted}, got {value!r}")
    return value


def _force_rows(force, shape: tuple[int, ...]) -> np.ndarray:
    """force: expert ids (a sequence of ints, the same for every token) or a boolean array."""
    arr = _arrays.asarray_named(force, "force")
    if arr.dtype == np.bool_:
        return _arrays.as_mask(arr, shape, "logits", "force", "True = forced")
    if arr.dtype.kind not in "iu" or arr.ndim > 1:
        raise TypeError(f"force: expected expert ids (a 1-d sequence of ints) or a boolean array, got {arr.dtype} of shape {arr.shape}")
    experts = shape[-1]
    ids = arr.reshape(-1).astype(np.int64)
    bad = ids[(ids < 0) | (ids >= experts)]
    if bad.size:
        raise ValueError(f"force: expert id {int(bad[0])} is out of range [0, {experts})")
    if np.unique(ids).size != ids.size:
        raise ValueError("force: an expert id appears twice")
    row = np.zeros(experts, np.bool_)
    row[ids] = True
    return np.broadcast_to(row, shape).view(np.uint8)


# The scalar arguments of route(), in the order route() passes their values to _resolved.
_SCALAR_NAMES = ("k", "scoring", "softcap", "temperature", "activation", "weights_from", "renormalize",
                 "renormalize_eps", "scaling_factor", "n_group", "topk_group", "group_score", "noise",
                 "noise_std", "seed")


@functools.lru_cache(maxsize=512)
def _resolved(experts: int, preset, values: tuple, types: tuple) -> tuple[int, dict[str, Any], Any]:
    """k and the options dict of the C++ call for the scalar arguments `values` (in
    _SCALAR_NAMES order; None: not given; `types` their types, so that 2 and 2.0 are different
    cache keys though equal), with
    the preset's and the defaults filled in and every value checked. Cached: a router is called
    with the same arguments every step, and checking them cost more than routing a decode token."""
    p = dict(_DEFAULTS)
    if preset is not None:
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ValueError(f"preset: expected one of {', '.join(map(repr, PRESETS))} or None, got {preset!r}")
        p.update(PRESETS[preset])
    p.update({name: v for name, v in zip(_SCALAR_NAMES, values) if v is not None})
    if p["k"] is None:
        raise TypeError("k: required (the number of experts per token) unless a preset gives it")
    kk = _arrays.int_scalar(p["k"], "k")
    if not 1 <= kk <= experts:
        raise ValueError(f"k: must be in [1, {experts}] for {experts} experts, got {kk}")
    options = {
        "scoring": _choice(p["scoring"], "scoring"),
        "activation": _choice(p["activation"], "activation", allow_none=True),
        "weights_from": _choice(p["weights_from"], "weights_from"),
        "group_score": _choice(p["group_score"], "group_score"),
        "noise": _choice(p["noise"], "noise", allow_none=True),
        "renormalize": _arrays.check_flag(p["renormalize"], "renormalize"),
        "temperature": _arrays.check_temperature(p["temperature"]),
        "renormalize_eps": _arrays.real_scalar(p["renormalize_eps"], "renormalize_eps"),
        "scaling_factor": _arrays.real_scalar(p["scaling_factor"], "scaling_factor"),
        "n_group": _arrays.int_scalar(p["n_group"], "n_group"),
        "seed": _arrays.int_scalar(p["seed"], "seed"),
    }
    cap = p["softcap"]
    options["softcap"] = 0.0 if cap is None else _arrays.real_scalar(cap, "softcap")
    if cap is not None and not (options["softcap"] > 0.0 and math.isfinite(options["softcap"])):
        raise ValueError(f"softcap: must be a finite number > 0 or None, got {cap!r}")
    if not (options["renormalize_eps"] >= 0.0 and math.isfinite(options["renormalize_eps"])):
        raise ValueError(f"renormalize_eps: must be a finite number >= 0, got {p['renormalize_eps']!r}")
    if not math.isfinite(options["scaling_factor"]):
        raise ValueError(f"scaling_factor: must be finite, got {p['scaling_factor']!r}")
    ng = options["n_group"]
    if ng < 1 or experts % ng:
        raise ValueError(f"n_group: must be >= 1 and divide the {experts} experts, got {ng}")
    tg = p["topk_group"]
    options["topk_group"] = ng if tg is None else _arrays.int_scalar(tg, "topk_group")
    if not 1 <= options["topk_group"] <= ng:
        raise ValueError(f"topk_group: must be in [1, n_group = {ng}], got {tg}")
    if options["topk_group"] * (experts // ng) < kk:
        raise ValueError(f"topk_group: {options['topk_group']} groups of {experts // ng} experts hold fewer than k = {kk}")
    if not 0 <= options["seed"] < 2**64:
        raise ValueError(f"seed: must be in [0, 2**64), got {options['seed']}")
    std = p["noise_std"]
    options["noise_std"] = _arrays.real_scalar(std, "noise_std")
    if not (options["noise_std"] >= 0.0 and math.isfinite(options["noise_std"])):
        raise ValueError(f"noise_std: must be a finite number >= 0, got {std!r}")
    return kk, options, _core.route_options(options)  # parsed into C++'s struct once per cache entry


def route(
    logits: ArrayLike,
    k: int | None = None,
    *,
    preset: str | None = None,
    scoring: str | None = None,
    softcap: float | None = None,
    temperature: float | None = None,
    activation: str | None = None,
    weights_from: str | None = None,
    renormalize: bool | None = None,
    renormalize_eps: float | None = None,
    scaling_factor: float | None = None,
    bias: ArrayLike | None = None,
    n_group: int | None = None,
    topk_group: int | None = None,
    group_score: str | None = None,
    expert_mask: ArrayLike | None = None,
    force: ArrayLike | None = None,
    noise: str | None = None,
    noise_std: float | ArrayLike | None = None,
    seed: int | None = None,
) -> tuple[FloatArray, np.ndarray]:
    """Top-k MoE routing of each token: returns (weights, ids), both of the logits' shape with
    the last (experts) axis replaced by k; ids int32, weights float32 (float64 for float64 logits),
    columns in descending order of selection key.

    Per token, with x its E logits:
    1. noise (training): "gaussian" x + noise_std N(0,1) (Shazeer et al. 2017's noisy top-k;
       noise_std a scalar, per expert (E,) or per element), "gumbel" x + noise_std Gumbel(0,1),
       "jitter" x U(1 - noise_std, 1 + noise_std). A counter-based RNG keyed by (seed, token,
       expert): identical for any thread count or batch split.
    2. softcap tanh(x / softcap) (softcap given), then `activation` ("tanh", "sigmoid", "relu";
       the dense-to-sparse gate softmax(activation(x) / tau)), then x / temperature.
    3. scores: "softmax" over the experts (masked and NaN ones excluded), "sigmoid",
       "sqrtsoftplus" (sqrt(softplus(x)), DeepSeek-V4), or "none" (x itself).
    4. selection of k experts by key, highest first: score + bias when `bias` (E,) is given
       (selection only: DeepSeek-V3's auxiliary-loss-free balancing), or when group_score is
       "top2_sum"; otherwise x itself (every scoring is increasing, so this ranks as the exact
       scores do, and scores that round to the same float are not tied). Ties go to the lower
       expert id. With n_group groups, only the topk_group best groups (group key: "max" of its
       keys, or "top2_sum", the sum of its two largest; ties to the lower group) keep their
       experts, the others' keys become -inf (the official DeepSeek rule; HF's older DeepSeek-V3
       code filled 0.0 instead, which lets an excluded expert beat kept ones with negative
       biased scores). `expert_mask` (bool (E,) or per token, True = allowed) removes experts;
       `force` (expert ids, or a bool mask) always selects experts, ranked first.
    5. weights: weights_from="scores" gives the selected experts' unbiased scores;
       "selected" a softmax over the k selected transformed logits (gpt-oss). renormalize divides
       by (their sum + renormalize_eps) (a zero total skips the division: all-zero weights stay
       zeros, never NaN); scaling_factor multiplies last.
    The options apply in the compute dtype: with float32 (float16, bfloat16) logits, a
    scaling_factor, temperature, softcap, renormalize_eps or noise_std that float32 cannot hold
    (beyond 3.4e38, or a temperature or softcap that rounds to 0) raises a ValueError naming it.

    Guarantees: the k ids of a token are distinct and in [0, E) whatever the input. An expert
    whose transformed logit is NaN has no score: it ranks below every scored expert (-inf
    included) and gets weight 0; masked experts rank below those. When fewer than k experts are
    usable, the remaining slots take the lowest unused ids in that rank order, at weight 0.

    Defaults, where neither the call nor a preset sets them: scoring "softmax", no softcap,
    temperature 1, no activation, weights_from "scores", renormalize False, renormalize_eps 0,
    scaling_factor 1, n_group 1, topk_group = n_group, group_score "max", no noise, noise_std 1,
    seed 0. k is required unless a preset gives it.

    preset: one of logitkit.PRESETS ("mixtral", "qwen2-moe", "qwen3-moe", "olmoe",
    "deepseek-v2", "deepseek-v3", "kimi-k2", "deepseek-v4", "llama4", "gpt-oss"); explicit
    arguments override the preset's. float16/bfloat16 logits are computed in float32.
    """
    if (  # route(logits, k) alone: in C++ (see _core.route_fast)
        preset is None and scoring is None and softcap is None and temperature is None and activation is None
        and weights_from is None and renormalize is None and renormalize_eps is None and scaling_factor is None
        and bias is None and n_group is None and topk_group is None and group_score is None
        and expert_mask is None and force is None and noise is None and noise_std is None and seed is None
        and (res := _core.route_fast(logits, k)) is not None
    ):
        return res
    std = noise_std
    std_is_array = std is not None and not _arrays._is_real_scalar(std)
    values = (k, scoring, softcap, temperature, activation, weights_from, renormalize, renormalize_eps,
              scaling_factor, n_group, topk_group, group_score, noise, None if std_is_array else std, seed)
    types = tuple(map(type, values))  # 2 and 2.0 are equal keys, not equal arguments
    arr = logits if type(logits) is np.ndarray else _arrays.as_array(logits, "logits")
    if arr.ndim == 0:
        raise ValueError("logits: needs an experts axis (got a 0-d array)")
    if arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8) and arr.dtype.isnative:
        x = arr if arr.flags.aligned else np.array(arr)
        compute = x.dtype
    else:
        arr = _arrays.as_array(arr, "logits")
        compute = _arrays.compute_dtype(_arrays.result_dtype(arr.dtype))
        x = _arrays.to_compute(arr, compute)
    experts = x.shape[-1]
    try:
        kk, options, parsed = _resolved(experts, preset, values, types)
    except TypeError as exc:
        if "unhashable" not in str(exc):
            raise
        kk, options, parsed = _resolved.__wrapped__(experts, preset, values, types)  # a 0-d array argument
    std_rows = None
    if std_is_array:
        parsed = _core.route_options(dict(options, noise_std=1.0))
        s = _arrays.to_compute(_arrays.as_array(std, "noise_std"), compute)
        try:
            std_rows = np.broadcast_to(s, x.shape)
        except ValueError:
            raise ValueError(f"noise_std: shape {s.shape} cannot be broadcast to the logits' shape {x.shape}") from None
        if not (np.all(np.isfinite(std_rows)) and np.all(std_rows >= 0)):
            raise ValueError("noise_std: entries must be finite and >= 0")

    b = None
    if bias is not None:
        b = _arrays.to_compute(_arrays.as_array(bias, "bias"), compute)
        if b.shape != (experts,):
            raise ValueError(f"bias: must have shape ({experts},), one value per expert of logits's last axis, got {b.shape}")
    mask = None if expert_mask is None else _arrays.as_mask(expert_mask, x.shape, "logits", "expert_mask", "True = allowed")
    forced = None if force is None else _force_rows(force, x.shape)

    weights = np.empty(x.shape[:-1] + (kk,), compute)
    ids = np.empty(x.shape[:-1] + (kk,), np.int32)
    _core.route(x, weights, ids, kk, parsed, b, mask, forced, std_rows)
    return weights, ids
