"""Moved to tests/fakes.py; kept so that older imports still work."""

from tests.fakes import FakeDriver, FakeLogStream, FakeTerminal  # noqa: F401
