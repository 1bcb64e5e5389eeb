"""The `aladdin` command (docs/cli.md): argument parsing, one function per command.

Exit codes: 0 done; 2 the portal refused (its ``detail`` and ``code`` are
printed) or the command line is wrong; 1 any other failure. `aladdin run`
and `aladdin jobs logs -f` exit with the job's own exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aladdin_cli import __version__
from aladdin_cli.client import (
    DEFAULT_PORTAL,
    CliError,
    credentials_path,
    delete_credentials,
    load_credentials,
)
from aladdin_cli.client import Portal as _Portal
from aladdin_cli.login import login as _login
from aladdin_cli.login import revoke

ENDED = ("succeeded", "failed", "stopped")
POLL_IDLE_S = 1.0
# `aladdin run` before the first output: how often to look at what the job waits for.
PROGRESS_EVERY_S = 5.0


def _out(args: argparse.Namespace, data: Any, text: str | Callable[[], str]) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(text() if callable(text) else text)


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells)  # noqa: B905
    return "\n".join(line.rstrip() for line in lines)


def _env_pairs(values: list[str] | None) -> dict[str, str]:
    env = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--env {item!r}: expected KEY=VALUE", code="usage", exit_code=2)
        env[key] = value
    return env


def _portal(args: argparse.Namespace) -> _Portal:
    return _Portal(getattr(args, "portal", None))


# --- login, logout, whoami, balance ---------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    portal = args.portal or os.environ.get("ALADDIN_PORTAL") or DEFAULT_PORTAL
    try:
        previous = load_credentials()
    except CliError:
        previous = None  # unreadable: the new login replaces it
    _login(portal, open_browser=not args.no_browser, port=args.port, timeout=args.timeout)
    if previous and previous.get("refresh_token"):
        # The login this one replaces would stay among the account's connected IDEs.
        with contextlib.suppress(CliError):
            revoke(previous["portal"], previous["refresh_token"])
    me = _Portal().get("/api/v1/me")
    _out(
        args,
        {"portal": portal.rstrip("/"), "user": me, "credentials": str(credentials_path())},
        f"Logged in to {portal.rstrip('/')} as {me.get('username') or me.get('phone')}.",
    )
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    creds = load_credentials()
    if not creds:
        _out(args, {"logged_out": False}, "Not logged in.")
        return 0
    problem = None
    try:
        # Revoking the refresh token revokes its access token too.
        revoke(creds["portal"], creds["refresh_token"])
    except CliError as exc:
        problem = exc
    delete_credentials()
    if problem is not None:
        print(
            f"warning: the portal did not revoke the login ({problem.detail}); "
            "the local credentials are deleted",
            file=sys.stderr,
        )
    _out(args, {"logged_out": True, "revoked": problem is None}, "Logged out.")
    return 0


def cmd_whoami(args: argparse.Namespace) -> int:
    portal = _portal(args)
    me = portal.get("/api/v1/me")
    _out(args, me, f"{me.get('username') or me.get('phone')} on {portal.url}")
    return 0


def cmd_balance(args: argparse.Namespace) -> int:
    b = _portal(args).get("/api/v1/billing/balance")

    def text() -> str:
        plan = b.get("plan") or {}
        rows = [("Active compute", f"{b['active_dcu']} DCU")]
        for c in b.get("carried") or []:
            rows.append(("Carried", f"{c['amount_dcu']} DCU until {c['carry_until']}"))
        if b.get("debt_micro"):
            rows.append(("Arrears", f"{b['debt_dcu']} DCU"))
        ends = f" until {b['period_ends_at']}" if b.get("period_ends_at") else ""
        rows.append(("Plan", f"{plan.get('name', '')}{ends}"))
        rows.append(("GPU parallelism", str(plan.get("gpu_parallelism", 0))))
        for q in b.get("queued") or []:
            rows.append(("Queued", f"{q['plan_name']} from {q['starts_at']} to {q['ends_at']}"))
        width = max(len(label) for label, _ in rows) + 1
        return "\n".join(f"{label + ':':<{width}} {value}" for label, value in rows)

    _out(args, b, text)
    return 0


# --- workshops -------------------------------------------------------------------


def _workshop(portal: _Portal, ref: str) -> dict:
    """A workshop by id or by name."""
    if ref.isdigit():
        return portal.get(f"/api/v1/workshops/{ref}")
    for row in portal.all_pages("/api/v1/workshops"):
        if row["name"] == ref:
            return row
    raise CliError(f"no workshop named {ref!r}", code="not_found", status=404, exit_code=2)


def cmd_ws_ls(args: argparse.Namespace) -> int:
    rows = _portal(args).all_pages("/api/v1/workshops")
    _out(
        args,
        rows,
        lambda: _table(
            [
                [
                    w["id"],
                    w["name"],
                    w["state"],
                    (w.get("image") or {}).get("ref", ""),
                    (w.get("preset") or {}).get("name", ""),
                    w.get("reason", ""),
                ]
                for w in rows
            ],
            ["ID", "NAME", "STATE", "IMAGE", "PRESET", "REASON"],
        ),
    )
    return 0


def cmd_ws_create(args: argparse.Namespace) -> int:
    portal = _portal(args)
    images = portal.all_pages("/api/v1/images")
    image = next((i for i in images if args.image in (i.get("ref"), str(i["id"]))), None)
    if image is None:
        refs = ", ".join(i.get("ref", "") for i in images)
        raise CliError(f"no image {args.image!r}; the catalog has: {refs}", exit_code=2)
    presets = portal.all_pages("/api/v1/presets")
    if args.preset:
        preset = next(
            (p for p in presets if args.preset in (p["name"], p.get("label"), str(p["id"]))), None
        )
    else:
        preset = next((p for p in presets if p.get("recommended")), presets[0] if presets else None)
    if preset is None:
        names = ", ".join(p["name"] for p in presets)
        raise CliError(f"no preset {args.preset!r}; the portal has: {names}", exit_code=2)
    body: dict[str, Any] = {"name": args.name, "image": image["id"], "preset": preset["id"]}
    if args.env:
        body["env"] = _env_pairs(args.env)
    w = portal.post("/api/v1/workshops", body)
    _out(args, w, f"Workshop {w['name']} (id {w['id']}) created: {w['state']}.")
    return 0


def _ws_action(action: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        portal = _portal(args)
        w = _workshop(portal, args.workshop)
        answer = portal.post(f"/api/v1/workshops/{w['id']}/{action}")
        _out(args, answer, f"Workshop {w['name']}: {action} requested.")
        return 0

    return run


def cmd_ws_ssh_config(args: argparse.Namespace) -> int:
    portal = _portal(args)
    w = _workshop(portal, args.workshop)
    params = {"key": args.key} if args.key else {}
    cfg = portal.get(f"/api/v1/workshops/{w['id']}/ssh-config", **params)

    def text() -> str:
        lines = [cfg["config"].rstrip("\n")]
        if cfg.get("known_hosts"):
            lines += ["", f"# known_hosts lines for {cfg.get('known_hosts_file', '')}:"]
            lines.append(cfg["known_hosts"].rstrip("\n"))
        return "\n".join(lines)

    _out(args, cfg, text)
    return 0


# --- jobs ------------------------------------------------------------------------


def _job_line(j: dict) -> list[Any]:
    return [
        j["id"],
        j["name"],
        j["kind"],
        j["state"],
        f"{j['cards']}×{j['gpu_type']}" if j.get("gpu_type") else "",
        j.get("exit_code"),
        j.get("created_at", ""),
    ]


def cmd_jobs_ls(args: argparse.Namespace) -> int:
    params = {"active": 1} if args.active else {}
    rows = _portal(args).all_pages("/api/v1/jobs", **params)
    _out(
        args,
        rows,
        lambda: _table(
            [_job_line(j) for j in rows],
            ["ID", "NAME", "KIND", "STATE", "CARDS", "EXIT", "CREATED"],
        ),
    )
    return 0


def _job_exit(job: dict) -> int:
    """The exit code `aladdin run` ends with: the job's own, else 0 or 1 by its state."""
    if job.get("exit_code") is not None:
        return int(job["exit_code"])
    return 0 if job["state"] == "succeeded" else 1


