"""What long-running processes report about themselves, for `/health` and the admin: each
publishes its state (a JSON object) under a kind and a name in one Redis hash, every second
or so, and readers see how old each report is.

It lives here, at the bottom layer, so that `/health` (apps.ops.views) can read the reports
of a higher layer (the live sources of apps.sources) without importing it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from apps.ops.redis_client import redis_client

_KEY = "mf:status:{kind}"
# The kinds: who reports under each.
SOURCES = "source"  # each live source's connector (apps/sources/live)
PIPELINE = "pipeline"  # each shard's last tick run (apps/ingest/services.py)
WORKERS = "worker"  # each Celery worker, every few seconds (marketflux_site/celery.py)
STALE_AFTER = 10.0  # s: a report older than this is from a process that stopped reporting


def publish(kind: str, name: str, state: dict[str, Any], *, pipe: Any = None) -> None:
    """Replace the report of `name` (a source's name, say) under `kind`; with `pipe` (a
    redis-py pipeline), as one more command of it."""
    report = {**state, "reported_at": time.time()}
    (pipe if pipe is not None else redis_client()).hset(
        _KEY.format(kind=kind), name, orjson.dumps(report)
    )


def read(kind: str) -> dict[str, dict[str, Any]]:
    """Every report under `kind`, each with `age_s` (seconds since it was published) and
    `stale` (older than STALE_AFTER: its process is gone or stuck)."""
    now = time.time()
    reports = {}
    for name, raw in redis_client().hgetall(_KEY.format(kind=kind)).items():
        report = orjson.loads(raw)
        age = max(0.0, now - report.get("reported_at", 0.0))
        report.update(age_s=round(age, 1), stale=age > STALE_AFTER)
        reports[name.decode()] = report
    return dict(sorted(reports.items()))


def forget(kind: str, name: str) -> None:
    """Drop a report (a source deleted or disabled)."""
    redis_client().hdel(_KEY.format(kind=kind), name)
