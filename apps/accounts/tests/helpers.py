"""What the API token tests share: making tokens as the services do, the request headers
that carry them, and a scan of the whole database for a key."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from apps.accounts import tokens
from apps.accounts.models import ApiToken

API = "/api/v1"
# Every text column of every table, and the token tables among them.
_TEXT_TYPES = ("text", "character varying", "character", "ARRAY", "json", "jsonb")


def issue(user, *scopes: str, name: str | None = None, expires=None) -> str:
    """A new token of `user` with `scopes`; its key."""
    _, key = tokens.api_token_create(
        user=user, name=name or "+".join(scopes) or "none", scopes=scopes, expires=expires
    )
    return key


def bearer(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


def token_of(key: str) -> ApiToken:
    return ApiToken.objects.get(prefix=tokens.display_prefix(key), digest=tokens.digest_of(key))


def make_dead(key: str, state: str) -> None:
    """Expire the token of `key` (as if its expiry passed) or revoke it (as its owner does)."""
    token = token_of(key)
    if state == "expired":
        ApiToken.objects.filter(pk=token.pk).update(expires=timezone.now() - timedelta(seconds=1))
    else:
        tokens.api_token_revoke(token=token)


def text_columns() -> list[tuple[str, str]]:
    """(table, column) of every text-like column in the database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c"
            " JOIN information_schema.tables t"
            "   ON t.table_schema = c.table_schema AND t.table_name = c.table_name"
            " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
            "   AND c.data_type = ANY(%s)",
            [list(_TEXT_TYPES)],
        )
        return cursor.fetchall()


def columns_holding(text: str) -> list[str]:
    """`table.column` of every text column in which `text` appears, anywhere in a value."""
    found = []
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table, column in text_columns():
            cursor.execute(
                f"SELECT 1 FROM {quote(table)} WHERE strpos({quote(column)}::text, %s) > 0 LIMIT 1",  # noqa: S608
                [text],
            )
            if cursor.fetchone():
                found.append(f"{table}.{column}")
    return found
