"""Shared pytest fixtures: run an op on every SIMD backend this machine supports."""

from __future__ import annotations

import pytest

import logitkit

ISAS = logitkit.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test body with backend `request.param` active, then restores the previous one."""
    with logitkit.use_isa(request.param):
        yield request.param
