"""sparsemax ops: NumPy front ends of cpp/include/logitkit/sparsemax.h."""

from __future__ import annotations

__all__: list[str] = []
