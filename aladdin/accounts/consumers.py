from channels.generic.websocket import AsyncJsonWebsocketConsumer

from aladdin.wsauth import accepted_subprotocol, refuse, user_refusal


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
