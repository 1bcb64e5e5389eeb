"""Reads of the workshops app."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import F, QuerySet
from django.utils.translation import gettext as _

from aladdin.cluster.base import Capabilities, Resources
from aladdin.lib import ssh_host_keys
from aladdin.workloads.models import Image
from aladdin.workloads.quota import Holding

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


def workshops_usage(
    user: User, exclude_workshop_id: int | None = None, exclude_job_id: int | None = None
) -> list[Holding]:
    """CPU/memory of the user's creating and running workshops, for the shared quota.

    Registered with ``aladdin.workloads.quota.register_usage`` in WorkshopsConfig.ready.
    """
    rows = Workshop.objects.filter(user=user, state__in=ACTIVE_STATES).order_by("pk")
    if exclude_workshop_id is not None:
        rows = rows.exclude(pk=exclude_workshop_id)
    return [
        Holding(
            _("workshop %(name)s") % {"name": name},
            Resources(cpu_millicores=cpu, memory_mib=mem),
        )
        for name, cpu, mem in rows.values_list(
            "name", "applied_cpu_millicores", "applied_memory_mib"
        )
    ]


def cluster_capabilities() -> Capabilities:
    """What the backend promises its workloads (cached in the process): what the notices read."""
    from aladdin import cluster

    return cluster.capabilities()


def isolation_notice(caps: Capabilities | None = None) -> str:
    """What users must know when workloads are not isolated (SPEC §9), or "".

    The local backend without a sandbox serves one user only, or several
    without isolation when the operator set ALADDIN_LOCAL_INSECURE=1.
    """
    caps = caps or cluster_capabilities()
    if not caps.known or caps.isolation:
        return ""
    if caps.insecure:
        return _(
            "This host cannot isolate workloads and runs them for several users without a "
            "sandbox (ALADDIN_LOCAL_INSECURE=1). Do not keep secrets in your workshops."
        )
    return _(
        "This host cannot isolate workloads, so it serves a single user only; other users' "
        "workshops will be refused."
    )


def limits_notice(caps: Capabilities | None = None) -> str:
    """What users must know when workloads run without memory, CPU and process limits (SPEC §9), or "".

    Only a backend that says it has none (the local one without cgroup
    control) is warned about; one that could not be asked is not.
    """
    caps = caps or cluster_capabilities()
    if not caps.known or caps.limits:
        return ""
    return _(
        "Resource limits are off: %(reason)s. A workload here can use all of the host's "
        "memory and CPU, and slow down everyone's."
    ) % {"reason": caps.limits_reason}


def network_notice(caps: Capabilities | None = None) -> str:
    """What users must know when workloads have no network (SPEC §9: pip, git, the mirrors), or "".

    Only for isolated workloads with loopback only (the local backend where
    the host cannot attach slirp4netns and its deny rules); unisolated ones
    share the host's network and the isolation notice covers them.
    """
    caps = caps or cluster_capabilities()
    if not caps.known or not caps.isolation or caps.network:
        return ""
    return _(
        "Network access is off: %(reason)s. Workloads here cannot reach the internet "
        "(pip, git and the model mirrors do not work)."
    ) % {"reason": caps.network_reason}


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
            fingerprint=fingerprint,
            revoked_at__isnull=True,
            user__is_active=True,
            # A ban holds even if someone switches "active" back on in the admin.
            user__banned_at__isnull=True,
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


@dataclass(frozen=True)
class SSHConfig:
    """What the plugin writes to reach a workshop (issue 13): an ssh_config block and known_hosts.

    ``known_hosts`` holds the gateway's host keys under ``host_key_alias``
    (the config's ``HostKeyAlias``), so the first connection is checked
    against them: no trust-on-first-use question, and one entry serves
    every workshop behind the gateway.
    """

    host_alias: str
    host: str
    port: int
    user: str
    identity_file: str
    host_key_alias: str
    known_hosts_file: str
    known_hosts: list[str]
    config: str


# Where the manual keeps the plugin's keys on the student's machine (SPEC §6).
SSH_CLIENT_DIR = "~/.alaya/ssh"
_IDENTITY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def ssh_identity_file(key: SSHKey | None) -> str:
    """The key's file under the plugin's folder: its name made a safe file name."""
    stem = _IDENTITY_UNSAFE.sub("-", key.name).strip(".-") if key is not None else ""
    if not stem and key is not None:
        stem = f"aladdin-key-{key.pk}"
    return f"{SSH_CLIENT_DIR}/{stem or 'id_ed25519'}"


def ssh_default_key(user: User) -> SSHKey | None:
    """The key the config names when none is asked for: the last used, else the newest."""
    return (
        ssh_keys_for(user)
        .order_by(F("last_used_at").desc(nulls_last=True), "-created_at", "-pk")
        .first()
    )


def workshop_ssh_config(*, workshop: Workshop, key: SSHKey | None) -> SSHConfig:
    """The ssh_config block and known_hosts lines for ``workshop`` through the gateway."""
    host, port = settings.SSH_PUBLIC_HOST, settings.SSH_PUBLIC_PORT
    alias = f"aladdin-gateway.{host}" if port == 22 else f"aladdin-gateway.{host}.{port}"
    known_hosts = [
        f"{alias} {hk.public_key}" for hk in ssh_host_keys.public_keys(settings.SSH_HOST_KEYS_DIR)
    ]
    identity = ssh_identity_file(key)
    known_hosts_file = f"{SSH_CLIENT_DIR}/known_hosts"
    lines = [
        f"Host {workshop.host_alias}",
        f"    HostName {host}",
        f"    Port {port}",
        f"    User {workshop.name}",
        f"    IdentityFile {identity}",
        "    IdentitiesOnly yes",
        f"    HostKeyAlias {alias}",
        f"    UserKnownHostsFile {known_hosts_file}",
    ]
    return SSHConfig(
        host_alias=workshop.host_alias,
        host=host,
        port=port,
        user=workshop.name,
        identity_file=identity,
        host_key_alias=alias,
        known_hosts_file=known_hosts_file,
        known_hosts=known_hosts,
        config="\n".join(lines) + "\n",
    )


def live_workshops(user: User, ids: Iterable[int]) -> dict[int, dict]:
    """What an open page shows of the workshops ``ids``, the user's own only (aladdin/live.py)."""
    rows = Workshop.objects.filter(user=user, pk__in=list(ids)[:200])
    return {
        ws.pk: {
            "state": ws.state,
            "state_label": str(ws.get_state_display()),
            "reason": ws.reason_text,
        }
        for ws in rows
    }
