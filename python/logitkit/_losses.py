"""Argument handling shared by the losses on logits: the class axis, integer targets, class and
per-row weights, the reduction, and the gradient outputs (grad_output, out_grad). PyTorch's names
and semantics; every bad argument gets an error naming it."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np

from . import _arrays

REDUCTIONS = ("mean", "sum", "none")
_INT64 = np.iinfo(np.int64)
_INT64_MIN, _INT64_MAX = int(_INT64.min), int(_INT64.max)
_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_NATIVE_INDICES = (np.dtype(np.int32), np.dtype(np.int64))


@dataclass
class LossArgs:
    """A loss call with its arrays converted for the C++ core (compute dtype, native int targets)."""

    input: np.ndarray  # compute dtype, the class axis at `axis`
    target: np.ndarray  # int32 or int64, the batch shape
    weight: np.ndarray | None
    sample_weight: np.ndarray | None
    axis: int  # the class axis of `input` (1 after a batch beyond MAX_DIMS is flattened)
    class_axis: int  # the class axis of the caller's array
    ignore_index: int
    reduction: str
    result: np.dtype  # dtype of the returned loss and gradient
    compute: np.dtype
    batch_shape: tuple[int, ...]
    soft: bool = False  # target holds class probabilities of input's shape

    @property
    def rows_shape(self) -> tuple[int, ...]:
        """Shape of the per-row outputs the core writes (the batch, flattened beyond MAX_DIMS)."""
        if not self.soft:
            return self.target.shape
        return self.input.shape[: self.axis] + self.input.shape[self.axis + 1 :]


def _reduction(reduction) -> str:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def label_smoothing_value(label_smoothing) -> float:
    ls = _arrays.real_scalar(label_smoothing, "label_smoothing", "a number in [0, 1]")
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"label_smoothing: must be in [0, 1], got {label_smoothing!r}")
    return ls


def z_loss_value(z_loss) -> float:
    z = _arrays.real_scalar(z_loss, "z_loss", "a finite number >= 0")
    if not (z >= 0.0 and math.isfinite(z)):
        raise ValueError(f"z_loss: must be a finite number >= 0, got {z_loss!r}")
    return z


def softcap_value(softcap) -> float:
    """The cap, 0.0 for None (off)."""
    if softcap is None:
        return 0.0
    cap = _arrays.real_scalar(softcap, "softcap", "a finite number > 0, or None")
    if not (cap > 0.0 and math.isfinite(cap)):
        raise ValueError(f"softcap: must be a finite number > 0 (or None: off), got {softcap!r}")
    return cap


def sample_weights(sample_weight, batch_shape: tuple[int, ...], compute: np.dtype) -> np.ndarray | None:
    """Per-row weights broadcast to the batch shape, or None."""
    if sample_weight is None:
        return None
    sw = _float_array(sample_weight, "sample_weight", compute)
    try:
        return np.broadcast_to(sw, batch_shape)
    except ValueError:
        raise ValueError(
            f"sample_weight: shape {sw.shape} cannot be broadcast to the batch shape {batch_shape}"
        ) from None


def _class_axis(axis, ndim: int) -> int:
    if type(axis) is int and -ndim <= axis < ndim:  # the common case, cheaply
        return axis % ndim
    if isinstance(axis, bool | np.bool_) or not isinstance(axis, int | np.integer):
        raise TypeError(f"axis: expected an int (the class axis), got {type(axis).__name__}")
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim, "axis")
    return axis % ndim


def _target(target, batch_shape: tuple[int, ...], input_name: str) -> np.ndarray:
    try:
        t = _arrays.asarray_named(target, "target")
    except Exception as exc:
        raise TypeError(f"target: cannot convert to an array ({exc})") from None
    if t.dtype.kind not in "iu":
        raise TypeError(f"target: expected integer class indices, got dtype {t.dtype}")
    if t.shape != batch_shape:
        raise ValueError(
            f"target: shape {t.shape} does not match {input_name}'s shape without the class axis {batch_shape}"
        )
    if t.dtype in _NATIVE_INDICES:
        return t
    if t.dtype == np.dtype(np.uint64) and t.size and t.max() > _INT64.max:
        raise ValueError(f"target: class index {int(t.max())} is out of range")
    return t.astype(np.int64)


def _float_array(value, name: str, compute: np.dtype) -> np.ndarray:
    arr = _arrays.as_array(value, name)
    if arr.dtype.kind == "b":
        raise TypeError(f"{name}: expected real numbers, got dtype bool")
    return _arrays.to_compute(arr, compute)


def _soft_target(target, shape: tuple[int, ...], compute: np.dtype, input_name: str) -> np.ndarray:
    t = _float_array(target, "target", compute)
    if t.shape != shape:
        raise ValueError(f"target: probabilities must have {input_name}'s shape {shape}, got {t.shape}")
    return t


def prepare(
    input_, target, *, input_name: str, axis, weight, sample_weight, ignore_index, reduction, soft_targets=False
) -> LossArgs:
    """soft_targets: a floating-point target is taken as class probabilities of input's shape."""
    arr = _arrays.as_array(input_, input_name)
    if arr.ndim == 0:
        raise ValueError(f"{input_name}: expected at least 1 dimension (the class axis), got a 0-d array")
    ax = _class_axis(axis, arr.ndim)
    reduction = _reduction(reduction)
    ignore_index = _arrays.int_scalar(ignore_index, "ignore_index")
    if not _INT64_MIN <= ignore_index <= _INT64_MAX:
        raise ValueError(f"ignore_index: {ignore_index} is outside int64")
    if arr.dtype in _NATIVE_FLOATS:  # the common case, without the general promotion rules
        result = compute = arr.dtype
    else:
        result = _arrays.result_dtype(arr.dtype)
        compute = _arrays.compute_dtype(result)
    batch_shape = arr.shape[:ax] + arr.shape[ax + 1 :]
    soft = False
    if soft_targets:
        target_kind = getattr(target, "dtype", None)
        if target_kind is None:
            target_kind = _arrays.asarray_named(target, "target").dtype
        target_kind = np.dtype(target_kind)
        soft = target_kind.kind in "fc" or _arrays._is_reduced_float(target_kind)
    t = _soft_target(target, arr.shape, compute, input_name) if soft else _target(target, batch_shape, input_name)
    classes = arr.shape[ax]
    w = None
    if weight is not None:
        w = _float_array(weight, "weight", compute)
        if w.shape != (classes,):
            raise ValueError(f"weight: shape {w.shape} must be ({classes},), one weight per class")
    sw = sample_weights(sample_weight, batch_shape, compute)
    x = arr if arr.dtype == compute and arr.flags.aligned else _arrays.to_compute(arr, compute)
    class_axis = ax
    if x.ndim > _arrays.MAX_DIMS:  # the batch axes flattened (a copy where they are not mergeable)
        x = np.moveaxis(x, ax, -1).reshape(-1, classes)
        t = np.moveaxis(t, ax, -1).reshape(-1, classes) if soft else t.reshape(-1)
        sw = None if sw is None else sw.reshape(-1)
        ax = 1
    return LossArgs(x, t, w, sw, ax, class_axis, ignore_index, reduction, result, compute, batch_shape, soft)


