"""Forms of the workshop pages."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from aladdin.workloads.env import env_key, parse_env
from aladdin.workloads.forms import ImageSelect, image_label, unlaunchable
from aladdin.workloads.models import Image

from .models import ResourcePreset, dns_label


class PresetChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: ResourcePreset) -> str:
        if obj.recommended:
            return _("%(label)s (recommended)") % {"label": obj.label}
        return obj.label


class ImageChoiceField(forms.ModelChoiceField):
    widget = ImageSelect

    def label_from_instance(self, obj: Image) -> str:
        return image_label(obj)


def _presets():
    return ResourcePreset.objects.filter(is_active=True)


def _default_preset(user) -> int | None:
    """The recommended size if it fits what ``user`` may run now, else the largest that fits.

    A free user keeping the default must not be refused for a size the form
    chose (the quota allows them 2 CPU / 4 GiB); when nothing fits, the
    recommended one stays and the refusal says why.
    """
    presets = list(_presets())
    recommended = next((p for p in presets if p.recommended), presets[0] if presets else None)
    if user is None or recommended is None:
        return recommended.pk if recommended else None
    from aladdin.cluster.base import Resources
    from aladdin.workloads import quota

    def fits(p) -> bool:
        return quota.fits(user, Resources(cpu_millicores=p.cpu_millicores, memory_mib=p.memory_mib))

    if fits(recommended):
        return recommended.pk
    fitting = [p for p in presets if fits(p)]
    if not fitting:
        return recommended.pk
    return max(fitting, key=lambda p: (p.cpu_millicores, p.memory_mib)).pk


class WorkshopCreateForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=40,
        validators=[dns_label],
        help_text=_("Lowercase letters, digits and '-'; the SSH host alias is <name>.bj1."),
    )
    image = ImageChoiceField(
        label=_("Environment"), queryset=Image.objects.filter(is_active=True), empty_label=None
    )
    preset = PresetChoiceField(label=_("Resource"), queryset=_presets(), empty_label=None)
    env = forms.CharField(
        label=_("ENV"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "placeholder": "OPENAI_API_KEY=sk-..."}),
        help_text=_("One KEY=VALUE per line. Values are stored encrypted and never shown again."),
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["image"]
        images = list(field.queryset)
        field.widget.disabled = unlaunchable(images, by="pk")
        # The first image a workshop can start on now (built, else buildable):
        # a disabled first option would submit nothing.
        usable = [i for i in images if i.ready] or [i for i in images if i.launchable]
        if usable and not self.is_bound:
            field.initial = usable[0].pk
        self.fields["preset"].initial = _default_preset(user)

    def clean_env(self) -> dict[str, str]:
        return parse_env(self.cleaned_data.get("env") or "")


class ResourcesForm(forms.Form):
    preset = PresetChoiceField(label=_("Resource"), queryset=_presets(), empty_label=None)


class EnvVarForm(forms.Form):
    key = forms.CharField(label=_("Name"), max_length=128, validators=[env_key])
    value = forms.CharField(label=_("Value"), required=False, widget=forms.PasswordInput)


class SSHKeyAddForm(forms.Form):
    public_key = forms.CharField(
        label=_("Public key"),
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "ssh-ed25519 AAAA… me@laptop"}),
        help_text=_(
            "The contents of your .pub file: ed25519, ECDSA, or RSA of at least 3072 bits."
        ),
    )
    name = forms.CharField(label=_("Name"), max_length=100, required=False)


class SSHKeyGenerateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100, required=False)
