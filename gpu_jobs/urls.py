from django.urls import path

from . import views

app_name = "gpu_jobs"

urlpatterns = [
    path("", views.job_list, name="list"),
    path("new/", views.job_launch, name="launch"),
    path("configurations/", views.configuration_list, name="configurations"),
    path("costs/", views.costs, name="costs"),
    path("costs.csv", views.costs_csv, name="costs_csv"),
    path("costs/budget/", views.budget_update, name="budget"),
    path("costs/idle/", views.idle_policy_update, name="idle_policy"),
    path(
        "configurations/<int:pk>/delete/",
        views.configuration_delete,
        name="configuration_delete",
    ),
    path("<int:pk>/", views.job_detail, name="detail"),
    path("<int:pk>/status/", views.job_status, name="status"),
    path("<int:pk>/terminal/", views.job_terminal, name="terminal"),
    path("<int:pk>/log/", views.job_log_download, name="log_download"),
    path("<int:pk>/logs.tar.gz", views.job_log_archive, name="log_archive"),
    path("<int:pk>/stop/", views.job_stop, name="stop"),
    path("<int:pk>/delete/", views.job_delete, name="delete"),
    path("<int:pk>/ports/", views.job_port_add, name="port_add"),
    path("<int:pk>/ports/<int:port>/remove/", views.job_port_remove, name="port_remove"),
]
