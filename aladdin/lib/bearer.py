"""The IDE's bearer tokens: finding the stored token of one (the API and the websockets)."""

from __future__ import annotations

import hashlib


def access_token_for(raw: str):
    """The stored access token of a raw bearer token, with its user loaded; None if unknown.

    One indexed query by the token's SHA-256 checksum (DOT stores checksums
    only, COMPLIANT_BCP_RFC9700_TOKEN_STORAGE), shared by the API and the
    websockets. django-oauth-toolkit's own path (oauthlib's request object,
    its validator, a join on the application as well) cost 2-3 ms of a 10 ms
    API list; the checks that matter (expiry, scope, audience, an active
    user) are the callers', made on this row.
    """
    from oauth2_provider.models import get_access_token_model

    checksum = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    model = get_access_token_model()
    try:
        return model.objects.select_related("user").get(token_checksum=checksum)
    except model.DoesNotExist:
        return None
