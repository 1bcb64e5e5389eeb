"""Every list endpoint of the API is paginated the same way and costs the same queries at any size.

One shape for all lists (docs/api.md, Conventions): ``{"count", "next",
"previous", "results"}``, ``?page=&page_size=``, in the responses and in the
OpenAPI schema. And a list runs a number of SQL queries that does not grow
with its rows: 2 rows and 20 rows cost the same (no N+1).
"""

from __future__ import annotations

import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests import factories
from workshops.models import Workshop, WorkshopEnvVar

_n = itertools.count()

# GET endpoints without an id that answer one object, not a list.
# One object each, not a list: the month's cost report (three queries, whatever
# its size) and the budget.
SINGLE_OBJECTS = {
    "/api/v1/me",
    "/api/v1/billing/balance",
    "/api/v1/storage",
    "/api/v1/costs",
    "/api/v1/budget",
}


def _ledger(user, ctx):
    factories.VoucherFactory(user=user, dcu=1, reason="test")


def _plans(user, ctx):
    factories.PlanFactory()


def _images(user, ctx):
    factories.ImageFactory()


def _presets(user, ctx):
    factories.ResourcePresetFactory()


def _gpu_types(user, ctx):
    factories.GpuTypeFactory()


def _workshops(user, ctx):
    workshop = Workshop.objects.create(
        user=user,
        name=f"ws{next(_n)}",
        image=ctx["catalog"]["image"],
        preset=ctx["catalog"]["presets"]["2C/4G"],
        cpu_millicores=2000,
        memory_mib=4096,
    )
    WorkshopEnvVar.objects.create(workshop=workshop, key="TOKEN", value_encrypted="x")


def _jobs(user, ctx):
    factories.JobFactory(user=user, gpu_type=ctx["cards"]["80g"], started_at=timezone.now())


def _configurations(user, ctx):
    factories.JobConfigurationFactory(user=user, gpu_type=ctx["cards"]["80g"])


def _ssh_keys(user, ctx):
    from workshops import services as workshop_services

    workshop_services.ssh_key_generate(user=user, name=f"key{next(_n)}")


def _notifications(user, ctx):
    from aladdin.accounts.services import notification_create

    notification_create(
        user=user,
        message="order_paid",
        params={"order": f"ALD{next(_n)}", "plan": "Trial", "amount": 13500},
    )


# Each list endpoint with a way to add one row that ``user`` sees in it.
LISTS = {
    "/api/v1/billing/ledger": _ledger,
    "/api/v1/billing/plans": _plans,
    "/api/v1/images": _images,
    "/api/v1/presets": _presets,
    "/api/v1/gpu-types": _gpu_types,
    "/api/v1/workshops": _workshops,
    "/api/v1/jobs": _jobs,
    "/api/v1/jobs/configurations": _configurations,
    "/api/v1/ssh-keys": _ssh_keys,
    "/api/v1/notifications": _notifications,
}


@pytest.fixture
def ctx(user, plans, cards, catalog, subscribe):
    # The highest plan: every other plan's offer is "queued" after it, the
    # branch that reads the user's periods.
    subscribe(user, "advanced", timezone.now())
    return {"plans": plans, "cards": cards, "catalog": catalog}


@pytest.fixture
def schema(client, user):
    client.force_login(user)
    return client.get("/api/schema/", {"format": "json"}).json()


def test_the_table_names_every_list_endpoint(schema):
    # A new list endpoint must be added to LISTS (and so be checked below).
    gets = {
        path
        for path, operations in schema["paths"].items()
        if "get" in operations and "{" not in path
    }

    assert gets - SINGLE_OBJECTS == set(LISTS)


@pytest.mark.parametrize("url", sorted(LISTS))
def test_each_list_answers_count_next_previous_and_results(client, user, ctx, url):
    for _ in range(3):
        LISTS[url](user, ctx)
    client.force_login(user)

    first = client.get(url, {"page_size": 1})
    second = client.get(first.json()["next"])

    assert first.status_code == 200, first.content
    body = first.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] >= 3 and len(body["results"]) == 1
    assert body["previous"] is None and "page=2" in body["next"]
    assert second.json()["previous"] is not None
    assert second.json()["results"] != body["results"]


@pytest.mark.parametrize("url", sorted(LISTS))
def test_each_list_is_paginated_in_the_schema(schema, url):
    operation = schema["paths"][url]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    component = schema["components"]["schemas"][ok["$ref"].rsplit("/", 1)[-1]]

    assert set(component["properties"]) == {"count", "next", "previous", "results"}
    assert component["properties"]["results"]["type"] == "array"
    params = {p["name"] for p in operation["parameters"]}
    assert {"page", "page_size"} <= params


@pytest.mark.parametrize("url", sorted(LISTS))
def test_each_list_runs_as_many_queries_for_20_rows_as_for_2(client, user, ctx, url):
    client.force_login(user)
    client.get(url)  # warm up: session, caches, the first content-type lookups

    def queries_with(rows: int) -> CaptureQueriesContext:
        while client.get(url, {"page_size": 200}).json()["count"] < rows:
            LISTS[url](user, ctx)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url, {"page_size": 200})
        assert response.status_code == 200
        return captured

    small = queries_with(2)
    large = queries_with(20)

    assert len(large) == len(small), "\n".join(q["sql"][:150] for q in large.captured_queries)
