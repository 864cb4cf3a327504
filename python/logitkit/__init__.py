"""logitkit: fast, exact SIMD kernels for softmax variants.

What exists: softmax, log_softmax and logsumexp (with masks, temperature, weights), their backward
passes, StableMax/log-StableMax, sparsemax, 1.5-entmax and alpha-entmax (bisection) with their
backward passes, the fused entropy of a softmax and the Softmax Collapse fraction, and the losses
on logits with their gradients: nll_loss; cross_entropy (class indices or probabilities, label
smoothing, z-loss, softcap, extra outputs); the distillation losses kl_div, jsd, tvd, kl_div_topk,
dkd_loss, nkd_loss; the seed papers' losses focal_loss, poly1_cross_entropy, comp_sum_loss,
generalized_cross_entropy, ldr_kl_loss, stablemax_cross_entropy, sparsemax_loss, entmax15_loss,
spherical_z_loss; Mixture-of-Experts routing (route with production presets); plus backend (ISA)
and thread controls.

Each op family lives in its own module (softmax.py, masked_softmax.py, ...) listing its public
names in ``__all__``; they are re-exported here. See README.md for the table of ops.
"""

from __future__ import annotations

from . import _core
from .class_losses import (
    comp_sum_loss,
    entmax15_loss,
    focal_loss,
    generalized_cross_entropy,
    ldr_kl_loss,
    poly1_cross_entropy,
    sparsemax_loss,
    spherical_z_loss,
    stablemax_cross_entropy,
)
from .cross_entropy import cross_entropy
from .linear_cross_entropy import linear_cross_entropy
from .distill import dkd_loss, jsd, kl_div, kl_div_topk, nkd_loss, tvd
from .entropy import collapse_fraction, entropy
from .masked_softmax import masked_log_softmax, masked_softmax
from .moe import (
    DispatchPlan,
    contrastive_logits,
    dispatch,
    expert_choice,
    expert_counts,
    load_balancing_loss,
    permute,
    router_z_loss,
    sequence_balance_loss,
    unpermute,
    update_bias,
)
from .nll_loss import nll_loss
from .route import PRESETS, route
from .runtime import available_isas, get_num_threads, isa, set_isa, set_num_threads, use_isa
from .softmax import log_softmax, logsumexp, softmax
from .softmax_backward import log_softmax_backward, softmax_backward
from .sparsemax import (
    entmax15,
    entmax15_backward,
    entmax_bisect,
    entmax_bisect_backward,
    sparsemax,
    sparsemax_backward,
)
from .stablemax import log_stablemax, log_stablemax_backward, stablemax, stablemax_backward

__version__: str = _core.__version__

__all__ = [
    "DispatchPlan",
    "PRESETS",
    "__version__",
    "available_isas",
    "collapse_fraction",
    "comp_sum_loss",
    "contrastive_logits",
    "cross_entropy",
    "linear_cross_entropy",
    "dispatch",
    "dkd_loss",
    "entmax15",
    "entmax15_backward",
    "entmax15_loss",
    "entmax_bisect",
    "entmax_bisect_backward",
    "entropy",
    "expert_choice",
    "expert_counts",
    "focal_loss",
    "generalized_cross_entropy",
    "get_num_threads",
    "isa",
    "jsd",
    "kl_div",
    "kl_div_topk",
    "ldr_kl_loss",
    "load_balancing_loss",
    "log_softmax",
    "log_softmax_backward",
    "log_stablemax",
    "log_stablemax_backward",
    "logsumexp",
    "masked_log_softmax",
    "masked_softmax",
    "nkd_loss",
    "nll_loss",
    "permute",
    "poly1_cross_entropy",
    "route",
    "router_z_loss",
    "sequence_balance_loss",
    "set_isa",
    "set_num_threads",
    "softmax",
    "softmax_backward",
    "sparsemax",
    "sparsemax_backward",
    "sparsemax_loss",
    "spherical_z_loss",
    "stablemax",
    "stablemax_backward",
    "stablemax_cross_entropy",
    "tvd",
    "unpermute",
    "update_bias",
    "use_isa",
]
