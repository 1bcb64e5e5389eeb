from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from oauth2_provider import views as oauth2_views

from aladdin import views
from aladdin.accounts.api import MeView, notification_urlpatterns
from aladdin.accounts.oauth import IDEAuthorizationView
from aladdin.ops import views as ops_views
from billing import api as billing_api
from gpu_jobs import api as gpu_jobs_api
from storage import api as storage_api
from workshops import api as workshops_api

oauth_patterns = [
    path("authorize/", IDEAuthorizationView.as_view(), name="authorize"),
    path("token/", oauth2_views.TokenView.as_view(), name="token"),
    path("revoke_token/", oauth2_views.RevokeTokenView.as_view(), name="revoke-token"),
    path("introspect/", oauth2_views.IntrospectTokenView.as_view(), name="introspect"),
]

api_v1 = [
    path("me", MeView.as_view(), name="api-me"),
    *notification_urlpatterns,
    path("billing/balance", billing_api.BalanceView.as_view(), name="api-billing-balance"),
    path("billing/plans", billing_api.PlansView.as_view(), name="api-billing-plans"),
    path("billing/ledger", billing_api.LedgerView.as_view(), name="api-billing-ledger"),
    *billing_api.order_urlpatterns,
    *workshops_api.urlpatterns,
    *gpu_jobs_api.urlpatterns,
    *storage_api.urlpatterns,
]

urlpatterns = [
    path("", views.home, name="home"),
    path("overview/", views.overview, name="overview"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("", include("aladdin.accounts.urls")),
    path("billing/", include("billing.urls")),
    path("workshops/", include("workshops.urls")),
    path("jobs/", include("gpu_jobs.urls")),
    path("storage/", include("storage.urls")),
    # allauth.mfa is for staff (aladdin/backoffice/mfa.py): its management
    # pages (enrol TOTP, …) are not offered to students; the login's own MFA
    # step stays, for staff who log in on the students' page.
    re_path(r"^accounts/2fa/(?!authenticate/|reauthenticate/)", views.not_offered),
    path("accounts/", include("allauth.urls")),
    path("o/", include((oauth_patterns, "oauth2_provider"))),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Before admin/: the back office's own pages (user 360°, queues, overview).
    path("admin/backoffice/", include("aladdin.backoffice.urls")),
    path("admin/", admin.site.urls),
]
