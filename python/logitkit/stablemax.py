"""stablemax ops: NumPy front ends of cpp/include/logitkit/stablemax.h."""

from __future__ import annotations

__all__: list[str] = []
