"""Schema fuzzing (issue 11): every operation of /api/schema/ answers as the schema says.

Schemathesis generates requests from the OpenAPI schema (valid ones, ones
that break it, and the schema's own examples) for every operation, sends
them in-process to the Django WSGI application as the IDE plugin does
(``Authorization: Bearer``), and checks each answer: never a 5xx, a status
code the operation documents, its documented content type and headers, and
a body that matches the documented schema. The IDE plugin is generated from
this schema, so a mismatch here is a crash there.

The user owns objects of each kind in several states (a running job with
output and an ended one, a running and a stopped workshop, an empty and a
full configuration, a pending and a paid order). Besides random ids, which
are 404, requests are aimed at those, so detail endpoints are exercised
past their 404. Each request runs in a savepoint that is rolled back, so
every request sees the same rows: a DELETE does not leave the operations
after it with only 404s, and created jobs do not pile up into parallelism
refusals. (Work queued for after the commit, such as a job's start task,
never runs: the test's transaction is never committed. The answers are
written before it.)

Bounded in time for CI (``make test`` on 2 cores): a few examples per
operation and kind of request, derandomized (the same requests on every
run), no deadline.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import override_settings
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billing import alipay, payments
from tests.accounts.test_ide_oauth import ensure_ide_client
from tests.conftest import examples

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Per operation and kind of request (valid or invalid, on own rows or any):
# about a thousand requests in all, some 20 s on 2 cores; five times that under
# the nightly Hypothesis profile. Raise it locally to search harder (FUZZ_EXAMPLES=200).
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or examples(10))
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)

# Which of the user's objects an {id} in each path names.
OWNED_ID = {
    "/api/v1/billing/orders/{id}": "order",
    "/api/v1/workshops/{id}": "workshop",
    "/api/v1/workshops/{id}/start": "workshop",
    "/api/v1/workshops/{id}/stop": "workshop",
    "/api/v1/jobs/{id}": "job",
    "/api/v1/jobs/{id}/stop": "job",
    "/api/v1/jobs/{id}/logs": "job",
    "/api/v1/jobs/configurations/{id}": "configuration",
    "/api/v1/notifications/{id}/read": "notification",
}
# Request bodies that name catalog rows by id (a random integer never finds one).
CATALOG_FIELDS = {"/api/v1/workshops": ("image", "preset"), "/api/v1/workshops/{id}": ("preset",)}


@pytest.fixture
def fuzz_account(user, plans, subscribe, cards, catalog, driver, make_job, make_workshop):
    """A user on the basic plan with an IDE token and objects of each kind, in several states.

    Returns the token and, per kind, the ids that requests are aimed at.
    """
    from oauth2_provider.models import AccessToken

    from gpu_jobs.choices import JobKind, JobState
    from gpu_jobs.models import JobConfiguration
    from workshops import services as workshop_services

    now = timezone.now()
    subscribe(user, "basic", now)
    token = secrets.token_urlsafe(32)
    AccessToken.objects.create(
        user=user,
        application=ensure_ide_client(),
        token=token,
        expires=now + timedelta(hours=1),
        scope="ide",
    )
    running = make_job(user, started_at=now - timedelta(minutes=5))
    # Output that is not ASCII, cut anywhere by ?limit=.
    driver.write_log(running.workload_name, "epoch 1/3 loss=0.41\n你好\n".encode())
    ended = make_job(
        user,
        kind=JobKind.SHELL,
        state=JobState.FAILED,
        started_at=now - timedelta(hours=2),
        ended_at=now - timedelta(hours=1),
        exit_code=1,
        reason="exit code 1",
    )
    paid = payments.order_create(user=user, plan=plans["extension"])
    payments.order_fulfil(order_id=paid.pk, trade_no="FUZZ-1", params={}, source="test")
    stopped = make_workshop(user, name="idle")
    workshop_services.workshop_stop(workshop=stopped)
    workshop_services.workshop_stop_apply(workshop_id=stopped.pk)
    preset = catalog["presets"]["2C/4G"]
    ids = {
        "job": [running.pk, ended.pk],
        "workshop": [make_workshop(user).pk, stopped.pk],
        "configuration": [
            JobConfiguration.objects.create(user=user, name="empty").pk,
            _full_configuration(user, cards["80g"]),
        ],
        "order": [payments.order_create(user=user, plan=plans["trial"]).pk, paid.pk],
        "image": [catalog["image"].pk],
        "preset": [preset.pk],
        # The paid order's notice (order_fulfil writes it).
        "notification": [user.notifications.get(message="order_paid").pk],
    }
    return token, ids


def _full_configuration(user, gpu_type) -> int:
    from gpu_jobs import services

    config = services.configuration_save(
        user=user,
        name="full",
        entry="train.py",
        args=["--epochs", "3"],
        env={"WANDB_API_KEY": "secret"},
        gpu_type=gpu_type,
        ports=[8080],
    )
    return config.pk


@pytest.fixture
def api_schema(fuzz_account):
    from aladdin.wsgi import application

    token, _ids = fuzz_account
    return schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json", application, headers={"Authorization": f"Bearer {token}"}
    )


@pytest.fixture
def in_process_requests(monkeypatch):
    """Requests share the test's database connection and transaction, as Django's test client.

    Django closes the connection at the end of each request (close_old_connections);
    inside the test's transaction that would end it. Alipay runs its local sandbox.
    """
    from rest_framework.throttling import SimpleRateThrottle

    # Hundreds of requests a minute: the 600/min throttle would answer all the
    # later ones with 429 (documented; tests/core/test_api_skeleton.py).
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": None, "anon": None})
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    alipay._load_keys.cache_clear()
    try:
        with override_settings(ALIPAY_SANDBOX=True, DEBUG=True, ALIPAY_APP_ID=""):
            yield
    finally:
        alipay._load_keys.cache_clear()
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def aimed(operation, mode, ids):
    """Requests on the user's own objects (and catalog rows), past the 404 of a random id."""
    kind = OWNED_ID.get(operation.path)
    if kind is None:
        strategy = operation.as_strategy(mode)
    else:
        strategy = st.sampled_from(ids[kind]).flatmap(
            lambda pk: operation.as_strategy(mode, path_parameters={"id": pk})
        )
    fields = CATALOG_FIELDS.get(operation.path, ())

    def with_catalog_rows(case):
        if isinstance(case.body, dict):
            for field in fields:
                if isinstance(case.body.get(field), int):
                    case.body[field] = ids[field][0]
        return case

    # Only valid requests: an invalid one may be invalid by that very field.
    return strategy.map(with_catalog_rows) if mode == GenerationMode.POSITIVE else strategy


