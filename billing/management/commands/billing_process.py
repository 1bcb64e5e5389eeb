"""Run billing period processing once, by hand or from cron: ``billing_process --as-of``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from aladdin.lib.timeutil import parse_as_of
from billing import services


class Command(BaseCommand):
    help = (
        "Start, end and carry over every billing period due by --as-of (default now); "
        "the same work as the billing.process_periods beat task."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--as-of",
            dest="as_of",
            default=None,
            help="ISO 8601 time, e.g. 2026-05-01T03:00:00+08:00; without an offset it is "
            "Asia/Shanghai time. Default: now.",
        )

    def handle(self, *args, as_of=None, **options):
        if as_of:
            try:
                when = parse_as_of(as_of)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        else:
            when = timezone.now()
        count = services.billing_process_due(as_of=when)
        self.stdout.write(
            f"Processed {count} user(s) due by {timezone.localtime(when).isoformat()}."
        )
