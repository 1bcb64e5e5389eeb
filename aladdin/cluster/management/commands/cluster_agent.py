"""``manage.py cluster_agent``: the local backend's agent, in the foreground (Procfile.dev ``agent``)."""

from __future__ import annotations

import logging
import signal
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from aladdin.cluster.agent import Agent


class Command(BaseCommand):
    help = "Run the local cluster agent: it owns workload processes (one per host)."
    requires_system_checks = []  # it needs settings only, not the apps' checks

    def add_arguments(self, parser: ArgumentParser) -> None:
        # Overrides for tests, which run a private agent per test.
        parser.add_argument("--socket", help="Unix socket path (default LOCAL_AGENT_SOCKET)")
        parser.add_argument("--state-dir", help="journal and logs (default LOCAL_AGENT_DIR)")
        parser.add_argument("--volumes-dir", help="users' volumes (default LOCAL_VOLUMES_DIR)")

    def handle(self, *args: Any, **options: Any) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        agent = Agent(
            socket_path=Path(options["socket"] or settings.LOCAL_AGENT_SOCKET),
            state_dir=Path(options["state_dir"] or settings.LOCAL_AGENT_DIR),
            volumes_dir=Path(options["volumes_dir"] or settings.LOCAL_VOLUMES_DIR),
            uid_base=settings.LOCAL_UID_BASE,
            image_map=settings.LOCAL_IMAGE_MAP,
            insecure=settings.ALADDIN_LOCAL_INSECURE,
            gpus=settings.LOCAL_GPUS,
            log_max_bytes=settings.LOCAL_LOG_MAX_MIB * 2**20,
            log_user_max_bytes=settings.LOCAL_LOG_USER_MAX_MIB * 2**20,
            cgroup_root=settings.LOCAL_CGROUP_ROOT,
            cgroup_parent=settings.LOCAL_CGROUP_PARENT,
            pids_max=settings.LOCAL_PIDS_MAX,
        )
        # supervisord and systemd send SIGTERM (a terminal's Ctrl-C SIGINT): stop the
        # workloads gracefully and journal their end before exiting.
        signal.signal(signal.SIGTERM, agent.shutdown)
        signal.signal(signal.SIGINT, agent.shutdown)
        agent.serve_forever()
