"""Who may read through the gateway: the key the vendor's clients send is a user's API token.

The REST client sends `Authorization: Bearer <key>`; the vendor's documents also allow
`?apiKey=<key>`. With MARKETFLUX_PUBLIC_READ on, any key (or none) reads, as anonymous when
the key is unknown; with it off an unknown key is a 401 (docs/polygon.md#authentication).
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

_KEYWORDS = (b"bearer", b"token")


def api_key(request) -> str | None:
    parts = get_authorization_header(request).split()
    if len(parts) == 2 and parts[0].lower() in _KEYWORDS:
        try:
            return parts[1].decode()
        except UnicodeError:
            return ""
    return request.query_params.get("apiKey") or None


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        key = api_key(request)
        if key is None:
            return None
        token = None
        if len(key) <= 40 and "\x00" not in key:  # a token's key: 40 characters
            token = Token.objects.select_related("user").filter(key=key).first()
        if token is not None and token.user.is_active:
            return token.user, token
        if settings.MARKETFLUX_PUBLIC_READ:
            return None
        raise AuthenticationFailed("Unknown API key.")

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
