"""ChoiceLabelField: a choice's label as get_<field>_display() says it, in the request's language."""

from __future__ import annotations

import pytest
from django.utils import translation

from billing.api import LedgerEntrySerializer
from billing.choices import LedgerKind
from billing.models import LedgerEntry
from gpu_jobs.api import JobSerializer
from gpu_jobs.choices import JobKind, JobState
from gpu_jobs.models import Job
from workshops.api import WorkshopSerializer
from workshops.models import Workshop


@pytest.mark.parametrize("language", ["en", "zh-hans"])
@pytest.mark.parametrize(
    ("serializer", "model", "field", "values"),
    [
        (JobSerializer, Job, "state", JobState.values),
        (JobSerializer, Job, "kind", JobKind.values),
        (LedgerEntrySerializer, LedgerEntry, "kind", LedgerKind.values),
        (WorkshopSerializer, Workshop, "state", Workshop._meta.get_field("state").choices),
    ],
)
def test_every_choice_reads_as_djangos_own_label(serializer, model, field, values, language):
    label_field = serializer().fields[f"{field}_display"]
    values = [v[0] if isinstance(v, tuple) else v for v in values]
    with translation.override(language):
        for value in values:
            row = model(**{field: value})
            assert label_field.to_representation(value) == getattr(row, f"get_{field}_display")()


def test_a_value_that_is_not_a_choice_reads_as_itself():
    # As Django's get_<field>_display: a row written before a choice was removed.
    assert JobSerializer().fields["state_display"].to_representation("gone") == "gone"


def test_the_label_is_translated_when_written_not_when_first_read():
    label_field = JobSerializer().fields["state_display"]
    with translation.override("zh-hans"):
        chinese = label_field.to_representation(JobState.RUNNING)
    with translation.override("en"):
        english = label_field.to_representation(JobState.RUNNING)
    assert english == "Running" and chinese != english
