from channels.generic.websocket import AsyncJsonWebsocketConsumer


class WhoAmIConsumer(AsyncJsonWebsocketConsumer):
    """Tells a connected client who it is; proves websocket authentication.

    Anonymous connections are closed before any message flows (4401).
    """

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        subprotocols = self.scope.get("subprotocols") or []
        await self.accept(subprotocol="bearer" if subprotocols[:1] == ["bearer"] else None)
        await self.send_json({"type": "hello", "user_id": user.pk})
