"""System checks of external access (``manage.py check --deploy``).

The port proxy serves students' servers at ``<token>.<PORTS_DOMAIN>``. On the
portal's own registrable domain (``ports.portal.example.edu`` beside
``portal.example.edu``) a student's page could set cookies for the parent
domain that the portal would then read (session fixation, CSRF token
tossing), and browsers treat it as same-site, so SameSite cookies would go
there too. Production needs another registrable domain: refused here.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

# Second-level labels under which a country code TLD sells names
# (example.edu.cn, example.co.uk): the registrable domain is then three labels.
_SECOND_LEVEL = {"ac", "co", "com", "edu", "gov", "mil", "ne", "net", "or", "org"}


def registrable_domain(host: str) -> str:
    """``a.b.example.edu.cn`` -> ``example.edu.cn``; ``x.example.net`` -> ``example.net``."""
    labels = host.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _portal_hosts() -> set[str]:
    hosts = {urlsplit(settings.SITE_URL).hostname or ""}
    hosts |= {h.lstrip(".") for h in settings.ALLOWED_HOSTS if h not in ("*", "")}
    names = set()
    for host in hosts:
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if host:
                names.add(host.lower())
    return names


@register(Tags.security, deploy=True)
def ports_domain_is_another_site(app_configs, **kwargs):
    ports_host = (
        settings.PORTS_DOMAIN.rsplit(":", 1)[0]
        if ":" in settings.PORTS_DOMAIN
        else (settings.PORTS_DOMAIN)
    )
    problems = []
    if ports_host == "localhost" or ports_host.endswith(".localhost"):
        problems.append(
            Error(
                "ALADDIN_PORTS_DOMAIN is localhost: students' servers would be unreachable.",
                hint="Set it to a wildcard DNS name on another registrable domain "
                "(docs/operations.md, 'External access').",
                id="gpu_jobs.E001",
            )
        )
    else:
        same = sorted(
            h for h in _portal_hosts() if registrable_domain(h) == registrable_domain(ports_host)
        )
        if same:
            problems.append(
                Error(
                    f"ALADDIN_PORTS_DOMAIN {settings.PORTS_DOMAIN} shares the registrable domain "
                    f"{registrable_domain(ports_host)} with the portal ({', '.join(same)}): a "
                    "student's server could set cookies the portal reads.",
                    hint="Use a domain of its own, e.g. aladdin-ports.net for portal.example.edu.",
                    id="gpu_jobs.E002",
                )
            )
    if settings.PORTS_SCHEME != "https":
        problems.append(
            Warning(
                "ALADDIN_PORTS_SCHEME is http: students' servers are served without TLS.",
                hint="Terminate TLS for *.<PORTS_DOMAIN> at the proxy and set it to https.",
                id="gpu_jobs.W001",
            )
        )
    return problems
