"""Write the container build file of a catalog image, from the same recipe the local backend builds.

    manage.py image_dockerfile torch:2.6.0-cu124 > Dockerfile
    docker build -t "$(manage.py image_dockerfile torch:2.6.0-cu124 --print-tag)" .

so the Kubernetes backend runs what the local backend runs
(docs/operations.md, "Images").
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from aladdin.cluster.images import render_dockerfile
from aladdin.workloads import images


class Command(BaseCommand):
    help = "Print the Dockerfile of a catalog image's recipe (or its container image with --print-tag)."

    def add_arguments(self, parser):
        parser.add_argument("ref", help='the image as "name:tag"')
        parser.add_argument(
            "--print-tag", action="store_true", help="print the image's container_image instead"
        )

    def handle(self, *args, ref, print_tag, **options):
        row = images.image_for_ref(ref)
        if row is None:
            raise CommandError(f"{ref} is not in the image catalog")
        if print_tag:
            if not row.container_image:
                raise CommandError(f"{ref} has no container image set (staff: edit the image)")
            self.stdout.write(row.container_image)
            return
        self.stdout.write(render_dockerfile(row.recipe()), ending="")
