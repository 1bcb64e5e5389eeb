from django.urls import path

from . import views

app_name = "storage"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("expand/", views.expand, name="expand"),
    path("files/", views.files_page, name="files"),
    path("files/download/", views.files_download, name="files-download"),
    path("files/check/", views.files_check, name="files-check"),
    path("files/upload/", views.files_upload, name="files-upload"),
    path("files/<str:action>/", views.files_action, name="files-action"),
]
