from django.urls import path
from django.views.generic import RedirectView

from . import views

app_name = "billing"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="billing:plans"), name="index"),
    path("plans/", views.plans, name="plans"),
    path("ledger/", views.ledger, name="ledger"),
]