def _follow(
    portal: _Portal,
    args: argparse.Namespace,
    job_id: int,
    *,
    follow: bool,
    progress: bool = False,
) -> dict:
    """Print the job's output from the start; with ``follow``, until it ends. The job after.

    Polls GET /logs?offset= (X-Log-Offset, X-Log-Ended): plain HTTP through
    any proxy, and a dropped connection loses nothing (the offset says where
    to resume). With ``progress``, until the first output, say on stderr
    what the job waits for (its cards, its image's build) when that changes.
    """
    offset = 0
    failures = 0
    out = sys.stdout.buffer
    said: tuple[str, str] | None = None
    next_check = time.monotonic() + PROGRESS_EVERY_S
    while True:
        try:
            response = portal.request(
                "GET", f"/api/v1/jobs/{job_id}/logs", params={"offset": offset}
            )
            failures = 0
        except CliError as exc:
            # The cluster could not read the output right now, or the network blinked.
            if exc.code in ("logs_unavailable", "unreachable", "throttled") and failures < 30:
                failures += 1
                time.sleep(min(2.0 * failures, 10.0))
                continue
            raise
        chunk = response.body
        if chunk:
            if args.json:
                frame = {"type": "log", "data": chunk.decode("utf-8", "replace"), "offset": offset}
                offset = int(response.headers.get("X-Log-Offset", offset + len(chunk)))
                frame["offset"] = offset
                print(json.dumps(frame, ensure_ascii=False), flush=True)
            else:
                out.write(chunk)
                out.flush()
                offset = int(response.headers.get("X-Log-Offset", offset + len(chunk)))
        ended = response.headers.get("X-Log-Ended", "").lower() == "true"
        if ended or (not follow and not chunk):
            break
        if not chunk:
            if progress and offset == 0 and not args.json and time.monotonic() >= next_check:
                next_check = time.monotonic() + PROGRESS_EVERY_S
                row = portal.get(f"/api/v1/jobs/{job_id}")
                now = (row["state"], row.get("reason") or "")
                if row["state"] not in ENDED and now != said:
                    said = now
                    why = f": {now[1]}" if now[1] else ""
                    print(f"aladdin: job {job_id} {now[0]}{why}", file=sys.stderr, flush=True)
            time.sleep(POLL_IDLE_S)
    job = portal.get(f"/api/v1/jobs/{job_id}")
    if ended and job["state"] not in ENDED:
        # The output says the end came; the job's row follows within moments.
        for _ in range(30):
            time.sleep(1)
            job = portal.get(f"/api/v1/jobs/{job_id}")
            if job["state"] in ENDED:
                break
    return job


