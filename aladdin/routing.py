"""Websocket routes. Each app appends its consumers here as issues add them."""

from django.urls import path

from aladdin.accounts.consumers import WhoAmIConsumer

websocket_urlpatterns = [
    path("ws/whoami/", WhoAmIConsumer.as_asgi()),
]
