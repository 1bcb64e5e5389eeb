from django.urls import path
from django.views.generic import RedirectView

from . import views

app_name = "billing"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="billing:plans"), name="index"),
    path("plans/", views.plans, name="plans"),
    path("ledger/", views.ledger, name="ledger"),
    path("checkout/", views.checkout, name="checkout"),
    path("orders/", views.orders, name="orders"),
    path("orders/<str:out_trade_no>/pay/", views.order_pay, name="order_pay"),
    path("orders/<str:out_trade_no>/return/", views.order_return, name="order_return"),
    path("orders/<str:out_trade_no>/invoice/", views.invoice_request, name="invoice_request"),
    path(
        "orders/<str:out_trade_no>/invoice/download/",
        views.invoice_download,
        name="invoice_download",
    ),
    path("alipay/notify/", views.alipay_notify, name="alipay_notify"),
    path("sandbox/<str:out_trade_no>/", views.sandbox_pay, name="sandbox_pay"),
]
