from __future__ import annotations

import pytest
from django.urls import reverse

from aladdin.cluster.base import Capabilities
from tests.factories import SubscriptionFactory
from workshops.choices import WorkshopState
from workshops.models import Workshop, WorkshopEnvVar


def test_create_form_creates_a_workshop_with_env(client, user, catalog, driver):
    client.force_login(user)
    page = client.get(reverse("workshops:create"))
    assert "CPU:4 MEM:16G (recommended)" in page.content.decode()
    response = client.post(
        reverse("workshops:create"),
        {
            "name": "dev",
            "image": catalog["image"].pk,
            "preset": catalog["presets"]["2C/4G"].pk,
            "env": "OPENAI_API_KEY=sk-abc\n# comment\n",
        },
    )
    ws = Workshop.objects.get(user=user, name="dev")
    assert response.status_code == 302
    assert WorkshopEnvVar.objects.get(workshop=ws).plaintext() == "sk-abc"
    detail = client.get(reverse("workshops:detail", args=[ws.pk])).content.decode()
    assert "sk-abc" not in detail
    assert "••••" in detail
    assert "dev.bj1" in detail
    assert "Workshop is waiting for creating." in detail
    assert 'http-equiv="refresh"' in detail


def test_create_form_shows_the_quota_message(client, user, catalog, driver, plans):
    client.force_login(user)
    response = client.post(
        reverse("workshops:create"),
        {"name": "big", "image": catalog["image"].pk, "preset": catalog["presets"]["16C/64G"].pk},
    )
    assert response.status_code == 200
    assert "exceeded quota" in response.content.decode()
    assert "Without a plan you can use 2 CPU / 4 GiB at a time" in response.content.decode()


def test_the_create_form_defaults_to_a_size_the_user_may_run(client, user, catalog, driver, plans):
    # The recommended 4 CPU / 16 GiB is over a free user's 2 CPU / 4 GiB: the
    # form picks the largest that fits, so keeping the default just works.
    client.force_login(user)
    form = client.get(reverse("workshops:create")).context["form"]
    assert form["preset"].initial == catalog["presets"]["2C/4G"].pk

    SubscriptionFactory(user=user, plan_code="basic")
    form = client.get(reverse("workshops:create")).context["form"]
    assert form["preset"].initial == catalog["presets"]["4C/16G"].pk  # the recommended one


def test_bad_env_line_is_a_form_error(client, user, catalog, driver):
    client.force_login(user)
    response = client.post(
        reverse("workshops:create"),
        {
            "name": "dev",
            "image": catalog["image"].pk,
            "preset": catalog["presets"]["2C/4G"].pk,
            "env": "no equals sign",
        },
    )
    assert response.status_code == 200
    assert not Workshop.objects.exists()


def test_stop_and_start_buttons_work_without_js(client, user, make_workshop, driver):
    client.force_login(user)
    ws = make_workshop(user)
    client.post(reverse("workshops:action", args=[ws.pk, "stop"]))
    ws.refresh_from_db()
    assert ws.state == WorkshopState.STOPPING


def test_list_shows_created_status(client, user, make_workshop):
    client.force_login(user)
    make_workshop(user)
    page = client.get(reverse("workshops:list")).content.decode()
    assert "Workshop is created." in page
    assert 'http-equiv="refresh"' not in page


@pytest.mark.parametrize(
    "name,args,method",
    [
        ("workshops:detail", [], "get"),
        ("workshops:terminal", [], "get"),
        ("workshops:status", [], "get"),
        ("workshops:resources", [], "post"),
        ("workshops:env", [], "post"),
        ("workshops:action", ["stop"], "post"),
        ("workshops:action", ["start"], "post"),
        ("workshops:action", ["delete"], "post"),
    ],
)
def test_another_users_workshop_is_404(client, user, other_user, make_workshop, name, args, method):
    ws = make_workshop(other_user)
    client.force_login(user)
    response = getattr(client, method)(reverse(name, args=[ws.pk, *args]))
    assert response.status_code == 404
    ws.refresh_from_db()
    assert ws.state == WorkshopState.RUNNING


def test_edit_resources_applies_on_restart(client, user, make_workshop, catalog, plans):
    SubscriptionFactory(user=user, plan_code="trial")
    client.force_login(user)
    ws = make_workshop(user)
    client.post(
        reverse("workshops:resources", args=[ws.pk]), {"preset": catalog["presets"]["4C/16G"].pk}
    )
    ws.refresh_from_db()
    assert (ws.cpu_millicores, ws.applied_cpu_millicores) == (4000, 2000)
    page = client.get(reverse("workshops:detail", args=[ws.pk])).content.decode()
    # What runs is shown as current; the edit as pending.
    assert "Resource: CPU:2 MEM:4G" in page and "running now" in page
    assert "Pending: CPU:4 MEM:16G, applied when the workshop is restarted." in page
    card = client.get(reverse("workshops:status", args=[ws.pk])).content.decode()
    assert card.lstrip().startswith('<section class="card" data-testid="workshop-status"')
    assert f'data-live-workshop="{ws.pk}"' in card and "Pending: CPU:4 MEM:16G" in card


