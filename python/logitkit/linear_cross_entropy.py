"""Cross-entropy of a linear head's logits without forming them (Cut Cross-Entropy on CPU): NumPy
front end of cpp/include/logitkit/linear_cross_entropy.h, with torch.nn.functional.
linear_cross_entropy's argument names and cross_entropy's semantics."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from . import _arrays, _core, _losses
from ._arrays import Real, Result

__all__ = ["linear_cross_entropy"]

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def linear_cross_entropy(
    input: ArrayLike,  # noqa: A002 (torch's name)
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: Real = 0.0,
    z_loss: Real = 0.0,
    softcap: Real | None = None,
    filter_eps: Real | None = None,
    return_grad: bool = False,
    grad_output: ArrayLike = 1.0,
    out_grads: tuple | None = None,
    accumulate: bool = False,
    return_stats: bool = False,
    chunk_rows: int | None = None,
    bfloat16_gradient: bool = False,
) -> Result | tuple:
    """cross_entropy(input @ linear_weight.T + linear_bias, target, ...) and its gradients with
    respect to input, linear_weight and linear_bias, without the (N, V) logits: they are formed a
    chunk of about N / 64 rows at a time by logitkit's GEMM, turned into their loss and gradient in
    place, and multiplied back (three GEMMs, the minimum). Peak extra memory is that chunk, about
    1.6% of N * V elements (at least 32 rows' worth).

    input (..., D), linear_weight (V, D), target (...) integer class indices in [0, V) or
    ignore_index. linear_bias (V,), weight (V,) class weights, sample_weight (broadcast to the
    batch shape), ignore_index, reduction, label_smoothing, z_loss and softcap mean exactly what
    they mean for logitkit.cross_entropy (PyTorch's semantics; z_loss and softcap as Liger-Kernel
    and Gemma 2). float32 and float64 compute in their dtype; bfloat16 (ml_dtypes) input and
    linear_weight are read in place (no float32 copy), with float32 accumulation and float32
    gradients: the logits product runs on the CPU's bfloat16 dot product where the active ISA has
    one ("avx512bf16"), else widened to float32 in the GEMM's packing. bfloat16_gradient=True
    (bfloat16 operands only) also rounds each chunk's logit gradient to bfloat16 before the d_input
    and d_linear_weight products, so that they run on the bfloat16 dot product too, as torch's
    bfloat16 path and the GPU implementations do: about 1.4x faster backward on avx512bf16, each
    gradient term carrying a bfloat16 rounding (relative 2^-9). Other dtypes are converted to
    float32 (integers to float64). Any strides are read in place.

    filter_eps > 0: Cut Cross-Entropy's gradient filter: blocks of 256 vocabulary entries of a row
    chunk whose gradient entries are all below filter_eps (in softmax-probability units) are left
    out of the gradient products. None or 0: exact.

    return_grad=True returns (loss, d_input, d_linear_weight), plus d_linear_bias when linear_bias
    is given; grad_output scales them (a scalar, or per row for reduction="none"). out_grads: a
    tuple of arrays of those shapes (compute dtype, writable) to write them into; accumulate=True
    adds to them instead (frameworks accumulate weight gradients across micro-batches).
    return_stats=True appends a dict {"blocks", "skipped"}: gradient blocks formed and skipped by
    filter_eps. chunk_rows: rows whose logits are held at once (None: about N / 64, 32 to 512);
    more rows trade memory for speed. Results do not depend on the thread count (d_linear_weight's
    bits depend on chunk_rows, which sets the order of its sum).
    """
    x = _arrays.as_array(input, "input")
    w = _arrays.as_array(linear_weight, "linear_weight")
    if x.ndim < 1:
        raise ValueError("input: expected at least 1 dimension (..., D), got a 0-d array")
    if w.ndim != 2:
        raise ValueError(f"linear_weight: expected a 2-D array (V, D), got {w.ndim} dimensions")
    if w.shape[1] != x.shape[-1]:
        raise ValueError(f"linear_weight: has {w.shape[1]} columns, but input's last axis has {x.shape[-1]}")
    if w.shape[0] == 0:
        raise ValueError("linear_weight: has no rows; the loss needs at least one class")
    reduction = _losses._reduction(reduction)
    ignore_index = _arrays.int_scalar(ignore_index, "ignore_index")
    if not -(2**63) <= ignore_index < 2**63:
        raise ValueError(f"ignore_index: {ignore_index} is outside int64")
    return_grad = _arrays.check_flag(return_grad, "return_grad")
    accumulate = _arrays.check_flag(accumulate, "accumulate")
    return_stats = _arrays.check_flag(return_stats, "return_stats")
    bfloat16_gradient = _arrays.check_flag(bfloat16_gradient, "bfloat16_gradient")

    bf16 = _arrays.bfloat16_dtype()
    if bf16 is not None and x.dtype == bf16 and w.dtype == bf16:
        compute, bits = _F32, True
    else:
        compute = _arrays.compute_dtype(_arrays.result_dtype(x.dtype, w.dtype))
        bits = False
        if bfloat16_gradient:
            raise ValueError("bfloat16_gradient: needs bfloat16 input and linear_weight (ml_dtypes), got "
                             f"{x.dtype} and {w.dtype}")
    batch_shape = x.shape[:-1]
    vocab, dim = w.shape
    xs = x.reshape(-1, dim) if x.ndim != 2 else x
    if bits:
        xs, w = _bits(xs), _bits(w)
    else:
        xs, w = _arrays.to_compute(xs, compute), _arrays.to_compute(w, compute)
    t = _losses._target(target, batch_shape, "input").reshape(-1)
    b = _vector(linear_bias, "linear_bias", compute, vocab)
    cw = _vector(weight, "weight", compute, vocab)
    sw = _losses.sample_weights(sample_weight, batch_shape, compute)
    if sw is not None:
        sw = sw.reshape(-1)
    ls = _losses.label_smoothing_value(label_smoothing)
    z = _losses.z_loss_value(z_loss)
    cap = _losses.softcap_value(softcap)
    eps = 0.0
    if filter_eps is not None:
        eps = _arrays.real_scalar(filter_eps, "filter_eps", "a finite number >= 0, or None")
        if not (eps >= 0.0 and math.isfinite(eps)):
            raise ValueError(f"filter_eps: must be a finite number >= 0 (or None: exact), got {filter_eps!r}")

    chunk = 0
    if chunk_rows is not None:
        chunk = _arrays.int_scalar(chunk_rows, "chunk_rows")
        if not 1 <= chunk < 2**62:
            raise ValueError(f"chunk_rows: must be a positive int (or None: automatic), got {chunk_rows!r}")
    rows = np.empty(t.shape, compute) if reduction == "none" else None
    grads = (None, None, None)
    scale, scale_rows = 1.0, None
    if return_grad:
        scale, scale_rows = _losses.upstream_gradient(grad_output, reduction, compute, batch_shape)
        if scale_rows is not None:
            scale_rows = scale_rows.reshape(-1)
        grads = _grad_outputs(out_grads, accumulate, x.shape, (vocab, dim), b is not None, compute)
    elif out_grads is not None:
        raise ValueError("out_grads: given without return_grad=True")
    elif accumulate:
        raise ValueError("accumulate: needs return_grad=True")
    d_x = None if grads[0] is None else (grads[0].reshape(-1, dim) if grads[0].ndim != 2 else grads[0])
    try:
        value, blocks, skipped = _core.linear_cross_entropy(
            xs, w, t, b, cw, sw, rows, d_x, grads[1], grads[2], scale, scale_rows, ignore_index, reduction, ls, z,
            cap, eps, accumulate, chunk, bfloat16_gradient,
        )
    except ValueError as exc:  # the core names the gradient; the caller passed it as out_grads
        if out_grads is not None and str(exc).startswith(("d_input:", "d_linear_weight:", "d_linear_bias:")):
            raise ValueError(f"out_grads: {exc}") from None
        raise
    loss = rows.reshape(batch_shape) if reduction == "none" else compute.type(value)
    out = (loss,)
    if return_grad:
        out += tuple(g for g in grads if g is not None)
    if return_stats:
        out += ({"blocks": int(blocks), "skipped": int(skipped)},)
    return out if len(out) > 1 else loss


def _bits(a: np.ndarray) -> np.ndarray:
    """A bfloat16 array's uint16 bits, item-aligned."""
    if not a.flags.aligned:
        a = a.copy()
    return a.view(np.uint16)


def _vector(value, name: str, compute: np.dtype, length: int) -> np.ndarray | None:
    if value is None:
        return None
    v = _losses._float_array(value, name, compute)
    if v.shape != (length,):
        raise ValueError(f"{name}: shape {v.shape} must be ({length},), one value per class")
    return v


def _grad_outputs(out_grads, accumulate: bool, input_shape, weight_shape, with_bias: bool, compute: np.dtype):
    shapes = [input_shape, weight_shape] + ([(weight_shape[0],)] if with_bias else [])
    names = ["d_input", "d_linear_weight", "d_linear_bias"][: len(shapes)]
    if out_grads is None:
        if accumulate:
            raise ValueError("accumulate: needs out_grads, the arrays to add the gradients to")
        arrays = [np.empty(s, compute) for s in shapes]
    else:
        if not isinstance(out_grads, tuple | list) or len(out_grads) != len(shapes):
            raise ValueError(f"out_grads: expected a tuple of {len(shapes)} arrays ({', '.join(names)})")
        arrays = list(out_grads)
        for a, s, name in zip(arrays, shapes, names, strict=True):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"out_grads: {name} must be a NumPy array, got {type(a).__name__}")
            if a.shape != tuple(s):
                raise ValueError(f"out_grads: {name} must have shape {tuple(s)}, got {a.shape}")
            if a.dtype != compute:
                raise TypeError(f"out_grads: {name} must have dtype {compute}, got {a.dtype}")
            if not a.flags.writeable or not a.flags.aligned:
                raise ValueError(f"out_grads: {name} must be writable and aligned")
            _arrays.check_no_self_overlap(a, "out_grads", f"the rows of {name}")
        if arrays[0].ndim != 2 and arrays[0].reshape(-1, shapes[1][1]).base is None:
            raise ValueError("out_grads: d_input must be reshapeable to (N, D) without a copy")
    return tuple(arrays) + (None,) * (3 - len(arrays))
