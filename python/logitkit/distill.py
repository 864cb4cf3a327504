"""Distillation losses on logits, fused: kl_div, jsd and tvd between softmax(student / T) and
softmax(teacher / T), with the gradient with respect to the student's logits. NumPy front end of
cpp/include/logitkit/distill.h."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from . import _arrays, _core, _losses
from ._arrays import Real, Result

__all__ = ["dkd_loss", "jsd", "kl_div", "kl_div_topk", "nkd_loss", "tvd"]

_REDUCTIONS = ("batchmean", "sum", "none", "mean")
_DIRECTIONS = ("forward", "reverse")


def _divergence_reduction(reduction) -> str:
    """The reduction prepare() runs: "batchmean" and PyTorch's elementwise "mean" both run as the
    mean over rows (the latter divided by C afterwards, in _run_divergence)."""
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected 'batchmean', 'sum', 'none' or 'mean', got {reduction!r}")
    return "mean" if reduction in ("batchmean", "mean") else reduction


def _student_and_teacher(student_logits, teacher_logits):
    """The two logit arrays, checked: real dtypes (integer teachers as float64), equal shapes."""
    student = _arrays.as_array(student_logits, "student_logits")
    if student.dtype.kind == "b":
        raise TypeError("student_logits: expected real logits, got dtype bool")
    t = _arrays.as_array(teacher_logits, "teacher_logits")
    if not _arrays._is_supported_float(t.dtype):
        if t.dtype.kind not in "iu":
            raise TypeError(f"teacher_logits: expected real logits, got dtype {t.dtype}")
        t = t.astype(np.float64)
    if student.shape != t.shape:
        raise ValueError(f"teacher_logits: shape {t.shape} must equal student_logits's shape {student.shape}")
    return student, t


def _run_divergence(core, args, student, reduction, return_grad, grad_output, out_grad, *extra):
    """_losses.run, and for PyTorch's elementwise "mean" the batch mean divided by C (the upstream
    gradient too)."""
    return_grad = _arrays.check_flag(return_grad, "return_grad")
    if reduction != "mean":
        return _losses.run(core, args, student, return_grad, grad_output, out_grad, *extra)
    classes = max(args.input.shape[args.axis], 1)
    if return_grad:
        grad_output = _arrays.real_scalar(grad_output, "grad_output", "a real number") / classes
    result = _losses.run(core, args, student, return_grad, grad_output, out_grad, *extra)
    if return_grad:
        return args.result.type(result[0] / classes), result[1]
    return args.result.type(result / classes)


def _distill(student, teacher, divergence, *, temperature, temperature_squared, beta, axis, reduction,
             sample_weight, return_grad, grad_output, out_grad):
    core_reduction = _divergence_reduction(reduction)
    student, t = _student_and_teacher(student, teacher)
    args = _losses.prepare(student, t, input_name="student_logits", axis=axis, weight=None,
                           sample_weight=sample_weight, ignore_index=-100, reduction=core_reduction,
                           soft_targets=True)
    temp = _arrays.check_temperature(temperature)
    squared = _arrays.check_flag(temperature_squared, "temperature_squared")
    return _run_divergence(_core.distill_loss, args, student, reduction, return_grad, grad_output, out_grad,
                           divergence, temp, squared, beta)


def kl_div(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: Real = 1.0,
    direction: str = "forward",
    temperature_squared: bool = True,
    axis: int = -1,
    reduction: str = "batchmean",
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """Knowledge-distillation KL divergence between p = softmax(student_logits / T) and
    q = softmax(teacher_logits / T) along `axis`, fused (each row read for its max and exp values,
    no probabilities stored).

    direction="forward": KL(q || p) = sum q log(q / p), Hinton's distillation loss and what
    torch.nn.functional.kl_div(log_softmax(student / T), log_softmax(teacher / T), log_target=True)
    computes; "reverse": KL(p || q) (mode-seeking). temperature_squared (on by default): the loss
    times T^2, so that the gradient's scale does not depend on T (Hinton et al.); switch it off for
    the plain divergence. Terms with a zero probability add 0 (0 log 0 = 0), also against -inf
    logits (masked classes).

    reduction: "batchmean" (default; the sum over rows divided by the number of rows, or by the
    summed sample_weight), "sum", "none" (one loss per row, the batch shape), or "mean" (PyTorch's
    elementwise mean: batchmean divided by the number of classes). sample_weight (broadcast to the
    batch shape) scales each row. return_grad=True returns (loss, grad), grad = d loss /
    d student_logits scaled by grad_output (a scalar, or per row for reduction="none"); out_grad:
    an array of the student's shape and result dtype to write it into, which may be the student's
    logits themselves. float16/bfloat16 inputs are computed in float32; results do not depend on
    the thread count.
    """
    if not isinstance(direction, str) or direction not in _DIRECTIONS:
        raise ValueError(f"direction: expected 'forward' or 'reverse', got {direction!r}")
    return _distill(student_logits, teacher_logits, direction, temperature=temperature,
                    temperature_squared=temperature_squared, beta=0.5, axis=axis, reduction=reduction,
                    sample_weight=sample_weight, return_grad=return_grad, grad_output=grad_output, out_grad=out_grad)


def jsd(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    beta: Real = 0.5,
    temperature: Real = 1.0,
    temperature_squared: bool = True,
    axis: int = -1,
    reduction: str = "batchmean",
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """Generalised Jensen-Shannon divergence beta KL(q || m) + (1 - beta) KL(p || m), m = beta q +
    (1 - beta) p, between p = softmax(student_logits / T) and q = softmax(teacher_logits / T), as
    Liger-Kernel's and TRL's generalised JSD (GKD): beta = 0.5 is the symmetric JSD, and beta = 0
    and beta = 1 are taken as the forward KL(q || p) and the reverse KL(p || q) (the mixture formula
    itself vanishes there). Other arguments as kl_div (T^2 scaling on by default)."""
    b = _arrays.real_scalar(beta, "beta", "a number in [0, 1]")
    if not 0.0 <= b <= 1.0:
        raise ValueError(f"beta: must be in [0, 1], got {beta!r}")
    return _distill(student_logits, teacher_logits, "jsd", temperature=temperature,
                    temperature_squared=temperature_squared, beta=b, axis=axis, reduction=reduction,
                    sample_weight=sample_weight, return_grad=return_grad, grad_output=grad_output, out_grad=out_grad)


def tvd(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    *,
    temperature: Real = 1.0,
    temperature_squared: bool = True,
    axis: int = -1,
    reduction: str = "batchmean",
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """Total variation distance (1/2) sum |p - q| between p = softmax(student_logits / T) and
    q = softmax(teacher_logits / T); its gradient takes sign(0) = 0. Other arguments as kl_div."""
    return _distill(student_logits, teacher_logits, "tvd", temperature=temperature,
                    temperature_squared=temperature_squared, beta=0.5, axis=axis, reduction=reduction,
                    sample_weight=sample_weight, return_grad=return_grad, grad_output=grad_output, out_grad=out_grad)


def kl_div_topk(
    student_logits: ArrayLike,
    teacher_logprobs: ArrayLike,
    teacher_ids: ArrayLike,
    *,
    temperature: Real = 1.0,
    temperature_squared: bool = True,
    axis: int = -1,
    reduction: str = "batchmean",
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """Forward-KL distillation from a sparse teacher, as a serving engine returns it: its top-k
    log-probabilities `teacher_logprobs` and their class ids `teacher_ids` (int), both of the
    student's shape with the class axis's extent k, never densified.

    The teacher's distribution is q = softmax(teacher_logprobs / T) over its k classes (its top-k
    mass renormalised; -inf entries get q = 0), the student's p = softmax(student_logits / T) over
    all classes, and the loss per row is (T^2) sum_j q_j log(q_j / p[id_j]); the gradient with
    respect to the student is (T^2 / T) (p - q scattered to the ids): one read and one write of
    the student's row, k values of the teacher's. Ids must lie in [0, C) and be distinct within a
    row (ValueError naming teacher_ids). Other arguments as kl_div."""
    core_reduction = _divergence_reduction(reduction)
    student = _arrays.as_array(student_logits, "student_logits")
    if student.dtype.kind == "b":
        raise TypeError("student_logits: expected real logits, got dtype bool")
    if student.ndim == 0:
        raise ValueError("student_logits: expected at least 1 dimension (the class axis), got a 0-d array")
    ax = _losses._class_axis(axis, student.ndim)
    batch_shape = student.shape[:ax] + student.shape[ax + 1 :]
    args = _losses.prepare(student, np.zeros(batch_shape, np.int32), input_name="student_logits", axis=axis,
                           weight=None, sample_weight=sample_weight, ignore_index=-100, reduction=core_reduction)
    lq = _losses._float_array(teacher_logprobs, "teacher_logprobs", args.compute)
    ids = _arrays.as_array(teacher_ids, "teacher_ids")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"teacher_ids: expected integer class ids, got dtype {ids.dtype}")
    if lq.ndim != student.ndim or lq.shape[:ax] + lq.shape[ax + 1 :] != batch_shape:
        raise ValueError(f"teacher_logprobs: shape {lq.shape} must be student_logits's shape {student.shape} "
                         f"with the class axis's extent k")
    if ids.shape != lq.shape:
        raise ValueError(f"teacher_ids: shape {ids.shape} must equal teacher_logprobs's shape {lq.shape}")
    if ids.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        if ids.dtype == np.dtype(np.uint64) and ids.size and ids.max() > np.iinfo(np.int64).max:
            raise ValueError(f"teacher_ids: class id {int(ids.max())} is out of range")
        ids = ids.astype(np.int64)
    if args.input.ndim != student.ndim:  # the batch flattened beyond MAX_DIMS, as prepare does
        k = lq.shape[ax]
        lq = np.moveaxis(lq, ax, -1).reshape(-1, k)
        ids = np.moveaxis(ids, ax, -1).reshape(-1, k)
    temp = _arrays.check_temperature(temperature)
    squared = _arrays.check_flag(temperature_squared, "temperature_squared")

    def core(x, _target, _weight, sw, rows, grad, scale, scale_rows, ax_, _ignore, red):
        return _core.distill_topk_loss(x, lq, ids, sw, rows, grad, scale, scale_rows, ax_, red, temp, squared)

    return _run_divergence(core, args, student, reduction, return_grad, grad_output, out_grad)


def _target_distill(kind, student_logits, teacher_logits, target, *, temperature, alpha, beta, gamma, axis,
                    ignore_index, reduction, sample_weight, return_grad, grad_output, out_grad):
    student, t = _student_and_teacher(student_logits, teacher_logits)
    args = _losses.prepare(student, target, input_name="student_logits", axis=axis, weight=None,
                           sample_weight=sample_weight, ignore_index=ignore_index, reduction=reduction)
    t = _arrays.to_compute(t, args.compute)
    if args.input.ndim != student.ndim:  # the batch flattened beyond MAX_DIMS, as prepare does
        t = np.moveaxis(t, args.class_axis, -1).reshape(args.input.shape)
    temp = _arrays.check_temperature(temperature)
    params = []
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        v = _arrays.real_scalar(value, name, "a finite number")
        if not np.isfinite(v):
            raise ValueError(f"{name}: must be finite, got {value!r}")
        params.append(v)

    def core(x, tgt, _weight, sw, rows, grad, scale, scale_rows, ax, ignore, red):
        return _core.distill_target_loss(x, t, tgt, sw, rows, grad, scale, scale_rows, ax, ignore, red, kind, temp,
                                         *params)

    return _losses.run(core, args, student, return_grad, grad_output, out_grad)


def dkd_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    target: ArrayLike,
    *,
    alpha: Real = 1.0,
    beta: Real = 8.0,
    temperature: Real = 4.0,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """Decoupled knowledge distillation (Zhao et al., "Decoupled Knowledge Distillation"): per row,
    T^2 (alpha TCKD + beta NCKD) with p = softmax(student / T), q = softmax(teacher / T), TCKD the
    KL between the binary target / non-target splits [q_t, 1 - q_t] and [p_t, 1 - p_t], and NCKD
    the KL between teacher and student over the non-target classes (renormalised without the
    target). Defaults alpha = 1, beta = 8, T = 4 (the authors' CIFAR-100 setting). The non-target
    sums leave the target out rather than subtracting it, so a confident teacher (q_t near 1) keeps
    NCKD's digits. target: class indices (ignore_index rows add nothing); reduction "mean" (the
    mean over rows not ignored, weighted by sample_weight; the authors' batch mean), "sum" or
    "none"; gradient arguments as cross_entropy (with respect to the student)."""
    return _target_distill("dkd", student_logits, teacher_logits, target, temperature=temperature, alpha=alpha,
                           beta=beta, gamma=0.0, axis=axis, ignore_index=ignore_index, reduction=reduction,
                           sample_weight=sample_weight, return_grad=return_grad, grad_output=grad_output,
                           out_grad=out_grad)


def nkd_loss(
    student_logits: ArrayLike,
    teacher_logits: ArrayLike,
    target: ArrayLike,
    *,
    gamma: Real = 1.5,
    temperature: Real = 1.0,
    axis: int = -1,
    ignore_index: int = -100,
    reduction: str = "mean",
    sample_weight: ArrayLike | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grad: np.ndarray | None = None,
) -> Result | tuple[Result, np.ndarray]:
    """Normalized knowledge distillation (Yang et al., "From Knowledge Distillation to
    Self-Knowledge Distillation: A Unified Approach with Normalized Loss and Customized Soft
    Labels"), as the authors' NKDLoss: per row -q_t log p_t (both softmax at temperature 1) minus
    gamma T^2 sum_{c != t} q^_c log p^_c, where p^ and q^ are the student's and teacher's
    softmax(logits / T) over the non-target classes. Defaults gamma = 1.5, T = 1. Other arguments as
    dkd_loss."""
    return _target_distill("nkd", student_logits, teacher_logits, target, temperature=temperature, alpha=0.0,
                           beta=0.0, gamma=gamma, axis=axis, ignore_index=ignore_index, reduction=reduction,
                           sample_weight=sample_weight, return_grad=return_grad, grad_output=grad_output,
                           out_grad=out_grad)