def upstream_gradient(grad_output, reduction: str, compute: np.dtype, batch_shape: tuple[int, ...]):
    """(scalar upstream gradient, per-row upstream gradients of the batch shape or None). Per-row
    values only go with reduction="none"; a scalar works with every reduction."""
    if _arrays._is_real_scalar(grad_output):
        return _arrays.real_scalar(grad_output, "grad_output", "a real number"), None
    if reduction != "none":
        raise ValueError(f"grad_output: a reduced loss (reduction={reduction!r}) takes a scalar upstream gradient")
    rows = _float_array(grad_output, "grad_output", compute)
    try:
        return 1.0, np.broadcast_to(rows, batch_shape)
    except ValueError:
        raise ValueError(
            f"grad_output: shape {rows.shape} cannot be broadcast to the loss shape {batch_shape}"
        ) from None


def grad_output_args(grad_output, args: LossArgs) -> tuple[float, np.ndarray | None]:
    """upstream_gradient for a prepared loss call."""
    scale, rows = upstream_gradient(grad_output, args.reduction, args.compute, args.batch_shape)
    if rows is not None and args.rows_shape != args.batch_shape:  # flattened batch (beyond MAX_DIMS)
        rows = rows.reshape(-1)
    return scale, rows


def grad_target(out_grad, input_shape: tuple[int, ...], args: LossArgs) -> tuple[np.ndarray, np.ndarray | None]:
    """(array the kernel writes the gradient to, out_grad to copy it into afterwards or None)."""
    if out_grad is not None:
        _arrays.check_out(out_grad, input_shape, args.result, "out_grad")
        direct = _arrays.writable_target(out_grad, args.compute)
        if direct is not None and args.input.shape == input_shape:
            return direct, None
    return np.empty(args.input.shape, args.compute), out_grad


def finish_grad(tmp: np.ndarray, out_grad, input_shape: tuple[int, ...], args: LossArgs) -> np.ndarray:
    if tmp.shape != input_shape:  # undo the flattening of a batch beyond MAX_DIMS
        moved = np.moveaxis(np.empty(input_shape, np.bool_), args.class_axis, -1).shape
        tmp = np.moveaxis(tmp.reshape(moved), -1, args.class_axis)
    if out_grad is not None:
        if tmp is not out_grad:
            np.copyto(out_grad, tmp, casting="unsafe")
        return out_grad
    return tmp if tmp.dtype == args.result else tmp.astype(args.result)


def finish_loss(value: float, rows: np.ndarray | None, args: LossArgs):
    """The loss in the result dtype: a NumPy scalar when reduced, the batch-shaped array for "none"."""
    if args.reduction == "none":
        rows = rows.reshape(args.batch_shape)
        return rows if rows.dtype == args.result else rows.astype(args.result)
    return args.result.type(value)


def run(core, args: LossArgs, input_, return_grad, grad_output, out_grad, *extra, collect=None):
    """Calls the C++ loss `core` (the signature every loss binding shares, then `extra`) and
    returns the loss, or (loss, grad) with return_grad. collect: called with the core's raw result
    (when it returns a tuple, the loss comes first), its value appended to what is returned."""
    return_grad = _arrays.check_flag(return_grad, "return_grad")
    input_shape = tuple(np.shape(input_))
    rows = np.empty(args.rows_shape, args.compute) if args.reduction == "none" else None
    grad = out_target = None
    scale, scale_rows = 1.0, None
    if return_grad:
        scale, scale_rows = grad_output_args(grad_output, args)
        grad, out_target = grad_target(out_grad, input_shape, args)
    elif out_grad is not None:
        raise ValueError("out_grad: given without return_grad=True")
    raw = core(args.input, args.target, args.weight, args.sample_weight, rows, grad, scale, scale_rows, args.axis,
               args.ignore_index, args.reduction, *extra)
    loss = finish_loss(raw[0] if isinstance(raw, tuple) else raw, rows, args)
    out = (loss, finish_grad(grad, out_target, input_shape, args)) if return_grad else (loss,)
    if collect is not None:
        out += (collect(raw),)
    return out if len(out) > 1 else loss
