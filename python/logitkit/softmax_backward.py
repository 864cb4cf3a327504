"""softmax_backward ops: NumPy front ends of cpp/include/logitkit/softmax_backward.h."""

from __future__ import annotations

__all__: list[str] = []
