"""How ``make test`` shares the tests between its pytest-xdist workers.

A worker takes a test file's tests together (as ``--dist loadfile``), so a
file's module-scoped fixtures (an SSH gateway's portal, a seeded database)
start once, not once per worker that happened to get some of its tests. The
files that run on the torch image (``TORCH_IMAGE_FILES``) form one unit: the
image takes a worker a minute to build (tests/cluster/conftest.py,
``BuiltImages``), and built on one worker it is built once. Images cannot be
shared between workers instead: an agent owns its images root (it fails
and removes another agent's unfinished build at its start).

The order pytest-django gives the tests is kept on every worker: tests in a
transaction first, then those that commit (their end empties the tables,
the migrations' seeded plans and cards with them), then those without the
database (the browser tests: Playwright's event loop stays in the thread,
where Django then refuses database calls). So a unit is a run of one file's
tests in that order, not the whole file: a file with both kinds is two
units, each in its place in the queue. The torch image's unit takes the
place of its first test, which commits; its other tests commit or use no
database.

Only for the default ``--dist load`` (``make test`` gives no other): an
explicit ``--dist`` is left to xdist.
"""

from __future__ import annotations

import pytest

# Test files whose tests build or run the test torch image (TORCH_RECIPE).
TORCH_IMAGE_FILES = frozenset(
    {
        "tests/cluster/test_images.py",
        "tests/gpu_jobs/test_cuda_check_job.py",
        "tests/gpu_jobs/test_task_torchrun.py",
    }
)
TORCH_IMAGE_UNIT = "torch image"


def units(collection: list[str]) -> dict[str, str]:
    """Each test's work unit, from the collection in pytest-django's order.

    A unit is a run of consecutive tests of one file (named ``path #n``),
    except that every test of ``TORCH_IMAGE_FILES`` is in one unit.
    """
    found: dict[str, str] = {}
    runs = 0
    previous = None
    for nodeid in collection:
        path = nodeid.split("::", 1)[0]
        if path != previous:
            runs += 1
            previous = path
        found[nodeid] = TORCH_IMAGE_UNIT if path in TORCH_IMAGE_FILES else f"{path} #{runs}"
    return found


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    # Units in the collection's order (above), never sorted by size, which
    # would run a file's tests that commit before another file's in a transaction.
    config.option.loadscopereorder = False

    class FileScheduling(LoadScopeScheduling):
        """xdist's scope scheduling (a unit's tests on one worker, units in order) with our units."""

        _units: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            # Asked first for each test of the collection, in order, once
            # the workers agree on it (LoadScopeScheduling.schedule).
            if self._units is None:
                self._units = units(self.collection)
            return self._units[nodeid]

    return FileScheduling(config, log)
