"""Helpers of the u360 tests (the user 360° page, the staff search and its actions)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import override_settings

from billing import alipay, payments
from billing.models import Order
from tests import factories


def support_user(*perms: str, view: bool = True):
    """A member of staff in a "support" group holding ``perms`` ("app.codename")."""
    user = factories.UserFactory(staff=True)
    group, _ = Group.objects.get_or_create(name=f"support-{user.pk}")
    wanted = (["accounts.view_user"] if view else []) + list(perms)
    for perm in wanted:
        app_label, codename = perm.split(".")
        group.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    user.groups.add(group)
    return user


def paid_order(user, plan) -> Order:
    order = payments.order_create(user=user, plan=plan)
    payments.order_fulfil(
        order_id=order.pk, trade_no="T" + order.out_trade_no, params={}, source="test"
    )
    order.refresh_from_db()
    return order


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def alipay_sandbox():
    # Refunds in the sandbox skip the gateway (billing's own tests cover it).
    alipay._load_keys.cache_clear()
    with override_settings(ALIPAY_SANDBOX=True, DEBUG=True, ALIPAY_APP_ID=""):
        yield
    alipay._load_keys.cache_clear()
