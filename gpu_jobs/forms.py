"""Forms of the GPU job pages (SPEC §7's launch parameters)."""

from __future__ import annotations

import shlex
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from aladdin.lib.units import dcu_to_micro, format_micro
from aladdin.workloads.env import parse_env
from aladdin.workloads.forms import ImageSelect, image_label, unlaunchable
from aladdin.workloads.idle import Policies, Policy
from aladdin.workloads.models import Image

from . import services
from .choices import JobKind, JobState
from .models import GpuType, JobConfiguration
from .validation import clean_ports

# Every kind of SPEC §7.
LAUNCH_KINDS = [
    (k.value, k.label) for k in (JobKind.RUN, JobKind.DEBUG, JobKind.SHELL, JobKind.TASK)
]


class GpuTypeChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: GpuType) -> str:
        return _("%(name)s — %(price)s DCU/h per card (%(cpu)s CPU, %(mem)s GiB per card)") % {
            "name": obj.name,
            "price": format_micro(obj.price_micro_per_hour),
            "cpu": f"{obj.cpu_millicores / 1000:g}",
            "mem": f"{obj.memory_mib / 1024:g}",
        }


def _image_choices(images: list[Image]):
    refs = [image.ref for image in images]
    default = services.DEFAULT_IMAGE
    choices = [(image.ref, image_label(image)) for image in images]
    if default not in refs:
        return [("", _("Default (%(image)s)") % {"image": default}), *choices]
    return choices


def format_args(args: list[str]) -> str:
    """The inverse of ``clean_args``: a list shown as one shell-quoted line."""
    return shlex.join(args or [])


