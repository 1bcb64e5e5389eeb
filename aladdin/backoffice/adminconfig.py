"""django.contrib.admin's AppConfig with the back office's site (apart from apps.py,
where a second AppConfig would make Django refuse to pick a default)."""

from django.contrib.admin.apps import AdminConfig


class BackOfficeAdminConfig(AdminConfig):
    """django.contrib.admin with the back office's site as ``admin.site``.

    Every ``@admin.register`` in the apps lands on :class:`BackOfficeSite`,
    so its login, home page and permissions apply to all of them.
    """

    default_site = "aladdin.backoffice.site.BackOfficeSite"
