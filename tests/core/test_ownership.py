"""Another user's ids are a 404 on every page, API endpoint and websocket (issue 11).

Generated from the URL configuration: every route that takes an id must be
listed in ``OWNED`` (what kind of object its parameters name) or in
``NOT_OWNED`` (why it names no user's object), so a new endpoint cannot be
added without this check. For each owned route, user A asks, with every
method, for user B's object: the answer is 404 (405 where the route has no
such method, decided before any lookup) and B's object is unchanged.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.forms.models import model_to_dict
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from aladdin.accounts.services import notification_create
from aladdin.routing import websocket_urlpatterns
from gpu_jobs.models import JobPort
from tests.factories import JobConfigurationFactory
from tests.workshops.sshkeys import public_key
from workshops.services import ssh_key_add

# route (as written in the URL configuration) -> the kind of object it names
OWNED = {
    "account/ides/<int:token_id>/revoke/": "ide",
    "billing/orders/<str:out_trade_no>/pay/": "order",
    "billing/orders/<str:out_trade_no>/return/": "order",
    "billing/orders/<str:out_trade_no>/invoice/": "order",
    "billing/orders/<str:out_trade_no>/invoice/download/": "order",
    "billing/sandbox/<str:out_trade_no>/": "order",
    "workshops/<int:pk>/": "workshop",
    "workshops/keys/<int:pk>/revoke/": "ssh_key",
    "workshops/<int:pk>/resources/": "workshop",
    "workshops/<int:pk>/env/": "workshop",
    "workshops/<int:pk>/terminal/": "workshop",
    "workshops/<int:pk>/status/": "workshop",
    "workshops/<int:pk>/<str:action>/": "workshop",
    "jobs/configurations/<int:pk>/delete/": "configuration",
    "jobs/<int:pk>/": "job",
    "jobs/<int:pk>/status/": "job",
    "jobs/<int:pk>/terminal/": "job",
    "jobs/<int:pk>/stop/": "job",
    "jobs/<int:pk>/delete/": "job",
    "jobs/<int:pk>/ports/": "job",
    "jobs/<int:pk>/ports/<int:port>/remove/": "job",
    "jobs/<int:pk>/log/": "job",
    "jobs/<int:pk>/logs.tar.gz": "job",
    "api/v1/billing/orders/<int:pk>": "order",
    "api/v1/workshops/<int:pk>": "workshop",
    "api/v1/ssh-keys/<int:pk>": "ssh_key",
    "api/v1/workshops/<int:pk>/start": "workshop",
    "api/v1/workshops/<int:pk>/stop": "workshop",
    "api/v1/workshops/<int:pk>/ssh-config": "workshop",
    "api/v1/workshops/<int:pk>/metrics": "workshop",
    "api/v1/jobs/configurations/<int:pk>": "configuration",
    "api/v1/jobs/<int:pk>": "job",
    "api/v1/jobs/<int:pk>/stop": "job",
    "api/v1/jobs/<int:pk>/ports": "job",
    "api/v1/jobs/<int:pk>/ports/<int:port>": "job",
    "api/v1/jobs/<int:pk>/logs": "job",
    "api/v1/jobs/<int:pk>/logs/download": "job",
    "api/v1/jobs/<int:pk>/logs/archive": "job",
    "api/v1/jobs/<int:pk>/metrics": "job",
    "notifications/<int:pk>/read/": "notification",
    "notifications/<int:pk>/open/": "notification",
    "api/v1/notifications/<int:pk>/read": "notification",
}
OWNED_WEBSOCKETS = {
    "ws/workshops/<int:pk>/terminal/": "workshop",
    "ws/jobs/<int:pk>/logs/": "job",
    "ws/jobs/<int:pk>/terminal/": "job",
    "ws/jobs/<int:pk>/debug/": "job",
}
# route -> why it names nothing of a user's
NOT_OWNED = {
    "account/education/confirm/<str:token>/": "a signed one-time token from the email",
    "accounts/^confirm-email/(?P<key>[-:\\w]+)/$": "allauth's email key (email is unused)",
    # The files page is the logged-in user's own volume; paths are query data.
    "storage/files/<str:action>/": "an action name (mkdir, rename, delete), not an object",
}
# The back office checks its own permissions (tests/accounts/test_admin.py and others).
SKIPPED_PREFIXES = ("admin/", "static/", "media/")
METHODS = ("get", "post", "put", "patch", "delete")
PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def routes(patterns, prefix: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


def with_parameters(candidates) -> set[str]:
    return {r for r in candidates if "<" in r and not r.startswith(SKIPPED_PREFIXES)}


def test_every_route_with_an_id_declares_whose_object_it_names():
    http = with_parameters(routes(get_resolver().url_patterns))
    websockets = with_parameters(routes(websocket_urlpatterns))

    undeclared = http - set(OWNED) - set(NOT_OWNED)
    assert not undeclared, f"add these routes to OWNED or NOT_OWNED: {sorted(undeclared)}"
    assert not set(OWNED) - http, "OWNED lists routes that no longer exist"
    assert websockets - set(OWNED_WEBSOCKETS) == set(), "add new websockets to OWNED_WEBSOCKETS"


@pytest.fixture
def owned_by_b(db, other_user, make_job, make_workshop, plans):
    """One object of each kind, all of user B, and how each route's parameters name it."""
    from oauth2_provider.models import get_application_model, get_refresh_token_model

    from billing import payments

    app = get_application_model().objects.create(
        name="IDE", client_type="public", authorization_grant_type="authorization-code"
    )
    refresh = get_refresh_token_model().objects.create(
        user=other_user, application=app, token="refresh-of-b"
    )
    order = payments.order_create(user=other_user, plan=plans["basic"])
    objects = {
        "ide": refresh,
        "order": order,
        "workshop": make_workshop(other_user),
        "configuration": JobConfigurationFactory(user=other_user, name="b's"),
        "job": make_job(other_user, started_at=timezone.now() - timedelta(minutes=1)),
        "ssh_key": ssh_key_add(user=other_user, public_key=public_key()),
        "notification": notification_create(
            user=other_user, message="jobs_stopped_balance", params={"n": 1}
        ),
    }
    # B's job serves port 8888: removing or adding a port of it must be 404 to A.
    JobPort.objects.create(job=objects["job"], port=8888)
    return objects