def test_terminal_page_loads_vendored_xterm_and_the_socket_path(client, user, make_workshop):
    client.force_login(user)
    ws = make_workshop(user)
    page = client.get(reverse("workshops:terminal", args=[ws.pk])).content.decode()
    assert "vendor/xterm/xterm.js" in page and "vendor/xterm/addon-fit.js" in page
    assert f"/ws/workshops/{ws.pk}/terminal/" in page


def test_nav_links_to_workshops(client, user):
    client.force_login(user)
    assert reverse("workshops:list") in client.get(reverse("overview")).content.decode()


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        (Capabilities(isolation="bubblewrap"), None),
        (Capabilities(isolation="", insecure=False), "serves a single user only"),
        (Capabilities(isolation="", insecure=True), "ALADDIN_LOCAL_INSECURE=1"),
        # A backend that could not be asked is not accused of anything.
        (Capabilities.unknown("agent down"), None),
    ],
)
def test_the_list_says_when_workloads_are_not_isolated(client, user, driver, caps, expected):
    driver.caps = caps
    client.force_login(user)

    html = client.get(reverse("workshops:list")).content.decode()

    if expected is None:
        assert 'data-testid="isolation-notice"' not in html
    else:
        assert 'data-testid="isolation-notice"' in html and expected in html


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Resource limits are off: no cgroup here."),
        ("zh-hans", "资源限制已关闭：no cgroup here。"),
    ],
)
def test_the_list_says_when_resource_limits_are_off_and_why(
    client, make_user, driver, monkeypatch, language, expected
):
    driver.caps = Capabilities(isolation="bubblewrap", limits="", limits_reason="no cgroup here")
    client.force_login(make_user(language=language))

    html = client.get(reverse("workshops:list")).content.decode()

    assert 'data-testid="limits-notice"' in html and expected in html
    assert 'data-testid="isolation-notice"' not in html


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Network access is off: slirp4netns is not installed."),
        ("zh-hans", "网络访问已关闭：slirp4netns is not installed。"),
    ],
)
def test_the_list_says_when_network_access_is_off_and_why(
    client, make_user, driver, monkeypatch, language, expected
):
    driver.caps = Capabilities(
        isolation="bubblewrap",
        limits="cgroup v2",
        network="",
        network_reason="slirp4netns is not installed",
    )
    client.force_login(make_user(language=language))

    html = client.get(reverse("workshops:list")).content.decode()

    assert 'data-testid="network-notice"' in html and expected in html
    assert 'data-testid="limits-notice"' not in html


def test_the_list_says_nothing_of_the_network_where_workloads_have_it(
    client, user, driver, monkeypatch
):
    driver.caps = Capabilities(isolation="bubblewrap", limits="cgroup v2", network="slirp4netns")
    client.force_login(user)

    html = client.get(reverse("workshops:list")).content.decode()

    assert 'data-testid="network-notice"' not in html


def test_the_list_says_nothing_of_limits_where_they_hold(client, user, driver, monkeypatch):
    driver.caps = Capabilities(isolation="bubblewrap", limits="cgroup v1", network="slirp4netns")
    client.force_login(user)

    html = client.get(reverse("workshops:list")).content.decode()

    assert 'data-testid="limits-notice"' not in html


def test_the_list_asks_the_backend_what_it_can_do_once_per_ttl_not_per_page(
    client, user, driver, monkeypatch
):
    from aladdin import cluster

    driver.caps = Capabilities(isolation="", limits="")
    client.force_login(user)
    clock = [1000.0]
    monkeypatch.setattr(cluster.time, "monotonic", lambda: clock[0])

    for _ in range(3):
        html = client.get(reverse("workshops:list")).content.decode()
    assert 'data-testid="isolation-notice"' in html
    assert len(driver.called("capabilities")) == 1
    assert not driver.called("health")  # the pages never read health() keys

    # once the TTL has passed, a fixed host shows as fixed
    driver.caps = Capabilities(isolation="bubblewrap", limits="cgroup v2", network="slirp4netns")
    clock[0] += cluster.CAPABILITIES_TTL_SECONDS + 1
    html = client.get(reverse("workshops:list")).content.decode()
    assert 'data-testid="isolation-notice"' not in html
    assert len(driver.called("capabilities")) == 2
