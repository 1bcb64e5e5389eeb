"""Live pages: state, billing and balances pushed to open pages over a websocket (issue 17).

``/ws/live/``: the page's script (``static/js/live.js``) says what it shows
(``{"watch": {"jobs": [ids], "workshops": [ids], "balance": true}}``); the
consumer reads those rows every ``LIVE_SECONDS`` and sends what changed,
formatted as the page formats it (amounts and times as the pages' own
filters render them: escaped HTML with the exact value on hover), in the
user's language. Reading the
database (not listening for saves) is deliberate: states move through
``QuerySet.update`` in many places, and a running job's "billed so far"
grows with time, not with writes. Only the user's own rows are read: an id
of another user's job is simply never answered.

Every message: ``{"type": "update", "jobs": {id: {field: text}}, "workshops":
{…}, "balance": {…}}`` with only what changed since the last one (all of
it first).
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone, translation

from aladdin.lib.units import dcu_html
from aladdin.wsauth import CLOSE_BAD_REQUEST, accepted_subprotocol, refuse, user_refusal

LIVE_SECONDS = getattr(settings, "ALADDIN_LIVE_SECONDS", 3)
MAX_WATCHED = 200


def _when(value) -> str:
    from aladdin.accounts.templatetags.portal_time import when

    return str(when(value, "Y-m-d H:i:s")) if value else "—"


def _ids(value) -> list[int]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, int) and not isinstance(v, bool)][:MAX_WATCHED]


def snapshot(user, watch: dict[str, Any]) -> dict[str, dict]:
    """The watched rows of ``user`` as the pages show them (text, in the user's language)."""
    from billing import selectors as billing_selectors
    from gpu_jobs import selectors as job_selectors
    from workshops import selectors as workshop_selectors

    now = timezone.now()
    language = getattr(user, "language", "") or settings.LANGUAGE_CODE
    with translation.override(language):
        jobs = {
            str(pk): {
                "state": row["state"],
                "state_label": row["state_label"],
                "reason": row["reason"],
                "billed": str(dcu_html(row["billed_micro"])),
                "charged": str(dcu_html(row["charged_micro"])),
                "started": _when(row["started_at"]),
                "ended": _when(row["ended_at"]),
            }
            for pk, row in job_selectors.live_jobs(user, _ids(watch.get("jobs")), now).items()
        }
        workshops = {
            str(pk): row
            for pk, row in workshop_selectors.live_workshops(
                user, _ids(watch.get("workshops"))
            ).items()
        }
        balance = {}
        if watch.get("balance") is True:
            balance = {
                "active": str(dcu_html(billing_selectors.active_balance_micro(user, now))),
                "debt": str(dcu_html(billing_selectors.account_for(user).debt_micro)),
            }
    return {"jobs": jobs, "workshops": workshops, "balance": balance}


def changes(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict]:
    """What ``after`` says that ``before`` did not (per row, only the changed fields)."""
    changed: dict[str, dict] = {}
    for kind in ("jobs", "workshops"):
        rows = {}
        for key, row in after[kind].items():
            old = before.get(kind, {}).get(key, {})
            diff = {f: v for f, v in row.items() if old.get(f) != v}
            if diff:
                rows[key] = diff
        changed[kind] = rows
    old_balance = before.get("balance", {})
    changed["balance"] = {f: v for f, v in after["balance"].items() if old_balance.get(f) != v}
    return changed


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Pushes the watched rows' changes to one open page (module doc)."""

    async def connect(self):
        self.user = self.scope.get("user")
        refused = user_refusal(self.user)
        if refused is not None:
            await refuse(self, refused)
            return
        self.watch: dict[str, Any] = {}
        self.last: dict[str, dict] = {}
        self.loop: asyncio.Task | None = None
        await self.accept(subprotocol=accepted_subprotocol(self.scope))

    async def receive_json(self, content, **kwargs):
        watch = content.get("watch") if isinstance(content, dict) else None
        if not isinstance(watch, dict):
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        self.watch = watch
        self.last = {}
        if self.loop is None:
            self.loop = asyncio.create_task(self._push_forever())

    async def disconnect(self, code):
        loop = getattr(self, "loop", None)
        if loop is not None:
            loop.cancel()

    async def _push_forever(self):
        while True:
            now = await database_sync_to_async(snapshot)(self.user, self.watch)
            diff = changes(self.last, now)
            if any(diff.values()):
                await self.send_json({"type": "update", **diff})
            self.last = now
            await asyncio.sleep(LIVE_SECONDS)
