"""WebSocket authentication by DRF token: `?token=<key>`, for programs without a session."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.conf import settings
from rest_framework.authtoken.models import Token


@database_sync_to_async
def _token_user(key: str):
    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token and token.user.is_active else None


class TokenAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from `?token=`; a token that matches no one marks the scope, so
    the consumer closes with 4401 instead of silently treating the client as anonymous."""

    async def __call__(self, scope, receive, send):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        tokens = query.get("token")  # a blank ?token= is a bad token too, not anonymity
        if tokens:
            key = tokens[-1]
            user = await _token_user(key) if len(key) <= 40 and "\x00" not in key else None
            scope = dict(scope)
            if user is None:
                scope["token_invalid"] = True
            else:
                scope["user"] = user
        return await super().__call__(scope, receive, send)


class BrowserOriginValidator(OriginValidator):
    """Channels' origin check, except that a client sending no Origin at all passes.

    Browsers always send Origin on a WebSocket handshake, so cross-site pages are still
    refused; programs (websockets, curl) usually send none and authenticate by token.
    """

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or super().valid_origin(parsed_origin)


def allowed_hosts_origin_validator(application) -> BrowserOriginValidator:
    """As `channels.security.websocket.AllowedHostsOriginValidator`, with the rule above."""
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed_hosts)
