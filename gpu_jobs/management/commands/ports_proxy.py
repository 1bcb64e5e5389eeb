"""Serve the jobs' exposed ports at <token>.<PORTS_DOMAIN> (``ports`` in Procfile.dev; gpu_jobs/proxy.py)."""

from __future__ import annotations

import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from gpu_jobs.proxy import PortProxy


def _interrupt(signum, frame):
    # SIGTERM (supervisord, systemd) ends it as Ctrl-C does.
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run the port proxy: each exposed job port at <token>.<PORTS_DOMAIN>."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=settings.PORTS_BIND)
        parser.add_argument("--port", type=int, default=settings.PORTS_PORT)

    def handle(self, *args, bind, port, **options):
        server = PortProxy((bind, port), domain=settings.PORTS_DOMAIN)
        signal.signal(signal.SIGTERM, _interrupt)
        self.stdout.write(
            f"port proxy on {bind}:{port}, URLs {settings.PORTS_SCHEME}://<token>.{settings.PORTS_DOMAIN}/"
        )
        try:
            server.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
