"""Offsets that cannot be: GET /api/v1/jobs/{id}/logs is 400 ``invalid``, not 503, and the
log websocket (/ws/jobs/{id}/logs/?offset=) closes with 4400, not 4502.

With a real agent (tests/cluster/conftest.py): an offset reaches the agent's
file seek, which the filesystem refuses far past the end (ext4 at 16 TiB),
and the failure came back as 503 "the cluster cannot read the output" (on
the websocket, 4502, which a client retries for ever). No output reaches
1 TiB, so both refuse larger offsets, and negative ones, as bad input
before they ask the cluster.
"""

from __future__ import annotations

import pytest

from gpu_jobs.choices import JobState
from tests.cluster.conftest import spec
from tests.gpu_jobs.test_logs import ORIGIN, collect, cookie
from tests.wsclient import refusal_code

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ended_job(client, user, make_job, portal_driver):
    job = make_job(user, state=JobState.SUCCEEDED)
    portal_driver.ensure_user_space(user_id=user.pk, storage_gib=1, quota=None)
    portal_driver.start_workload(
        spec(job.workload_name, user_id=user.pk, kind="job", command=["sh", "-c", "echo hello"])
    )
    b"".join(portal_driver.follow_logs(name=job.workload_name))
    client.force_login(user)
    return job


# An agent per test costs seconds: each test tries several values.
IMPOSSIBLE_OFFSETS = [str(10**30), str(2**63), str(2**40 + 1), "-1", "-99999999999999999999", "x"]


def test_an_offset_that_cannot_exist_is_400_invalid(client, ended_job):
    for offset in IMPOSSIBLE_OFFSETS:
        response = client.get(f"/api/v1/jobs/{ended_job.pk}/logs", {"offset": offset})

        assert response.status_code == 400, (offset, response.content)
        body = response.json()
        assert body["code"] == "invalid"
        assert "offset" in body["fields"]


def test_the_largest_possible_offset_past_the_end_is_an_empty_chunk(client, ended_job):
    last = str(2**40)  # 1 TiB: no output is that long

    response = client.get(f"/api/v1/jobs/{ended_job.pk}/logs", {"offset": last})

    assert response.status_code == 200, response.content
    assert response.content == b""
    assert response["X-Log-Offset"] == last
    assert response["X-Log-Ended"] == "true"


def test_an_offset_within_the_output_reads_from_there(client, ended_job):
    response = client.get(f"/api/v1/jobs/{ended_job.pk}/logs", {"offset": "2"})

    assert response.status_code == 200
    assert response.content == b"llo\n"
    assert response["X-Log-Offset"] == "6"


def test_a_limit_out_of_range_is_400_invalid(client, ended_job):
    for limit in ["0", "-1", str(2**20 + 1), str(10**30)]:
        response = client.get(f"/api/v1/jobs/{ended_job.pk}/logs", {"limit": limit})

        assert response.status_code == 400, (limit, response.content)
        assert "limit" in response.json()["fields"]


# --- the websocket ---------------------------------------------------------------


def test_an_offset_that_cannot_exist_closes_the_websocket_with_4400(client, user, ended_job):
    headers = [cookie(client, user), ORIGIN]
    for offset in IMPOSSIBLE_OFFSETS:
        path = f"/ws/jobs/{ended_job.pk}/logs/?offset={offset}"

        assert refusal_code(path, headers) == 4400, offset


def test_the_websocket_checks_ownership_before_the_offset(client, other_user, ended_job):
    path = f"/ws/jobs/{ended_job.pk}/logs/?offset=-1"

    assert refusal_code(path, [cookie(client, other_user), ORIGIN]) == 4404


def test_the_largest_possible_offset_streams_only_the_end_frame(client, user, ended_job):
    last = 2**40

    frames, code = collect([cookie(client, user), ORIGIN], ended_job.pk, query=f"offset={last}")

    assert frames == [{"type": "end", "offset": last, "state": "succeeded"}]
    assert code == 1000


def test_the_websocket_resumes_from_a_valid_offset(client, user, ended_job):
    frames, code = collect([cookie(client, user), ORIGIN], ended_job.pk, query="offset=2")

    assert frames[0] == {"type": "log", "data": "llo\n", "offset": 6}
    assert code == 1000
