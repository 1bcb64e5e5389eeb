import pytest

from billing.choices import PlanKind
from billing.models import Plan

# SPEC §3.1, in µDCU and fen.
EXPECTED = {
    "free": ("plan", 0, 0, 0, 30, 30, 0, 0),
    "trial": ("plan", 1, 20_000_000, 2, 30, 500, 13_500, 11_900),
    "basic": ("plan", 2, 56_600_000, 4, 60, 500, 36_500, 32_500),
    "advanced": ("plan", 3, 500_000_000, 8, 100, 2048, 310_000, 275_000),
    "extension": ("extension", None, 10_000_000, 0, 0, 0, 6_750, 5_950),
}


@pytest.mark.django_db
def test_the_seeded_plans_match_the_spec_table():
    rows = {
        p.code: (
            p.kind,
            p.tier,
            p.dcu_micro,
            p.gpu_parallelism,
            p.free_storage_gib,
            p.max_storage_gib,
            p.price_fen,
            p.education_price_fen,
        )
        for p in Plan.objects.all()
    }
    assert rows == EXPECTED


@pytest.mark.django_db
def test_every_seeded_plan_lasts_30_days_and_has_its_bilingual_name():
    names = dict(Plan.objects.values_list("code", "name"))
    assert names["trial"] == "尝鲜版 Trial"
    assert names["basic"] == "初级版 Basic"
    assert names["advanced"] == "高级版 Advanced"
    assert names["extension"] == "扩展包 Extension pack"
    assert set(Plan.objects.values_list("period_days", flat=True)) == {30}


@pytest.mark.django_db
def test_tiers_order_trial_below_basic_below_advanced():
    tiers = list(
        Plan.objects.filter(kind=PlanKind.PLAN, tier__gte=1)
        .order_by("tier")
        .values_list("code", flat=True)
    )
    assert tiers == ["trial", "basic", "advanced"]


@pytest.mark.django_db
def test_seeding_again_updates_rows_instead_of_duplicating_them():
    from importlib import import_module

    from django.apps import apps

    seed = import_module("billing.migrations.0002_seed_plans")
    Plan.objects.filter(code="basic").update(price_fen=1)
    seed.seed_plans(apps, None)
    assert Plan.objects.count() == 5
    assert Plan.objects.get(code="basic").price_fen == 36_500
