"""Reasons a workshop keeps (``Workshop.reason_id``), read in the reader's language."""

from django.utils.translation import gettext_lazy as _

from aladdin.lib.said import define

define("workshop.container_ended", _("The workshop's container ended."))
define("workshop.start_timeout", _("The workshop did not start in time."))
define("workshop.container_gone", _("The workshop's container is gone."))
define(
    "workshop.idle_stopped",
    _(
        "Stopped: idle for %(minutes)s minutes (CPU below %(threshold)s%% of one core), as your "
        "idle policy asks. Your files under /root are kept; start it again when you need it."
    ),
)
