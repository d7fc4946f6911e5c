"""Move the old DRF tokens (`authtoken_token`, one per user, key in plaintext) to API tokens
with the same key, hashed (docs/security.md#legacy-tokens)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.accounts import tokens


class Command(BaseCommand):
    help = (
        "Turn every DRF token into an API token with the same key (stored hashed), scope "
        "admin, name 'legacy', and delete the plaintext row. Programs keep working. Safe to "
        "run again."
    )

    def handle(self, *args, **options) -> None:
        moved = tokens.legacy_tokens_migrate()
        self.stdout.write(f"migrated {moved} legacy token(s)")
