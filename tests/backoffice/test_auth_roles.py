"""The "support" role: what SPEC §8 lists and nothing else, enforced on every page and action."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import reverse

from aladdin.accounts.models import StaffAction
from aladdin.backoffice import actions
from aladdin.backoffice.roles import SUPPORT_GROUP, support_codenames, sync_support_group
from aladdin.backoffice.views_overview import OVERVIEW_PERMS
from tests.backoffice.queues_support import support_agent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

# Superuser-only: OAuth, the scheduler's tables, groups, heartbeats, authenticators.
FORBIDDEN = [
    "/admin/oauth2_provider/application/",
    "/admin/oauth2_provider/accesstoken/",
    "/admin/django_celery_beat/periodictask/",
    "/admin/django_celery_beat/crontabschedule/",
    "/admin/auth/group/",
    "/admin/ops/taskheartbeat/",
    "/admin/mfa/authenticator/",
]

# What SPEC §8 lists: find users, their plan, grants, ledger, orders, workloads and
# storage; invoices; the arrears queue; plans, prices, images, presets, defaults.
ALLOWED = [
    "/admin/",
    "/admin/accounts/user/",
    "/admin/accounts/staffaction/",
    "/admin/billing/plan/",
    "/admin/billing/grant/",
    "/admin/billing/ledgerentry/",
    "/admin/billing/order/",
    "/admin/billing/refund/",
    "/admin/billing/invoice/",
    "/admin/billing/arrearsreview/",
    "/admin/gpu_jobs/job/",
    "/admin/gpu_jobs/gputype/",
    "/admin/workshops/workshop/",
    "/admin/workshops/image/",
    "/admin/workshops/resourcepreset/",
    "/admin/workshops/platformenvvar/",
    "/admin/storage/storageallowance/",
    "/admin/backoffice/overview/",
]


@pytest.fixture
def agent_client(client):
    agent = support_agent()
    client.force_login(agent)
    client.agent = agent
    return client


def test_migrate_leaves_the_support_group_with_exactly_its_permissions():
    group = Group.objects.get(name=SUPPORT_GROUP)
    held = {(p.content_type.app_label, p.codename) for p in group.permissions.all()}
    assert held == support_codenames()
    # A hand edit is undone by the next sync: the table is the role.
    group.permissions.clear()
    count, missing = sync_support_group()
    assert missing == [] and count == len(support_codenames())


@pytest.mark.parametrize("url", FORBIDDEN)
def test_support_gets_403_outside_their_role(agent_client, url):
    assert agent_client.get(url).status_code == 403


@pytest.mark.parametrize("url", ALLOWED)
def test_support_opens_every_page_of_their_role(agent_client, url):
    assert agent_client.get(url).status_code == 200


def test_the_home_page_lists_no_internals_for_support(agent_client):
    page = agent_client.get("/admin/").content.decode()
    for internal in ("oauth2_provider", "django_celery_beat", "/admin/auth/", "/admin/mfa/"):
        assert internal not in page
    assert "/admin/billing/plan/" in page


def test_the_360_page_actions_and_the_overview_need_only_what_support_holds():
    held = {f"{app}.{code}" for app, code in support_codenames()}
    assert set(actions.PERMISSIONS.values()) <= held
    assert {actions.VIEW_PERMISSION, *OVERVIEW_PERMS} <= held


def _actions_for(user, model) -> set[str]:
    request = RequestFactory().get("/")
    request.user = user
    return set(admin.site._registry[model].get_actions(request))


def test_every_admin_action_needs_a_permission():
    # Staff with view permissions only (no group) see no action at all: each
    # action names the permission it needs (an action without one is open to
    # anyone who can see the list).
    from django.contrib.auth.models import Permission

    viewer = UserFactory(staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    viewer = type(viewer).objects.get(pk=viewer.pk)  # fresh permission cache
    ours = {"accounts", "billing", "gpu_jobs", "storage", "workshops", "ops"}
    offered = {
        model._meta.label: _actions_for(viewer, model) - {"delete_selected"}
        for model in admin.site._registry
        if model._meta.app_label in ours
    }
    assert {label: acts for label, acts in offered.items() if acts} == {}


def test_support_is_offered_the_actions_of_their_role():
    agent = support_agent()
    from aladdin.accounts.models import User
    from gpu_jobs.models import Job
    from storage.models import StorageAllowance
    from workshops.models import Workshop

    assert {"approve_education", "ban_for_mining"} <= _actions_for(agent, User)
    assert "stop_jobs" in _actions_for(agent, Job)
    assert "stop_workshops" in _actions_for(agent, Workshop)
    assert {"hold_storage", "lift_hold", "reclaim_now"} <= _actions_for(agent, StorageAllowance)


def test_support_cannot_make_anyone_staff_or_superuser(agent_client):
    student = UserFactory()
    url = reverse("admin:accounts_user_change", args=[student.pk])
    form = agent_client.get(url).context["adminform"].form
    for field in ("is_staff", "is_superuser", "groups", "user_permissions", "is_active"):
        assert field not in form.fields

    agent_client.post(
        url,
        {
            "phone": student.phone,
            "username": student.username or "",
            "language": "en",
            "education_status": student.education_status,
            "is_staff": "on",
            "is_superuser": "on",
        },
    )
    student.refresh_from_db()
    assert not student.is_staff and not student.is_superuser


def test_support_cannot_change_a_staff_account_or_its_password(agent_client):
    boss = UserFactory(admin=True)
    assert agent_client.get(reverse("admin:accounts_user_change", args=[boss.pk])).status_code in (
        200,  # view only
    )
    page = agent_client.get(reverse("admin:accounts_user_change", args=[boss.pk]))
    assert "adminform" in page.context and not page.context["has_change_permission"]
    password = agent_client.get(reverse("admin:auth_user_password_change", args=[boss.pk]))
    assert password.status_code == 403


def test_support_cannot_ban_a_staff_account(agent_client):
    boss = UserFactory(staff=True)  # a colleague (superusers are refused earlier still)
    response = agent_client.post(
        reverse("backoffice:user_act", args=[boss.pk, "ban"]),
        {"reason": "testing", "confirm": "on"},
        follow=True,
    )
    boss.refresh_from_db()
    assert boss.is_active and boss.banned_at is None
    assert "Only a superuser can ban a staff account" in response.content.decode()
    assert not StaffAction.objects.filter(action="ban").exists()


def test_the_command_makes_a_support_agent(capsys):
    user = UserFactory(phone="+8613700137000")
    call_command("backoffice_roles", add="137 0013 7000")
    user.refresh_from_db()
    assert user.is_staff and not user.is_superuser
    assert user.groups.filter(name=SUPPORT_GROUP).exists()
    assert "now support staff" in capsys.readouterr().out
