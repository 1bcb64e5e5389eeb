"""Reads of the workshops app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from aladdin.cluster.base import Resources
from aladdin.workloads.models import Image

from .choices import ACTIVE_STATES
from .models import ResourcePreset, SSHKey, Workshop

if TYPE_CHECKING:
    from aladdin.accounts.models import User


def workshops_for(user: User) -> QuerySet[Workshop]:
    return Workshop.objects.filter(user=user).select_related("image", "preset")


def active_images() -> QuerySet[Image]:
    return Image.objects.filter(is_active=True)


def active_presets() -> QuerySet[ResourcePreset]:
    return ResourcePreset.objects.filter(is_active=True)


def workshops_usage(user: User, exclude_workshop_id: int | None = None) -> Resources:
    """CPU/memory of the user's creating and running workshops, for the shared quota.

    Registered with ``aladdin.workloads.quota.register_usage`` in WorkshopsConfig.ready.
    """
    rows = Workshop.objects.filter(user=user, state__in=ACTIVE_STATES)
    if exclude_workshop_id is not None:
        rows = rows.exclude(pk=exclude_workshop_id)
    total = Resources()
    for cpu, mem in rows.values_list("applied_cpu_millicores", "applied_memory_mib"):
        total = total + Resources(cpu_millicores=cpu, memory_mib=mem)
    return total


def isolation_notice() -> str:
    """What users must know when workloads are not isolated (SPEC §9), or "".

    The local backend without a sandbox serves one user only, or several
    without isolation when the operator set ALADDIN_LOCAL_INSECURE=1.
    """
    from django.utils.translation import gettext as _

    from aladdin import cluster

    health = cluster.get_driver().health()
    if health.get("sandbox", "bubblewrap") != "unavailable":
        return ""
    if health.get("insecure"):
        return _(
            "This host cannot isolate workloads and runs them for several users without a "
            "sandbox (ALADDIN_LOCAL_INSECURE=1). Do not keep secrets in your workshops."
        )
    return _(
        "This host cannot isolate workloads, so it serves a single user only; other users' "
        "workshops will be refused."
    )


def ssh_keys_for(user: User) -> QuerySet[SSHKey]:
    """The user's active SSH keys, newest first."""
    return SSHKey.objects.filter(user=user, revoked_at__isnull=True)


def ssh_login_target(*, username: str, fingerprint: str) -> tuple[SSHKey, Workshop] | None:
    """The key and workshop an SSH login names, or None: one answer for every refusal.

    ``username`` is the workshop's name; the key must be active and belong
    to that workshop's owner, whose account must be active. A wrong key, an
    unknown name and another user's workshop name all give None, so the
    gateway cannot tell (nor tell the client) which names exist.
    """
    key = (
        SSHKey.objects.filter(
            fingerprint=fingerprint, revoked_at__isnull=True, user__is_active=True
        )
        .select_related("user")
        .first()
    )
    if key is None:
        return None
    workshop = (
        Workshop.objects.filter(user_id=key.user_id, name=username)
        .select_related("image", "preset")
        .first()
    )
    if workshop is None:
        return None
    return key, workshop
