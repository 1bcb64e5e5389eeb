"""Billing's tests share tests/conftest.py's fixtures (``plans``, ``user``, ``staff``...)."""

from __future__ import annotations

from tests.factories import SH, sh  # noqa: F401 - imported from here by billing's tests
