"""IDE plugin login: OAuth 2.0 authorization code + PKCE (S256 only), RFC 8252.

The plugin opens /o/authorize/ in the browser; after login the page offers
"Return to VSCode", which opens the vscode:// (or cursor://) redirect with the
code. Loopback redirects (http://127.0.0.1:<any port>/callback) are followed
directly.

A code is single-use, and a code presented again revokes every token that its
first exchange issued (RFC 6749 §4.1.2): whoever replays it either stole it or
lost a race to someone who did, and the server cannot tell which.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from urllib.parse import parse_qs, urlparse

from django.utils.cache import patch_cache_control
from django.utils.crypto import salted_hmac
from oauth2_provider.models import Grant, get_refresh_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.views import AuthorizationView
from oauthlib.oauth2 import Server
from oauthlib.oauth2.rfc6749 import errors
from oauthlib.oauth2.rfc6749.grant_types.authorization_code import code_challenge_method_s256

IDE_SCHEMES = {"vscode": "VSCode", "cursor": "Cursor"}


class S256OnlyServer(Server):
    """oauthlib's server with the "plain" PKCE method removed (and S256 required).

    oauthlib treats a missing code_challenge_method as "plain"; without plain
    in the table such a request is refused too.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.auth_grant._code_challenge_methods = {"S256": code_challenge_method_s256}


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", errors="replace")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def code_token_family(code: str, client) -> uuid.UUID:
    """The refresh-token family of the tokens issued for ``code``.

    django-oauth-toolkit gives each login a token family (every rotated
    refresh token inherits it) but keeps no link from a code to its tokens,
    and it deletes the code's Grant row on use. Deriving the family from the
    code finds the tokens again when the code comes back, rotated ones
    included, with no table of used codes. Keyed with SECRET_KEY, so the
    family (stored in the clear) says nothing about the code.
    """
    digest = salted_hmac(
        "aladdin.accounts.oauth.code_token_family", f"{client.pk}:{code}", algorithm="sha256"
    ).digest()
    return uuid.UUID(bytes=digest[:16])


def revoke_tokens_of_code(code: str, client) -> None:
    """Revoke every token issued for ``code`` (its whole family); nothing if none were."""
    get_refresh_token_model().revoke_family(code_token_family(code, client))


class IDEOAuth2Validator(OAuth2Validator):
    def validate_code(self, client_id, code, client, request, *args, **kwargs):
        if not super().validate_code(client_id, code, client, request, *args, **kwargs):
            # Used, expired or unknown: if it was used, its tokens go now.
            revoke_tokens_of_code(code, client)
            return False
        # Check the verifier here rather than after oauthlib's own check so a
        # wrong verifier also burns the code: a stolen code cannot be retried.
        grant = Grant.objects.filter(code=code, application=client).first()
        verifier = getattr(request, "code_verifier", None)
        if (
            grant is None
            or grant.code_challenge_method != "S256"
            or not verifier
            or not hmac.compare_digest(_s256(verifier), grant.code_challenge)
        ):
            Grant.objects.filter(code=code, application=client).delete()
            return False
        return True

    def _create_refresh_token(self, request, refresh_token_code, access_token, previous):
        refresh_token = super()._create_refresh_token(
            request, refresh_token_code, access_token, previous
        )
        if previous is None and request.grant_type == "authorization_code":
            refresh_token.token_family = code_token_family(request.code, request.client)
            refresh_token.save(update_fields=["token_family"])
        return refresh_token

    def invalidate_authorization_code(self, client_id, code, request, *args, **kwargs):
        try:
            super().invalidate_authorization_code(client_id, code, request, *args, **kwargs)
        except errors.InvalidGrantError:
            # Two exchanges of one code at once: both passed validate_code
            # before either deleted the Grant, and both saved tokens. The one
            # that finds the Grant gone is a replay: revoke both logins.
            revoke_tokens_of_code(code, request.client)
            raise


class IDEAuthorizationView(AuthorizationView):
    """Authorization endpoint that hands custom-scheme redirects to a page.

    Browsers ask before opening an app and some block a bare 302 to a custom
    scheme, so the user gets a "Return to VSCode" button (as in the manual).
    """

    def redirect(self, redirect_to, application):
        parsed = urlparse(redirect_to)
        if parsed.scheme in IDE_SCHEMES:
            response = self.response_class(
                request=self.request,
                template="accounts/return_to_ide.html",
                context={
                    "redirect_to": redirect_to,
                    "ide_name": IDE_SCHEMES[parsed.scheme],
                    "application": application,
                    # The parameter, not a substring of the whole URI.
                    "is_error": "error" in parse_qs(parsed.query),
                },
            )
            # The page carries a live authorization code: keep it out of
            # browser and proxy caches (RFC 6749 §10.5 treats codes as secrets).
            patch_cache_control(response, no_store=True, private=True)
            return response
        return super().redirect(redirect_to, application)
