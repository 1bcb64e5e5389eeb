"""Staff roles: the "support" group and exactly what it may see and do (SPEC §8).

Support staff find users, read their plan, grants, ledger, orders, workloads
and storage; give vouchers and refunds; handle invoice requests, the arrears
queue and payments flagged for support; stop any workload; ban for mining;
and edit plans, prices, images, resource presets and platform environment
defaults. Everything else (OAuth applications and tokens, the scheduler's
tables, groups and permissions, heartbeats) is for superusers only: the
admin gives 403 on those pages and leaves them off the home page.

The group is created by a data migration and its permissions are set after
every ``migrate`` (permissions themselves only exist after the
``post_migrate`` that creates them), and on demand with
``manage.py backoffice_roles``. Edits made to the group by hand are undone
then: this table is the role.
"""

from __future__ import annotations

SUPPORT_GROUP = "support"

# app_label -> model -> the actions ("view", "add", "change", "delete") allowed.
SUPPORT_PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "accounts": {
        # change: approve education, ban (the 360° page and the user list's actions).
        "user": ("view", "change"),
        "bannedphone": ("view",),
        "smsmessage": ("view",),
        "staffaction": ("view",),
    },
    "billing": {
        "account": ("view",),
        "arrearsreview": ("view", "change"),
        "grant": ("view", "add"),  # add: vouchers
        "invoice": ("view", "change"),  # invoice requests are handled here
        "ledgerentry": ("view",),
        "order": ("view",),
        "paymentnotification": ("view",),
        "plan": ("view", "change"),
        "refund": ("view", "add"),
        "subscription": ("view",),
    },
    "gpu_jobs": {
        "gputype": ("view", "change"),  # prices
        "job": ("view", "change"),  # change: stop
        "jobconfiguration": ("view",),
    },
    "storage": {
        "dailypeak": ("view",),
        "reclamation": ("view",),
        "retentionwarning": ("view",),
        "storageallowance": ("view", "change"),  # raise, hold, reclaim
        "storagecharge": ("view",),
    },
    "workshops": {
        "image": ("view", "change"),
        "platformenvvar": ("view", "add", "change", "delete"),
        "resourcepreset": ("view", "add", "change"),
        "sshkey": ("view", "change"),  # change: revoke
        "workshop": ("view", "change"),  # change: stop
        "workshopevent": ("view",),
    },
}


def support_codenames() -> set[tuple[str, str]]:
    """(app_label, codename) of every permission the support group holds."""
    return {
        (app_label, f"{action}_{model}")
        for app_label, models in SUPPORT_PERMISSIONS.items()
        for model, actions in models.items()
        for action in actions
    }


def sync_support_group(using: str = "default") -> tuple[int, list[str]]:
    """Create the support group if needed and give it exactly its permissions.

    Returns (how many it holds, the codenames that do not exist yet: their
    app's migrations have not run, e.g. during the first ``migrate``).
    """
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.using(using).get_or_create(name=SUPPORT_GROUP)
    wanted = support_codenames()
    found = {
        (p.content_type.app_label, p.codename): p
        for p in Permission.objects.using(using)
        .select_related("content_type")
        .filter(content_type__app_label__in=SUPPORT_PERMISSIONS)
    }
    perms = [found[key] for key in sorted(wanted) if key in found]
    group.permissions.set(perms)
    missing = sorted(f"{app}.{code}" for app, code in wanted - set(found))
    return len(perms), missing
