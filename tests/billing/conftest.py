"""Billing's tests share tests/conftest.py's fixtures (``plans``, ``user``, ``staff``...)."""

from __future__ import annotations

import pytest
import time_machine

from tests.factories import SH, sh  # noqa: F401 - imported from here by billing's tests

# The moment the page, API and payment tests live in (a Sunday in May, noon in Shanghai).
NOW = sh(2026, 5, 10, 12)


@pytest.fixture
def frozen_now():
    """Time stands still at ``NOW`` for the test (``pytest.mark.usefixtures("frozen_now")``)."""
    with time_machine.travel(NOW, tick=False):
        yield NOW