class JobLaunchForm(forms.Form):
    """Launch a job, or save its parameters as a named configuration.

    ``configuration`` (hidden) is the configuration the form was loaded from:
    its ENV values are never sent to the browser, so they are carried over on
    the server, with the ENV field's lines added on top.
    """

    configuration = forms.IntegerField(required=False, widget=forms.HiddenInput)
    kind = forms.ChoiceField(
        label=_("Kind"),
        choices=LAUNCH_KINDS,
        initial=JobKind.RUN,
        help_text=_(
            "GPU Debug waits for your IDE's debugger before the first line. "
            "Run Task: a Python file run by torchrun (or a shell script) over several workers; "
            "its logs are kept in your storage."
        ),
    )
    entry = forms.CharField(
        label=_("Entry"),
        max_length=1024,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "/root/train.py"}),
        help_text=_("A Python file or shell script under /root, or a module name with -m."),
    )
    python_module = forms.BooleanField(label=_("Python module (-m)"), required=False)
    args = forms.CharField(
        label=_("Args"),
        required=False,
        max_length=8192,
        widget=forms.TextInput(attrs={"placeholder": "--epochs 3 --lr 1e-4"}),
        help_text=_("One line, split like a shell does (quotes keep spaces)."),
    )
    env = forms.CharField(
        label=_("ENV"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "WANDB_API_KEY=..."}),
        help_text=_("One NAME=value per line. Values are stored encrypted and never shown again."),
    )
    workdir = forms.CharField(
        label=_("Work dir"),
        required=False,
        max_length=1024,
        help_text=_("Under /root; by default the entry file's directory."),
    )
    image = forms.ChoiceField(
        label=_("Environment (image)"), required=False, choices=(), widget=ImageSelect
    )
    interpreter = forms.CharField(
        label=_("Interpreter"),
        required=False,
        max_length=1024,
        widget=forms.TextInput(attrs={"placeholder": "/root/miniconda3/envs/myenv/bin/python"}),
        help_text=_("Optional: a conda python under /root. When set, the image is ignored."),
    )
    gpu_type = GpuTypeChoiceField(
        label=_("Card"), queryset=GpuType.objects.all(), to_field_name="code", empty_label=None
    )
    cards_per_worker = forms.IntegerField(
        label=_("Cards per worker"), min_value=1, max_value=64, initial=1
    )
    workers = forms.IntegerField(
        label=_("Workers"),
        required=False,
        min_value=1,
        max_value=64,
        initial=1,
        help_text=_(
            "Run Task only: each worker gets its own cards; parallelism = cards × workers."
        ),
    )
    ports = forms.CharField(
        label=_("+ External access"),
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "8888, 8188", "inputmode": "numeric"}),
        help_text=_(
            "Ports of your server to open in the browser (Jupyter 8888, ComfyUI 8188), each at "
            "its own URL. Your server must listen on 0.0.0.0. A dev job bills until deleted."
        ),
    )
    save_name = forms.CharField(
        label=_("Configuration name"),
        required=False,
        max_length=100,
        help_text=_("Saving under an existing name updates that configuration."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        images = list(Image.objects.filter(is_active=True))
        self.fields["image"].choices = _image_choices(images)
        self.fields["image"].widget.disabled = unlaunchable(images, by="ref")
        if not self.is_bound and not self.initial.get("image"):
            self.fields["image"].initial = services.DEFAULT_IMAGE

    def clean_ports(self) -> list[int]:
        text = (self.cleaned_data.get("ports") or "").replace(",", " ")
        try:
            return clean_ports(text.split())
        except ValidationError as exc:
            raise ValidationError(exc.message_dict.get("ports", exc.messages)) from None

    def clean_args(self) -> list[str]:
        try:
            return shlex.split(self.cleaned_data.get("args") or "")
        except ValueError as exc:
            raise ValidationError(
                _("Args could not be split: %(error)s."), params={"error": str(exc)}
            ) from exc

    def clean_env(self) -> dict[str, str]:
        return parse_env(self.cleaned_data.get("env") or "")

    @classmethod
    def initial_from(cls, config: JobConfiguration) -> dict:
        """Initial values of a loaded configuration; its ENV values stay on the server."""
        initial = {
            "configuration": config.pk,
            "kind": config.kind if config.kind in dict(LAUNCH_KINDS) else JobKind.RUN,
            "entry": config.entry,
            "python_module": config.python_module,
            "args": format_args(config.args),
            "workdir": config.workdir,
            "interpreter": config.interpreter,
            "cards_per_worker": config.cards_per_worker,
            "workers": config.workers,
            "ports": ", ".join(str(p) for p in config.ports),
            "save_name": config.name,
        }
        if config.image:
            initial["image"] = config.image
        if config.gpu_type_id:
            initial["gpu_type"] = config.gpu_type.code
        return initial


class JobFilterForm(forms.Form):
    state = forms.ChoiceField(
        label=_("State"), required=False, choices=[("", _("All states")), *JobState.choices]
    )
    kind = forms.ChoiceField(
        label=_("Kind"), required=False, choices=[("", _("All kinds")), *JobKind.choices]
    )


class BudgetForm(forms.Form):
    """A monthly compute budget in DCU (issue 20); empty removes it."""

    monthly_dcu = forms.DecimalField(
        label=_("Monthly budget (DCU)"),
        required=False,
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=2,
        help_text=_("Empty: no budget. Alerts at 80 % and 100 % of it."),
    )
    hard_stop = forms.BooleanField(
        label=_("Refuse new launches once it is spent (what runs keeps running)"),
        required=False,
    )

    def monthly_micro(self) -> int | None:
        value = self.cleaned_data.get("monthly_dcu")
        return None if value is None else dcu_to_micro(value)


class IdlePolicyForm(forms.Form):
    """When idle dev jobs and workshops are warned about and stopped (issue 20); empty: never."""

    warn_minutes = forms.IntegerField(
        label=_("Dev jobs: warn after (minutes idle)"), required=False, min_value=1, max_value=10080
    )
    stop_minutes = forms.IntegerField(
        label=_("Dev jobs: stop after (minutes idle)"), required=False, min_value=1, max_value=10080
    )
    threshold_percent = forms.IntegerField(
        label=_("Dev jobs: idle means every card's use is below (percent)"),
        min_value=1,
        max_value=90,
        initial=5,
    )
    workshop_warn_minutes = forms.IntegerField(
        label=_("Workshops: warn after (minutes idle)"),
        required=False,
        min_value=1,
        max_value=10080,
    )
    workshop_stop_minutes = forms.IntegerField(
        label=_("Workshops: stop after (minutes idle)"),
        required=False,
        min_value=1,
        max_value=10080,
    )
    workshop_cpu_percent = forms.IntegerField(
        label=_("Workshops: idle means CPU below (percent of one core)"),
        min_value=1,
        max_value=90,
        initial=5,
    )

    @classmethod
    def for_policies(cls, policies: Policies) -> IdlePolicyForm:
        return cls(
            initial={
                "warn_minutes": policies.jobs.warn_minutes,
                "stop_minutes": policies.jobs.stop_minutes,
                "threshold_percent": policies.jobs.threshold_percent,
                "workshop_warn_minutes": policies.workshops.warn_minutes,
                "workshop_stop_minutes": policies.workshops.stop_minutes,
                "workshop_cpu_percent": policies.workshops.threshold_percent,
            }
        )

    def clean(self):
        data = super().clean()
        for warn, stop in (
            ("warn_minutes", "stop_minutes"),
            ("workshop_warn_minutes", "workshop_stop_minutes"),
        ):
            if data.get(warn) is not None and data.get(stop) is not None:
                if data[warn] >= data[stop]:
                    raise ValidationError(_("Warn before the stop: the warning must come first."))
        return data

    def policies(self) -> Policies:
        data = self.cleaned_data
        return Policies(
            jobs=Policy(data["warn_minutes"], data["stop_minutes"], data["threshold_percent"]),
            workshops=Policy(
                data["workshop_warn_minutes"],
                data["workshop_stop_minutes"],
                data["workshop_cpu_percent"],
            ),
        )
