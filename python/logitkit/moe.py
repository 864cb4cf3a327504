"""MoE data movement and auxiliary losses: NumPy front ends of cpp/include/logitkit/moe.h (and of
expert_choice in route.h)."""

from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from . import _arrays, _core
from ._arrays import FloatArray

__all__ = [
    "DispatchPlan",
    "contrastive_logits",
    "dispatch",
    "expert_choice",
    "expert_counts",
    "load_balancing_loss",
    "permute",
    "router_z_loss",
    "sequence_balance_loss",
    "unpermute",
    "update_bias",
]


def _ids(experts, name: str = "experts") -> np.ndarray:
    """Expert ids as int32 (T, k): any integer array (..., k), leading axes flattened."""
    arr = _arrays.asarray_named(experts, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array of expert ids, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected shape (tokens, k), got a 0-d array")
    if arr.dtype != np.int32:
        big = arr[(arr < np.iinfo(np.int32).min) | (arr > np.iinfo(np.int32).max)] if arr.size else arr[:0]
        if big.size:
            raise ValueError(f"{name}: expert id {int(big.reshape(-1)[0])} is out of range")
        arr = arr.astype(np.int32)
    return arr.reshape(-1, arr.shape[-1]) if arr.ndim != 2 else arr


def _num_experts(num_experts) -> int:
    e = _arrays.int64_scalar(num_experts, "num_experts")
    if e < 1:
        raise ValueError(f"num_experts: must be >= 1, got {e}")
    return e


@dataclass(frozen=True)
class DispatchPlan:
    """Where each routed (token, slot) pair goes, as grouped-GEMM MoE layers need it.

    counts (E,): pairs routed to each expert; kept (E,): pairs kept under the capacity;
    offsets (E + 1,): each expert's segment in the slot order, padded to block_size; position
    (T, k): each pair's slot or -1 when dropped; slot_token / slot_pair (P,): the token and the
    pair index t k + j of each slot (by token within an expert), -1 for padding; block_expert
    (P / block_size,): the expert of each block (what moe_align_block_size gives grouped GEMMs).
    """

    num_experts: int
    capacity: int | None
    block_size: int
    counts: np.ndarray
    kept: np.ndarray
    offsets: np.ndarray
    position: np.ndarray
    slot_token: np.ndarray
    slot_pair: np.ndarray
    block_expert: np.ndarray

    @property
    def num_slots(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_tokens(self) -> int:
        return int(self.position.shape[0])

    def load_stats(self) -> dict[str, float]:
        """max_load, mean_load (pairs per expert, before capacity), imbalance (max / mean),
        dropped (pairs) and fraction_dropped."""
        total = int(self.counts.sum())
        mean = total / self.num_experts
        dropped = total - int(self.kept.sum())
        mx = int(self.counts.max())
        return {
            "max_load": float(mx),
            "mean_load": mean,
            "imbalance": mx / mean if mean else math.nan,
            "dropped": float(dropped),
            "fraction_dropped": dropped / total if total else 0.0,
        }


def dispatch(
    experts: ArrayLike,
    num_experts: int,
    *,
    weights: ArrayLike | None = None,
    capacity: int | None = None,
    capacity_factor: float | None = None,
    min_capacity: int = 4,
    drop_policy: str = "position",
    block_size: int = 1,
) -> DispatchPlan:
    """The dispatch plan of routed expert ids (T, k) (e.g. route's ids): a stable counting sort
    of the (token, slot) pairs by expert, in fixed chunks (the same plan for any thread count).

    capacity: slots per expert (None: unlimited, or from capacity_factor:
    max(min_capacity, min(ceil(capacity_factor T k / E), T k)): GShard/Switch's rule, the
    factor's part capped at T k, which no expert can exceed). Over capacity,
    drop_policy "position" keeps an expert's first tokens, "probs" its largest `weights`
    (ties to the lower token; NaN lowest, below -inf). Each expert's segment is padded to a multiple of
    block_size (padding slots have token -1). Expert ids outside [0, num_experts) raise."""
    ids = _ids(experts)
    e = _num_experts(num_experts)
    cap = -1 if capacity is None else _arrays.int64_scalar(capacity, "capacity")
    if capacity is not None and cap < 0:
        raise ValueError(f"capacity: must be >= 0 or None, got {cap}")
    cf = 0.0 if capacity_factor is None else _arrays.real_scalar(capacity_factor, "capacity_factor")
    if capacity_factor is not None and not (cf > 0 and math.isfinite(cf)):
        raise ValueError(f"capacity_factor: must be a finite number > 0 or None, got {capacity_factor!r}")
    mc = _arrays.int64_scalar(min_capacity, "min_capacity")
    if mc < 0:
        raise ValueError(f"min_capacity: must be >= 0, got {mc}")
    if not isinstance(drop_policy, str) or drop_policy not in ("position", "probs"):
        raise ValueError(f"drop_policy: expected 'position' or 'probs', got {drop_policy!r}")
    bs = _arrays.int64_scalar(block_size, "block_size")
    if bs < 1:
        raise ValueError(f"block_size: must be >= 1, got {bs}")
    w = None
    if weights is not None:
        w = _arrays.as_array(weights, "weights")
        w = _arrays.to_compute(w, _arrays.compute_dtype(_arrays.result_dtype(w.dtype)))
        if w.shape != np.shape(experts):
            raise ValueError(f"weights: must have the experts' shape {np.shape(experts)}, got {w.shape}")
        w = w.reshape(ids.shape)
    elif drop_policy == "probs" and (cap >= 0 or cf > 0):
        raise ValueError("weights: the drop policy 'probs' needs the routing weights")
    t, k = ids.shape
    bound = _core.dispatch_slot_bound(t * k, e, bs)
    counts = np.empty(e, np.int64)
    kept = np.empty(e, np.int64)
    offsets = np.empty(e + 1, np.int64)
    position = np.empty((t, k), np.int32)
    slot_token = np.empty(bound, np.int32)
    slot_pair = np.empty(bound, np.int32)
    block_expert = np.empty(bound // bs, np.int32)
    slots = _core.dispatch(ids, e, cap, cf, mc, drop_policy == "probs", bs, counts, kept, offsets, position,
                           slot_token, slot_pair, block_expert, w)
    resolved = _core.dispatch_capacity(t, k, e, cap, cf, mc, bs)
    resolved = None if resolved < 0 else resolved
    return DispatchPlan(e, resolved, bs, counts, kept, offsets, position, slot_token[:slots], slot_pair[:slots],
                        block_expert[: slots // bs])


def expert_counts(experts: ArrayLike, num_experts: int) -> np.ndarray:
    """How many times each expert id in [0, num_experts) occurs in `experts` (any shape), int64."""
    arr = _arrays.asarray_named(experts, "experts")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"experts: expected an integer array of expert ids, got dtype {arr.dtype}")
    e = _num_experts(num_experts)
    ids = arr if arr.dtype == np.int32 else _ids(arr.reshape(-1, 1) if arr.ndim else arr.reshape(1, 1))
    counts = np.empty(e, np.int64)
    _core.expert_counts(ids, e, counts)
    return counts


def _rows(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-d array (rows, hidden), got shape {x.shape}")
    if x.size and x.shape[1] > 1 and x.strides[1] != x.itemsize:
        x = np.ascontiguousarray(x)
    return x


def permute(hidden: ArrayLike, plan: DispatchPlan, *, out: np.ndarray | None = None) -> np.ndarray:
    """hidden (T, H) rows gathered into the plan's slot order: (P, H) of hidden's dtype (any
    dtype: a row copy), padding slots zero. out: a (P, H) array of hidden's dtype with contiguous
    rows to write into (a reused buffer spares the allocation's page faults, about half the time
    of a first-touch 64 MiB result)."""
    if not isinstance(plan, DispatchPlan):
        raise TypeError(f"plan: expected a DispatchPlan, got {type(plan).__name__}")
    h = _rows(_arrays.asarray_named(hidden, "hidden"), "hidden")
    if h.shape[0] != plan.num_tokens:
        raise ValueError(f"hidden: has {h.shape[0]} rows for a plan of {plan.num_tokens} tokens")
    shape = (plan.num_slots, h.shape[1])
    if out is None:
        out = np.empty(shape, h.dtype)
    else:
        _arrays.check_out(out, shape, h.dtype)
        if out.dtype != h.dtype:  # same type, other byte order
            raise TypeError(f"out: dtype {out.dtype} does not match hidden's {h.dtype}")
        if out.size and out.shape[1] > 1 and out.strides[1] != out.itemsize:
            raise ValueError(f"out: rows must be contiguous (strides {out.strides})")
        if np.shares_memory(out, h):
            raise ValueError("out: must not overlap hidden")
    _core.permute(h, plan.slot_token, out)
    return out


def unpermute(expert_out: ArrayLike, plan: DispatchPlan, weights: ArrayLike, *,
              out: np.ndarray | None = None) -> FloatArray:
    """The experts' outputs (P, H) combined back per token: out[t] = sum_j weights[t, j]
    expert_out[position[t, j]] in slot order j (deterministic), dropped pairs contributing 0.
    float16/bfloat16 are computed in float32 and returned in their dtype. out: a (T, H) array of
    that dtype to write into (any strides; it must not overlap the inputs)."""
    if not isinstance(plan, DispatchPlan):
        raise TypeError(f"plan: expected a DispatchPlan, got {type(plan).__name__}")
    x = _arrays.as_array(expert_out, "expert_out")
    result = _arrays.result_dtype(x.dtype)
    compute = _arrays.compute_dtype(result)
    xc = _rows(_arrays.to_compute(x, compute), "expert_out")
    if xc.shape[0] != plan.num_slots:
        raise ValueError(f"expert_out: has {xc.shape[0]} rows for a plan of {plan.num_slots} slots")
    w = _arrays.to_compute(_arrays.as_array(weights, "weights"), compute)
    if w.ndim > 2 and w.size == plan.position.size and w.shape[-1] == plan.position.shape[1]:
        w = w.reshape(plan.position.shape)  # route's (..., k) weights of batched tokens
    if w.shape != plan.position.shape:
        raise ValueError(f"weights: must have shape {plan.position.shape}, got {w.shape}")
    shape = (plan.num_tokens, xc.shape[1])
    if out is not None:
        _arrays.check_out(out, shape, result)
        for arr, name in ((x, "expert_out"), (w, "weights")):
            if np.shares_memory(out, arr):
                raise ValueError(f"out: must not overlap {name}")
    target = _arrays.writable_target(out, compute)
    if target is not None and target.size and target.shape[1] > 1 and target.strides[1] != target.itemsize:
        target = None  # the combine kernel writes whole rows: strided rows go through a temporary
    tmp = target if target is not None else np.empty(shape, compute)
    _core.unpermute(xc, plan.position, w, tmp)
    if out is not None:
        return out if target is not None else _arrays.finish(tmp, out, result)
    return tmp if result == compute else tmp.astype(result)


def expert_choice(logits: ArrayLike, capacity: int) -> tuple[FloatArray, np.ndarray]:
    """Expert choice routing (Zhou et al. 2022): s = softmax(logits) over the experts of each
    token (T, E); each expert takes its `capacity` tokens of largest s (ties to the lower token,
    NaN lowest). Returns (weights (E, capacity), tokens (E, capacity) int32), columns in
    descending order."""
    arr = _arrays.as_array(logits, "logits")
    if arr.ndim != 2:
        raise ValueError(f"logits: expected shape (tokens, experts), got {arr.shape}")
    compute = _arrays.compute_dtype(_arrays.result_dtype(arr.dtype))
    x = _arrays.to_compute(arr, compute)
    c = _arrays.int64_scalar(capacity, "capacity")
    if not 1 <= c <= x.shape[0]:
        raise ValueError(f"capacity: must be in [1, {x.shape[0]}] for {x.shape[0]} tokens, got {c}")
    weights = np.empty((x.shape[1], c), compute)
    tokens = np.empty((x.shape[1], c), np.int32)
    _core.expert_choice(x, weights, tokens, c)
    return weights, tokens


def _loss_inputs(logits, experts):
    arr = _arrays.as_array(logits, "logits")
    if arr.ndim == 0:
        raise ValueError("logits: expected shape (tokens, experts), got a 0-d array")
    compute = _arrays.compute_dtype(_arrays.result_dtype(arr.dtype))
    x = _arrays.to_compute(arr, compute).reshape(-1, arr.shape[-1])
    ids = None
    if experts is not None:
        ids = _ids(experts)
        if ids.shape[0] != x.shape[0]:
            raise ValueError(f"experts: its {ids.shape[0]} tokens do not match logits's {x.shape[0]} rows")
    return arr, x, ids


def _run_loss(kind, logits, experts, norm, alpha, seq_len, return_grad, grad_output):
    arr, x, ids = _loss_inputs(logits, experts)
    a = _arrays.real_scalar(alpha, "alpha")
    go = _arrays.real_scalar(grad_output, "grad_output")
    grad = np.empty(x.shape, x.dtype) if _arrays.check_flag(return_grad, "return_grad") else None
    loss = _core.moe_loss(kind, x, ids, norm, a, seq_len, grad, go)
    if grad is None:
        return loss
    g = grad.reshape(arr.shape)
    return loss, (g if arr.dtype == g.dtype or arr.dtype.kind in "iub" else g.astype(arr.dtype))


def load_balancing_loss(
    logits: ArrayLike,
    experts: ArrayLike,
    *,
    normalization: str = "switch",
    alpha: float = 1.0,
    return_grad: bool = False,
    grad_output: float = 1.0,
) -> float | tuple[float, FloatArray]:
    """Auxiliary load-balancing loss of router logits (T, E) and the selected experts (T, k),
    with P_e = mean over tokens of softmax(logits)_e and the counts as constants:

    - "switch" (Switch Transformer, Megatron; also DeepSpeed's top-k l_aux, which equals it):
      alpha E sum_e f_e P_e with f_e = count_e / (T k);
    - "hf_mixtral" (HF transformers' load_balancing_loss_func): alpha E sum_e (count_e / T) P_e,
      k times the Switch value.

    With return_grad, also d loss / d logits (grad_output times it)."""
    if not isinstance(normalization, str) or normalization not in ("switch", "deepspeed", "hf_mixtral"):
        raise ValueError(f"normalization: expected 'switch', 'deepspeed' or 'hf_mixtral', got {normalization!r}")
    norm = "hf_mixtral" if normalization == "hf_mixtral" else "switch"
    return _run_loss("load_balancing", logits, experts, norm, alpha, 0, return_grad, grad_output)


def sequence_balance_loss(
    logits: ArrayLike,
    experts: ArrayLike,
    seq_len: int,
    *,
    alpha: float = 1.0,
    return_grad: bool = False,
    grad_output: float = 1.0,
) -> float | tuple[float, FloatArray]:
    """DeepSeek-V3's sequence-wise balance loss: tokens in consecutive sequences of seq_len; per
    sequence P_i = mean_t s'_{t,i} (s' = sigmoid(logits) normalised over the experts), f_i =
    E / (k seq_len) * (times expert i is selected in it), L = alpha sum_i f_i P_i; the mean over
    sequences. With return_grad, also d loss / d logits."""
    s = _arrays.int64_scalar(seq_len, "seq_len")
    return _run_loss("sequence_balance", logits, experts, "switch", alpha, s, return_grad, grad_output)


def router_z_loss(
    logits: ArrayLike, *, return_grad: bool = False, grad_output: float = 1.0
) -> float | tuple[float, FloatArray]:
    """ST-MoE's router z-loss: mean over tokens of logsumexp(logits)^2 (multiply by its
    coefficient, 1e-3 in the paper). With return_grad, also d loss / d logits."""
    return _run_loss("router_z", logits, None, "switch", 1.0, 0, return_grad, grad_output)


def update_bias(bias: ArrayLike, counts: ArrayLike, rate: float) -> np.ndarray:
    """DeepSeek-V3's auxiliary-loss-free balancing step: bias + rate sign(mean(counts) - counts),
    a new array (bias's float dtype). counts: each expert's load in the last batch
    (expert_counts or DispatchPlan.counts)."""
    b = _arrays.as_array(bias, "bias")
    compute = _arrays.compute_dtype(_arrays.result_dtype(b.dtype))
    out = np.array(b, dtype=compute)
    c = _arrays.asarray_named(counts, "counts")
    if c.dtype.kind not in "iu":
        raise TypeError(f"counts: expected integer counts, got dtype {c.dtype}")
    r = _arrays.real_scalar(rate, "rate")
    if out.ndim != 1:
        raise ValueError(f"bias: expected one value per expert, shape (E,), got shape {out.shape}")
    if c.shape != out.shape:
        raise ValueError(f"counts: must have the bias's shape {out.shape}, got {c.shape}")
    _core.update_bias(out, np.asarray(c, np.int64), r)  # no copy for int64 counts
    return out if b.dtype == compute or b.dtype.kind in "iub" else out.astype(b.dtype)


def contrastive_logits(strong: ArrayLike, weak: ArrayLike, *, beta: float = 0.5, alpha: float = 0.1) -> FloatArray:
    """Self-Contrast MoE decoding (Shi et al. 2024): (1 + beta) strong - beta weak along the last
    axis, -inf where strong < log(alpha) + max(strong) (the plausibility mask: tokens whose
    strong-activation probability is below alpha times the largest). strong and weak are the
    next-token logits of the same model with its usual and with weaker expert activation. For
    entropy-adaptive decoding, logitkit.entropy(router_logits) gives the router's entropy per token."""
    s = _arrays.as_array(strong, "strong")
    w = _arrays.as_array(weak, "weak")
    if s.shape != w.shape:
        raise ValueError(f"weak: must have strong's shape {s.shape}, got {w.shape}")
    if s.ndim == 0:
        raise ValueError("strong: needs a vocabulary axis (got a 0-d array)")
    result = _arrays.result_dtype(s.dtype, w.dtype)
    compute = _arrays.compute_dtype(result)
    b = _arrays.real_scalar(beta, "beta")
    a = _arrays.real_scalar(alpha, "alpha")
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"alpha: must be in [0, 1], got {alpha!r}")
    out = np.empty(s.shape, compute)
    _core.contrastive_logits(_arrays.to_compute(s, compute), _arrays.to_compute(w, compute), out, b, a)
    return out if result == compute else out.astype(result)
