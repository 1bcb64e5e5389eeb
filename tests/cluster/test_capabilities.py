"""Typed capabilities (issue 19): what a backend promises, read once per TTL, never guessed."""

from __future__ import annotations

from aladdin import cluster
from aladdin.cluster.base import Capabilities
from aladdin.cluster.local import LocalDriver
from tests.fakes import FakeDriver


class HealthOnly(FakeDriver):
    """A backend that reports health keys only: the base class's reading of them."""

    def __init__(self, health: dict):
        super().__init__()
        self._health = health

    def health(self) -> dict:
        return self._health

    capabilities = cluster.ClusterDriver.capabilities


def test_an_unreachable_agent_is_unknown_and_claims_nothing(tmp_path):
    caps = LocalDriver(socket_path=tmp_path / "none.sock").capabilities()

    assert not caps.known
    assert caps.isolation == caps.limits == caps.network == "unknown"
    assert caps.isolation_reason  # why: the agent is not running


def test_health_keys_become_typed_facts_and_missing_ones_promise_nothing():
    off = HealthOnly(
        {
            "ok": True,
            "sandbox": "unavailable",
            "insecure": True,
            "limits": "off",
            "limits_reason": "no cgroup",
            "project_quota": False,
            "project_quota_reason": "ext4 without prjquota",
        }
    ).capabilities()
    quiet = HealthOnly({"ok": True}).capabilities()
    down = HealthOnly({"ok": False, "error": "boom"}).capabilities()

    assert (off.isolation, off.insecure, off.limits, off.limits_reason) == (
        "",
        True,
        "",
        "no cgroup",
    )
    assert off.volume_quota_reason == "ext4 without prjquota"
    assert quiet.known and quiet.isolation and quiet.limits and quiet.network
    assert not down.known and down.limits_reason == "boom"


def test_the_answer_is_cached_per_driver_and_an_unknown_one_for_less(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(cluster.time, "monotonic", lambda: clock[0])
    driver = FakeDriver()
    driver.caps = Capabilities.unknown("agent down")

    cluster.capabilities(driver)
    cluster.capabilities(driver)
    assert len(driver.called("capabilities")) == 1

    clock[0] += cluster.CAPABILITIES_UNKNOWN_TTL_SECONDS + 0.1
    driver.caps = Capabilities(isolation="bubblewrap")
    assert cluster.capabilities(driver).isolation == "bubblewrap"
    clock[0] += cluster.CAPABILITIES_UNKNOWN_TTL_SECONDS + 0.1
    assert cluster.capabilities(driver).isolation == "bubblewrap"  # a known answer lasts longer
    assert len(driver.called("capabilities")) == 2
    assert cluster.capabilities(FakeDriver()).known  # another driver, its own answer
