from django.urls import path

from . import views

urlpatterns = [
    path("account/", views.account, name="account"),
    path("account/language/", views.set_language, name="set_language"),
    path("account/education/", views.education_request, name="education_request"),
    path(
        "account/education/confirm/<str:token>/",
        views.education_confirm,
        name="education_confirm",
    ),
    path("account/ides/<int:token_id>/revoke/", views.ide_revoke, name="ide_revoke"),
    path("account/password/new/", views.password_new, name="password_new"),
    path(
        "account/notifications/",
        views.notification_preferences,
        name="notification_preferences",
    ),
    path("notifications/", views.notifications, name="notifications"),
    path("notifications/<int:pk>/read/", views.notification_read, name="notification_read"),
    path("notifications/<int:pk>/open/", views.notification_open, name="notification_open"),
    path("notifications/read-all/", views.notifications_read_all, name="notifications_read_all"),
    # Override allauth's code pages: resend must answer the same for unknown
    # numbers, and wrong guesses are capped per code in Redis (see views).
    path(
        "accounts/login/code/confirm/",
        views.confirm_login_code,
        name="account_confirm_login_code",
    ),
    path("accounts/phone/verify/", views.verify_phone, name="account_verify_phone"),
    # Replaces allauth's e-mail based reset (accounts have no e-mail).
    path("accounts/password/reset/", views.password_reset_sms, name="password_reset_sms"),
]