def _report_end(args: argparse.Namespace, job: dict) -> int:
    code = _job_exit(job)
    if args.json:
        print(json.dumps({"type": "end", "job": job}, ensure_ascii=False), flush=True)
    elif job["state"] != "succeeded":
        reason = job.get("reason") or job.get("state_display") or job["state"]
        print(f"aladdin: job {job['id']} {job['state']}: {reason}", file=sys.stderr)
    return code


def cmd_jobs_logs(args: argparse.Namespace) -> int:
    portal = _portal(args)
    job = _follow(portal, args, args.job, follow=args.follow)
    if args.follow and job["state"] in ENDED:
        return _report_end(args, job)
    return 0


def cmd_jobs_stop(args: argparse.Namespace) -> int:
    job = _portal(args).post(f"/api/v1/jobs/{args.job}/stop")
    _out(args, job, f"Job {job['id']}: stop requested ({job['state']}).")
    return 0


def cmd_jobs_rm(args: argparse.Namespace) -> int:
    _portal(args).delete(f"/api/v1/jobs/{args.job}")
    _out(args, {"id": args.job, "deleted": True}, f"Job {args.job} deleted.")
    return 0


def cmd_port_add(args: argparse.Namespace) -> int:
    answer = _portal(args).post(f"/api/v1/jobs/{args.job}/ports", {"port": args.port})
    _out(args, answer, f"Port {answer['port']} of job {args.job}: {answer['url']}")
    return 0


# The files page's browser sends 8 MiB chunks; the portal takes at most 16 MiB per request.
UPLOAD_CHUNK = 8 * 1024 * 1024


