"""A support agent for the queues/overview/page-walk tests (not a test module).

``support_agent()`` is a staff member in the real "support" group, whose
permissions are the role's table (aladdin/backoffice/roles.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from aladdin.backoffice.roles import SUPPORT_GROUP, sync_support_group
from tests import factories

PENDING_DIR = Path(__file__).resolve().parents[2] / "locale" / "pending"


def support_group() -> Group:
    """The real "support" group (aladdin/backoffice/roles.py), synced as after migrate."""
    sync_support_group()
    return Group.objects.get(name=SUPPORT_GROUP)


def support_agent(**extra):
    """A staff member (not a superuser) in the support group."""
    agent = factories.UserFactory(staff=True, **extra)
    agent.groups.add(support_group())
    return agent


@pytest.fixture
def pending_zh():
    """The zh-hans catalog with locale/pending/*.json added, as after the lead merges them.

    Helpers may not edit locale/*/django.po (four of them would conflict); they
    list their new msgids with translations in locale/pending/<name>.json. This
    puts those into the loaded zh-hans catalog for the test and takes them out
    after; once merged into the .po files it changes nothing.
    """
    from django.utils.translation import trans_real

    catalog = trans_real.translation("zh-hans")._catalog
    first = catalog._catalogs[0]
    saved = dict(first)
    for path in sorted(PENDING_DIR.glob("*.json")):
        for msgid, text in json.loads(path.read_text(encoding="utf-8")).items():
            if isinstance(text, list):
                # Chinese has one plural form (index 0), looked up by the singular msgid.
                first.setdefault((msgid, 0), text[0])
            elif msgid not in first:
                first[msgid] = text
    yield
    first.clear()
    first.update(saved)
