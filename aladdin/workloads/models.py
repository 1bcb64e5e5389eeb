"""The tables every workload app reads: the image catalog and the platform's variables.

Their code lives here because workshops and GPU jobs both read them (jobs
validate an image against the catalog; every workload gets the platform
variables), and a sibling app may not import the other. Their tables stay
the workshops app's (``app_label``): migrations, admin pages, content types
and staff permissions are unchanged, and ``workshops.models`` imports them
so Django registers them with that app. Moving the label would buy nothing
but a state-only migration and new admin URLs.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.deconstruct import deconstructible
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from aladdin.cluster.images import BASE_OS_HOST, BuildState, ImageRecipe
from aladdin.lib import said

from .env import env_key

# A pinned requirement as a recipe holds it: name==version (extras allowed).
# Ranges would let the same recipe build different environments.
PIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9.+!_-]+$")
APT_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]+$")
PYTHON_RE = re.compile(r"^3\.[0-9]{1,2}$")
CUDA_RE = re.compile(r"^[0-9]{2}\.[0-9]$")


@deconstructible
class ListValidator:
    """Every item of a JSON list is text matching ``pattern`` (migrations can serialise it)."""

    def __init__(self, pattern: str, message: str | Promise):
        self.pattern = pattern
        self.message = message

    def __call__(self, value: object) -> None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValidationError(_("Enter a list of text values."))
        bad = [v for v in value if not re.match(self.pattern, v)]
        if bad:
            raise ValidationError(self.message % {"values": ", ".join(bad)})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ListValidator) and (self.pattern, self.message) == (
            other.pattern,
            other.message,
        )


validate_pins = ListValidator(
    PIN_RE.pattern, _("Pin every package to one version (name==version): %(values)s")
)
validate_apt = ListValidator(APT_RE.pattern, _("Not Debian package names: %(values)s"))


class Image(models.Model):
    """A catalog image users pick for workshops (and jobs): ``name:tag``."""

    name = models.CharField(_("name"), max_length=80)
    tag = models.CharField(_("tag"), max_length=80)
    description = models.TextField(_("contents"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    sort = models.PositiveIntegerField(_("sort"), default=0)
    # --- the recipe (SPEC §9 "Decision — images"): what the image is made of ---
    python_version = models.CharField(
        _("Python version"),
        max_length=8,
        blank=True,
        validators=[RegexValidator(PYTHON_RE, _("Major.minor, e.g. 3.11."))],
        help_text=_("Major.minor, e.g. 3.11; empty for an image without Python."),
    )
    packages = models.JSONField(
        _("Python packages"),
        default=list,
        blank=True,
        validators=[validate_pins],
        help_text=_('Pinned: ["torch==2.6.0", "torchvision==0.21.0"].'),
    )
    apt_packages = models.JSONField(
        _("Debian packages"), default=list, blank=True, validators=[validate_apt]
    )
    conda = models.BooleanField(_("conda"), default=False)
    cuda = models.CharField(
        _("CUDA"),
        max_length=8,
        blank=True,
        validators=[RegexValidator(CUDA_RE, _("e.g. 12.4"))],
        help_text=_("The CUDA its torch is built for, e.g. 12.4; empty for none."),
    )
    base_os = models.CharField(_("userland"), max_length=32, default=BASE_OS_HOST)
    container_image = models.CharField(
        _("container image"),
        max_length=255,
        blank=True,
        help_text=_(
            "What the Kubernetes backend runs, built from this recipe (manage.py image_dockerfile)."
        ),
    )
    # --- where the recipe stands on this platform's backend (images_sync) ---
    build_state = models.CharField(
        _("build state"),
        max_length=16,
        default=BuildState.MISSING,
        choices=[
            (BuildState.MISSING, _("not built yet")),
            (BuildState.BUILDING, _("building")),
            (BuildState.READY, _("ready")),
            (BuildState.UNAVAILABLE, _("unavailable")),
            (BuildState.FAILED, _("build failed")),
        ],
    )
    build_progress = models.PositiveSmallIntegerField(_("build progress"), default=0)
    build_step = models.CharField(_("build step"), max_length=200, blank=True)
    # The step as a message (aladdin.cluster.images.BUILD_STEPS), worded for the
    # reader by build_step_text; build_step keeps the agent's English.
    build_step_id = models.CharField(_("build step message"), max_length=64, blank=True)
    build_step_params = models.JSONField(_("build step parameters"), default=dict, blank=True)
    build_reason = models.TextField(_("why unavailable"), blank=True)
    cpu_only = models.BooleanField(_("CPU only on this host"), default=False)
    build_facts = models.JSONField(_("measured in the image"), default=dict, blank=True)
    build_key = models.CharField(max_length=80, blank=True, verbose_name=_("build key"))
    build_checked_at = models.DateTimeField(
        null=True, blank=True, verbose_name=_("build checked at")
    )

    # What the agent reports about a build (aladdin.workloads.images.image_record
    # writes them; the admin shows them read-only). Staff edit the rest.
    BUILD_FIELDS = [
        "build_state",
        "build_progress",
        "build_step",
        "build_step_id",
        "build_step_params",
        "build_reason",
        "cpu_only",
        "build_facts",
        "build_key",
        "build_checked_at",
    ]

    class Meta:
        app_label = "workshops"
        ordering = ["sort", "pk"]
        constraints = [models.UniqueConstraint(fields=["name", "tag"], name="image_name_tag")]
        verbose_name = _("image")
        verbose_name_plural = _("images")

    def __str__(self) -> str:
        return self.ref

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"

    def recipe(self) -> ImageRecipe:
        return ImageRecipe(
            ref=self.ref,
            python=self.python_version,
            packages=tuple(self.packages or ()),
            apt=tuple(self.apt_packages or ()),
            conda=self.conda,
            cuda=self.cuda,
            base_os=self.base_os or BASE_OS_HOST,
        )

    @property
    def launchable(self) -> bool:
        """Whether a workload may be asked for on it (it may still have to wait for its build)."""
        return self.build_state not in (BuildState.UNAVAILABLE, BuildState.FAILED)

    @property
    def ready(self) -> bool:
        return self.build_state == BuildState.READY

    @property
    def build_step_said(self) -> dict:
        """The build's step as a reason parameter ({"id", "params", "text"}; format said.REASON)."""
        return {"id": self.build_step_id, "params": self.build_step_params, "text": self.build_step}

    @property
    def build_step_text(self) -> str:
        """What the build is doing, in the active language ("" when it is not building)."""
        return said.shown(self.build_step, self.build_step_id, self.build_step_params)

    def availability(self) -> str:
        """A short note for pickers: why it cannot be chosen, or what to expect."""
        if self.build_state == BuildState.UNAVAILABLE:
            return str(_("unavailable: %(reason)s") % {"reason": self.build_reason})
        if self.build_state == BuildState.FAILED:
            return str(_("build failed: %(reason)s") % {"reason": self.build_reason})
        if self.build_state == BuildState.BUILDING:
            return str(_("building, %(progress)s%%") % {"progress": self.build_progress})
        if self.build_state == BuildState.MISSING:
            return str(_("built at first use"))
        if self.cpu_only:
            return str(_("CPU only on this host"))
        return ""


