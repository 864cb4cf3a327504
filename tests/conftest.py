"""Shared pytest fixtures: run an op on every SIMD backend this machine supports."""

from __future__ import annotations

import logitkit
import pytest

ISAS = logitkit.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test body with backend `request.param` active, then restores the previous one."""
    with logitkit.use_isa(request.param):
        yield request.param


@pytest.fixture
def threads():
    """Restores the thread count a test changes."""
    before = logitkit.get_num_threads()
    yield
    logitkit.set_num_threads(before)
