"""Factories for the portal's main objects (factory-boy), and the helpers tests build data with.

Objects whose rows the ledger owns are made through the real services, never
by writing their columns: a subscription is ``billing.services.subscription_create``
(its plan grant, debt settlement and ledger entries come with it), a voucher is
``voucher_grant``, an extension pack ``extension_pack_buy``. A workshop is
created and started by ``workshops.services`` (through the test's driver).
Rows with no service behind them (jobs in a given state, configurations,
extra catalog entries) are plain model factories.

Seeded catalogs (plans, GPU types, images and presets) come from the same
code as the migrations and ``load_catalog``; ``seeded_plans()``,
``seeded_cards()`` and ``seeded_catalog()`` seed again (idempotent), since a
``transaction=True`` test's flush empties the tables for the tests after it.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from importlib import import_module
from zoneinfo import ZoneInfo

import factory
from factory.django import DjangoModelFactory

from aladdin.accounts.models import User
from billing.models import Account, Grant, Plan, Subscription
from gpu_jobs.choices import JobState
from gpu_jobs.models import GpuType, Job, JobConfiguration, JobWorker
from workshops.models import Image, ResourcePreset, Workshop

SH = ZoneInfo("Asia/Shanghai")
DCU = 1_000_000  # µDCU in one DCU
GIB = 1 << 30
PASSWORD = "S3cure-pass-word"

_phones = itertools.count(13800000001)


def sh(*args) -> datetime:
    """An aware Asia/Shanghai datetime: sh(2026, 4, 1, 10)."""
    return datetime(*args, tzinfo=SH)


def next_phone() -> str:
    """A phone number no other test user has."""
    return f"+86{next(_phones)}"


# --- seeded catalogs -------------------------------------------------------------------


def seeded_plans() -> dict[str, Plan]:
    """The plans of migration 0002 by code (seeded again: idempotent)."""
    from django.apps import apps

    import_module("billing.migrations.0002_seed_plans").seed_plans(apps, None)
    return {p.code: p for p in Plan.objects.all()}


def seeded_cards() -> dict[str, GpuType]:
    """The GPU types of gpu_jobs' migration 0002 by code ("40g", "80g")."""
    from django.apps import apps

    import_module("gpu_jobs.migrations.0002_seed_gpu_types").seed_gpu_types(apps, None)
    return {g.code: g for g in GpuType.objects.all()}


def seeded_catalog() -> dict:
    """What ``load_catalog`` loads: the default image (python 3.12) and the presets by name."""
    from workshops import catalog

    catalog.load()
    return {
        "image": Image.objects.get(name="python", tag="3.12"),
        "presets": {p.name: p for p in ResourcePreset.objects.all()},
    }


def _plan(code: str) -> Plan:
    plan = Plan.objects.filter(code=code).first()
    return plan if plan is not None else seeded_plans()[code]


def _card(code: str) -> GpuType:
    card = GpuType.objects.filter(code=code).first()
    return card if card is not None else seeded_cards()[code]


# --- accounts --------------------------------------------------------------------------


class UserFactory(DjangoModelFactory):
    """A signed-up student: verified phone, English pages, a known password.

    ``UserFactory(staff=True)``: staff; ``UserFactory(admin=True)``: staff and superuser.
    Tests read pages in English (the source strings); the zh-hans default is
    covered by the sign-up and language tests.
    """

    class Meta:
        model = User
        skip_postgeneration_save = True

    class Params:
        staff = factory.Trait(is_staff=True)
        admin = factory.Trait(is_staff=True, is_superuser=True)

    phone = factory.LazyFunction(next_phone)
    password = PASSWORD
    phone_verified = True
    language = "en"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        # The manager normalises the phone and hashes the password.
        return model_class.objects.create_user(*args, **kwargs)


# --- billing ---------------------------------------------------------------------------


class PlanFactory(DjangoModelFactory):
    """A plan beyond the seeded ones (the seeded ones: ``seeded_plans()``)."""

    class Meta:
        model = Plan

    code = factory.Sequence(lambda n: f"extra-{n}")
    name = factory.Sequence(lambda n: f"Extra {n}")
    tier = 2
    dcu_micro = DCU
    price_fen = 1


class AccountFactory(DjangoModelFactory):
    """A user's billing account row (no debt); the services create it on first use."""

    class Meta:
        model = Account
        django_get_or_create = ("user",)

    user = factory.SubFactory(UserFactory)


class SubscriptionFactory(DjangoModelFactory):
    """``SubscriptionFactory(user=u, plan_code="basic", at=t)``: through ``subscription_create``.

    Starts now, upgrades or queues exactly as the service decides; the plan's
    grant and ledger entries come with it. ``plan=`` takes a Plan instead.
    """

    class Meta:
        model = Subscription

    class Params:
        plan_code = "trial"

    user = factory.SubFactory(UserFactory)
    plan = factory.LazyAttribute(lambda o: _plan(o.plan_code))
    at = None
    source = ""

    @classmethod
    def _create(cls, model_class, *, user, plan, at=None, source=""):
        from billing import services

        return services.subscription_create(user=user, plan=plan, at=at, source=source)


