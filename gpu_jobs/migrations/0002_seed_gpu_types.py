"""Seed the card presets of SPEC §4.1. Idempotent: re-running updates the rows by code."""

from django.db import migrations

GPU_TYPES = [
    {
        "code": "40g",
        "name": "DC100 (Hopper) 40G",
        "memory_gb": 40,
        "price_micro_per_hour": 1_280_000,
        "parallelism_weight": 1,
        "cpu_millicores": 5_000,
        "memory_mib": 60 * 1024,
        "multi_card_allowed": False,
    },
    {
        "code": "80g",
        "name": "DC100 (Hopper) 80G",
        "memory_gb": 80,
        "price_micro_per_hour": 2_560_000,
        "parallelism_weight": 2,
        "cpu_millicores": 10_000,
        "memory_mib": 121 * 1024,
        "multi_card_allowed": True,
    },
]


def seed_gpu_types(apps, schema_editor):
    GpuType = apps.get_model("gpu_jobs", "GpuType")
    for row in GPU_TYPES:
        defaults = {k: v for k, v in row.items() if k != "code"}
        GpuType.objects.update_or_create(code=row["code"], defaults=defaults)


class Migration(migrations.Migration):
    dependencies = [("gpu_jobs", "0001_initial")]

    operations = [migrations.RunPython(seed_gpu_types, migrations.RunPython.noop)]
