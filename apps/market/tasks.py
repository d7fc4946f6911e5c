"""Celery tasks of the market app: retention, roll-up and backfill jobs (the tick task is
`apps.ingest.tasks`)."""

from __future__ import annotations

from celery import shared_task

from apps.market import services
from apps.market.rollup import rollup_closed_buckets


@shared_task(name="market.prune", ignore_result=True)
def prune() -> int:
    """Apply tick retention on plain PostgreSQL (TimescaleDB does it with its own policy)."""
    return services.ticks_prune()


@shared_task(name="market.rollup", ignore_result=True)
def rollup() -> dict[str, int]:
    """Store the longer bars that closed (plain PostgreSQL; TimescaleDB aggregates itself)."""
    return rollup_closed_buckets()


@shared_task(name="market.backfill", ignore_result=True)
def backfill(*, job: str, tickers: list[str], days: int) -> int:
    """A backfill started from the admin; its progress is recorded under the job's key.

    Not retried: a failure is shown on the job's page, and running the action again is
    safe (existing bars are kept). Late acks redeliver it if a worker dies mid-way.
    """
    return services.backfill_job_run(job=job, tickers=tickers, days=days)
