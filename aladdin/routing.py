"""Websocket routes. Each app appends its consumers here as issues add them."""

from django.urls import path

from aladdin.accounts.consumers import NoticesConsumer, WhoAmIConsumer
from aladdin.live import LiveConsumer
from gpu_jobs.consumers import JobDebugConsumer, JobLogConsumer, JobTerminalConsumer
from workshops.consumers import WorkshopTerminalConsumer

websocket_urlpatterns = [
    path("ws/whoami/", WhoAmIConsumer.as_asgi()),
    path("ws/live/", LiveConsumer.as_asgi()),
    path("ws/notifications/", NoticesConsumer.as_asgi()),
    path("ws/workshops/<int:pk>/terminal/", WorkshopTerminalConsumer.as_asgi()),
    path("ws/jobs/<int:pk>/logs/", JobLogConsumer.as_asgi()),
    path("ws/jobs/<int:pk>/terminal/", JobTerminalConsumer.as_asgi()),
    path("ws/jobs/<int:pk>/debug/", JobDebugConsumer.as_asgi()),
]
