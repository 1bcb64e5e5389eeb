"""``manage.py ssh_gateway``: the SSH gateway in the foreground (``ssh`` in Procfile.dev)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from aladdin.sshgw.server import serve


class Command(BaseCommand):
    help = "Run the SSH gateway (workshops over SSH) until SIGTERM or Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=None, help=f"address (default {settings.SSH_BIND})")
        parser.add_argument(
            "--port", type=int, default=None, help=f"port (default {settings.SSH_PORT})"
        )

    def handle(self, *args, bind=None, port=None, **options):
        serve(host=bind, port=port)
