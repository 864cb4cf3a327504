"""entropy ops: NumPy front ends of cpp/include/logitkit/entropy.h."""

from __future__ import annotations

__all__: list[str] = []
