from django.db import models
from django.utils.translation import gettext_lazy as _


class EducationStatus(models.TextChoices):
    NONE = "none", _("Not verified")
    EMAIL = "email", _("Verified by education e-mail")
    STAFF = "staff", _("Approved by staff")


class Language(models.TextChoices):
    ZH_HANS = "zh-hans", "简体中文"
    EN = "en", "English"
