"""Storage's tests: ``driver`` (tests/conftest.py) reports a volume's bytes from ``driver.usage``."""

from __future__ import annotations

from tests.factories import GIB, SH, sh  # noqa: F401 - imported from here by storage's tests
