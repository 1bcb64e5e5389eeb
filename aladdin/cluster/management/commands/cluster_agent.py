"""``manage.py cluster_agent``: the local backend's agent, in the foreground (Procfile.dev ``agent``)."""

from __future__ import annotations

import logging
import signal
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from aladdin.cluster import gpus
from aladdin.cluster.agent import Agent
from aladdin.cluster.agent.images import Images


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
        images = Images(
            settings.IMAGES_ROOT,
            pythons=settings.IMAGES_PYTHONS,
            # pip and the packages' install scripts run as the agent's self-test
            # uid, which no user has (agent/images.py).
            build_uid=settings.IMAGES_BUILD_UID,
            # The host's own cards, whatever ALADDIN_LOCAL_GPUS hands out: CUDA
            # builds need the real driver.
            has_nvidia=bool(gpus.host_cards()),
            allow_cpu_builds=settings.IMAGES_ALLOW_CPU_BUILDS,
            torch_index=settings.IMAGES_TORCH_INDEX,
            torch_cpu_index=settings.IMAGES_TORCH_CPU_INDEX,
            conda_installer=settings.IMAGES_CONDA_INSTALLER,
        )
        agent = Agent(
            socket_path=Path(options["socket"] or settings.LOCAL_AGENT_SOCKET),
            state_dir=Path(options["state_dir"] or settings.LOCAL_AGENT_DIR),
            volumes_dir=Path(options["volumes_dir"] or settings.LOCAL_VOLUMES_DIR),
            uid_base=settings.LOCAL_UID_BASE,
            images=images,
            insecure=settings.ALADDIN_LOCAL_INSECURE,
            gpus=settings.LOCAL_GPUS,
            log_max_bytes=settings.LOCAL_LOG_MAX_MIB * 2**20,
            log_user_max_bytes=settings.LOCAL_LOG_USER_MAX_MIB * 2**20,
            cgroup_root=settings.LOCAL_CGROUP_ROOT,
            cgroup_parent=settings.LOCAL_CGROUP_PARENT,
            pids_max=settings.LOCAL_PIDS_MAX,
            egress_policy=settings.LOCAL_EGRESS_POLICY,
            monitor_seconds=settings.LOCAL_MONITOR_SECONDS,
            virtual_gpu_metrics_file=settings.LOCAL_VIRTUAL_GPU_METRICS_FILE,
            debugpy_dir=settings.DEBUGPY_DIR,
        )
        # supervisord and systemd send SIGTERM (a terminal's Ctrl-C SIGINT): stop the
        # workloads gracefully and journal their end before exiting.
        signal.signal(signal.SIGTERM, agent.shutdown)
        signal.signal(signal.SIGINT, agent.shutdown)
        agent.serve_forever()
