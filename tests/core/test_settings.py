"""Settings come from the environment and fail clearly on bad values."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_settings(**env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY"}}
    base.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import aladdin.settings"],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_time_zone_is_asia_shanghai_with_aware_datetimes():
    assert settings.TIME_ZONE == "Asia/Shanghai"
    assert settings.USE_TZ is True


def test_default_language_is_simplified_chinese_with_english_available():
    assert settings.LANGUAGE_CODE == "zh-hans"
    assert [code for code, _ in settings.LANGUAGES] == ["zh-hans", "en"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "0"}, "SECRET_KEY is required"),
        ({"DEBUG": "maybe"}, "DEBUG must be a boolean"),
        ({"DEBUG": "1", "PORT": "eighty"}, "PORT must be an integer"),
        ({"DEBUG": "1", "SMS_BACKEND": "pigeon"}, "SMS_BACKEND must be"),
        (
            {"DEBUG": "1", "SMS_BACKEND": "aliyun"},
            "SMS_BACKEND=aliyun needs ALIYUN_SMS_ACCESS_KEY_ID",
        ),
        ({"DEBUG": "1", "CLUSTER_DRIVER": "slurm"}, "CLUSTER_DRIVER must be"),
        (
            {
                "DEBUG": "0",
                "SECRET_KEY": "x" * 50,
                "ALADDIN_LOCAL_VIRTUAL_GPU_METRICS_FILE": "/tmp/gpu.json",
            },
            "development only, it needs DEBUG=1",
        ),
    ],
)
def test_bad_settings_fail_at_start_with_the_variable_named(env, message):
    result = _load_settings(**env)
    assert result.returncode != 0
    assert message in result.stderr


def test_sqlite_runs_in_wal_mode_with_immediate_transactions(db):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in connection.settings_dict["OPTIONS"]["init_command"]


@pytest.mark.parametrize(("argv", "loaded"), [(["runserver"], True), (["cluster_agent"], False)])
def test_daphne_is_loaded_for_runserver_only(argv, loaded):
    # runserver keeps daphne's ASGI server (websockets); every other process
    # (agents, workers, commands) starts without importing Twisted.
    script = (
        "import sys; sys.argv = ['manage.py', *sys.argv[1:]]; import django; django.setup(); "
        "from django.conf import settings as s; "
        "print('daphne' in s.INSTALLED_APPS, 'twisted' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *argv],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "aladdin.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(loaded), str(loaded)]
