"""Backend (ISA) and thread controls; see cpp/include/logitkit/runtime.h."""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator

import numpy as np

from . import _core

__all__ = ["available_isas", "get_num_threads", "isa", "set_isa", "set_num_threads", "use_isa"]


def isa() -> str:
    """The active SIMD backend: "scalar", "avx2", "avx512", "avx512bf16" or "neon".

    "avx512bf16" is avx512 plus the CPU's bfloat16 dot product (Zen 4, Cooper Lake, Sapphire
    Rapids and later), which bfloat16 linear_cross_entropy uses for its logits; every other op
    runs avx512's kernels there.

    Raises ValueError if the environment variable LOGITKIT_ISA names a backend that is unknown
    or cannot run on this CPU (until set_isa() picks a valid one)."""
    return _core.isa()


def available_isas() -> list[str]:
    """Backends compiled in and supported by this CPU, best last."""
    return list(_core.available_isas())


def set_isa(name: str) -> None:
    """Switches the backend for the whole process. ValueError for unknown/unsupported names."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a str, got {type(name).__name__}")
    try:
        _core.set_isa(name)
    except ValueError as exc:  # C++ calls the argument "isa"; here it is `name`
        raise ValueError(f"name: {str(exc).removeprefix('isa: ')}") from None


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Context manager that runs its body on backend `name`, then restores the previous one."""
    previous = _core.isa()
    set_isa(name)
    try:
        yield
    finally:
        _core.set_isa(previous)


def get_num_threads() -> int:
    """Threads used by kernels (LOGITKIT_NUM_THREADS, else the CPU count)."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Sets the kernel thread count (>= 1). Results are bitwise identical for every count."""
    if isinstance(n, bool | np.bool_):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    try:
        n = operator.index(n)  # NumPy integers too
    except TypeError:
        raise TypeError(f"n: expected an int, got {type(n).__name__}") from None
    if not 1 <= n <= 1024:
        raise ValueError(f"n: number of threads must be in [1, 1024], got {n}")
    _core.set_num_threads(n)
