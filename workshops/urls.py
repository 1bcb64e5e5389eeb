from django.urls import path

from . import views

app_name = "workshops"

urlpatterns = [
    path("", views.workshop_list, name="list"),
    path("new/", views.workshop_create, name="create"),
    path("keys/", views.ssh_keys, name="ssh-keys"),
    path("keys/<int:pk>/revoke/", views.ssh_key_revoke, name="ssh-key-revoke"),
    path("<int:pk>/", views.workshop_detail, name="detail"),
    path("<int:pk>/resources/", views.workshop_resources, name="resources"),
    path("<int:pk>/env/", views.workshop_env, name="env"),
    path("<int:pk>/terminal/", views.workshop_terminal, name="terminal"),
    path("<int:pk>/status/", views.workshop_status, name="status"),
    path("<int:pk>/<str:action>/", views.workshop_action, name="action"),
]
