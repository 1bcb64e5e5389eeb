"""The CLI against a real portal: the process set of `make run` (tests/e2e/conftest.py)."""

from tests.e2e.conftest import portal  # noqa: F401 - the session's portal fixture
