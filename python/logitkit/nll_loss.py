"""Negative log-likelihood of class indices under log-probabilities: NumPy front end of
cpp/include/logitkit/nll_loss.h, with torch.nn.functional.nll_loss's semantics."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _arrays, _core, _losses
from ._arrays import Result

__all__ = ["nll_loss"]


def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """loss_r = -w_r * log_probs[r, target[r]] over the rows r (every index of the axes other than
    the class axis `axis`), reduced as torch.nn.functional.nll_loss reduces it.

    target: integer class indices of log_probs' shape without the class axis; each in [0, C) or
    equal to ignore_index (those rows add nothing: loss 0, weight 0, gradient 0). Any other value
    raises ValueError naming target. Unlike PyTorch, the class axis defaults to the last one.

    Weights: w_r = weight[target[r]] * sample_weight[r] (each 1 when not given; weight has shape
    (C,), sample_weight broadcasts to the batch shape). reduction="mean" returns sum(w_r loss_r) /
    sum(w_r) (PyTorch's weighted mean; NaN when every row is ignored), "sum" the sum, "none" the
    per-row losses. float16/bfloat16 input is computed in float32 and returned in its dtype; integer
    input gives float64. Reduced sums are taken in a fixed order (float64, compensated), so results
    do not depend on the thread count.

    return_grad=True returns (loss, grad), grad = d loss / d log_probs (log_probs' shape): -w_r *
    grad_output at [r, target[r]] (divided by sum(w_r) for "mean") and 0 elsewhere. grad_output is
    the upstream gradient: a scalar, or for reduction="none" an array of the loss's shape.
    out_grad: an array of log_probs' shape and result dtype to write grad into; it may be
    log_probs itself (every log-probability is read before the gradient is written).
    """
    args = _losses.prepare(
        log_probs,
        target,
        input_name="log_probs",
        axis=axis,
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
    )
    return _losses.run(_core.nll_loss, args, log_probs, return_grad, grad_output, out_grad)
