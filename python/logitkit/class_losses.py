"""The seed papers' losses on logits against class indices: those that share cross_entropy's fused
kernels (a function h of log p_t: focal, PolyLoss, comp-sum / generalised CE; cross-entropy of
shifted logits: LDR-KL), and those with their own row function over the shared class-index loss
driver (StableMax cross-entropy, the sparsemax / 1.5-entmax Fenchel-Young losses, the spherical
Z-loss). One read of the logits for the row statistics, one more
for the gradient; PyTorch's option names (weight, ignore_index, reduction), sample_weight, the
class axis anywhere, return_grad / grad_output / out_grad as cross_entropy. Front end of
cpp/include/logitkit/cross_entropy.h (CrossEntropyOptions::Form, target_margin)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _arrays, _core, _losses
from ._arrays import Real, Result
from .cross_entropy import _run

__all__ = [
    "comp_sum_loss",
    "entmax15_loss",
    "focal_loss",
    "generalized_cross_entropy",
    "ldr_kl_loss",
    "poly1_cross_entropy",
    "sparsemax_loss",
    "spherical_z_loss",
    "stablemax_cross_entropy",
]


def _form_loss(logits, target, weight, form, param, *, axis, ignore_index, reduction, sample_weight, temperature,
               return_grad, grad_output, out_grad, margin=0.0):
    args = _losses.prepare(logits, target, input_name="logits", axis=axis, weight=weight,
                           sample_weight=sample_weight, ignore_index=ignore_index, reduction=reduction)
    t = _arrays.check_temperature(temperature)
    return _run(args, logits, return_grad, grad_output, out_grad, (), 0.0, t, 0.0, None, margin, form, param)


def _parameter(value, name: str, low: float, what: str) -> float:
    v = _arrays.real_scalar(value, name, what)
    if not (v >= low and np.isfinite(v)):
        raise ValueError(f"{name}: must be {what}, got {value!r}")
    return v


def focal_loss(
    logits: ArrayLike,
    target: ArrayLike,
    gamma: Real = 2.0,
    alpha: Real | ArrayLike | None = None,
    *,
    weight: ArrayLike | None = None,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    sample_weight: ArrayLike | None = None,
    temperature: Real = 1.0,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """Softmax focal loss (Lin et al., "Focal Loss for Dense Object Detection", multi-class form):
    loss_r = -alpha_t (1 - p_t)^gamma log p_t with p = softmax(logits / temperature), gamma >= 0
    (gamma = 0: cross-entropy). alpha: None (1), a scalar, or one value per class, multiplying each
    row without entering "mean"'s normaliser (as torchvision's and kornia's alpha); weight: per
    class with PyTorch's cross_entropy semantics ("mean" divides by the summed weight[t] of the
    rows not ignored). 1 - p_t is formed as -expm1(log p_t), keeping its digits for confident rows."""
    g = _parameter(gamma, "gamma", 0.0, "a finite number >= 0")
    if alpha is None:
        return _form_loss(logits, target, weight, "focal", g, axis=axis, ignore_index=ignore_index,
                          reduction=reduction, sample_weight=sample_weight, temperature=temperature,
                          return_grad=return_grad, grad_output=grad_output, out_grad=out_grad)
    args = _losses.prepare(logits, target, input_name="logits", axis=axis, weight=weight,
                           sample_weight=sample_weight, ignore_index=ignore_index, reduction=reduction)
    a = _arrays.as_array(alpha, "alpha")
    if a.dtype.kind not in "iuf":
        raise TypeError(f"alpha: expected real numbers, got dtype {a.dtype}")
    classes = args.input.shape[args.axis]
    if a.ndim and a.shape != (classes,):
        raise ValueError(f"alpha: shape {a.shape} must be () or ({classes},), one value per class")
    keep = args.target != args.ignore_index
    if a.ndim == 0:
        alpha_rows = np.full(args.target.shape, float(a))
    elif classes == 0:  # every row is ignored (a class index would be out of range): no alpha_t
        alpha_rows = np.zeros(args.target.shape)
    else:
        alpha_rows = np.where(keep, a.astype(np.float64)[np.clip(args.target, 0, classes - 1)], 0.0)
    # alpha_t multiplies each row outside "mean"'s normaliser: the core sums alpha_t-weighted rows,
    # and the mean divides by the summed weight[t] * sample_weight of the rows not ignored
    norm = float(np.sum(_row_weights(args))) if args.reduction == "mean" else 1.0
    row_weight = alpha_rows if args.sample_weight is None else alpha_rows * args.sample_weight
    args.sample_weight = row_weight.astype(args.compute)
    core_reduction = args.reduction
    if args.reduction == "mean":
        args.reduction = "sum"
    return_grad = _arrays.check_flag(return_grad, "return_grad")
    norm = np.float64(norm)  # 0 (every row ignored, or none): NaN as cross_entropy's mean, no exception
    with np.errstate(divide="ignore", invalid="ignore"):
        if return_grad and core_reduction == "mean":
            grad_output = float(np.float64(_arrays.real_scalar(grad_output, "grad_output", "a real number")) / norm)
        t = _arrays.check_temperature(temperature)
        out = _run(args, logits, return_grad, grad_output, out_grad, (), 0.0, t, 0.0, None, 0.0, "focal", g)
        if core_reduction != "mean":
            return out
        if return_grad:
            return args.result.type(np.float64(out[0]) / norm), out[1]
        return args.result.type(np.float64(out) / norm)


def poly1_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    epsilon: Real = 1.0,
    *,
    weight: ArrayLike | None = None,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    sample_weight: ArrayLike | None = None,
    temperature: Real = 1.0,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """Poly-1 cross-entropy (Leng et al., "PolyLoss"): loss_r = -log p_t + epsilon (1 - p_t), the
    second term weighted by weight[t] like the first; epsilon any finite number (the paper's
    default 1). Other arguments as focal_loss."""
    e = _arrays.real_scalar(epsilon, "epsilon", "a finite number")
    if not np.isfinite(e):
        raise ValueError(f"epsilon: must be finite, got {epsilon!r}")
    return _form_loss(logits, target, weight, "poly1", e, axis=axis, ignore_index=ignore_index, reduction=reduction,
                      sample_weight=sample_weight, temperature=temperature, return_grad=return_grad,
                      grad_output=grad_output, out_grad=out_grad)


def comp_sum_loss(
    logits: ArrayLike,
    target: ArrayLike,
    tau: Real = 1.0,
    *,
    weight: ArrayLike | None = None,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    sample_weight: ArrayLike | None = None,
    temperature: Real = 1.0,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """Comp-sum losses (Mao, Mohri & Zhong, "Cross-Entropy Loss Functions: Theoretical Analysis and
    Applications"): Phi^tau(u) of u = sum_{c != t} exp(z_c - z_t) = 1 / p_t - 1, i.e.
    loss_r = (p_t^(tau - 1) - 1) / (1 - tau), and -log p_t at tau = 1. tau = 0: sum-exponential
    (1 / p_t - 1); 1: cross-entropy; in (1, 2): generalised cross-entropy with q = tau - 1; 2: mean
    absolute error 1 - p_t. tau >= 0. Other arguments as focal_loss."""
    t = _parameter(tau, "tau", 0.0, "a finite number >= 0")
    return _form_loss(logits, target, weight, "comp_sum", t, axis=axis, ignore_index=ignore_index,
                      reduction=reduction, sample_weight=sample_weight, temperature=temperature,
                      return_grad=return_grad, grad_output=grad_output, out_grad=out_grad)


def generalized_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    q: Real = 0.7,
    *,
    weight: ArrayLike | None = None,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    sample_weight: ArrayLike | None = None,
    temperature: Real = 1.0,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """Generalised cross-entropy (Zhang & Sabuncu, "Generalized Cross Entropy Loss for Training Deep
    Neural Networks with Noisy Labels"): loss_r = (1 - p_t^q) / q, q in [0, 1] (the paper's default
    0.7; q -> 0 is cross-entropy, q = 1 the MAE): comp_sum_loss with tau = 1 + q."""
    qq = _parameter(q, "q", 0.0, "a number in [0, 1]")
    if qq > 1.0:
        raise ValueError(f"q: must be a number in [0, 1], got {q!r}")
    return _form_loss(logits, target, weight, "comp_sum", 1.0 + qq, axis=axis, ignore_index=ignore_index,
                      reduction=reduction, sample_weight=sample_weight, temperature=temperature,
                      return_grad=return_grad, grad_output=grad_output, out_grad=out_grad)


def ldr_kl_loss(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    lam: Real = 1.0,
    margin: Real = 2.0,
    weight: ArrayLike | None = None,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """LDR-KL loss (Zhu, Ying & Yang, "Label Distributionally Robust Losses for Multi-class
    Classification"): loss_r = lam log((1/C) sum_c exp((x_c + margin [c != t] - x_t) / lam)), the
    KL-regularised worst case over label distributions; lam > 0 (-> 0: the max-margin loss, large:
    the mean), margin >= 0 (defaults lam = 1, margin = 2, as the authors' reference LDRLoss_V1,
    without its softplus normalisation of the logits). Computed as lam (cross-entropy at
    temperature lam of the logits with the target's lowered by the margin) - lam log C, with the
    gradient softmax((x + margin [c != t]) / lam) - onehot(t). The adaptive per-sample lam variant
    (ALDR-KL) is not provided. Other arguments as focal_loss."""
    lam_v = _parameter(lam, "lam", 0.0, "a finite number > 0")
    if lam_v == 0.0:
        raise ValueError(f"lam: must be a finite number > 0, got {lam!r}")
    m = _parameter(margin, "margin", 0.0, "a finite number >= 0")
    args = _losses.prepare(logits, target, input_name="logits", axis=axis, weight=weight,
                           sample_weight=sample_weight, ignore_index=ignore_index, reduction=reduction)
    return_grad = _arrays.check_flag(return_grad, "return_grad")
    if return_grad:  # d loss / d x = lam d CE / d x: the upstream gradient times lam
        scale, rows = _losses.grad_output_args(grad_output, args)
        grad_output = lam_v * (scale if rows is None else np.asarray(rows, np.float64).reshape(args.batch_shape))
    out = _run(args, logits, return_grad, grad_output, out_grad, (), 0.0, lam_v, 0.0, None, m, "cross_entropy", 0.0)
    loss, grad = (out if return_grad else (out, None))
    shift = lam_v * np.log(args.input.shape[args.axis]) if args.input.shape[args.axis] else 0.0
    loss = _shifted(loss, lam_v, shift, args)
    return (loss, grad) if return_grad else loss


def _row_weights(args) -> np.ndarray:
    """w_r = weight[t_r] * sample_weight[r] per row, 0 for ignored rows: the rows' weights in the
    weighted mean (what the core sums as "mean"'s normaliser), in float64."""
    keep = args.target != args.ignore_index
    if args.weight is None:
        w = np.ones(args.target.shape)
    else:  # ignored rows look up class 0 (any class would do): with zero classes, nothing to look up
        table = np.asarray(args.weight, np.float64)
        w = table[np.where(keep, args.target, 0)] if table.size else np.zeros(args.target.shape)
    if args.sample_weight is not None:
        w = w * args.sample_weight
    return np.where(keep, w, 0.0)


def _shifted(loss, lam: float, shift: float, args):
    """lam * CE - w_r shift per row not ignored (w_r = weight[t] * sample_weight), reduced as the loss."""
    if args.reduction == "mean":  # a weighted mean of a constant is the constant
        return args.result.type(float(loss) * lam - shift)
    w = _row_weights(args)
    if args.reduction == "none":
        rows = np.asarray(loss, np.float64) * lam - (w * shift).reshape(args.batch_shape)
        return rows.astype(args.result)
    return args.result.type(float(loss) * lam - shift * float(np.sum(w)))


def _own_driver(core, logits, target, weight, p1, p2, *, axis, ignore_index, reduction, sample_weight, return_grad,
                grad_output, out_grad):
    args = _losses.prepare(logits, target, input_name="logits", axis=axis, weight=weight,
                           sample_weight=sample_weight, ignore_index=ignore_index, reduction=reduction)
    return _losses.run(core, args, logits, return_grad, grad_output, out_grad, p1, p2)


def stablemax_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    temperature: Real = 1.0,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """StableMax cross-entropy (Prieto et al., "Grokking at the Edge of Numerical Stability"): the
    negative log-likelihood of log_stablemax(logits / temperature), s(x) = x + 1 for x >= 0 and
    1 / (1 - x) below, p = s(x) / sum s(x). Fused (one pass for the sums, one for the gradient),
    with log p_t of a largest target as -log1p(rest / s_top) so that a confident row keeps its
    digits; weight, ignore_index, reduction, sample_weight and the gradient arguments as
    cross_entropy."""
    t = _arrays.check_temperature(temperature)
    return _own_driver(_core.stablemax_cross_entropy, logits, target, weight, t, 0.0, axis=axis,
                       ignore_index=ignore_index, reduction=reduction, sample_weight=sample_weight,
                       return_grad=return_grad, grad_output=grad_output, out_grad=out_grad)


def sparsemax_loss(
    logits: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    temperature: Real = 1.0,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """Sparsemax loss, the Fenchel-Young loss of sparsemax (Martins & Astudillo; Blondel, Martins &
    Niculae): with z = logits / temperature and p = sparsemax(z), loss_r = <p - e_t, z> +
    (1 - ||p||^2) / 2 >= 0, zero exactly when p = e_t; gradient (p - e_t) / temperature (as the
    entmax package's SparsemaxLoss). Other arguments as cross_entropy."""
    t = _arrays.check_temperature(temperature)
    return _own_driver(_core.fenchel_young_loss, logits, target, weight, 0.0, t, axis=axis,
                       ignore_index=ignore_index, reduction=reduction, sample_weight=sample_weight,
                       return_grad=return_grad, grad_output=grad_output, out_grad=out_grad)


def entmax15_loss(
    logits: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    temperature: Real = 1.0,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """1.5-entmax loss, the Fenchel-Young loss of 1.5-entmax (Peters, Niculae & Martins): with
    z = logits / temperature and p = entmax15(z), loss_r = <p - e_t, z> + (1 - sum p^1.5) / 0.75
    >= 0; gradient (p - e_t) / temperature (as the entmax package's Entmax15Loss). Other arguments
    as cross_entropy."""
    t = _arrays.check_temperature(temperature)
    return _own_driver(_core.fenchel_young_loss, logits, target, weight, 1.0, t, axis=axis,
                       ignore_index=ignore_index, reduction=reduction, sample_weight=sample_weight,
                       return_grad=return_grad, grad_output=grad_output, out_grad=out_grad)


def spherical_z_loss(
    logits: ArrayLike,
    target: ArrayLike,
    a: Real = 0.1,
    b: Real = 10.0,
    *,
    weight: ArrayLike | None = None,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """The Z-loss of de Brebisson & Vincent ("The Z-loss: a shift and scale invariant classification
    loss belonging to the Spherical Family"): with z = (x - mean(x)) / std(x) over the class axis
    (population std), loss_r = (1/a) softplus(a (b - z_t)), a > 0 the sharpness and b the target
    z-score's location (both tuned per task in the paper). Invariant to shifting and scaling a row;
    a row of equal logits has no z-scores and gives NaN. Not to be confused with cross_entropy's
    z_loss (PaLM's log^2 Z penalty). Other arguments as cross_entropy."""
    av = _parameter(a, "a", 0.0, "a finite number > 0")
    if av == 0.0:
        raise ValueError(f"a: must be a finite number > 0, got {a!r}")
    bv = _arrays.real_scalar(b, "b", "a finite number")
    if not np.isfinite(bv):
        raise ValueError(f"b: must be finite, got {b!r}")
    return _own_driver(_core.spherical_z_loss, logits, target, weight, av, bv, axis=axis, ignore_index=ignore_index,
                       reduction=reduction, sample_weight=sample_weight, return_grad=return_grad,
                       grad_output=grad_output, out_grad=out_grad)
