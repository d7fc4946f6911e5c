from __future__ import annotations

import hmac
import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection
from kombu.exceptions import OperationalError as BrokerError
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from apps.ops import metrics as ops_metrics
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


def _may_scrape(request: HttpRequest) -> bool:
    token = settings.MARKETFLUX_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(
            given.removeprefix("Bearer ").strip().encode(), token.encode()
        ):
            return True
    address = ops_metrics.client_address(
        request.META, settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    )
    return ops_metrics.allowed(
        address, ops_metrics.parse_networks(settings.MARKETFLUX_METRICS_ALLOW)
    )


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text of every process of this host (docs/operations.md#metrics), for
    scrapers only: a client in MARKETFLUX_METRICS_ALLOW or bearing MARKETFLUX_METRICS_TOKEN;
    anyone else gets 403, and learns nothing of the numbers."""
    if not _may_scrape(request):
        return HttpResponse(
            "403 Forbidden: /metrics is for the allowed scrapers only\n",
            status=403, content_type="text/plain; charset=utf-8",
        )  # fmt: skip
    ops_metrics.sample_db_pool(every=0.0)
    return HttpResponse(ops_metrics.exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
