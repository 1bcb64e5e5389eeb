"""Ban for mining, end to end (SPEC §1): one action disables the account, stops every
workload billed exactly to its release, forfeits all compute, revokes every credential,
blocks the phone, and leaves one audit record with before and after."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from oauth2_provider.models import get_refresh_token_model

from aladdin.accounts.models import BannedPhone, StaffAction
from aladdin.backoffice.services import user_ban_for_mining
from aladdin.sshgw.server import _login_target
from billing import selectors as billing_selectors
from billing.choices import LedgerKind
from billing.models import ArrearsReview, LedgerEntry
from gpu_jobs import services as job_services
from gpu_jobs.choices import JobState
from gpu_jobs.metering import meter_job, owed
from tests.accounts.test_ide_oauth import ide_login, me
from tests.factories import JobFactory, WorkshopFactory, sh
from tests.workshops.sshkeys import public_key
from workshops import services as workshop_services
from workshops.choices import WorkshopState

T0 = sh(2026, 3, 1, 8)
REASON = "ran a crypto miner on 8 GPUs"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _at_t0():
    with time_machine.travel(T0, tick=False):
        yield


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Run what a service dispatched at commit (Celery is eager in tests)."""

    def _run(func, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return func(**kwargs)

    return _run


@pytest.fixture
def miner(user, subscribe, catalog, cards, driver, run_on_commit):
    """A Basic subscriber with a running GPU job, a running workshop, an SSH key and an IDE."""
    subscribe(user, "basic", T0)
    job = run_on_commit(job_services.job_create, user=user, entry="mine.py", gpu_type=cards["80g"])
    job.refresh_from_db()
    assert job.state == JobState.RUNNING
    workshop = WorkshopFactory(user=user, name="dev", preset="2C/4G", run=True)
    workshop.refresh_from_db()
    assert workshop.state == WorkshopState.RUNNING
    key = workshop_services.ssh_key_add(user=user, public_key=public_key())
    user.job, user.workshop, user.key = job, workshop, key
    return user


def test_a_ban_stops_everything_forfeits_all_compute_and_is_recorded_once(
    miner, staff, client, run_on_commit
):
    # given a miner whose job has run 95 s and whose IDE is connected
    tokens = ide_login(client, miner)
    client.logout()
    assert me(client, tokens["access_token"]).status_code == 200
    assert billing_selectors.active_balance_micro(miner, T0) > 0
    banned_at = T0 + timedelta(seconds=95)

    # when support bans them
    with time_machine.travel(banned_at, tick=False):
        run_on_commit(user_ban_for_mining, user=miner, actor=staff, reason=REASON)

    # then the account is disabled and the phone blocked
    miner.refresh_from_db()
    assert miner.is_banned and not miner.is_active and miner.ban_reason == REASON
    assert BannedPhone.objects.get(phone=miner.phone).reason == REASON
    # the job ended, billed exactly to its release; the workshop stopped
    job = miner.job
    job.refresh_from_db()
    assert job.state == JobState.STOPPED and job.ended_at == banned_at
    assert job.metering_closed
    assert job.charged_micro == owed(job, banned_at) == 2_560_000 * 95 // 3600
    miner.workshop.refresh_from_db()
    assert miner.workshop.state == WorkshopState.STOPPED
    # all compute is gone, through FORFEIT entries that carry the reason, and no arrears
    assert billing_selectors.active_balance_micro(miner, banned_at) == 0
    forfeits = LedgerEntry.objects.filter(user=miner, kind=LedgerKind.FORFEIT)
    assert forfeits.exists() and {e.reason for e in forfeits} == {REASON}
    assert billing_selectors.account_for(miner).debt_micro == 0
    # the IDE token and the SSH key are refused
    assert me(client, tokens["access_token"]).status_code == 401
    assert not get_refresh_token_model().objects.filter(user=miner, revoked__isnull=True).exists()
    assert _login_target("dev", miner.key.fingerprint) is None
    # and one audit record holds it all
    action = StaffAction.objects.get(target_user=miner)
    assert (action.actor, action.action, action.reason) == (staff, "ban", REASON)
    assert action.before["active_compute_micro"] > 0 and action.after["active_compute_micro"] == 0
    assert action.before["running_jobs"] == [job.pk] and action.after["running_jobs"] == []
    assert action.before["running_workshops"] == [miner.workshop.pk]
    assert action.after["running_workshops"] == []
    assert action.before["ssh_keys"] == 1 and action.after["ssh_keys"] == 0
    assert action.before["ide_connections"] == 1 and action.after["ide_connections"] == 0
    assert action.details["jobs_stopped"] == 1 and action.details["workshops_stopped"] == 1
    # The forfeit came first (in the ban's transaction), the final charge at the release:
    # everything active was forfeited, and the charge after it was written off.
    assert action.details["forfeited_micro"] == action.before["active_compute_micro"]
    assert action.details["grants_forfeited"]


def test_the_final_charge_after_the_forfeit_leaves_no_arrears(miner, staff, driver):
    # given a ban whose job release the cluster confirms only later
    # (the stop task has not run: no on-commit callbacks here)
    banned_at = T0 + timedelta(minutes=30)
    with time_machine.travel(banned_at, tick=False):
        user_ban_for_mining(user=miner, actor=staff, reason=REASON)
    job = miner.job
    job.refresh_from_db()
    assert job.state == JobState.RUNNING and job.stop_requested_at == banned_at
    assert billing_selectors.active_balance_micro(miner, banned_at) == 0

    # when the release is applied a minute later, its final charge finds no grant
    released = banned_at + timedelta(minutes=1)
    with time_machine.travel(released, tick=False):
        job_services.job_stop_apply(job_id=job.pk)

    # then the use is in the ledger, exactly to the release, and written off, not owed
    job.refresh_from_db()
    assert job.state == JobState.STOPPED and job.ended_at == released
    assert job.charged_micro == owed(job, released)
    assert billing_selectors.account_for(miner).debt_micro == 0
    written_off = LedgerEntry.objects.filter(
        user=miner, kind=LedgerKind.DEBT_SETTLE, idempotency_key__endswith="#written-off"
    )
    assert sum(e.delta_micro for e in written_off) == owed(job, released)
    assert not ArrearsReview.objects.filter(user=miner).exists()


def test_arrears_from_before_the_ban_are_written_off(user, staff, cards, driver):
    # given a user in arrears (a job charged with no compute at all)
    job = JobFactory(user=user, card="80g", started_at=T0)
    meter_job(job=job, at=T0 + timedelta(minutes=10))
    assert billing_selectors.account_for(user).debt_micro > 0

    user_ban_for_mining(user=user, actor=staff, reason=REASON)

    assert billing_selectors.account_for(user).debt_micro == 0
    action = StaffAction.objects.get(target_user=user, action="ban")
    assert action.details["arrears_written_off_micro"] == action.before["debt_micro"] > 0


def test_banning_twice_doubles_nothing(miner, staff, run_on_commit):
    run_on_commit(user_ban_for_mining, user=miner, actor=staff, reason=REASON)
    entries = LedgerEntry.objects.filter(user=miner).count()
    miner.refresh_from_db()
    first = miner.banned_at

    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        run_on_commit(user_ban_for_mining, user=miner, actor=staff, reason=REASON)

    miner.refresh_from_db()
    assert miner.banned_at == first
    assert LedgerEntry.objects.filter(user=miner).count() == entries
    assert StaffAction.objects.filter(target_user=miner).count() == 1
    assert BannedPhone.objects.filter(phone=miner.phone).count() == 1


def test_a_ban_needs_a_reason_and_changes_nothing_without_one(miner, staff):
    with pytest.raises(ValidationError):
        user_ban_for_mining(user=miner, actor=staff, reason="   ")

    miner.refresh_from_db()
    assert miner.is_active and not miner.is_banned
    assert billing_selectors.active_balance_micro(miner, T0) > 0
    assert not StaffAction.objects.exists()


def test_a_ban_of_a_user_with_nothing_running_forfeits_carried_compute_too(user, staff, subscribe):
    subscribe(user, "trial", T0)
    assert billing_selectors.active_balance_micro(user, T0) > 0

    user_ban_for_mining(user=user, actor=staff, reason=REASON)

    assert billing_selectors.active_balance_micro(user, T0) == 0
    action = StaffAction.objects.get(target_user=user)
    assert action.details["jobs_stopped"] == 0
    assert action.details["forfeited_micro"] == action.before["active_compute_micro"]
    assert action.details["forfeited_micro"] > 0


def test_every_value_the_ban_records_has_a_name_staff_read(miner, staff, run_on_commit):
    # The 360° page and the audit log name each key (AUDIT_FIELD_LABELS):
    # a raw key such as active_compute_micro is an untranslated column name.
    from aladdin.accounts.choices import AUDIT_FIELD_LABELS

    run_on_commit(user_ban_for_mining, user=miner, actor=staff, reason=REASON)

    record = StaffAction.objects.get(target_user=miner, action="ban")
    keys = {*record.before, *record.after, *record.details}
    assert keys and keys - set(AUDIT_FIELD_LABELS) == set()
