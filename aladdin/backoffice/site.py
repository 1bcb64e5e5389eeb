"""The admin site support staff log in to (``/admin/``)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _


class BackOfficeSite(admin.AdminSite):
    site_header = _("Aladdin back office")
    site_title = _("Aladdin back office")
    index_title = _("Support")
