#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aladdin.settings")
    # Management commands in a source checkout default to development mode,
    # so `manage.py check`/`makemigrations` work without a SECRET_KEY. The
    # servers (asgi.py, wsgi.py, celery) keep DEBUG off unless it is set, and
    # production sets DEBUG=0 explicitly (docs/operations.md).
    os.environ.setdefault("DEBUG", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
