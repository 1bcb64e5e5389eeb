"""The back office's own pages, under /admin/backoffice/ (each behind admin.site.admin_view)."""

from django.urls import path  # noqa: F401 - the pages add their routes below

app_name = "backoffice"

urlpatterns: list = []
