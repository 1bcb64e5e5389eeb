"""The client's address, decided in one place: REMOTE_ADDR + trusted X-Forwarded-For hops.

Per-IP limits (SMS sends, allauth's login limits, DRF's anonymous throttle)
all read ``request.META["REMOTE_ADDR"]``. The servers never interpret
``X-Forwarded-For`` themselves (daphne runs without ``--proxy-headers``,
uvicorn with ``--no-proxy-headers``): each would trust it in its own way
(daphne takes the *left-most* entry, which the client writes), so a forged
header would become the client's address and dodge every per-IP limit.
Instead :class:`ClientAddressMiddleware`, first in MIDDLEWARE, rewrites
REMOTE_ADDR from ``settings.TRUSTED_PROXY_COUNT``:

- 0 (default): the header is ignored; REMOTE_ADDR is the TCP peer.
- N > 0: each of our N proxies appends the address it received the
  request from, so the N-th entry from the right is the client as our
  outermost proxy saw it; entries left of it are whatever the client sent.

allauth (ALLAUTH_TRUSTED_PROXY_COUNT) and DRF (NUM_PROXIES) are set to 0 so
that they take the rewritten REMOTE_ADDR as it is and never look at the
header a second time.
"""

from __future__ import annotations

import ipaddress
import logging

from django.conf import settings
from django.utils.deprecation import MiddlewareMixin

logger = logging.getLogger(__name__)


def client_address(*, peer: str, forwarded_for: str | None, trusted_proxies: int) -> str:
    """The client's address from the TCP peer and the X-Forwarded-For header.

    A header with fewer entries than trusted proxies, or whose chosen entry is
    not an IP address, did not come through all of our proxies: the peer is
    kept (never an address the client may have written).
    """
    if trusted_proxies <= 0 or not forwarded_for:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    if len(hops) < trusted_proxies:
        logger.warning(
            "X-Forwarded-For has %d entries but TRUSTED_PROXY_COUNT is %d; using the peer %s",
            len(hops),
            trusted_proxies,
            peer,
        )
        return peer
    candidate = hops[-trusted_proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        logger.warning("X-Forwarded-For entry %r is not an IP address; using the peer", candidate)
        return peer


class ClientAddressMiddleware(MiddlewareMixin):
    """Sets REMOTE_ADDR to the client's address (see the module docstring).

    MiddlewareMixin makes it both sync and async capable, so it does not push
    the ASGI request path into a thread.
    """

    def process_request(self, request):
        peer = request.META.get("REMOTE_ADDR", "")
        # Read per request so that override_settings in tests applies.
        request.META["REMOTE_ADDR"] = client_address(
            peer=peer,
            forwarded_for=request.META.get("HTTP_X_FORWARDED_FOR"),
            trusted_proxies=settings.TRUSTED_PROXY_COUNT,
        )
        request.META["ALADDIN_PEER_ADDR"] = peer
