"""The back office's own pages, under /admin/backoffice/ (each behind admin.site.admin_view)."""

from django.contrib import admin
from django.urls import path

from . import views, views_overview

app_name = "backoffice"

urlpatterns: list = [
    # GET ?q=: phone (any format), username, order number, job id, workshop name.
    path("search/", admin.site.admin_view(views.search), name="search"),
    path("users/<int:user_id>/", admin.site.admin_view(views.user_360), name="user"),
    path(
        "users/<int:user_id>/act/<slug:name>/",
        admin.site.admin_view(views.act),
        name="user_act",
    ),
    path(
        "overview/",
        admin.site.admin_view(views_overview.overview_view),
        name="overview",
    ),
]