def cmd_upload(args: argparse.Namespace) -> int:
    """A local file into your storage (``/root/<folder>/<name>``), in chunks, replacing one of that name."""
    source = Path(args.file)
    if not source.is_file():
        raise CliError(f"{source}: not a file", code="invalid", exit_code=2)
    name = args.name or source.name
    portal = _portal(args)
    total = source.stat().st_size
    offset = 0
    answer: dict[str, Any] = {}
    with source.open("rb") as f:
        # An empty file is one empty chunk: the portal still makes it.
        while offset < total or not answer:
            piece = f.read(UPLOAD_CHUNK)
            if not piece and offset < total:
                raise CliError(f"{source} shrank while it was uploaded: upload it again")
            answer = portal.request(
                "PUT",
                "/api/v1/files/upload",
                raw=piece,
                params={"folder": args.to, "name": name, "offset": offset, "total": total},
            ).json()
            offset = answer["offset"]
            if not args.json and total > UPLOAD_CHUNK:
                print(f"\raladdin: {offset * 100 // total}%", end="", file=sys.stderr, flush=True)
    if not args.json and total > UPLOAD_CHUNK:
        print(file=sys.stderr)
    where = f"/root/{args.to.strip('/')}/{name}" if args.to.strip("/") else f"/root/{name}"
    _out(
        args,
        {"path": where, "bytes": total},
        f"Uploaded {source} to {where} ({total} bytes)",
    )
    return 0


def cmd_task(args: argparse.Namespace) -> int:
    """Run Task: the file over ``--workers`` workers with torchrun; streams worker 0's output."""
    args.kind = "task"
    return cmd_run(args)


def cmd_run(args: argparse.Namespace) -> int:
    portal = _portal(args)
    kind = args.kind or ("shell" if args.file.endswith(".sh") else "run")
    body: dict[str, Any] = {
        "kind": kind,
        "entry": args.file,
        "python_module": args.module,
        "args": list(args.args or []),
        "env": _env_pairs(args.env),
        "gpu_type": args.gpu,
        "cards_per_worker": args.cards,
        "workers": getattr(args, "workers", 1),
    }
    if args.image:
        body["image"] = args.image
    if args.workdir:
        body["workdir"] = args.workdir
    job = portal.post("/api/v1/jobs", body)
    if args.json:
        print(json.dumps({"type": "job", "job": job}, ensure_ascii=False), flush=True)
    else:
        print(
            f"aladdin: job {job['id']} ({job['kind_display']}, {job['cards']}×{job['gpu_type']}) "
            f"{job['state']}",
            file=sys.stderr,
            flush=True,
        )
    if args.detach:
        return 0
    try:
        job = _follow(portal, args, job["id"], follow=True, progress=True)
    except KeyboardInterrupt:
        print(
            f"\naladdin: stopped watching; job {job['id']} goes on "
            f"(`aladdin jobs stop {job['id']}` stops it)",
            file=sys.stderr,
        )
        return 130
    return _report_end(args, job)


