"""Site-wide pages: the landing page, the overview and /healthz."""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache

from aladdin import health
from aladdin.accounts import selectors as account_selectors
from aladdin.accounts.phone import mask_phone
from aladdin.workloads.quota import FREE_BASE
from billing import selectors as billing_selectors
from billing.models import Plan
from billing.services import ARREARS_CAP_MICRO, CARRY_DAYS
from gpu_jobs import selectors as gpu_selectors
from gpu_jobs.models import GpuType
from storage.choices import FEE_PER_GIB_DAY_MICRO, RETENTION_DAYS


@dataclass(frozen=True)
class LandingPlan:
    """A plan on the landing page: the plan, and its compute in hours of the cheapest card."""

    plan: Plan
    card_hours: str  # "15.6"; "" when there is no card to count in


def _card_hours(micro: int, card: GpuType | None) -> str:
    if card is None or not micro or card.price_micro_per_hour <= 0:
        return ""
    hours = Decimal(micro) / Decimal(card.price_micro_per_hour)
    return str(hours.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def home(request):
    """Visitors see what they would buy (plans, GPUs, what a DCU is, the FAQ); users their overview.

    Every price comes from the database (plans and GPU types are staff-edited data).
    """
    if request.user.is_authenticated:
        return redirect("overview")
    cards = list(gpu_selectors.gpu_types())
    cheapest = cards[0] if cards else None  # GpuType orders by price
    try:
        free = billing_selectors.free_plan()
    except Plan.DoesNotExist:
        free = None
    plans = [
        LandingPlan(plan=plan, card_hours=_card_hours(plan.dcu_micro, cheapest))
        for plan in billing_selectors.plans_for_sale()
    ]
    minutes_per_dcu = ""
    if cheapest is not None and cheapest.price_micro_per_hour > 0:
        minutes = Decimal(60 * 1_000_000) / Decimal(cheapest.price_micro_per_hour)
        minutes_per_dcu = str(minutes.quantize(Decimal("1"), rounding=ROUND_HALF_UP))
    return render(
        request,
        "home.html",
        {
            "plans": plans,
            "free_plan": free,
            "free_cpu": FREE_BASE.cpu_millicores // 1000,
            "free_memory_gib": FREE_BASE.memory_mib // 1024,
            "cards": cards,
            "cheapest": cheapest,
            "minutes_per_dcu": minutes_per_dcu,
            "storage_fee_micro": FEE_PER_GIB_DAY_MICRO,
            "arrears_cap_micro": ARREARS_CAP_MICRO,
            "carry_days": CARRY_DAYS,
            "retention_days": RETENTION_DAYS,
        },
    )


@login_required
def overview(request):
    # The balance card and the storage warning both need the plan in force:
    # read once here, in the balance, for both (the template passes balance.plan on).
    return render(
        request,
        "overview.html",
        {
            "masked_phone": mask_phone(request.user.phone),
            "ide_count": account_selectors.connected_ides(user=request.user).count(),
            "balance": billing_selectors.balance_for(request.user, timezone.now()),
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
