"""Seed the plans of SPEC §3.1. Idempotent: re-running updates the rows by code."""

from django.db import migrations

# µDCU (1 DCU = 1,000,000 µDCU) and fen (0.01 yuan); integers only.
PLANS = [
    {
        "code": "free",
        "name": "免费版 Free",
        "kind": "plan",
        "tier": 0,
        "dcu_micro": 0,
        "gpu_parallelism": 0,
        "free_storage_gib": 30,
        "max_storage_gib": 30,
        "price_fen": 0,
        "education_price_fen": 0,
        # Nobody buys "free": it is what a user without a subscription gets.
        "is_active": False,
        "sort_order": 0,
    },
    {
        "code": "trial",
        "name": "尝鲜版 Trial",
        "kind": "plan",
        "tier": 1,
        "dcu_micro": 20_000_000,
        "gpu_parallelism": 2,
        "free_storage_gib": 30,
        "max_storage_gib": 500,
        "price_fen": 13_500,
        "education_price_fen": 11_900,
        "is_active": True,
        "sort_order": 10,
    },
    {
        "code": "basic",
        "name": "初级版 Basic",
        "kind": "plan",
        "tier": 2,
        "dcu_micro": 56_600_000,
        "gpu_parallelism": 4,
        "free_storage_gib": 60,
        "max_storage_gib": 500,
        "price_fen": 36_500,
        "education_price_fen": 32_500,
        "is_active": True,
        "sort_order": 20,
    },
    {
        "code": "advanced",
        "name": "高级版 Advanced",
        "kind": "plan",
        "tier": 3,
        "dcu_micro": 500_000_000,
        "gpu_parallelism": 8,
        "free_storage_gib": 100,
        "max_storage_gib": 2048,
        "price_fen": 310_000,
        "education_price_fen": 275_000,
        "is_active": True,
        "sort_order": 30,
    },
    {
        "code": "extension",
        "name": "扩展包 Extension pack",
        "kind": "extension",
        "tier": None,
        "dcu_micro": 10_000_000,
        "gpu_parallelism": 0,
        "free_storage_gib": 0,
        "max_storage_gib": 0,
        "price_fen": 6_750,
        "education_price_fen": 5_950,
        "is_active": True,
        "sort_order": 40,
    },
]


def seed_plans(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for row in PLANS:
        defaults = {k: v for k, v in row.items() if k != "code"}
        Plan.objects.update_or_create(code=row["code"], defaults={**defaults, "period_days": 30})


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(seed_plans, migrations.RunPython.noop)]
