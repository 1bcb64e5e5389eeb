"""What the platform gives every workload: the user's space on the cluster, its variables."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage import selectors as storage_selectors
from storage import services as storage_services

from . import quota
from .models import PlatformEnvVar

if TYPE_CHECKING:
    from aladdin.accounts.models import User
    from aladdin.cluster.base import ClusterDriver


def platform_env() -> dict[str, str]:
    """The platform's active variables (SPEC §6); each app lays the user's over them."""
    return dict(PlatformEnvVar.objects.filter(is_active=True).values_list("key", "value"))


def user_space_prepare(*, user: User, driver: ClusterDriver) -> None:
    """The user's volume (sized to the allowance) and quota on the cluster, before a workload.

    Shared by every workload app (workshops, GPU jobs). Raises DriverError.
    """
    driver.ensure_user_space(
        user_id=user.pk,
        storage_gib=storage_selectors.allowance_gib(user),
        quota=quota.limit_for(user),
    )
    # From now on the volume is sampled, charged and subject to retention.
    storage_services.volume_register(user_id=user.pk)