def variants(schema, operation, ids) -> dict[str, st.SearchStrategy]:
    """The kinds of requests sent to ``operation``, each with its own budget of examples."""
    strategies = {f"{mode.value} data": operation.as_strategy(mode) for mode in MODES}
    if operation.path in OWNED_ID or operation.path in CATALOG_FIELDS:
        for mode in MODES:
            strategies[f"{mode.value} data on own rows"] = aimed(operation, mode, ids)
    # The schema's own examples (the order and job request bodies).
    examples = schema.get_strategies_from_examples(operation)
    if examples:
        strategies["examples"] = st.one_of(examples)
    return strategies


def test_every_operation_answers_as_its_schema_says(
    api_schema, fuzz_account, in_process_requests, subtests
):
    token, ids = fuzz_account
    headers = {"Authorization": f"Bearer {token}"}
    results = list(api_schema.get_all_operations())
    assert not [r.err() for r in results if isinstance(r, Err)], "the schema has invalid operations"
    operations = [result.ok() for result in results]
    assert len(operations) > 20

    for operation in operations:
        for variant, strategy in variants(api_schema, operation, ids).items():

            @given(case=strategy)
            @settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                deadline=None,
                database=None,
                # Schema-driven strategies reject many draws, and a request is
                # slow by Hypothesis's measure; neither is a problem here.
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            )
            def answers_as_documented(case):
                # Note: schemathesis's WSGI transport sends a multipart body that
                # is not an object (a bare string) without its Content-Type; the
                # server answers 415, which the schema documents.
                # A savepoint per request: every request sees the same rows.
                with transaction.atomic():
                    case.call_and_validate(headers=headers, checks=CHECKS)
                    transaction.set_rollback(True)

            with subtests.test(msg=f"{operation.label}, {variant}"):
                answers_as_documented()