def fill(route: str, obj) -> str:
    values = {
        "pk": obj.pk,
        "token_id": obj.pk,
        "out_trade_no": getattr(obj, "out_trade_no", ""),
        "action": "stop",
        "port": 8888,
    }
    return "/" + PARAM.sub(lambda m: str(values[m.group(1)]), route)


def snapshot(obj) -> dict:
    fresh = type(obj).objects.get(pk=obj.pk)
    return model_to_dict(fresh) | {"_updated": getattr(fresh, "updated_at", None)}


@pytest.mark.parametrize("route", sorted(OWNED))
def test_another_users_object_is_404_on_every_method(route, client, user, owned_by_b):
    obj = owned_by_b[OWNED[route]]
    before = snapshot(obj)
    client.force_login(user)
    path = fill(route, obj)

    answers = {m: getattr(client, m)(path).status_code for m in METHODS}

    assert set(answers.values()) <= {404, 405}, f"{path}: {answers}"
    assert 404 in answers.values(), f"{path}: {answers}"
    assert snapshot(obj) == before, f"{path} changed another user's object"


def refusal(path: str, headers) -> int:
    """The close code a websocket at ``path`` ends with (before or right after accept)."""
    from aladdin.asgi import application

    async def run():
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await communicator.connect(timeout=5)
        if not connected:
            return code
        message = await communicator.receive_output(timeout=5)
        await communicator.wait()
        assert message["type"] == "websocket.close", message
        return message.get("code")

    return async_to_sync(run)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", sorted(OWNED_WEBSOCKETS))
def test_another_users_object_is_4404_on_every_websocket(route, client, user, owned_by_b):
    obj = owned_by_b[OWNED_WEBSOCKETS[route]]
    client.force_login(user)
    headers = [
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://localhost"),
    ]

    assert refusal(fill(route, obj), headers) == 4404
