"""Softmax cross-entropy of logits against class indices or probabilities, fused: NumPy front end of
cpp/include/logitkit/cross_entropy.h, with torch.nn.functional.cross_entropy's semantics."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike

from . import _arrays, _core, _losses
from ._arrays import Real, Result

__all__ = ["cross_entropy"]


def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: Real = 0.0,
    temperature: Real = 1.0,
    z_loss: Real = 0.0,
    softcap: Real | None = None,
    target_margin: Real = 0.0,
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
    extras: Iterable[str] = (),
) -> Result | tuple[Result, np.ndarray] | tuple[Result, dict] | tuple[Result, np.ndarray, dict]:
    """Cross-entropy of softmax(logits / temperature) along the class axis `axis` against integer
    class indices or class probabilities, as torch.nn.functional.cross_entropy computes it: the
    logits are read once for each row's max, exp-sum and target terms, and once more for the
    gradient; no probabilities are stored.

    target: class indices of logits' shape without the class axis; each in [0, C) or equal to
    ignore_index (those rows add nothing: loss 0, weight 0, gradient 0). Other values raise
    ValueError naming target. Unlike PyTorch, the class axis defaults to the last one.

    A floating-point target of logits' shape holds class probabilities (soft targets, PyTorch's
    semantics: loss_r = -sum_c weight[c] y_c log p_c, label smoothing mixing y with the uniform
    distribution, nothing ignored, "mean" dividing by the number of rows, or by the summed
    sample_weight); a zero probability adds 0 even against a -inf logit (PyTorch: NaN), and
    probabilities that are not finite raise ValueError naming target.

    weight (C,) and sample_weight (broadcast to the batch shape): row r weighs w_r =
    weight[target[r]] * sample_weight[r]. label_smoothing: PyTorch's formula, (1 - ls) times the
    weighted NLL plus ls / C times sum_c weight[c] (-log p_c). reduction="mean" divides the sum of
    the row losses by sum(w_r) (PyTorch's weighted mean, NaN when every row is ignored), "sum" and
    "none" as in PyTorch. temperature: the loss of softmax(logits / temperature) (no T^2 factor).
    z_loss >= 0: adds z_loss * logsumexp(logits / temperature)^2 per row not ignored (PaLM's and
    ST-MoE's z-loss, with its gradient), weighted by sample_weight only; "mean" divides this term
    by the number of rows not ignored (their summed sample weights), as Liger-Kernel does.
    softcap > 0: the logits become softcap * tanh(logits / softcap) inside the kernel before the
    temperature (Gemma 2's logit soft-capping); the gradient includes the tanh derivative.
    target_margin: subtracted from the target's logit before the temperature (class indices only;
    AM-softmax / CosFace's additive margin with temperature = 1 / scale); not with softcap.
    float16/bfloat16 logits are computed in float32 (the target's p - 1 is formed there) and the
    results returned in their dtype; integer logits give float64. Row sums are taken in a fixed
    order, so results do not depend on the thread count.

    return_grad=True returns (loss, grad), grad = d loss / d logits, scaled by grad_output (a
    scalar, or for reduction="none" an array of the loss's shape); out_grad: an array of logits'
    shape and result dtype to write it into, which may be the logits themselves.

    extras: names of extra outputs from the same pass, returned last as a dict: "lse" (per row,
    logsumexp of the (capped) logits / temperature; 0 for ignored rows), "z_loss" (the z-loss term
    alone, reduced as the loss), "accuracy" (class indices only: the fraction of rows not ignored
    whose argmax is the target, ties to the lowest index; NaN when every row is ignored),
    "predicted" (per row, the argmax of the logits as int64, ties to the lowest index, NaN first).
    """
    if (  # the common call, in C++ (see _core.cross_entropy_fast): every other argument its default
        weight is None and sample_weight is None and out_grad is None and axis is _DEFAULTS["axis"]
        and label_smoothing is _DEFAULTS["label_smoothing"] and temperature is _DEFAULTS["temperature"]
        and z_loss is _DEFAULTS["z_loss"] and softcap is None and target_margin is _DEFAULTS["target_margin"]
        and grad_output is _DEFAULTS["grad_output"] and extras is _DEFAULTS["extras"]
        and (return_grad is False or return_grad is True)
        and (res := _core.cross_entropy_fast(logits, target, ignore_index, reduction, return_grad)) is not None
    ):
        return res
    args = _losses.prepare(
        logits,
        target,
        input_name="logits",
        axis=axis,
        weight=weight,
        sample_weight=sample_weight,
        ignore_index=ignore_index,
        reduction=reduction,
        soft_targets=True,
    )
    ls = _losses.label_smoothing_value(label_smoothing)
    t = _arrays.check_temperature(temperature)
    z = _losses.z_loss_value(z_loss)
    return _run(args, logits, return_grad, grad_output, out_grad, extras, ls, t, z, softcap, target_margin,
                "cross_entropy", 0.0)


_DEFAULTS = cross_entropy.__kwdefaults__


def _run(args, logits, return_grad, grad_output, out_grad, extras, ls, t, z, softcap, target_margin, form,
         form_param):
    """Calls the core with the arguments checked by the caller (ls, t, z) and the rest checked here;
    form: the loss as a function of log p_t (see cpp/include/logitkit/cross_entropy.h)."""
    margin = _arrays.real_scalar(target_margin, "target_margin", "a finite number")
    if not math.isfinite(margin):
        raise ValueError(f"target_margin: must be finite, got {target_margin!r}")
    if margin != 0.0 and args.soft:
        raise ValueError("target_margin: needs class-index targets, not probabilities")
    cap = _losses.softcap_value(softcap)
    wanted = _extras(extras, args)
    lse = np.empty(args.rows_shape, args.compute) if "lse" in wanted else None
    predicted = np.empty(args.rows_shape, np.int64) if "predicted" in wanted else None

    def collect(raw):
        out = {}
        if lse is not None:
            out["lse"] = lse.reshape(args.batch_shape).astype(args.result, copy=False)
        if "z_loss" in wanted:
            out["z_loss"] = args.result.type(raw[1])
        if "accuracy" in wanted:
            out["accuracy"] = np.float64(raw[2])
        if predicted is not None:
            out["predicted"] = predicted.reshape(args.batch_shape)
        return out

    return _losses.run(
        _core.cross_entropy, args, logits, return_grad, grad_output, out_grad, ls, t, z, cap, lse, predicted,
        "z_loss" in wanted, "accuracy" in wanted, margin, form, form_param, collect=collect if wanted else None,
    )


EXTRAS = ("lse", "z_loss", "accuracy", "predicted")


def _extras(extras, args) -> frozenset[str]:
    if type(extras) is tuple and not extras:
        return frozenset()
    if isinstance(extras, str):
        extras = (extras,)
    try:
        wanted = frozenset(extras)
    except TypeError:
        raise TypeError(f"extras: expected names among {EXTRAS}, got {extras!r}") from None
    unknown = sorted(str(e) for e in wanted if e not in EXTRAS)
    if unknown:
        raise ValueError(f"extras: unknown output(s) {', '.join(unknown)}; expected names among {EXTRAS}")
    if args.soft and "accuracy" in wanted:
        raise ValueError("extras: 'accuracy' needs class-index targets, not probabilities")
    return wanted
