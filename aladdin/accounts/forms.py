from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.utils.translation import gettext_lazy as _


class EducationEmailForm(forms.Form):
    email = forms.EmailField(
        label=_("Education e-mail"),
        help_text=_("An address of your school, ending in .edu.cn or .edu."),
    )


class LanguageForm(forms.Form):
    language = forms.ChoiceField(choices=settings.LANGUAGES, label=_("Language"))
    next = forms.CharField(required=False, widget=forms.HiddenInput)


class NewPasswordForm(forms.Form):
    """Set a new password after proving the phone with an SMS code."""

    password1 = forms.CharField(
        label=_("New password"), widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    password2 = forms.CharField(
        label=_("New password (again)"),
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, user, **kwargs):
        self.user = user
        super().__init__(*args, **kwargs)

    def clean(self):
        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            raise forms.ValidationError(_("The two passwords differ."))
        if p1:
            password_validation.validate_password(p1, self.user)
        return data
