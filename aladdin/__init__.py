"""Aladdin: the portal of a GPU compute platform that students can afford."""

from .celery import app as celery_app

__all__ = ("celery_app",)
