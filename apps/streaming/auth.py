"""WebSocket authentication by API token: `?token=<key>`, for programs without a session
(docs/contracts.md#websocket, docs/security.md#api-tokens)."""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from django.conf import settings

from apps.accounts import tokens
from apps.accounts.models import ApiToken

# What a token needs to open a feed: every feed is market data, read (`admin` covers it).
STREAM_SCOPE = ApiToken.READ


@database_sync_to_async
def _stream_credentials(key: str) -> tuple[object, object] | None:
    """The user and token a key opens feeds as; None for a key that may not (unknown,
    revoked, expired, an inactive user, or a token without the `read` scope)."""
    try:
        user, token = tokens.key_credentials(key)
    except tokens.TokenError:
        return None
    return (user, token) if tokens.allows(token, STREAM_SCOPE) else None


class TokenAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from `?token=`, and scope["api_token"] to its token (an `ApiToken`,
    or the DRF `Token` of a legacy key) so a consumer can check its scopes. A key that may
    not open a feed marks the scope, so the consumer closes with 4401 instead of silently
    treating the client as anonymous."""

    async def __call__(self, scope, receive, send):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        keys = query.get("token")  # a blank ?token= is a bad token too, not anonymity
        if keys:
            credentials = await _stream_credentials(keys[-1])
            scope = dict(scope)
            if credentials is None:
                scope["token_invalid"] = True
            else:
                scope["user"], scope["api_token"] = credentials
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