class PlatformEnvVar(models.Model):
    """A variable injected into every workload (SPEC §6 "academic acceleration")."""

    key = models.CharField(_("key"), max_length=128, unique=True, validators=[env_key])
    value = models.TextField(_("value"), blank=True)
    description = models.CharField(_("description"), max_length=200, blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    sort = models.PositiveIntegerField(_("sort"), default=0)

    class Meta:
        app_label = "workshops"
        ordering = ["sort", "key"]
        verbose_name = _("platform environment variable")
        verbose_name_plural = _("platform environment variables")

    def __str__(self) -> str:
        return self.key


class IdlePolicy(models.Model):
    """What to do with a user's idle workloads (issue 20); a None field: never.

    Dev jobs are idle while every card they hold stays below
    ``threshold_percent`` (the cards' own utilisation, NVML on real cards);
    workshops, which hold no card, while their CPU stays below
    ``workshop_cpu_percent`` of one core. HTTP activity plays no part: a
    notebook tab left open does not make a workload busy. Users without a row
    get the defaults of ``aladdin.workloads.idle``.
    """

    user = models.OneToOneField(
        "accounts.User",
        on_delete=models.CASCADE,
        related_name="idle_policy",
        verbose_name=_("user"),
    )
    warn_minutes = models.PositiveIntegerField(
        null=True, blank=True, verbose_name=_("jobs: warn after (minutes idle)")
    )
    stop_minutes = models.PositiveIntegerField(
        null=True, blank=True, verbose_name=_("jobs: stop after (minutes idle)")
    )
    threshold_percent = models.PositiveSmallIntegerField(
        default=5, verbose_name=_("jobs: idle below (GPU utilisation, %)")
    )
    workshop_warn_minutes = models.PositiveIntegerField(
        null=True, blank=True, verbose_name=_("workshops: warn after (minutes idle)")
    )
    workshop_stop_minutes = models.PositiveIntegerField(
        null=True, blank=True, verbose_name=_("workshops: stop after (minutes idle)")
    )
    workshop_cpu_percent = models.PositiveSmallIntegerField(
        default=5, verbose_name=_("workshops: idle below (CPU, percent of one core)")
    )
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        app_label = "workshops"
        verbose_name = _("idle policy")
        verbose_name_plural = _("idle policies")

    def __str__(self) -> str:
        return f"{self.user}: jobs {self.warn_minutes}/{self.stop_minutes}"
