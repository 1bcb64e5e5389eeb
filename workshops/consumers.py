"""The workshop's web terminal (SPEC §6): ``ws/workshops/<pk>/terminal/``.

The terminal itself is every workload's (aladdin.workloads.consumers); this
says which workload a workshop id opens: the user's own running workshop,
else 4404 (another user's, or none) or 4409 (not running).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from channels.db import database_sync_to_async

from aladdin.workloads.consumers import TerminalConsumer
from aladdin.wsauth import CLOSE_NOT_FOUND, CLOSE_NOT_RUNNING

from .choices import WorkshopState
from .models import Workshop

if TYPE_CHECKING:
    from aladdin.accounts.models import User


@database_sync_to_async
def _workshop_for(user, pk) -> Workshop | None:
    return Workshop.objects.filter(pk=pk, user=user).first()


class WorkshopTerminalConsumer(TerminalConsumer):
    """A shell in the user's running workshop."""

    async def workload_for(self, user: User, pk: int) -> tuple[str, None] | tuple[None, int]:
        workshop = await _workshop_for(user, pk)
        if workshop is None:
            return None, CLOSE_NOT_FOUND
        if workshop.state != WorkshopState.RUNNING:
            return None, CLOSE_NOT_RUNNING
        return workshop.workload_name, None
