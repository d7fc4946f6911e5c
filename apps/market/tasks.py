"""Celery tasks of the market app: retention and roll-up (the tick task is `apps.ingest.tasks`)."""

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
