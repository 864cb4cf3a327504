"""masked_softmax ops: NumPy front ends of cpp/include/logitkit/masked_softmax.h."""

from __future__ import annotations

__all__: list[str] = []
