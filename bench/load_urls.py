"""The portal's routes and ``/bench/bare``: the load benchmark's baseline, served by the same server."""

from django.http import HttpResponse
from django.urls import path

from aladdin.urls import urlpatterns as portal


def bare(request):
    """Nothing but Django's request cycle and the portal's middleware: no query, no template."""
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [path("bench/bare", bare), *portal]
