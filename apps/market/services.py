"""Writes of market data: seeding symbols, activating them, retention, backfill jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from apps.market import backfill, keys, timescale
from apps.market.constants import DEFAULT_SYMBOLS
from apps.market.models import Bar, Symbol, Tick
from apps.ops.redis_client import redis_client

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
    """Activate or deactivate symbols; returns how many changed. Saved one by one, not by
    one UPDATE, so each change is in the audit log (docs/security.md#audit-log)."""
    changed = 0
    with transaction.atomic():
        for symbol in (
            Symbol.objects.select_for_update().filter(ticker__in=tickers).exclude(active=active)
        ):
            symbol.active = active
            symbol.save(update_fields=["active", "updated_at"])
            changed += 1
    return changed


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


def _backfill_job_record(job: str, **fields: object) -> None:
    key = keys.backfill_job(job)
    pipe = redis_client().pipeline(transaction=False)
    pipe.hset(key, mapping={k: str(v) for k, v in fields.items()})
    pipe.expire(key, keys.BACKFILL_JOB_TTL)
    pipe.execute()


def backfill_job_start(*, tickers: list[str], days: int) -> str:
    """Queue a backfill of `tickers` (the `market.backfill` task); returns the job's id,
    whose progress `selectors.backfill_job_progress` reads. Raises BackfillError for days
    out of range or no symbol."""
    backfill.check_days(days)
    if not tickers:
        raise backfill.BackfillError("no symbols to backfill")
    from apps.market import tasks  # tasks call this module

    job = uuid.uuid4().hex
    _backfill_job_record(
        job, state="queued", tickers=",".join(tickers), days=days, done=0, total=0, rows=0,
        error="",
    )  # fmt: skip
    tasks.backfill.delay(job=job, tickers=tickers, days=days)
    return job


def backfill_job_run(*, job: str, tickers: list[str], days: int) -> int:
    """Run a queued backfill (`apps.market.backfill.backfill`, as the command does),
    recording its progress chunk by chunk; returns the bars written. A failure is recorded
    with its message, then raised."""
    _backfill_job_record(job, state="running")
    try:
        result = backfill.backfill(
            symbols=backfill.resolve_symbols(tickers),
            days=days,
            seed=settings.MARKETFLUX_SEED,
            progress=lambda done, total: _backfill_job_record(job, done=done, total=total),
        )
    except Exception as exc:
        _backfill_job_record(job, state="failed", error=str(exc) or type(exc).__name__)
        raise
    _backfill_job_record(job, state="done", rows=result.rows)
    return result.rows
