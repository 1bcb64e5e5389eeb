"""The portal's routes and the load benchmark's baselines, served by the same server.

- ``/bench/bare``: the baseline the issue names, Django's request cycle and
  the portal's middleware, no query, no template.
- ``/bench/api-floor``: the least an API list can cost here, the REST API's
  own authentication (the bearer token, one query), rate limit (one Redis
  call), permission and JSON rendering, with no rows to read: what every
  list pays before its own query.
"""

from django.http import HttpResponse
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from aladdin.urls import urlpatterns as portal


def bare(request):
    """Nothing but Django's request cycle and the portal's middleware: no query, no template."""
    return HttpResponse(b"ok", content_type="text/plain")


class ApiFloor(APIView):
    """An empty page in the API lists' format, behind the API's own checks (settings' defaults)."""

    def get(self, request):
        return Response({"count": 0, "next": None, "previous": None, "results": []})


urlpatterns = [path("bench/bare", bare), path("bench/api-floor", ApiFloor.as_view()), *portal]
