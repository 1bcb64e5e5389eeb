"""A build's steps: every step the cluster reports is a message the portal words in both languages."""

from __future__ import annotations

import re

import pytest
from django.utils import translation

from aladdin.cluster.images import BUILD_STEPS, build_step
from aladdin.lib import said
from aladdin.workloads import reasons  # noqa: F401 - defines the messages

PARAMS = {"version": "3.12.1", "package": "torch==2.6.0", "index": 2, "count": 5}


@pytest.mark.parametrize("step_id", sorted(BUILD_STEPS))
def test_each_step_the_cluster_reports_reads_the_same_in_english_and_is_translated(step_id):
    step = build_step(
        step_id, **{k: v for k, v in PARAMS.items() if f"%({k})s" in BUILD_STEPS[step_id]}
    )
    assert said.defined(step_id)
    with translation.override("en"):
        assert said.render(step_id, step["step_params"]) == step["step"]
    with translation.override("zh-hans"):
        worded = said.render(step_id, step["step_params"])
    assert re.search(r"[\u4e00-\u9fff]", worded), worded  # in Chinese, not the agent's English
