from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.market.services import symbols_seed


class Command(BaseCommand):
    help = "Create the default symbols (or MARKETFLUX_SYMBOLS) if missing. Safe to run again."

    def add_arguments(self, parser) -> None:
        parser.add_argument("tickers", nargs="*", help="Tickers to create (default: the market)")

    def handle(self, *args, tickers: list[str], **options) -> None:
        wanted = [t.upper() for t in tickers] or settings.MARKETFLUX_SYMBOLS or None
        created, existing = symbols_seed(tickers=wanted)
        self.stdout.write(f"symbols: {created} created, {existing} already present")
