"""The SSH gateway (SPEC §6 "Decision — SSH", issue 13): one SSH server for every workshop.

``manage.py ssh_gateway`` (``ssh`` in Procfile.dev) listens on
``SSH_BIND:SSH_PORT`` with the host keys of :mod:`aladdin.lib.ssh_host_keys`.
A client logs in with one of its owner's keys (``workshops.SSHKey``) and
names the workshop as the SSH user (``ssh dev@host``); a wrong key, an
unknown name and another user's name are refused alike, so nobody learns
which names exist. Only public keys are accepted: no passwords, no
keyboard-interactive, no agent or X11 forwarding, no remote forwarding;
``ssh -L`` reaches only a port of the session's own workshop (``localhost``)
or of one of the user's running jobs (``job-<id>``), through the driver's
:meth:`~aladdin.cluster.base.ClusterDriver.connect_port`.

What a session runs, it runs inside the workshop through the cluster
driver's :meth:`~aladdin.cluster.base.ClusterDriver.exec_in_workload`
(locally: the agent, in the workload's sandbox, as its uid): never in this
process, which holds no rules of its own either: the login decision is
``workshops.selectors.ssh_login_target``, the record of a login
``workshops.services.ssh_login_record``.

Modules: :mod:`.server` (the asyncssh server, its connections and sessions).
"""
