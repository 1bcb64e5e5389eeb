from django.urls import path

from . import views

app_name = "storage"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("expand/", views.expand, name="expand"),
]
