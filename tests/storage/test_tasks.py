from __future__ import annotations

from celery.schedules import crontab
from django.conf import settings

from storage import services, tasks
from storage.models import StorageCharge

from .conftest import GIB


def test_beat_samples_every_configured_interval_and_charges_at_0030_shanghai():
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert settings.CELERY_TIMEZONE == "Asia/Shanghai"
    assert schedule["storage-sample-usage"]["schedule"] == float(settings.STORAGE_SAMPLE_SECONDS)
    nightly = schedule["storage-nightly-charge"]["schedule"]
    assert isinstance(nightly, crontab)
    assert nightly.hour == {0} and nightly.minute == {30}
    assert schedule["storage-retention"]["task"] == "storage.retention"


def test_the_tasks_take_an_as_of_in_shanghai_time(make_user, plans, driver):
    user = make_user()
    services.volume_register(user_id=user.pk)
    driver.usage[user.pk] = 32 * GIB

    assert tasks.sample_usage("2026-04-01T23:50:00") == 1
    assert tasks.nightly_charge("2026-04-02T00:30:00") == 1
    assert tasks.nightly_charge("2026-04-02T00:30:00") == 0
    assert StorageCharge.objects.get(user=user).amount_micro == 3_000
    assert tasks.retention("2026-04-02T01:00:00") == {"warned": 0, "reclaimed": 0}
