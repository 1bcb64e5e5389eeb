"""The production database path: the portal migrates and works on PostgreSQL.

The suite itself runs on SQLite; these tests point a fresh `manage.py`
process at a private PostgreSQL server through DATABASE_URL, as production
does, so migrations written against SQLite's leniency (data migrations,
constraints, field types) are proven on PostgreSQL too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]

SHELL_SCRIPT = """
import json
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from oauth2_provider.models import get_application_model

user = get_user_model().objects.create_user(phone="13800138000", password="Pg-Path-2718-ok")
user = get_user_model().objects.get(pk=user.pk)
app = get_application_model().objects.get(client_id=settings.OAUTH_IDE_CLIENT_ID)
print("RESULT " + json.dumps({
    "vendor": connection.vendor,
    "server_version": connection.pg_version,
    "phone": user.phone,
    "password_ok": user.check_password("Pg-Path-2718-ok"),
    "app_client_type": app.client_type,
    "app_grant_type": app.authorization_grant_type,
    "app_redirect_uris": app.redirect_uris.split(),
}))
"""


def _manage(database_url: str, var_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=database_url, ALADDIN_VAR_DIR=str(var_dir))
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, (
        f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    return result


def test_portal_migrates_and_creates_users_on_postgresql(postgres_server, tmp_path):
    # given an empty PostgreSQL database named in DATABASE_URL
    url = postgres_server.url("postgres")

    # when the portal migrates it and runs its system checks against it
    _manage(url, tmp_path, "migrate", "--noinput")
    _manage(url, tmp_path, "check", "--database", "default")

    # then a phone user can be created and the IDE's OAuth client exists
    out = _manage(url, tmp_path, "shell", "-c", SHELL_SCRIPT).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["vendor"] == "postgresql"
    assert result["server_version"] >= 150000
    assert result["phone"] == "+8613800138000"
    assert result["password_ok"] is True
    assert result["app_client_type"] == "public"
    assert result["app_grant_type"] == "authorization-code"
    assert "vscode://AlayaNeW.aladdin/auth-callback" in result["app_redirect_uris"]
