"""The local agent: the one process per host that owns workload processes (SPEC §9).

``manage.py cluster_agent`` (or ``python -m aladdin.cluster.agent``) runs it
in the foreground (``agent`` in Procfile.dev, ``aladdin-agent.service`` in
production). Web and Celery processes talk to it through
:class:`aladdin.cluster.local.LocalDriver`, so restarting them leaves
workloads running; stopping the agent stops every workload (bwrap's
``--die-with-parent``), and on SIGTERM/SIGINT it first stops them gracefully
and records each end ("agent stopped", with the time) in its journal, so the
reconciler learns after the next start how and when they ended.

Modules:

- :mod:`.server`: :class:`Agent` (the main loop, the socket server, one
  typed request at a time dispatched to the parts below);
- :mod:`.workloads`: the :class:`~.workloads.Workload` dataclass and the
  table of them: starting in a bubblewrap sandbox, stopping, ends, user
  spaces, GPU cards;
- :mod:`.output`: each workload's output kept on the host, bounded per
  workload and per user;
- :mod:`.journal`: ``journal.json`` and the heartbeat, what survives a restart;
- :mod:`.pty`: terminals (a shell inside a running sandbox, over the socket);
- :mod:`.execs`: exec, a command or login shell inside a running sandbox with
  stdin, stdout, stderr and the exit status apart (the SSH gateway's sessions).

The messages are :mod:`aladdin.cluster.protocol`'s, shared with the driver.
"""

from .server import Agent

__all__ = ["Agent"]
