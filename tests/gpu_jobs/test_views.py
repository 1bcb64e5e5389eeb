"""GPU job pages (SPEC §7): launch form, list, detail with live logs, configurations."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from billing.templatetags.billing import dcu_page
from gpu_jobs import selectors
from gpu_jobs.choices import JobKind, JobState
from gpu_jobs.models import Job, JobConfiguration
from tests.factories import JobConfigurationFactory

SECRET = "s3cret-token-value"


@pytest.fixture
def ready(user, cards, catalog, driver, subscribe):
    subscribe(user, "basic", timezone.now())
    return user


def form_data(**overrides) -> dict:
    data = {
        "kind": "run",
        "entry": "train.py",
        "args": "--name 'my run' --epochs 3",
        "env": f"TOKEN={SECRET}\n# a comment\n",
        "workdir": "",
        "image": "python:3.11",
        "interpreter": "",
        "gpu_type": "80g",
        "cards_per_worker": "1",
        "save_name": "",
        "launch": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_the_launch_page_renders_the_parameters_and_prices(client, ready):
    client.force_login(ready)
    page = client.get(reverse("gpu_jobs:launch")).content.decode()
    for text in [
        "Python module (-m)",
        "Workers",
        "Load configuration",
        "Save as configuration",
        "DC100 (Hopper) 80G — 2.56 DCU/h per card",
        "torch:2.5.1-cu124",
        "Work dir",
        "Interpreter",
    ]:
        assert text in page, text
    assert 'value="debug"' in page and 'value="task"' in page


def test_the_launch_form_creates_a_job_and_redirects_to_it(
    client, ready, driver, django_capture_on_commit_callbacks
):
    client.force_login(ready)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("gpu_jobs:launch"), form_data())

    job = Job.objects.get(user=ready)
    assert response.status_code == 302
    assert response["Location"] == reverse("gpu_jobs:detail", args=[job.pk])
    assert job.args == ["--name", "my run", "--epochs", "3"]
    assert job.get_env() == {"TOKEN": SECRET}
    assert job.entry == "/root/train.py" and job.gpu_type.code == "80g"
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    page = client.get(response["Location"]).content.decode()
    assert f"Job #{job.pk} launched." in page
    assert SECRET not in page and "TOKEN" in page


def test_a_refused_launch_shows_the_full_message(client, user, cards, catalog, driver, plans):
    client.force_login(user)  # the free tier: no GPU parallelism

    response = client.post(reverse("gpu_jobs:launch"), form_data(gpu_type="40g"))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="form-errors"' in page
    assert "GPU jobs need a plan" in page and "Buy a plan on the Billing page" in page
    assert not Job.objects.exists()


def test_bad_input_is_shown_on_its_field(client, ready):
    client.force_login(ready)
    response = client.post(reverse("gpu_jobs:launch"), form_data(entry="/etc/passwd"))
    assert response.status_code == 200
    assert "Must be under /root" in response.content.decode()
    bad_args = client.post(reverse("gpu_jobs:launch"), form_data(args="'unclosed"))
    assert "Args could not be split" in bad_args.content.decode()
    assert not Job.objects.exists()


def test_save_as_configuration_then_load_round_trips(
    client, ready, driver, django_capture_on_commit_callbacks
):
    client.force_login(ready)

    saved = client.post(
        reverse("gpu_jobs:launch"),
        form_data(save_name="exp1", save="", launch=None, cards_per_worker="2", workdir="runs"),
    )

    config = JobConfiguration.objects.get(user=ready, name="exp1")
    assert saved.status_code == 302
    assert saved["Location"] == f"{reverse('gpu_jobs:launch')}?configuration={config.pk}"
    assert config.args == ["--name", "my run", "--epochs", "3"]
    assert config.get_env() == {"TOKEN": SECRET} and config.cards_per_worker == 2
    assert not Job.objects.exists()

    page = client.get(saved["Location"]).content.decode()
    assert "Configuration exp1 saved." in page
    assert 'value="/root/train.py"' in page
    assert "--name &#x27;my run&#x27; --epochs 3" in page
    assert 'value="/root/runs"' in page
    assert f'name="configuration" value="{config.pk}"' in page
    assert '<option value="80g" selected>' in page
    assert "TOKEN" in page and SECRET not in page

    # Launching the loaded form (ENV left empty) keeps the configuration's ENV.
    with django_capture_on_commit_callbacks(execute=True):
        launched = client.post(
            reverse("gpu_jobs:launch"),
            form_data(configuration=config.pk, env="EXTRA=1", gpu_type="80g", workdir="runs"),
        )
    assert launched.status_code == 302
    job = Job.objects.get(user=ready)
    assert job.get_env() == {"TOKEN": SECRET, "EXTRA": "1"} and job.workdir == "/root/runs"


def test_saving_under_an_existing_name_updates_it(client, ready):
    client.force_login(ready)
    client.post(reverse("gpu_jobs:launch"), form_data(save_name="exp", save="", launch=None))
    client.post(
        reverse("gpu_jobs:launch"),
        form_data(save_name="exp", save="", launch=None, entry="eval.py", env=""),
    )
    config = JobConfiguration.objects.get(user=ready)
    assert config.entry == "/root/eval.py"
    assert config.get_env() == {}


def test_save_needs_a_name(client, ready):
    client.force_login(ready)
    response = client.post(reverse("gpu_jobs:launch"), form_data(save="", launch=None))
    assert response.status_code == 200
    assert "Give the configuration a name." in response.content.decode()
    assert not JobConfiguration.objects.exists()


def test_the_list_shows_jobs_and_filters_them(client, user, make_job):
    # Frozen: billed so far grows every second.
    with time_machine.travel(timezone.now(), tick=False):
        running = make_job(user, started_at=timezone.now() - timedelta(minutes=30))
        shell = make_job(user, card="40g", kind=JobKind.SHELL, state=JobState.FAILED, reason="boom")
        make_job(user, deleted_at=timezone.now(), state=JobState.STOPPED)
        client.force_login(user)

        page = client.get(reverse("gpu_jobs:list")).content.decode()

        assert f'data-testid="job-{running.pk}"' in page and f'data-testid="job-{shell.pk}"' in page
        assert len(re.findall(r'data-testid="job-\d+"', page)) == 2  # not the deleted one
        assert "1 × DC100 (Hopper) 40G" in page and "boom" in page
        # Billed so far (from the workers' meter), kept current by the live updates.
        billed = re.search(
            rf'data-testid="job-{running.pk}".*?data-live-field="billed" data-live-html>(.*?)</td>',
            page,
            re.S,
        )
        assert billed and billed.group(1).strip() == dcu_page(
            selectors.job_billing(running).billed_so_far_micro
        )
        filtered = client.get(reverse("gpu_jobs:list"), {"state": "failed"}).content.decode()
        assert f'data-testid="job-{shell.pk}"' in filtered
        assert f'data-testid="job-{running.pk}"' not in filtered
        by_kind = client.get(reverse("gpu_jobs:list"), {"kind": "run"}).content.decode()
        assert f'data-testid="job-{running.pk}"' in by_kind
        assert f'data-testid="job-{shell.pk}"' not in by_kind


def test_the_detail_page_shows_status_billing_and_live_logs(client, user, make_job):
    job = make_job(
        user,
        cards_per_worker=2,
        started_at=timezone.now() - timedelta(minutes=30),
        charged_micro=2_560_000,
    )
    job.set_env({"TOKEN": SECRET})
    job.save()
    client.force_login(user)

    page = client.get(reverse("gpu_jobs:detail", args=[job.pk])).content.decode()

    assert 'data-testid="job-state"' in page and "Running" in page
    assert 'title="5.12 DCU">5.12</span> DCU/h' in page
    assert 'title="2.56 DCU">2.56</span> DCU charged to your ledger' in page
    assert "bills until it ends or you delete it" in page
    assert f'data-ws-path="/ws/jobs/{job.pk}/logs/"' in page
    assert "js/job-logs.js" in page
    assert reverse("gpu_jobs:status", args=[job.pk]) in page
    assert 'data-testid="job-stop"' in page and 'data-testid="job-delete"' in page
    assert "TOKEN" in page and SECRET not in page


def test_a_debug_jobs_page_shows_how_to_attach_and_reminds_it_bills(client, user, make_job):
    job = make_job(user, kind="debug", started_at=timezone.now() - timedelta(minutes=1))
    client.force_login(user)

    page = client.get(reverse("gpu_jobs:detail", args=[job.pk])).content.decode()

    assert f"ws://testserver/ws/jobs/{job.pk}/debug/" in page
    assert f"ssh -N -L 5678:job-{job.pk}:5678" in page
    assert 'data-testid="debug-billing-reminder"' in page


def test_a_run_jobs_page_has_no_debugger_card(client, user, make_job):
    job = make_job(user, kind="run")
    client.force_login(user)

    page = client.get(reverse("gpu_jobs:detail", args=[job.pk])).content.decode()

    assert 'data-testid="job-debug"' not in page


def test_the_launch_form_launches_a_gpu_debug_job(
    client, ready, driver, django_capture_on_commit_callbacks
):
    client.force_login(ready)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("gpu_jobs:launch"), form_data(kind="debug"))

    job = Job.objects.get(user=ready)
    assert response.status_code == 302 and job.kind == "debug"


def test_an_ended_job_shows_its_exit_code_without_stop(client, user, make_job):
    job = make_job(
        user,
        state=JobState.FAILED,
        exit_code=3,
        reason="The job's process failed.",
        started_at=timezone.now() - timedelta(minutes=2),
        ended_at=timezone.now(),
    )
    client.force_login(user)
    status = client.get(reverse("gpu_jobs:status", args=[job.pk])).content.decode()
    assert 'data-active="0"' in status
    assert '<td data-testid="job-exit-code">3</td>' in status
    assert "The job&#x27;s process failed." in status
    assert 'data-testid="job-stop"' not in status
    assert "bills until" not in status
    assert "<html" not in status  # a fragment for the script to swap in


def test_stop_and_delete_buttons(
    client, user, make_job, driver, django_capture_on_commit_callbacks
):
    job = make_job(user)
    client.force_login(user)

    with django_capture_on_commit_callbacks(execute=True):
        stopped = client.post(reverse("gpu_jobs:stop", args=[job.pk]))
    assert stopped.status_code == 302
    job.refresh_from_db()
    assert job.state == JobState.STOPPED

    with django_capture_on_commit_callbacks(execute=True):
        deleted = client.post(reverse("gpu_jobs:delete", args=[job.pk]))
    assert deleted["Location"] == reverse("gpu_jobs:list")
    assert client.get(reverse("gpu_jobs:detail", args=[job.pk])).status_code == 404


def test_stop_needs_post(client, user, make_job):
    job = make_job(user)
    client.force_login(user)
    assert client.get(reverse("gpu_jobs:stop", args=[job.pk])).status_code == 405
    job.refresh_from_db()
    assert job.stop_requested_at is None


def test_the_configurations_page_lists_and_deletes(client, user, cards):
    config = JobConfigurationFactory(
        user=user, name="exp1", entry="/root/a.py", gpu_type=cards["80g"], env={"TOKEN": SECRET}
    )
    client.force_login(user)

    page = client.get(reverse("gpu_jobs:configurations")).content.decode()
    assert "exp1" in page and "TOKEN" in page and SECRET not in page
    assert f"{reverse('gpu_jobs:launch')}?configuration={config.pk}" in page

    client.post(reverse("gpu_jobs:configuration_delete", args=[config.pk]))
    assert not JobConfiguration.objects.exists()


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("gpu_jobs:detail", "get"),
        ("gpu_jobs:status", "get"),
        ("gpu_jobs:stop", "post"),
        ("gpu_jobs:delete", "post"),
    ],
)
def test_another_users_job_page_is_404(client, user, other_user, make_job, name, method):
    job = make_job(other_user)
    client.force_login(user)
    assert getattr(client, method)(reverse(name, args=[job.pk])).status_code == 404
    job.refresh_from_db()
    assert job.stop_requested_at is None and job.deleted_at is None


def test_another_users_configuration_is_404(client, user, other_user, cards, catalog):
    config = JobConfigurationFactory(user=other_user, name="theirs", entry="/root/a.py")
    client.force_login(user)
    launch = reverse("gpu_jobs:launch")
    assert client.get(launch, {"configuration": config.pk}).status_code == 404
    assert client.post(launch, form_data(configuration=config.pk)).status_code == 404
    assert (
        client.post(reverse("gpu_jobs:configuration_delete", args=[config.pk])).status_code == 404
    )
    assert JobConfiguration.objects.filter(pk=config.pk).exists()


@pytest.mark.parametrize("name", ["gpu_jobs:list", "gpu_jobs:launch", "gpu_jobs:configurations"])
def test_pages_need_a_login(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and "login" in response["Location"]


def test_the_nav_links_to_gpu_jobs(client, user):
    client.force_login(user)
    assert reverse("gpu_jobs:list") in client.get(reverse("overview")).content.decode()
