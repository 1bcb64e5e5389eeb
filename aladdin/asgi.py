"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aladdin.settings")
# Django must be set up before anything imports models (the routing does).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from aladdin.lib.accesslog import install_access_log_redaction  # noqa: E402
from aladdin.routing import websocket_urlpatterns  # noqa: E402
from aladdin.wsauth import PortalAuthMiddlewareStack, PortalOriginValidator  # noqa: E402

# Before the server (daphne, uvicorn) serves a request: no token in a URL
# reaches its access log.
install_access_log_redaction()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": PortalOriginValidator(
            PortalAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
