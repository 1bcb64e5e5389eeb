"""GET /metrics: the Prometheus scrape endpoint, for monitoring hosts only.

Allowed when the request carries ``Authorization: Bearer <METRICS_TOKEN>``
(if that setting is set), or when every address that the request names is
in ``METRICS_ALLOWED_IPS`` (default: loopback). Anything else gets the same
404 as a page that does not exist: the metrics say how many users, orders
and jobs the platform has, and that the endpoint exists at all is no one
else's business.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from functools import lru_cache

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client.exposition import choose_encoder

from .metrics import registry

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_FORWARDED_FOR = re.compile(r'for="?\[?([^\]";,]+)', re.IGNORECASE)


@lru_cache(maxsize=8)
def _networks(allowed: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(item, strict=False) for item in allowed)


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _named_addresses(request) -> list[str]:
    """Every client address the request names: the peer and each proxy header's entries.

    All of them, not only the one that TRUSTED_PROXY_COUNT picks: with a
    proxy on the portal's own host and that count left at 0, every request
    from the Internet arrives from 127.0.0.1, and only the header tells it
    apart; a server or a count that trusts the wrong entry would take one
    the client wrote. A forged entry can only add an address that must also
    be allowed, so it can get a request refused but never admitted.
    """
    meta = request.META
    named = [meta.get("REMOTE_ADDR", "")]
    if "HTTP_X_FORWARDED_FOR" in meta:
        named += meta["HTTP_X_FORWARDED_FOR"].split(",")
    if "HTTP_X_REAL_IP" in meta:
        named.append(meta["HTTP_X_REAL_IP"])
    if "HTTP_FORWARDED" in meta:
        named += _FORWARDED_FOR.findall(meta["HTTP_FORWARDED"]) or [""]
    return named


def _from_allowed_address(request) -> bool:
    networks = _networks(tuple(settings.METRICS_ALLOWED_IPS))
    for text in _named_addresses(request):
        address = _address(text)
        # An entry that is not an address ("unknown", garbage) cannot be checked: refuse.
        if address is None or not any(address in network for network in networks):
            return False
    return True


def _bearer(request) -> str | None:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def allowed(request) -> bool:
    """Whether ``request`` may read the metrics (see the module docstring)."""
    expected = settings.METRICS_TOKEN
    presented = _bearer(request)
    if expected and presented is not None:
        # A wrong token is refused even from an allowed address: it is a
        # misconfigured scraper or a guess, and neither should pass quietly.
        return hmac.compare_digest(presented.encode(), expected.encode())
    return _from_allowed_address(request)


@require_safe
@never_cache
def metrics(request):
    if not allowed(request):
        raise Http404
    # The format the scraper asks for (Accept): the classic text format by
    # default, OpenMetrics for a Prometheus that prefers it.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
