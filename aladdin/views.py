"""Site-wide pages: the overview and /healthz."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from aladdin import health
from aladdin.accounts import selectors as account_selectors
from aladdin.accounts.phone import mask_phone


def home(request):
    if request.user.is_authenticated:
        return redirect("overview")
    return render(request, "home.html")


@login_required
def overview(request):
    return render(
        request,
        "overview.html",
        {
            "masked_phone": mask_phone(request.user.phone),
            "ide_count": account_selectors.connected_ides(user=request.user).count(),
        },
    )


@never_cache
def healthz(request):
    ok, checks = health.check_all()
    return JsonResponse(
        {"status": "ok" if ok else "fail", "checks": checks}, status=200 if ok else 503
    )


def not_offered(request, *args, **kwargs):
    """A page a library would add that the portal does not offer (a 404, as any unknown URL)."""
    raise Http404
