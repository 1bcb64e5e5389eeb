"""GPU jobs REST API (SPEC §4.1, §7): launch, list, detail, stop, delete, logs, configurations."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from aladdin.cluster.base import DriverError
from billing import services as billing_services
from gpu_jobs.admission import minute_price_micro
from gpu_jobs.choices import JobKind, JobState
from gpu_jobs.models import Job, JobConfiguration
from storage.models import StorageAllowance
from tests.factories import JobConfigurationFactory

GIB = 2**30
SECRET = "sk-very-secret-value"


@pytest.fixture
def ready(user, cards, catalog, driver, subscribe):
    """A user on the basic plan (parallelism 4, 56.6 DCU), logged in, with a fake cluster."""
    subscribe(user, "basic", timezone.now())
    return user


def launch(client, key: str | None = None, **overrides):
    body = {
        "kind": "run",
        "entry": "train.py",
        "args": ["--epochs", "3"],
        "env": {"WANDB_API_KEY": SECRET},
        "gpu_type": "80g",
        "cards_per_worker": 1,
    }
    body.update(overrides)
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post("/api/v1/jobs", body, content_type="application/json", **headers)


# --- launching ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_create_starts_the_job_and_answers_201(client, ready, driver):
    client.force_login(ready)

    response = launch(client)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["state"] == JobState.RUNNING  # the start task ran at commit
    assert body["gpu_type"] == "80g" and body["cards"] == 1
    assert body["entry"] == "/root/train.py" and body["args"] == ["--epochs", "3"]
    assert body["env_keys"] == ["WANDB_API_KEY"] and "env" not in body
    assert body["price_micro_per_hour"] == 2_560_000 and body["price_dcu_per_hour"] == "2.56"
    assert body["logs_url"] == f"ws://testserver/ws/jobs/{body['id']}/logs/"
    assert SECRET not in response.content.decode()
    # The value did reach the workload.
    assert driver.specs[f"job-{body['id']}"].env["WANDB_API_KEY"] == SECRET


@pytest.mark.django_db(transaction=True)
def test_a_gpu_debug_job_runs_its_file_under_the_waiting_debugger(client, ready, driver):
    client.force_login(ready)

    response = launch(client, kind="debug", python_module=False)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "debug" and body["state"] == JobState.RUNNING
    assert body["debug_url"] == f"ws://testserver/ws/jobs/{body['id']}/debug/"
    spec = driver.specs[f"job-{body['id']}"]
    assert spec.debugger
    assert spec.command == [
        "python3",
        "-u",
        "/opt/aladdin/debugpy/debugpy",
        "--listen",
        "127.0.0.1:5678",
        "--wait-for-client",
        "/root/train.py",
        "--epochs",
        "3",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_gpu_run_job_has_no_debug_url_nor_debugger(client, ready, driver):
    client.force_login(ready)

    body = launch(client).json()

    assert body["debug_url"] is None
    assert not driver.specs[f"job-{body['id']}"].debugger


@pytest.mark.django_db(transaction=True)
def test_a_gpu_debug_job_may_debug_a_module(client, ready, driver):
    client.force_login(ready)

    body = launch(client, kind="debug", entry="pkg.train", python_module=True).json()

    command = driver.specs[f"job-{body['id']}"].command
    assert command[-4:] == ["-m", "pkg.train", "--epochs", "3"]


def test_an_idempotency_key_replay_returns_the_same_job(
    client, ready, django_capture_on_commit_callbacks
):
    client.force_login(ready)
    with django_capture_on_commit_callbacks(execute=True):
        first = launch(client, key="3f1c-retry")
    second = launch(client, key="3f1c-retry")

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Job.objects.filter(user=ready).count() == 1
    assert second.json()["state"] == JobState.RUNNING


def test_an_idempotency_key_over_64_characters_is_refused(client, ready):
    client.force_login(ready)
    response = launch(client, key="k" * 65)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]
    assert not Job.objects.exists()


def _multi_card(user, subscribe, **_):
    subscribe(user, "advanced", timezone.now())
    return {"gpu_type": "40g", "cards_per_worker": 2}, ["multi-card", "2 cards", "allowed is 1"]


def _parallelism(user, make_job, **_):
    make_job(user, card="80g", cards_per_worker=2)  # uses 4 of basic's 4
    return {"gpu_type": "40g"}, ["needs 1", "use 4", "allows 4"]


def _quota(user, subscribe, make_workshop, **_):
    subscribe(user, "trial", timezone.now())  # 20 CPU, 242 GiB
    make_workshop(user, preset="16C/64G")
    return {"gpu_type": "80g"}, [
        "exceeded quota",
        "requested: limits.cpu=10,limits.memory=121Gi",
        "used: limits.cpu=16,limits.memory=64Gi",
        "limited: limits.cpu=20,limits.memory=242Gi",
    ]


def _balance(user, cards, **_):
    minute = minute_price_micro(cards["80g"], 1, 1)
    billing_services.charge(
        user=user, kind="test", key="spend", amount_micro=56_600_000 - minute + 1, reason="r"
    )
    return {"gpu_type": "80g"}, ["0.042667 DCU", "0.042666 DCU", "2.56 DCU/h"]


def _storage(user, **_):
    StorageAllowance.objects.create(user=user, has_volume=True, last_bytes=61 * GIB)
    return {"gpu_type": "40g"}, ["61.0 GiB", "60 GiB"]


@pytest.mark.parametrize(
    ("code", "setup"),
    [
        ("multi_card", _multi_card),
        ("parallelism", _parallelism),
        # The code of workshops' quota refusal too (one code per meaning).
        ("quota_exceeded", _quota),
        ("balance", _balance),
        ("storage", _storage),
    ],
)
def test_each_refusal_is_409_with_its_code_and_numbers(
    client, user, cards, catalog, driver, plans, subscribe, make_job, make_workshop, code, setup
):
    if code in ("parallelism", "balance", "storage"):
        subscribe(user, "basic", timezone.now())
    body, expected = setup(
        user=user, cards=cards, subscribe=subscribe, make_job=make_job, make_workshop=make_workshop
    )
    client.force_login(user)
    before = Job.objects.count()

    response = launch(client, **body)

    assert response.status_code == 409, response.content
    error = response.json()
    assert error["code"] == code
    for text in expected:
        assert text in error["detail"], (text, error["detail"])
    assert error["fields"] == {}
    assert Job.objects.count() == before


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"entry": "/etc/passwd"}, "entry"),
        ({"gpu_type": "90g"}, "gpu_type"),
        ({"kind": "train"}, "kind"),
        ({"kind": "task", "workers": 17}, "workers"),
        ({"args": "--not-a-list"}, "args"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"image": "nope:1"}, "image"),
    ],
)
def test_bad_input_is_400_with_fields(client, ready, override, field):
    client.force_login(ready)
    response = launch(client, **override)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert field in response.json()["fields"]
    assert not Job.objects.exists()


def test_gpu_types_lists_the_card_presets(client, user, cards):
    client.force_login(user)
    rows = {g["code"]: g for g in client.get("/api/v1/gpu-types").json()["results"]}
    assert rows["40g"]["price_dcu_per_hour"] == "1.28"
    assert rows["80g"]["price_micro_per_hour"] == 2_560_000
    assert (rows["40g"]["parallelism_weight"], rows["80g"]["parallelism_weight"]) == (1, 2)
    assert rows["80g"]["cpu_millicores"] == 10_000 and rows["80g"]["memory_mib"] == 121 * 1024
    assert not rows["40g"]["multi_card_allowed"] and rows["80g"]["multi_card_allowed"]


# --- reading ------------------------------------------------------------------------


def test_the_list_filters_by_state_kind_and_activity(client, user, other_user, make_job):
    running = make_job(user)
    shell = make_job(user, kind=JobKind.SHELL, state=JobState.SUCCEEDED)
    failed = make_job(user, card="40g", state=JobState.FAILED)
    make_job(user, deleted_at=timezone.now(), state=JobState.STOPPED)
    make_job(other_user)
    client.force_login(user)

    def ids(query=""):
        response = client.get(f"/api/v1/jobs{query}")
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    body = client.get("/api/v1/jobs").json()
    assert body["count"] == 3 and {"next", "previous"} <= set(body)
    assert ids() == [failed.pk, shell.pk, running.pk]
    assert ids("?state=running") == [running.pk]
    assert ids("?kind=shell") == [shell.pk]
    assert ids("?active=1") == [running.pk]
    assert ids("?active=0") == [failed.pk, shell.pk]
    assert client.get("/api/v1/jobs?state=bogus").status_code == 400


def test_detail_shows_state_times_cards_and_billing_so_far(client, user, make_job):
    now = timezone.now()
    job = make_job(
        user,
        cards_per_worker=2,
        started_at=now - timedelta(seconds=90),
        charged_micro=42_667,
        gpu_devices=["0", "1"],
    )
    job.set_env({"TOKEN": SECRET})
    job.save()
    client.force_login(user)

    with time_machine.travel(now, tick=False):
        response = client.get(f"/api/v1/jobs/{job.pk}")

    body = response.json()
    assert response.status_code == 200
    assert body["state"] == "running" and body["active"] is True
    assert body["cards"] == 2 and body["parallelism"] == 4 and body["gpu_devices"] == ["0", "1"]
    assert body["price_micro_per_hour"] == 5_120_000
    assert body["charged_micro"] == 42_667
    # 90 s of 5.12 DCU/h.
    assert body["billed_so_far_micro"] == 128_000 and body["billed_so_far_dcu"] == "0.128"
    assert body["exit_code"] is None and body["reason"] == "" and body["ended_at"] is None
    assert body["env_keys"] == ["TOKEN"]
    assert SECRET not in response.content.decode()


def test_stop_releases_the_job(client, user, make_job, driver, django_capture_on_commit_callbacks):
    job = make_job(user)
    client.force_login(user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/api/v1/jobs/{job.pk}/stop")

    assert response.status_code == 202
    assert response.json()["stop_requested_at"] is not None
    job.refresh_from_db()
    assert job.state == JobState.STOPPED
    again = client.post(f"/api/v1/jobs/{job.pk}/stop")
    assert again.status_code == 409 and again.json()["code"] == "state_conflict"


def test_delete_hides_the_job(client, user, make_job, driver, django_capture_on_commit_callbacks):
    job = make_job(user, state=JobState.SUCCEEDED)
    client.force_login(user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(f"/api/v1/jobs/{job.pk}")

    assert response.status_code == 204
    assert client.get(f"/api/v1/jobs/{job.pk}").status_code == 404
    assert client.get("/api/v1/jobs").json()["count"] == 0
    job.refresh_from_db()
    assert job.deleted_at is not None and job.logs_deleted  # the row stays for the ledger


def test_logs_are_plain_text_with_the_next_offset(client, user, make_job, driver):
    job = make_job(user)
    driver.write_log(job.workload_name, "epoch 1 ✓\n".encode())
    client.force_login(user)

    response = client.get(f"/api/v1/jobs/{job.pk}/logs")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == "epoch 1 ✓\n"
    size = len("epoch 1 ✓\n".encode())
    assert response["X-Log-Offset"] == str(size) and response["X-Log-Ended"] == "false"
    driver.write_log(job.workload_name, b"epoch 2\n")
    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED)
    rest = client.get(f"/api/v1/jobs/{job.pk}/logs?offset={size}", HTTP_ACCEPT="text/plain")
    assert rest.content == b"epoch 2\n"
    assert rest["X-Log-Offset"] == str(size + 8) and rest["X-Log-Ended"] == "true"


def test_logs_unreachable_is_503(client, user, make_job, monkeypatch):
    job = make_job(user)

    def unreachable(*args, **kwargs):
        raise DriverError("agent down")

    monkeypatch.setattr("gpu_jobs.logs.read_logs", unreachable)
    client.force_login(user)
    response = client.get(f"/api/v1/jobs/{job.pk}/logs")
    assert response.status_code == 503 and response.json()["code"] == "logs_unavailable"


# --- configurations -----------------------------------------------------------------


def test_configurations_crud(client, user, cards, catalog):
    client.force_login(user)
    created = client.post(
        "/api/v1/jobs/configurations",
        {
            "name": "exp1",
            "entry": "train.py",
            "args": ["--lr", "1e-4"],
            "env": {"HF_TOKEN": SECRET},
            "gpu_type": "80g",
            "cards_per_worker": 2,
        },
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]
    assert created.json()["env_keys"] == ["HF_TOKEN"] and created.json()["gpu_type"] == "80g"

    listed = client.get("/api/v1/jobs/configurations").json()
    assert [c["name"] for c in listed["results"]] == ["exp1"]

    patched = client.patch(
        f"/api/v1/jobs/configurations/{pk}", {"name": "exp2"}, content_type="application/json"
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["name"] == "exp2" and patched.json()["cards_per_worker"] == 2
    assert JobConfiguration.objects.get(pk=pk).get_env() == {"HF_TOKEN": SECRET}

    put = client.put(
        f"/api/v1/jobs/configurations/{pk}",
        {"name": "exp2", "entry": "eval.py", "gpu_type": "40g"},
        content_type="application/json",
    )
    assert put.status_code == 200
    assert put.json()["entry"] == "/root/eval.py" and put.json()["env_keys"] == []
    assert put.json()["cards_per_worker"] == 1

    client.post("/api/v1/jobs/configurations", {"name": "other"}, content_type="application/json")
    clash = client.patch(
        f"/api/v1/jobs/configurations/{pk}", {"name": "other"}, content_type="application/json"
    )
    assert clash.status_code == 400 and "name" in clash.json()["fields"]

    assert client.get(f"/api/v1/jobs/configurations/{pk}").json()["name"] == "exp2"
    assert client.delete(f"/api/v1/jobs/configurations/{pk}").status_code == 204
    assert client.get(f"/api/v1/jobs/configurations/{pk}").status_code == 404


def test_env_values_never_appear_in_any_response(client, ready, django_capture_on_commit_callbacks):
    client.force_login(ready)
    with django_capture_on_commit_callbacks(execute=True):
        job_id = launch(client).json()["id"]
    config = client.post(
        "/api/v1/jobs/configurations",
        {"name": "c", "env": {"K": SECRET}},
        content_type="application/json",
    )
    config_id = config.json()["id"]
    responses = [
        config,
        client.get("/api/v1/jobs"),
        client.get(f"/api/v1/jobs/{job_id}"),
        client.post(f"/api/v1/jobs/{job_id}/stop"),
        client.get("/api/v1/jobs/configurations"),
        client.get(f"/api/v1/jobs/configurations/{config_id}"),
        client.patch(
            f"/api/v1/jobs/configurations/{config_id}",
            {"entry": "x.py"},
            content_type="application/json",
        ),
    ]
    for response in responses:
        assert response.status_code < 300, response.content
        assert SECRET not in response.content.decode()


# --- ownership and authentication ---------------------------------------------------

JOB_ENDPOINTS = [
    ("get", ""),
    ("post", "/stop"),
    ("delete", ""),
    ("get", "/logs"),
]


@pytest.mark.parametrize(("method", "suffix"), JOB_ENDPOINTS)
def test_another_users_job_is_404(client, user, other_user, make_job, driver, method, suffix):
    job = make_job(other_user)
    client.force_login(user)

    response = getattr(client, method)(f"/api/v1/jobs/{job.pk}{suffix}")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    assert job.stop_requested_at is None and job.deleted_at is None


@pytest.mark.parametrize(("method", "suffix"), JOB_ENDPOINTS)
def test_a_deleted_job_is_404(client, user, make_job, driver, method, suffix):
    job = make_job(user, state=JobState.SUCCEEDED, deleted_at=timezone.now())
    client.force_login(user)
    response = getattr(client, method)(f"/api/v1/jobs/{job.pk}{suffix}")
    assert response.status_code == 404


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_another_users_configuration_is_404(client, user, other_user, cards, method):
    config = JobConfigurationFactory(user=other_user, name="theirs", entry="/root/a.py")
    client.force_login(user)

    response = getattr(client, method)(
        f"/api/v1/jobs/configurations/{config.pk}",
        {"name": "mine"},
        content_type="application/json",
    )

    assert response.status_code == 404
    config.refresh_from_db()
    assert config.name == "theirs"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/jobs"),
        ("post", "/api/v1/jobs"),
        ("get", "/api/v1/jobs/1"),
        ("post", "/api/v1/jobs/1/stop"),
        ("delete", "/api/v1/jobs/1"),
        ("get", "/api/v1/jobs/1/logs"),
        ("get", "/api/v1/gpu-types"),
        ("get", "/api/v1/jobs/configurations"),
        ("post", "/api/v1/jobs/configurations"),
        ("get", "/api/v1/jobs/configurations/1"),
        ("put", "/api/v1/jobs/configurations/1"),
        ("delete", "/api/v1/jobs/configurations/1"),
    ],
)
def test_anonymous_is_refused(client, db, method, path):
    response = getattr(client, method)(path, {}, content_type="application/json")
    assert response.status_code in (401, 403)


def test_the_schema_documents_the_job_endpoints(client, user):
    client.force_login(user)
    schema = client.get("/api/schema/?format=json").json()
    for path in [
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/stop",
        "/api/v1/jobs/{id}/logs",
        "/api/v1/jobs/configurations",
        "/api/v1/jobs/configurations/{id}",
        "/api/v1/gpu-types",
    ]:
        assert path in schema["paths"], path
    assert "409" in schema["paths"]["/api/v1/jobs"]["post"]["responses"]
