from __future__ import annotations

import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection
from kombu.exceptions import OperationalError as BrokerError

from apps.ops import status
from apps.ops.redis_client import redis_client

BROKER_TIMEOUT = 2.0  # s


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process serves requests (dependencies are readiness, not liveness).
    Where live sources run, it also shows what each last reported (docs/sources.md#state);
    a Redis it cannot reach leaves them out rather than failing the check."""
    answer: dict = {"status": "ok"}
    try:
        sources = status.read(status.SOURCES)
    except redis.RedisError:
        sources = None
        answer["sources_error"] = "Redis unreachable: source states unknown"
    if sources:
        answer["sources"] = sources
    return JsonResponse(answer)


def _database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {}


def _redis() -> dict:
    redis_client().ping()
    return {}


def _broker() -> dict:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=BROKER_TIMEOUT) as conn:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
    return {}


def _workers() -> dict:
    alive = [name for name, r in status.read(status.WORKERS).items() if not r["stale"]]
    if not alive:
        raise LookupError("no Celery worker reported in the last 10 s")
    return {"alive": alive}


def _ticks() -> dict:
    reports = status.read(status.PIPELINE)
    limit = settings.MARKETFLUX_READY_TICK_AGE
    ages = [r["age_s"] for r in reports.values()]
    if not ages:
        raise LookupError("no tick run reported yet")
    if min(ages) > limit:
        raise LookupError(f"the newest tick run was {min(ages):.1f} s ago (more than {limit:g} s)")
    return {"newest_s": min(ages)}


CHECKS: dict[str, Callable[[], dict]] = {
    "database": _database, "redis": _redis, "broker": _broker, "workers": _workers,
    "ticks": _ticks,
}  # fmt: skip


@never_cache
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    """Readiness (docs/contracts.md#other-http-paths): the database, Redis and the broker
    answer, a Celery worker reported in the last 10 s, and a tick run (any shard) in the
    last MARKETFLUX_READY_TICK_AGE seconds. 503 names each failing check and why."""
    checks, failing = {}, []
    for name, check in CHECKS.items():
        began = time.perf_counter()
        try:
            result = {"ok": True, **check()}
        except (DatabaseError, redis.RedisError, BrokerError, OSError, LookupError) as error:
            result = {"ok": False, "error": str(error) or type(error).__name__}
            failing.append(name)
        result["ms"] = round((time.perf_counter() - began) * 1000, 1)
        checks[name] = result
    if failing:
        return JsonResponse({"status": "not ready", "failing": failing, "checks": checks},
                            status=503)  # fmt: skip
    return JsonResponse({"status": "ready", "checks": checks})
