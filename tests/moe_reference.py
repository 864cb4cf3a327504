"""PyTorch reference implementations of published MoE routers and balancing losses: test oracles.

Each function was written for these tests from the routing code each model's authors (or Hugging
Face, where that is the published implementation) released; the source is named in a comment above
it. They are oracles, not fast code: every step is the plain torch expression of the cited code,
computed in the dtype of the logits given (pass float64 for a reference, float32 to mimic the model
code, which computes its router in float32).

Conventions shared by every router function:

* ``logits`` is a (T, E) float tensor; the result is ``(weights, ids)``, both (T, k), weights in
  the logits' dtype and ids int64.
* Columns are ordered by descending *selection score* (the quantity the model's top-k runs on),
  ties to the lower expert id. torch.topk leaves the order of equal values unspecified, so every
  selection here goes through :func:`topk_lowest_id` (a stable sort), which also makes the result
  deterministic on inputs with exact ties. Where a model code calls ``topk(sorted=False)`` only the
  set of chosen experts is defined by the model; the order here is this module's convention.
* Masked (losing-group) experts are filled with ``fill`` before the final top-k; see
  :func:`deepseek_v3` for why the value matters.

Framework differences worth knowing (details at each function):

* fill of the losing groups' experts: DeepSeek's inference ``model.py`` (V3 repo, which also runs
  V2 through configs/config_236B.json) uses ``float("-inf")``; the Hugging Face hub
  ``modeling_deepseek.py`` files (V2, V3) and transformers' ``modeling_deepseek_v3.py`` use ``0.0``.
* renormalisation denominator: DeepSeek's ``model.py`` (V3 and V4) divides by the plain sum;
  the HF hub V2/V3 code and transformers' deepseek_v3/deepseek_v4 add ``1e-20``; Mixtral/Qwen/OLMoE
  (transformers) divide by the plain sum.
* the HF hub V2/V3 files renormalise only when ``top_k > 1 and norm_topk_prob``; transformers'
  deepseek_v3 whenever ``norm_topk_prob``; DeepSeek's model.py whenever the score function is
  sigmoid (V3) or not softmax (V4), with no flag.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "deepseek_group_limited_choice",
    "deepseek_v2",
    "deepseek_v3",
    "deepseek_v4",
    "deepspeed_topk_load_balancing_loss",
    "gpt_oss",
    "hf_mixtral_load_balancing_loss",
    "kimi_k2",
    "llama4",
    "mixtral",
    "olmoe",
    "qwen2_moe",
    "qwen3_moe",
    "qwen_moe",
    "router_z_loss",
    "sequence_balance_loss",
    "sqrt_softplus",
    "switch_load_balancing_loss",
    "topk_lowest_id",
    "update_bias",
]

NEG_INF = -math.inf


def topk_lowest_id(values: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of each row, in descending order, equal values by ascending index.

    A stable ascending sort of ``-values`` keeps equal entries in index order, which is exactly
    "descending value, ties to the lower id"; -inf entries sort last (their negation is +inf).
    NaN is not supported (the routers never produce it from finite logits).
    """
    if not 0 <= k <= values.shape[-1]:
        raise ValueError(f"k={k} outside [0, {values.shape[-1]}]")
    order = torch.sort(-values, dim=-1, stable=True).indices[..., :k]
    return values.gather(-1, order), order


