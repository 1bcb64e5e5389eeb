"""allauth's strings that students read on the sign-up, login and code pages, whose
Chinese (allauth's own catalog) reads like machine translation ("登录代码",
"请求新代码"). Listed here so that ``makemessages`` puts them in the portal's
catalog, which Django consults before allauth's (LOCALE_PATHS): the zh-hans
text students see is ours (issue 17). Nothing imports this module.
"""

from django.utils.translation import gettext_noop

ALLAUTH_OVERRIDES = (
    gettext_noop("Incorrect code."),
    gettext_noop("Send me a sign-in code"),
    gettext_noop("Code"),
    gettext_noop(
        "We've sent a code to %(recipient)s. The code expires shortly, so please enter it soon."
    ),
    gettext_noop("Request new code"),
    gettext_noop("Enter Sign-In Code"),
    gettext_noop("Sign-In Code"),
    gettext_noop("Enter Password Reset Code"),
    gettext_noop("Password Reset Code"),
    gettext_noop("Enter Phone Verification Code"),
    gettext_noop("A sign-in code has been sent to %(recipient)s."),
    gettext_noop("You will receive a special code for a password-free sign-in."),
    gettext_noop("Already have an account? Then please %(link)ssign in%(end_link)s."),
    gettext_noop("Authenticator code"),
    gettext_noop("Enter an authenticator code:"),
    gettext_noop(
        "Your account is protected by two-factor authentication. Please enter an "
        "authenticator code:"
    ),
)
