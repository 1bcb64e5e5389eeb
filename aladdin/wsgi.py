"""WSGI entry point (the portal normally runs under daphne via asgi.py)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aladdin.settings")
application = get_wsgi_application()
