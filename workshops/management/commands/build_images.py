"""Build catalog images on this platform's backend (docs/operations.md, "Images").

    manage.py build_images                    # every active image not built yet
    manage.py build_images torch:2.6.0-cu124  # these only (a failed build is retried)
    manage.py build_images --wait             # and follow the builds until they end

The local backend builds in its agent (the operator's pip configuration,
an unprivileged build uid); images this host cannot provide are reported
unavailable with the reason, never built as something else.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from aladdin import cluster
from aladdin.cluster.base import DriverError
from aladdin.cluster.images import BuildState
from aladdin.workloads import images
from aladdin.workloads.models import Image


class Command(BaseCommand):
    help = "Build catalog images on the cluster backend (all active ones by default)."

    def add_arguments(self, parser):
        parser.add_argument("refs", nargs="*", help='images as "name:tag" (default: all active)')
        parser.add_argument("--wait", action="store_true", help="follow the builds until they end")
        parser.add_argument(
            "--poll", type=float, default=2.0, help="seconds between progress reports with --wait"
        )

    def handle(self, *args, refs, wait, poll, **options):
        driver = cluster.get_driver()
        rows = list(Image.objects.filter(is_active=True)) if not refs else []
        for ref in refs:
            row = images.image_for_ref(ref)
            if row is None:
                raise CommandError(f"{ref} is not in the image catalog")
            rows.append(row)
        try:
            for row in rows:
                row = images.image_build(image=row, driver=driver)
                self._report(row)
            while wait and any(r.build_state == BuildState.BUILDING for r in rows):
                time.sleep(poll)
                rows = [images.image_refresh(image=r, driver=driver) for r in rows]
                for row in rows:
                    if row.build_state == BuildState.BUILDING:
                        self._report(row)
        except DriverError as exc:
            raise CommandError(str(exc)) from exc
        if wait:
            for row in rows:
                self._report(row)
            if any(r.build_state == BuildState.FAILED for r in rows):
                raise CommandError("some builds failed (reasons above)")

    def _report(self, row: Image) -> None:
        line = f"{row.ref}: {row.build_state}"
        if row.build_state == BuildState.BUILDING:
            line += f" {row.build_progress}% {row.build_step}"
        elif row.build_reason:
            line += f" ({row.build_reason})"
        elif row.cpu_only:
            line += " (CPU only on this host)"
        self.stdout.write(line)
