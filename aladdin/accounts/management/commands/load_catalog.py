"""Load every app's catalog data (plans, images, presets, clients) idempotently.

Each app that has catalog data provides ``<app>.catalog.load()``; staff edits
made since are kept (loaders create what is missing, never overwrite).
"""

from importlib import import_module

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = "Load catalog data of every app (idempotent)."

    def handle(self, *args, **options):
        for config in apps.get_app_configs():
            try:
                module = import_module(f"{config.name}.catalog")
            except ModuleNotFoundError as exc:
                if exc.name != f"{config.name}.catalog":
                    raise
                continue
            with transaction.atomic():
                result = module.load()
            self.stdout.write(f"{config.label}: {result}")