# --- parser ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # --json and --portal are accepted before or after the command: each
    # subparser has its own copy, SUPPRESS keeps it from overwriting the main one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="output JSON for scripts"
    )
    common.add_argument(
        "--portal",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="the portal (default: the logged-in one)",
    )

    parser = argparse.ArgumentParser(
        prog="aladdin", description="The Aladdin portal from the command line."
    )
    parser.add_argument("--version", action="version", version=f"aladdin {__version__}")
    parser.add_argument("--json", action="store_true", help="output JSON for scripts")
    parser.add_argument("--portal", metavar="URL", help="the portal (default: the logged-in one)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        parent: Any,  # argparse's _SubParsersAction, private
        name: str,
        func: Callable[[argparse.Namespace], int],
        help: str,  # noqa: A002
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add(sub, "login", cmd_login, "log in through the browser (OAuth, PKCE)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL to open")
    p.add_argument("--port", type=int, default=0, help="loopback port (default: any free one)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait (default 300)")
    add(sub, "logout", cmd_logout, "revoke the login and delete the stored tokens")
    add(sub, "whoami", cmd_whoami, "the logged-in user")
    add(sub, "balance", cmd_balance, "compute balance and plan")

    ws = sub.add_parser("ws", help="workshops").add_subparsers(
        dest="ws_command", metavar="ACTION", required=True
    )
    add(ws, "ls", cmd_ws_ls, "list your workshops")
    p = add(ws, "create", cmd_ws_create, "create a workshop")
    p.add_argument("name")
    p.add_argument("--image", default="python:3.11", help="catalog image name:tag")
    p.add_argument("--preset", help="CPU/memory preset (default: the recommended one)")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="repeatable")
    for action in ("start", "stop"):
        p = add(ws, action, _ws_action(action), f"{action} a workshop")
        p.add_argument("workshop", help="id or name")
    p = add(ws, "ssh-config", cmd_ws_ssh_config, "the SSH config block and known_hosts lines")
    p.add_argument("workshop", help="id or name")
    p.add_argument("--key", help="SSH key id to name as IdentityFile")

    def launch_options(p: argparse.ArgumentParser, cards_help: str) -> None:
        p.add_argument("file", help="script or Python file in your storage (relative to /root)")
        p.add_argument("args", nargs="*", help="arguments for the script (after --)")
        p.add_argument("--gpu", default="40g", help="card type: 40g or 80g (default 40g)")
        p.add_argument("--cards", type=int, default=1, help=cards_help)
        p.add_argument("--env", action="append", metavar="KEY=VALUE", help="repeatable")
        p.add_argument("--image", help="catalog image name:tag (default: the portal's)")
        p.add_argument("-m", "--module", action="store_true", help="FILE is a module (python -m)")
        p.add_argument("--workdir", help="working directory")
        p.add_argument("-d", "--detach", action="store_true", help="launch and return at once")

    p = add(sub, "run", cmd_run, "launch a GPU job, stream its output, exit with its code")
    launch_options(p, "cards (default 1)")
    p.add_argument(
        "--kind",
        choices=["run", "shell", "debug"],
        help="run (Python), shell, or debug (waits for your IDE's debugger); "
        "default: by the file's name",
    )
    p = add(sub, "task", cmd_task, "Run Task: torchrun over several workers, stream worker 0")
    launch_options(p, "cards per worker (default 1)")
    p.add_argument("--workers", type=int, default=2, help="workers (default 2)")

    p = add(sub, "upload", cmd_upload, "upload a local file into your storage (/root)")
    p.add_argument("file", help="the local file")
    p.add_argument("--to", default="", metavar="FOLDER", help="folder under /root (must exist)")
    p.add_argument("--name", help="name in your storage (default: the file's)")

    jobs = sub.add_parser("jobs", help="GPU jobs").add_subparsers(
        dest="jobs_command", metavar="ACTION", required=True
    )
    p = add(jobs, "ls", cmd_jobs_ls, "list your jobs")
    p.add_argument("--active", action="store_true", help="only starting and running ones")
    p = add(jobs, "logs", cmd_jobs_logs, "a job's output")
    p.add_argument("job", type=int)
    p.add_argument("-f", "--follow", action="store_true", help="until the job ends")
    p = add(jobs, "stop", cmd_jobs_stop, "stop a job")
    p.add_argument("job", type=int)
    p = add(jobs, "rm", cmd_jobs_rm, "delete a job and its logs (stops it first)")
    p.add_argument("job", type=int)

    port = sub.add_parser("port", help="a job's ports").add_subparsers(
        dest="port_command", metavar="ACTION", required=True
    )
    p = add(port, "add", cmd_port_add, "serve a port of a job at its own URL")
    p.add_argument("job", type=int)
    p.add_argument("port", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        if args.json:
            print(json.dumps({"error": exc.as_json()}, ensure_ascii=False), file=sys.stderr)
        else:
            where = f" [{exc.code}]" if exc.code and exc.code != "error" else ""
            print(f"aladdin: {exc.detail}{where}", file=sys.stderr)
            for field, messages in (exc.fields or {}).items():
                text = (
                    "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
                )
                if text != exc.detail:  # the detail often is the one field's message
                    print(f"  {field}: {text}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
