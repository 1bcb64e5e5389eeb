"""Reasons a job keeps (``Job.reason_id``) and its ledger charges, read in the reader's language."""

from django.utils.translation import gettext_lazy as _

from aladdin.lib.said import DCU_NUMBER, define

define("job.stopped_by_you", _("Stopped by you."))
define("job.deleted_by_you", _("Deleted by you."))
define("job.balance_out", _("Stopped: your compute balance is used up."))
define("job.process_failed", _("The job's process failed."))
define("job.lost", _("The job's workload was lost by the cluster."))
define(
    "job.no_debugger",
    _(
        "GPU Debug cannot start on this host: the platform's debugger is not installed. "
        "Tell support; GPU Run works meanwhile."
    ),
)
define(
    "job.worker_failed",
    _("Worker %(worker)s failed (exit code %(code)s); the other workers were stopped."),
)
define(
    "job.leader_ended",
    _(
        "Worker 0 ended before the other workers could start: they join it to run. Keep "
        "worker 0 running until every worker has started (torchrun's rendezvous does)."
    ),
)
define("job.charge", _("GPU job %(job)s: %(cards)s × %(card)s"))
define(
    "job.idle_stopped",
    _(
        "Stopped: its GPUs were idle for %(minutes)s minutes (utilisation below %(threshold)s%%). "
        "Stopping it saves %(hourly)s DCU for each hour it would have kept running."
    ),
    hourly=DCU_NUMBER,
)
