"""The admin site support staff log in to (``/admin/``).

Login by phone number (any format) or username and password, then, where
required, a code from an authenticator app (``mfa.py``). Every admin page
and every back-office page (wrapped in ``admin_view``) asks
``has_permission``: active staff who gave their second factor.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth import login as auth_login
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from . import mfa
from .forms import StaffAuthenticationForm, TotpCodeForm

# Django 5.2's admin home labels its table columns with these (for screen
# readers); its zh_Hans catalog has no translation yet, so ours supplies them.
DJANGO_ADMIN_STRINGS = (
    gettext_noop("Model name"),
    gettext_noop("Add link"),
    gettext_noop("Change or view list link"),
)


class StaffLoginView(LoginView):
    """Django's login view; staff who owe a second factor are sent to its step first."""

    def form_valid(self, form):
        user = form.get_user()
        if not mfa.needs_second_factor(user):
            response = super().form_valid(form)
            mfa.mark_passed(self.request, user)
            return response
        mfa.set_pending(self.request, user)
        return _second_step(user, self.get_success_url())


def _second_step(user, next_url: str) -> HttpResponse:
    step = "admin:login_code" if mfa.totp_of(user) else "admin:login_setup"
    return HttpResponseRedirect(f"{reverse(step)}?{urlencode({REDIRECT_FIELD_NAME: next_url})}")


def _next_url(request: HttpRequest) -> str:
    url = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME) or ""
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return reverse("admin:index")


class BackOfficeSite(admin.AdminSite):
    site_header = _("Aladdin back office")
    site_title = _("Aladdin back office")
    index_title = _("Support")
    login_form = StaffAuthenticationForm

    def has_permission(self, request):
        return super().has_permission(request) and mfa.passed(request)

    def get_urls(self):
        return [
            path("login/code/", self.login_code, name="login_code"),
            path("login/setup/", self.login_setup, name="login_setup"),
            *super().get_urls(),
        ]

    @method_decorator(never_cache)
    def login(self, request, extra_context=None):
        user = request.user
        if request.method == "GET" and self.has_permission(request):
            return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
        if request.method == "GET" and user.is_active and user.is_staff:
            # Logged in on the students' page without the second factor the
            # back office needs: no second password, straight to the code.
            mfa.set_pending(request, user)
            return _second_step(user, _next_url(request))
        context = {
            **self.each_context(request),
            "title": _("Log in"),
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username(),
        }
        if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
            context[REDIRECT_FIELD_NAME] = reverse("admin:index", current_app=self.name)
        context.update(extra_context or {})
        request.current_app = self.name
        return StaffLoginView.as_view(
            extra_context=context,
            authentication_form=self.login_form,
            template_name="admin/login.html",
        )(request)

    def _finish(self, request: HttpRequest, user) -> HttpResponse:
        auth_login(request, user, backend=user.backend)
        mfa.mark_passed(request, user)
        return HttpResponseRedirect(_next_url(request))

    def _step_page(self, request, template, user, form, **extra) -> TemplateResponse:
        request.current_app = self.name
        return TemplateResponse(
            request,
            template,
            {
                **self.each_context(request),
                "title": _("Second step of the login"),
                "form": form,
                "staff_user": user,
                "next": _next_url(request),
                **extra,
            },
        )

    def _expired(self, request: HttpRequest) -> HttpResponse:
        return HttpResponseRedirect(
            f"{reverse('admin:login')}?{urlencode({REDIRECT_FIELD_NAME: _next_url(request)})}"
        )

    @method_decorator(sensitive_post_parameters("code"))
    @method_decorator(csrf_protect)
    @method_decorator(never_cache)
    def login_code(self, request):
        user = mfa.pending_user(request)
        if user is None or mfa.totp_of(user) is None:
            return self._expired(request)
        form = TotpCodeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            error = mfa.check_code(request, user, form.cleaned_data["code"])
            if error is None:
                return self._finish(request, user)
            form.add_error("code", error)
        return self._step_page(request, "backoffice/login_code.html", user, form)

    @method_decorator(sensitive_post_parameters("code"))
    @method_decorator(csrf_protect)
    @method_decorator(never_cache)
    def login_setup(self, request):
        user = mfa.pending_user(request)
        if user is None:
            return self._expired(request)
        if mfa.totp_of(user) is not None:
            return _second_step(user, _next_url(request))
        form = TotpCodeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            error = mfa.activate(request, user, form.cleaned_data["code"])
            if error is None:
                return self._finish(request, user)
            form.add_error("code", error)
        secret = mfa.setup_secret(request)
        url = mfa.setup_url(user, secret)
        return self._step_page(
            request,
            "backoffice/login_setup.html",
            user,
            form,
            secret=secret,
            otpauth_url=url,
            qr_svg=mfa.setup_svg(url),
        )
