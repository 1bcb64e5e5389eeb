import logging

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

from aladdin.wsauth import accepted_subprotocol, refuse, user_refusal

logger = logging.getLogger(__name__)


class WhoAmIConsumer(AsyncJsonWebsocketConsumer):
    """Tells a connected client who it is; proves websocket authentication.

    Anonymous connections are closed before any message flows (4401).
    """

    async def connect(self):
        user = self.scope.get("user")
        refused = user_refusal(user)
        if refused is not None:
            await refuse(self, refused)
            return
        await self.accept(subprotocol=accepted_subprotocol(self.scope))
        await self.send_json({"type": "hello", "user_id": user.pk})


def notices_group(user_id: int) -> str:
    return f"notices.{user_id}"


def _unread(user_id: int) -> int:
    from .models import Notification

    return Notification.objects.filter(user_id=user_id, read_at__isnull=True).count()


class NoticesConsumer(AsyncJsonWebsocketConsumer):
    """The user's unread notice count, now and whenever it changes (the bell, the plugin).

    Sends ``{"type": "unread", "count": n}`` on connect and after each new
    notice or read mark; only the user's own group, so only their own count.
    """

    async def connect(self):
        user = self.scope.get("user")
        refused = user_refusal(user)
        if refused is not None:
            await refuse(self, refused)
            return
        self.group = notices_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept(subprotocol=accepted_subprotocol(self.scope))
        count = await database_sync_to_async(_unread)(user.pk)
        await self.send_json({"type": "unread", "count": count})

    async def disconnect(self, code):
        group = getattr(self, "group", None)
        if group is not None:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def notices_unread(self, event):
        await self.send_json({"type": "unread", "count": event["count"]})


def push_unread_count(user_id: int) -> None:
    """Tell the user's open sockets their unread count; best effort (Redis down loses only this)."""
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        async_to_sync(layer.group_send)(
            notices_group(user_id), {"type": "notices.unread", "count": _unread(user_id)}
        )
    except Exception:  # noqa: BLE001 - a live update must never fail the write that caused it
        logger.warning("pushing the unread count of user %s failed", user_id, exc_info=True)
