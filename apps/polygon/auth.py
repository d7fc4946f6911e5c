"""Who may read through the gateway: the key the vendor's clients send is a user's API token.

The REST client sends `Authorization: Bearer <key>`; the vendor's documents also allow
`?apiKey=<key>`. With MARKETFLUX_PUBLIC_READ on, any key (or none) reads, as anonymous when
the key is unknown; with it off an unknown key is a 401. A key that was a token but is
revoked or expired (or its user inactive) is refused either way, so a program learns its
key is dead; a token without the `read` scope (or `admin`) may not read here
(docs/polygon.md#authentication, docs/security.md#api-tokens).
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied

from apps.accounts import tokens
from apps.accounts.models import ApiToken

_KEYWORDS = (b"bearer", b"token")
READ_SCOPE = ApiToken.READ  # the gateway only reads


def api_key(request) -> str | None:
    parts = get_authorization_header(request).split()
    if len(parts) == 2 and parts[0].lower() in _KEYWORDS:
        try:
            return parts[1].decode()
        except UnicodeError:
            return ""
    return request.query_params.get("apiKey") or None


def stream_key_user(key: str) -> tuple[object | None, bool]:
    """For the WebSocket's `auth` message: (the user `key` reads as, refused).

    (None, False) for a key that is no one's (public read decides); (None, True) for a
    token that may not read (revoked, expired, an inactive user, no `read` scope).
    """
    try:
        user, token = tokens.key_credentials(key)
    except tokens.UnknownKey:
        return None, False
    except tokens.TokenError:
        return None, True
    if not tokens.allows(token, READ_SCOPE):
        return None, True
    return user, False


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        key = api_key(request)
        if key is None:
            return None
        try:
            user, token = tokens.key_credentials(key)
        except tokens.UnknownKey:
            if settings.MARKETFLUX_PUBLIC_READ:
                return None
            raise AuthenticationFailed("Unknown API key.") from None
        except tokens.TokenError as refused:
            raise AuthenticationFailed(str(refused)) from None
        if not tokens.allows(token, READ_SCOPE):
            # Checked here, not by a permission class: every gateway path reads.
            raise PermissionDenied(
                f"This token's scopes ({', '.join(token.scopes) or 'none'}) do not include "
                f"{READ_SCOPE!r}, which the gateway needs."
            )
        return user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
