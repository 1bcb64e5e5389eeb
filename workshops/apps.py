from django.apps import AppConfig


class WorkshopsConfig(AppConfig):
    """Images, resource presets, workshops (persistent dev environments), SSH keys, terminal."""

    name = "workshops"
