"""GPU jobs' tests share tests/conftest.py's fixtures (``cards``, ``make_job``, ``subscribe``...).

``portal_driver``: the portal's driver is a LocalDriver pointed at a private
agent (tests/cluster/conftest.py) that runs real processes.
"""

from __future__ import annotations

import pytest

from tests.cluster.conftest import agent, start_agent  # noqa: F401 - fixtures
from tests.factories import DCU, SH, sh  # noqa: F401 - imported from here by gpu_jobs' tests


@pytest.fixture
def portal_driver(agent, use_driver):  # noqa: F811 - the imported fixture
    return use_driver(agent.driver)
