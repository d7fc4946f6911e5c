from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.market import backfill


def _minute(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%dT%H:%MZ") if ts else "-"


class Command(BaseCommand):
    help = (
        "Seed 1-minute bars from the simulator so each symbol has DAYS of history up to now,"
        " ending at its first live price. Safe to run again: existing bars are kept."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--days", type=int, default=365, help=f"days of history, 1-{backfill.MAX_DAYS}"
        )
        parser.add_argument(
            "--symbols", default="", help="comma-separated tickers (default: every active symbol)"
        )
        parser.add_argument(
            "--seed", type=int, default=None, help="simulator seed (default: MARKETFLUX_SEED)"
        )

    def handle(self, *args, days: int, symbols: str, seed: int | None, **options) -> None:
        if not 1 <= days <= backfill.MAX_DAYS:
            raise CommandError(f"--days must be from 1 to {backfill.MAX_DAYS}, not {days}")
        tickers = [t for t in symbols.split(",") if t.strip()]
        try:
            chosen = backfill.resolve_symbols(tickers)
            if not chosen:
                raise CommandError("no active symbols: run seed_symbols first, or name --symbols")
            result = backfill.backfill(
                symbols=chosen,
                days=days,
                seed=settings.MARKETFLUX_SEED if seed is None else seed,
            )
        except backfill.BackfillError as exc:
            raise CommandError(str(exc)) from exc
        names = ", ".join(w.symbol.ticker for w in result.windows)
        if result.start is None:
            span = f"already {days} day{'s' if days != 1 else ''} of history up to now"
        else:
            span = f"{_minute(result.start)} to {_minute(result.end)}"
        refreshed = (
            f", longer bars refreshed ({', '.join(result.refreshed)})" if result.refreshed else ""
        )
        self.stdout.write(
            f"backfill: {result.rows:,} 1-minute bars written for {names} ({span})"
            f"{refreshed} in {result.seconds:.1f} s"
        )