class VoucherFactory(DjangoModelFactory):
    """``VoucherFactory(user=u, dcu=5)``: compute given by ``voucher_grant``; returns its Grant."""

    class Meta:
        model = Grant

    class Params:
        dcu = 10

    user = factory.SubFactory(UserFactory)
    amount_micro = factory.LazyAttribute(lambda o: o.dcu * DCU)
    reason = "Test voucher"
    key = factory.Sequence(lambda n: f"test-voucher-{n}")
    actor = None
    at = None

    @classmethod
    def _create(cls, model_class, *, user, amount_micro, reason, key, actor=None, at=None):
        from billing import services

        return services.voucher_grant(
            user=user, amount_micro=amount_micro, reason=reason, key=key, actor=actor, at=at
        )


class ExtensionPackFactory(DjangoModelFactory):
    """An extension pack bought through ``extension_pack_buy``; returns its Grant."""

    class Meta:
        model = Grant

    user = factory.SubFactory(UserFactory)
    plan = factory.LazyFunction(lambda: _plan("extension"))
    at = None
    source = ""

    @classmethod
    def _create(cls, model_class, *, user, plan, at=None, source=""):
        from billing import services

        return services.extension_pack_buy(user=user, plan=plan, at=at, source=source)


# --- workshops -------------------------------------------------------------------------


class ImageFactory(DjangoModelFactory):
    """An image beyond the catalog's (the catalog's: ``seeded_catalog()``)."""

    class Meta:
        model = Image

    name = factory.Sequence(lambda n: f"extra-{n}")
    tag = "1"


class ResourcePresetFactory(DjangoModelFactory):
    """A resource preset beyond the catalog's."""

    class Meta:
        model = ResourcePreset

    name = factory.Sequence(lambda n: f"extra-{n}")
    cpu_millicores = 1000
    memory_mib = 1024


class WorkshopFactory(DjangoModelFactory):
    """A workshop made by ``workshop_create`` and (``run=True``) started by the driver.

    ``preset`` is a preset's name ("2C/4G"); the catalog is loaded if missing.
    Starting needs a driver: the ``driver`` fixture's fake, or ``use_driver``'s.
    """

    class Meta:
        model = Workshop

    user = factory.SubFactory(UserFactory)
    name = "dev"
    preset = "2C/4G"
    env = None
    run = True

    @classmethod
    def _create(cls, model_class, *, user, name, preset, env=None, run=True):
        from workshops import services

        catalog = seeded_catalog()
        workshop = services.workshop_create(
            user=user,
            name=name,
            image=catalog["image"],
            preset=catalog["presets"][preset],
            env=env,
        )
        if run:
            services.workshop_start_apply(workshop_id=workshop.pk)
            workshop.refresh_from_db()
        return workshop


# --- GPU jobs --------------------------------------------------------------------------


class GpuTypeFactory(DjangoModelFactory):
    """A GPU type beyond the seeded "40g" and "80g" (those: ``seeded_cards()``)."""

    class Meta:
        model = GpuType

    code = factory.Sequence(lambda n: f"x{n}")
    name = "X"
    memory_gb = 1
    price_micro_per_hour = 1
    parallelism_weight = 1
    cpu_millicores = 1000
    memory_mib = 1024


class JobFactory(DjangoModelFactory):
    """A job row in a given state (running by default) with its worker rows.

    ``JobFactory(user=u, card="40g", workers=2, started_at=t)``: every worker
    shares the job's window, as a GPU Run's single worker does.
    """

    class Meta:
        model = Job
        skip_postgeneration_save = True

    class Params:
        card = "80g"

    user = factory.SubFactory(UserFactory)
    entry = "train.py"
    gpu_type = factory.LazyAttribute(lambda o: _card(o.card))
    cards_per_worker = 1
    workers = 1
    state = JobState.RUNNING

    @factory.post_generation
    def worker_rows(job, create, extracted, **kwargs):
        if create:
            JobWorker.objects.bulk_create(
                JobWorker(job=job, index=i, started_at=job.started_at, ended_at=job.ended_at)
                for i in range(job.workers)
            )


class JobConfigurationFactory(DjangoModelFactory):
    """A saved job configuration; ``env={...}`` stores it encrypted, as the portal does."""

    class Meta:
        model = JobConfiguration
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"config-{n}")

    @factory.post_generation
    def env(config, create, extracted, **kwargs):
        if extracted is not None:
            config.set_env(extracted)
            if create:
                config.save()


def catalog_image(recipe) -> Image:
    """A catalog row carrying ``recipe`` (an ImageRecipe), as staff would enter it."""
    name, _sep, tag = recipe.ref.partition(":")
    image, _created = Image.objects.update_or_create(
        name=name,
        tag=tag,
        defaults={
            "description": f"test image {recipe.ref}",
            "python_version": recipe.python,
            "packages": list(recipe.packages),
            "apt_packages": list(recipe.apt),
            "conda": recipe.conda,
            "cuda": recipe.cuda,
            "base_os": recipe.base_os,
        },
    )
    return image
