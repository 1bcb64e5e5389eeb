"""The portal's state under var/ is readable by the portal's user only.

Even a process started with the usual umask 022 (a management command run
by hand) creates nothing under var/ that others can read: settings create
the SQLite database (and so its WAL and SHM files) 0600, the secret key
0600, the static directory 0700, and Django saves files 0600. var/ itself is
0711: sandbox uids traverse it to reach their volume. `make run` (umask 077
for every process) is checked end to end in tests/e2e/test_make_run.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# In a fresh process: settings, a write (SQLite creates -wal and -shm), a file
# saved through Django's storage; then every mode under var/ while the
# connection is still open (the WAL files exist only then).
SCRIPT = """
import json, os, stat, django
django.setup()
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
with connection.cursor() as c:
    c.execute("CREATE TABLE probe (x integer)")
    c.execute("INSERT INTO probe VALUES (1)")
default_storage.save("invoices/probe.pdf", ContentFile(b"%PDF-1.4"))
var = os.environ["ALADDIN_VAR_DIR"]
modes = {}
for dirpath, dirnames, filenames in os.walk(var):
    for name in [""] + dirnames + filenames:
        path = os.path.join(dirpath, name)
        modes[os.path.relpath(path, var)] = stat.S_IMODE(os.lstat(path).st_mode)
print(json.dumps(modes))
"""


def test_settings_and_django_create_nothing_others_can_read_under_var(tmp_path):
    var_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DATABASE_URL"}}
    env.update(ALADDIN_VAR_DIR=str(var_dir), DEBUG="1", DJANGO_SETTINGS_MODULE="aladdin.settings")

    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),  # noqa: PLW1509 - only the umask
    )

    assert done.returncode == 0, done.stderr
    modes = json.loads(done.stdout.strip().splitlines()[-1])
    assert modes.pop(".") == 0o711
    # The files this test is about are all there.
    assert {"db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm", "secret_key"} <= set(modes)
    assert {"staticfiles", "media/invoices/probe.pdf"} <= set(modes)
    readable = {path: oct(mode) for path, mode in modes.items() if mode & 0o077}
    assert readable == {}