def _renormalize(w: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    return w / (w.sum(dim=-1, keepdim=True) + eps)


# --------------------------------------------------------------------------------------------
# Softmax -> top-k routers
# --------------------------------------------------------------------------------------------


# Mixtral: transformers src/transformers/models/mixtral/modeling_mixtral.py,
# MixtralSparseMoeBlock.forward (MixtralTopKRouter in newer versions):
#   routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
#   routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
#   routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
# https://github.com/huggingface/transformers/blob/main/src/transformers/models/mixtral/modeling_mixtral.py
# Defaults (MixtralConfig, Mixtral-8x7B / 8x22B): num_local_experts=8, num_experts_per_tok=2.
# Mistral's own mistral-inference MoeLayer does topk on the logits, then softmax over the k
# selected logits: the same numbers mathematically (softmax of the selected entries == their
# renormalised full-softmax probabilities), different rounding.
def mixtral(logits: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    probs = torch.softmax(logits, dim=-1)
    w, ids = topk_lowest_id(probs, k)
    return w / w.sum(dim=-1, keepdim=True), ids


# Qwen2-MoE / Qwen3-MoE / OLMoE: transformers modeling_qwen2_moe.py (Qwen2MoeSparseMoeBlock /
# Qwen2MoeTopKRouter), modeling_qwen3_moe.py (Qwen3MoeTopKRouter), modeling_olmoe.py
# (OlmoeSparseMoeBlock / OlmoeTopKRouter), all:
#   router_probs = softmax(router_logits, dim=-1, dtype=torch.float)
#   top_value, indices = torch.topk(router_probs, top_k, dim=-1)
#   if self.norm_topk_prob: top_value /= top_value.sum(dim=-1, keepdim=True)   # no epsilon
# https://github.com/huggingface/transformers/tree/main/src/transformers/models/{qwen2_moe,qwen3_moe,olmoe}
# Who renormalises by default (config classes read in transformers; released config.json values
# from copies of them, the hub not being reachable from here):
#   * Qwen2-MoE: Qwen2MoeConfig.norm_topk_prob=False (num_experts=60, k=4, checkpoint
#     Qwen/Qwen1.5-MoE-A2.7B, whose config.json also says false): weights are the raw softmax
#     probabilities of the chosen experts.
#   * Qwen3-MoE: Qwen3MoeConfig.norm_topk_prob=False (class default, E=128, k=8), but the
#     released Qwen/Qwen3-30B-A3B config.json says "norm_topk_prob": true (so does
#     Qwen3-235B-A22B's), so the model as released divides by the top-k sum.
#   * OLMoE: OlmoeConfig.norm_topk_prob=False (E=64, k=8, checkpoint allenai/OLMoE-1B-7B-0924).
# When on, the renormalisation is a plain division by the sum of the k probabilities (no eps).
def qwen_moe(logits: torch.Tensor, k: int = 4, norm_topk_prob: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    probs = torch.softmax(logits, dim=-1)
    w, ids = topk_lowest_id(probs, k)
    if norm_topk_prob:
        w = w / w.sum(dim=-1, keepdim=True)
    return w, ids


# Qwen1.5-MoE-A2.7B defaults (see qwen_moe).
def qwen2_moe(logits: torch.Tensor, k: int = 4, norm_topk_prob: bool = False):
    return qwen_moe(logits, k=k, norm_topk_prob=norm_topk_prob)


# Qwen3-30B-A3B / Qwen3-235B-A22B as released (norm_topk_prob true; see qwen_moe).
def qwen3_moe(logits: torch.Tensor, k: int = 8, norm_topk_prob: bool = True):
    return qwen_moe(logits, k=k, norm_topk_prob=norm_topk_prob)


# OLMoE-1B-7B defaults (see qwen_moe).
def olmoe(logits: torch.Tensor, k: int = 8, norm_topk_prob: bool = False):
    return qwen_moe(logits, k=k, norm_topk_prob=norm_topk_prob)


# --------------------------------------------------------------------------------------------
# DeepSeek family
# --------------------------------------------------------------------------------------------


def deepseek_group_limited_choice(
    scores_for_choice: torch.Tensor,
    n_group: int,
    topk_group: int,
    group_score: str,
    fill: float,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Node/device-limited routing shared by V2, V3, Kimi-K2 (and usable for V4).

    Splits the E experts into ``n_group`` contiguous groups, scores each group by its ``"max"``
    (V2, and V3's model.py when the gate has no bias) or by the sum of its two largest entries
    (``"top2_sum"``, V3 noaux_tc), keeps the ``topk_group`` best groups (ties to the lower group
    id) and overwrites every expert of the other groups with ``fill``. Returns the masked choice
    tensor and the (T, n_group) group scores (None when no grouping happens). With
    ``n_group == 1`` nothing is masked, as in model.py's ``if self.n_groups > 1``.
    """
    t, e = scores_for_choice.shape
    if n_group <= 1:
        return scores_for_choice, None
    if e % n_group:
        raise ValueError(f"E={e} is not a multiple of n_group={n_group}")
    grouped = scores_for_choice.view(t, n_group, e // n_group)
    if group_score == "max":
        gscore = grouped.amax(dim=-1)
    elif group_score == "top2_sum":
        top2, _ = topk_lowest_id(grouped, 2)  # [max1, max2], summed max1 + max2 as .topk(2)[0].sum(-1)
        gscore = top2.sum(dim=-1)
    else:
        raise ValueError(group_score)
    _, keep = topk_lowest_id(gscore, topk_group)
    group_mask = torch.zeros(t, n_group, dtype=torch.bool).scatter_(1, keep, True)
    expert_mask = group_mask.unsqueeze(-1).expand(t, n_group, e // n_group).reshape(t, e)
    return scores_for_choice.masked_fill(~expert_mask, fill), gscore


# DeepSeek-V2 (236B). Two published implementations by DeepSeek:
#  (a) the Hugging Face hub file https://huggingface.co/deepseek-ai/DeepSeek-V2/blob/main/modeling_deepseek.py
#      (MoEGate.forward): scores = logits.softmax(dim=-1, dtype=torch.float32);
#      "group_limited_greedy": group_scores = scores.view(n, n_group, -1).max(dim=-1).values,
#      topk(topk_group) groups, tmp_scores = scores.masked_fill(~score_mask.bool(), 0.0),
#      topk_weight, topk_idx = torch.topk(tmp_scores, k=top_k, sorted=False);
#      if top_k > 1 and norm_topk_prob: topk_weight /= (sum + 1e-20)
#      else: topk_weight *= routed_scaling_factor          (scaling only when NOT renormalising)
#      ("greedy" -- spelled "gready" in the V2 file -- skips the group step.)
#  (b) https://github.com/deepseek-ai/DeepSeek-V3/blob/main/inference/model.py, class Gate, run
#      with inference/configs/config_236B.json (160 experts, 6 active, n_expert_groups=8,
#      n_limited_groups=3, route_scale=16.0, softmax, no gate bias because dim != 7168):
#      group score = scores.amax(-1), losing groups masked_fill_(..., float("-inf")),
#      weights = original_scores.gather(1, indices) (no renormalisation for softmax) * route_scale.
# Defaults = deepseek-ai/DeepSeek-V2 config.json (n_routed_experts=160, num_experts_per_tok=6,
# n_group=8, topk_group=3, routed_scaling_factor=16.0, norm_topk_prob=false,
# topk_method="group_limited_greedy", scoring_func="softmax"), identical to config_236B.json.
# fill: (b)'s -inf by default; (a) fills 0.0. Softmax scores are > 0, so the two agree unless a
# kept group's scores underflow to 0 or k exceeds the kept experts (topk_group * E / n_group); with
# fill=0.0 a masked expert chosen that way gets weight 0.0 (HF takes weights from tmp_scores),
# with -inf it gets its real score (model.py gathers original_scores).
# DeepSeek-V2-Lite (config_16B.json): 64 experts, k=6, n_group=1 ("greedy"), scale 1.0.
def deepseek_v2(
    logits: torch.Tensor,
    k: int = 6,
    n_group: int = 8,
    topk_group: int = 3,
    routed_scaling_factor: float = 16.0,
    norm_topk_prob: bool = False,
    topk_method: str = "group_limited_greedy",
    fill: float = NEG_INF,
) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.softmax(logits, dim=-1)
    if topk_method in ("greedy", "gready"):
        choice = scores
    elif topk_method == "group_limited_greedy":
        choice, _ = deepseek_group_limited_choice(scores, n_group, topk_group, "max", fill)
    else:
        raise ValueError(topk_method)
    picked, ids = topk_lowest_id(choice, k)
    w = scores.gather(1, ids) if fill == NEG_INF else picked
    if k > 1 and norm_topk_prob:
        w = _renormalize(w, 1e-20)
    else:
        w = w * routed_scaling_factor
    return w, ids


# DeepSeek-V3 (671B), auxiliary-loss-free routing ("noaux_tc").
# Official: https://github.com/deepseek-ai/DeepSeek-V3/blob/main/inference/model.py, class Gate:
#   scores = linear(x, weight).sigmoid();  original_scores = scores;  scores = scores + self.bias
#   if n_groups > 1: group_scores = scores.view(n, n_groups, -1).topk(2, dim=-1)[0].sum(dim=-1)
#       (amax instead when the gate has no bias); keep topk(topk_groups) groups;
#       scores = scores.masked_fill_(mask, float("-inf"))                    <- fill = -inf
#   indices = torch.topk(scores, topk)[1]; weights = original_scores.gather(1, indices)
#   if score_func == "sigmoid": weights /= weights.sum(dim=-1, keepdim=True)  <- eps = 0 (none)
#   weights *= route_scale
# with inference/configs/config_671B.json: n_routed_experts=256, n_activated_experts=8,
# n_expert_groups=8, n_limited_groups=4, route_scale=2.5, score_func="sigmoid"; matching the HF
# hub config.json (n_group=8, topk_group=4, routed_scaling_factor=2.5, norm_topk_prob=true).
# Hugging Face: transformers models/deepseek_v3/modeling_deepseek_v3.py (DeepseekV3MoE.
# route_tokens_to_experts / DeepseekV3TopkRouter.get_topk_indices) and the hub file
# https://huggingface.co/deepseek-ai/DeepSeek-V3/blob/main/modeling_deepseek.py fill the losing
# groups with 0.0 (masked_fill(~score_mask.bool(), 0.0)) and renormalise with
# denominator = sum + 1e-20 (hub file: only when top_k > 1).
# Why fill matters: scores_for_choice = sigmoid + bias can be negative (the bias is learnt and
# unbounded), and then a 0.0-filled expert of a losing group outranks every kept expert; with
# -inf the selection never leaves the kept groups (unless k exceeds the kept experts).
# ``fill`` defaults to the official -inf; pass 0.0 for the HF behaviour.
# ``eps`` defaults to the official 0 (plain sum); HF adds 1e-20 (invisible unless the chosen
# scores sum below ~1e-13 in float32).
def deepseek_v3(
    logits: torch.Tensor,
    bias: torch.Tensor,
    k: int = 8,
    n_group: int = 8,
    topk_group: int = 4,
    routed_scaling_factor: float = 2.5,
    norm_topk_prob: bool = True,
    fill: float = NEG_INF,
    eps: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.sigmoid(logits)
    choice = scores + bias.to(scores.dtype)
    choice, _ = deepseek_group_limited_choice(choice, n_group, topk_group, "top2_sum", fill)
    _, ids = topk_lowest_id(choice, k)
    w = scores.gather(1, ids)  # unbiased scores: the bias only steers selection
    if norm_topk_prob:
        w = _renormalize(w, eps)
    return w * routed_scaling_factor, ids


# Kimi-K2 (moonshotai/Kimi-K2-Instruct, -Base, -Thinking, Kimi-K2.5 text model): the DeepSeek-V3
# architecture ("architectures": ["DeepseekV3ForCausalLM"], model_type "kimi_k2", its hub
# modeling_deepseek.py is DeepSeek-V3's) with config.json
#   n_routed_experts=384, num_experts_per_tok=8, n_group=1, topk_group=1,
#   routed_scaling_factor=2.827, norm_topk_prob=true, scoring_func="sigmoid", topk_method="noaux_tc"
# (https://huggingface.co/moonshotai/Kimi-K2-Instruct/blob/main/config.json; the values read here
# from several verbatim copies of that file in public repositories -- the hub page itself is not
# reachable from this machine). n_group=1 means no group limit: plain top-8 of sigmoid + bias.
def kimi_k2(
    logits: torch.Tensor,
    bias: torch.Tensor,
    k: int = 8,
    n_group: int = 1,
    topk_group: int = 1,
    routed_scaling_factor: float = 2.827,
    norm_topk_prob: bool = True,
    fill: float = NEG_INF,
    eps: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    return deepseek_v3(
        logits,
        bias,
        k=k,
        n_group=n_group,
        topk_group=topk_group,
        routed_scaling_factor=routed_scaling_factor,
        norm_topk_prob=norm_topk_prob,
        fill=fill,
        eps=eps,
    )


def sqrt_softplus(x: torch.Tensor) -> torch.Tensor:
    """DeepSeek-V4's router score, F.softplus(x).sqrt() (torch's softplus: beta=1, threshold=20,
    i.e. x itself above 20)."""
    return torch.nn.functional.softplus(x).sqrt()


# DeepSeek-V4 (V4-Flash, V4-Pro). Official: the inference/model.py shipped with the weights
# (https://huggingface.co/deepseek-ai/DeepSeek-V4-Flash, inference/model.py; read here through
# verbatim copies in public repositories), class Gate:
#   scores = linear(x.float(), self.weight.float())
#   scores = F.softplus(scores).sqrt()          # score_func "sqrtsoftplus" (also softmax/sigmoid)
#   original_scores = scores
#   if self.bias is not None: scores = scores + self.bias      # bias steers selection only
#   indices = self.tid2eid[input_ids] if self.hash else scores.topk(self.topk, dim=-1)[1]
#   weights = original_scores.gather(1, indices)
#   if self.score_func != "softmax": weights /= weights.sum(dim=-1, keepdim=True)   # eps = 0
#   weights *= self.route_scale
# No expert groups at all (no n_group / topk_group in V4's Gate), and the first n_hash_layers=3
# MoE layers route by a frozen token-id table (tid2eid) instead: not a function of the logits,
# not modelled here. transformers models/deepseek_v4/modular_deepseek_v4.py (DeepseekV4TopKRouter)
# is the same with denominator sum + 1e-20.
# Defaults found: DeepSeek-V4-Flash (the HF DeepseekV4Config defaults, checkpoint
# deepseek-ai/DeepSeek-V4-Flash-Base): n_routed_experts=256, num_experts_per_tok=6,
# routed_scaling_factor=1.5, scoring_func="sqrtsoftplus", norm_topk_prob=true;
# DeepSeek-V4-Pro: n_routed_experts=384, num_experts_per_tok=6, routed_scaling_factor=2.5.
# model.py's own ModelArgs defaults are a toy (8 experts, 2 active, route_scale 1.0).
# ``n_group``/``topk_group`` are kept for experiments (top2_sum group score, as V3) and default to
# no grouping, as V4 ships.
def deepseek_v4(
    logits: torch.Tensor,
    bias: torch.Tensor,
    k: int = 6,
    routed_scaling_factor: float = 1.5,
    norm_topk_prob: bool = True,
    eps: float = 0.0,
    n_group: int = 1,
    topk_group: int = 1,
    fill: float = NEG_INF,
) -> tuple[torch.Tensor, torch.Tensor]:
    scores = sqrt_softplus(logits)
    choice = scores + bias.to(scores.dtype)
    choice, _ = deepseek_group_limited_choice(choice, n_group, topk_group, "top2_sum", fill)
    _, ids = topk_lowest_id(choice, k)
    w = scores.gather(1, ids)
    if norm_topk_prob:
        w = _renormalize(w, eps)
    return w * routed_scaling_factor, ids


# --------------------------------------------------------------------------------------------
# Top-k on raw logits
# --------------------------------------------------------------------------------------------


# Llama 4: transformers models/llama4/modeling_llama4.py, Llama4Router.forward:
#   router_top_value, router_indices = torch.topk(router_logits, self.top_k, dim=1)
#   router_scores = torch.full_like(router_logits, float("-inf")).scatter_(1, router_indices, router_top_value)
#   router_scores = torch.nn.functional.sigmoid(router_scores.float()).to(router_scores.dtype)
# i.e. the chosen experts get sigmoid(logit), every other expert sigmoid(-inf) = 0; no
# renormalisation.
# https://github.com/huggingface/transformers/blob/main/src/transformers/models/llama4/modeling_llama4.py
# Defaults: Llama4TextConfig num_experts_per_tok=1, num_local_experts=16 (Llama-4-Scout-17B-16E);
# Llama-4-Maverick-17B-128E has 128 experts, k=1.
def llama4(logits: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    vals, ids = topk_lowest_id(logits, k)
    return torch.sigmoid(vals), ids


# gpt-oss: https://github.com/openai/gpt-oss/blob/main/gpt_oss/torch/model.py, MLPBlock.forward:
#   g = self.gate(t)
#   experts = torch.topk(g, k=self.experts_per_token, dim=-1, sorted=True)
#   expert_weights = torch.nn.functional.softmax(experts.values, dim=1)
# (the gate Linear has a bias, so its output -- the logits here -- already includes it).
# transformers' GptOssTopKRouter does the same. Defaults: ModelConfig num_experts=128,
# experts_per_token=4 (gpt-oss-120b); gpt-oss-20b has 32 experts, k=4. The official model runs the
# gate (and so this top-k and softmax) in bfloat16; the reference computes in the logits' dtype.
def gpt_oss(logits: torch.Tensor, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    vals, ids = topk_lowest_id(logits, k)
    return torch.softmax(vals, dim=-1), ids


# --------------------------------------------------------------------------------------------
# Balancing losses (differentiable w.r.t. the logits; the counts are constants)
# --------------------------------------------------------------------------------------------


def _expert_counts(ids: torch.Tensor, num_experts: int, dtype: torch.dtype) -> torch.Tensor:
    flat = ids.reshape(-1).to(torch.int64)
    return torch.zeros(num_experts, dtype=dtype).index_add_(0, flat, torch.ones(flat.numel(), dtype=dtype))


# Switch Transformer (Fedus et al. 2021, arXiv:2101.03961, eqs. 4-6) generalised to top-k as in
# Megatron-LM's switch_load_balancing_loss_func,
# https://github.com/NVIDIA/Megatron-LM/blob/main/megatron/core/transformer/moe/moe_utils.py:
#   sum(probs.mean(0) * tokens_per_expert) * num_experts / (num_tokens * topk) * moe_aux_loss_coeff
#   f_e = count_e / (T * k)   (fraction of the T*k assignments that went to e; sum_e f_e = 1)
#   P_e = mean over tokens of softmax(logits)_e
#   L   = alpha * E * sum_e f_e * P_e      (= alpha for a perfectly uniform router)
def switch_load_balancing_loss(
    logits: torch.Tensor, ids: torch.Tensor, num_experts: int, k: int, alpha: float = 1.0
) -> torch.Tensor:
    t = logits.shape[0]
    probs = torch.softmax(logits, dim=-1)
    f = _expert_counts(ids, num_experts, logits.dtype) / (t * k)
    p = probs.mean(dim=0)
    return alpha * num_experts * (f * p).sum()


# transformers' load_balancing_loss_func, attention_mask=None branch (shared, copied, by Qwen2-MoE,
# Qwen3-MoE, OLMoE, ...):
# https://github.com/huggingface/transformers/blob/main/src/transformers/models/mixtral/modeling_mixtral.py
#   routing_weights = softmax(concatenated_gate_logits, dim=-1)
#   _, selected_experts = torch.topk(routing_weights, top_k, dim=-1)
#   expert_mask = one_hot(selected_experts, num_experts)              # (T, k, E)
#   tokens_per_expert = torch.mean(expert_mask.float(), dim=0)        # (k, E): per-slot fractions
#   router_prob_per_expert = torch.mean(routing_weights, dim=0)       # (E,)
#   overall_loss = torch.sum(tokens_per_expert * router_prob_per_expert.unsqueeze(0))
#   return overall_loss * num_experts
# Normalisation: sum_j sum_e (count_{j,e}/T) P_e * E = E * sum_e (count_e / T) P_e, i.e. the
# fraction is per token, not per assignment: k times the Switch form above (with alpha=1; the
# model multiplies by router_aux_loss_coef outside). A uniform router gives k, not 1.
# Accepts a tensor or a tuple/list of per-layer tensors (concatenated along tokens, as HF does);
# ``ids`` may be passed to reuse a selection (HF recomputes it with torch.topk on the softmax).
def hf_mixtral_load_balancing_loss(
    gate_logits, num_experts: int | None = None, top_k: int = 2, ids: torch.Tensor | None = None
) -> torch.Tensor:
    logits = torch.cat(list(gate_logits), dim=0) if isinstance(gate_logits, (tuple, list)) else gate_logits
    e = logits.shape[-1] if num_experts is None else num_experts
    routing_weights = torch.softmax(logits, dim=-1)
    if ids is None:
        _, ids = topk_lowest_id(routing_weights.detach(), top_k)
    expert_mask = torch.nn.functional.one_hot(ids, e).to(logits.dtype)  # (T, k, E)
    tokens_per_expert = expert_mask.mean(dim=0)  # (k, E)
    router_prob_per_expert = routing_weights.mean(dim=0)
    return (tokens_per_expert * router_prob_per_expert.unsqueeze(0)).sum() * e


# DeepSpeed top-k gating: https://github.com/deepspeedai/DeepSpeed/blob/master/deepspeed/moe/sharded_moe.py,
# topkgating (used by TopKGate for k > 2):
#   gates = F.softmax(logits, dim=1)
#   top_gate, top_idx = torch.topk(gates, k=k, dim=1)
#   mask = torch.zeros_like(gates, dtype=torch.bool).scatter_(1, top_idx, 1)
#   me = torch.mean(gates, dim=0);  ce = torch.mean(mask.float(), dim=0)
#   l_aux = torch.mean(me * ce) * num_experts * num_experts / k
# = (1/E) sum_e P_e (count_e/T) * E^2 / k = E * sum_e P_e count_e/(T k): exactly the Switch form
# with alpha = 1. (top1gating: l_aux = sum(me * ce) * E, the same with k = 1; top2gating:
# mean(me * ce1) * E * E with ce1 from the FIRST choice only -- neither is this function.)
def deepspeed_topk_load_balancing_loss(
    logits: torch.Tensor, k: int, ids: torch.Tensor | None = None
) -> torch.Tensor:
    gates = torch.softmax(logits, dim=1)
    e = gates.shape[1]
    if ids is None:
        _, ids = topk_lowest_id(gates.detach(), k)
    mask = torch.zeros(gates.shape, dtype=torch.bool).scatter_(1, ids, True)
    me = gates.mean(dim=0)
    ce = mask.to(gates.dtype).mean(dim=0)
    return (me * ce).mean() * e * e / k


# Router z-loss, ST-MoE (Zoph et al. 2022, arXiv:2202.08906, eq. 5):
# L_z = 1/B * sum_i (logsumexp_j x_ij)^2, B the number of tokens (times the coefficient, 1e-3 in the
# paper, outside); Megatron-LM's z_loss_func (moe_utils.py above) is the same expression.
def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(logits, dim=-1).square().mean()


# DeepSeek-V3 technical report (arXiv:2412.19437), sec. 2.1.2, "Complementary Sequence-Wise
# Auxiliary Loss", eqs. 17-20, for one sequence of T tokens:
#   L_Bal = alpha * sum_i f_i P_i
#   f_i   = N_r / (K_r T) * sum_t 1[s_{i,t} in TopK({s_{j,t}}, K_r)]
#   s'_{i,t} = s_{i,t} / sum_j s_{j,t}        (sigmoid affinities normalised over ALL experts)
#   P_i   = 1/T * sum_t s'_{i,t}
# Reading used here: ``ids`` are the experts each token was actually routed to (the report's
# indicator is membership of the selected top-K_r set); the (T_total, E) logits are
# ``T_total/seq_len`` consecutive sequences of ``seq_len`` tokens; the loss is computed per
# sequence and averaged over sequences (as the hub modeling_deepseek.py seq_aux branch does:
# (ce * scores.mean(dim=1)).sum(dim=1).mean() * alpha). A uniform router gives alpha.
# ``scoring="softmax"`` gives the V2 variant (s' = softmax, already normalised).
def sequence_balance_loss(
    logits: torch.Tensor,
    ids: torch.Tensor,
    k: int,
    alpha: float,
    seq_len: int,
    scoring: str = "sigmoid",
) -> torch.Tensor:
    t_total, e = logits.shape
    if t_total % seq_len:
        raise ValueError(f"{t_total} tokens are not whole sequences of {seq_len}")
    b = t_total // seq_len
    if scoring == "sigmoid":
        s = torch.sigmoid(logits)
        s = s / s.sum(dim=-1, keepdim=True)
    elif scoring == "softmax":
        s = torch.softmax(logits, dim=-1)
    else:
        raise ValueError(scoring)
    ids_b = ids.reshape(b, seq_len * ids.shape[-1]).to(torch.int64)
    counts = torch.zeros(b, e, dtype=logits.dtype).scatter_add_(
        1, ids_b, torch.ones(ids_b.shape, dtype=logits.dtype)
    )
    f = counts * (e / (k * seq_len))
    p = s.reshape(b, seq_len, e).mean(dim=1)
    return alpha * (f * p).sum(dim=-1).mean()


# Auxiliary-loss-free balancing bias update, DeepSeek-V3 report sec. 2.1.2 ("at the end of each
# step, we will decrease the bias term by gamma if its corresponding expert is overloaded, and
# increase it by gamma if its corresponding expert is underloaded"; gamma = 0.001 for most of
# pre-training): b_i += gamma * sign(mean_load - load_i). An expert exactly at the mean is left
# unchanged (sign(0) = 0).
def update_bias(bias: torch.Tensor, counts: torch.Tensor, rate: float = 1e-3) -> torch.Tensor:
    c = counts.to(bias.dtype)
    return bias + rate * torch.sign(c.mean() - c)

