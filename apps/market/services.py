"""Writes of market data: seeding symbols, activating them, and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from apps.market import timescale
from apps.market.constants import DEFAULT_SYMBOLS
from apps.market.models import Bar, Symbol, Tick

# A generic profile for tickers named in MARKETFLUX_SYMBOLS that are not in DEFAULT_SYMBOLS.
_GENERIC_SYMBOL = {
    "exchange": "NYSE",
    "sector": "",
    "start_price": 100.0,
    "drift": 0.05,
    "volatility": 0.30,
    "jump_rate": 12.0,
}


def symbols_seed(*, tickers: list[str] | None = None) -> tuple[int, int]:
    """Create the default market (or `tickers`) if missing; returns (created, existing).

    Existing symbols are left exactly as an admin may have edited them.
    """
    defaults = {d["ticker"]: d for d in DEFAULT_SYMBOLS}
    wanted = tickers or list(defaults)
    created = 0
    with transaction.atomic():
        for ticker in wanted:
            spec = defaults.get(ticker) or {"ticker": ticker, "name": ticker, **_GENERIC_SYMBOL}
            fields = {k: v for k, v in spec.items() if k != "ticker"}
            if Symbol.objects.filter(ticker=ticker).exists():
                continue
            symbol = Symbol(ticker=ticker, **fields)
            symbol.full_clean()  # a bad ticker in MARKETFLUX_SYMBOLS fails here, clearly
            symbol.save(force_insert=True)
            created += 1
    return created, len(wanted) - created


def symbols_set_active(*, tickers: list[str], active: bool) -> int:
    return Symbol.objects.filter(ticker__in=tickers).exclude(active=active).update(active=active)


def ticks_prune() -> int:
    """Delete ticks past retention where no TimescaleDB policy does it; returns rows removed."""
    if timescale.installed(connection):
        return 0
    now = datetime.now(UTC)
    removed, _ = Tick.objects.filter(
        ts__lt=now - timedelta(days=settings.MARKETFLUX_TICK_RETENTION_DAYS)
    ).delete()
    if settings.MARKETFLUX_BAR_RETENTION_DAYS:
        bars, _ = Bar.objects.filter(
            ts__lt=now - timedelta(days=settings.MARKETFLUX_BAR_RETENTION_DAYS)
        ).delete()
        removed += bars
    return removed
