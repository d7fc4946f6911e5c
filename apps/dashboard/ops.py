"""What the operators' status page (`/ops/`) shows, for those who run no Grafana: read from
the numbers that already exist, never counted a second time.

- **Ingest** (every host's tick runs): the batch timings the tick run keeps in Redis
  (`mf:stats:batches`, newest first): ticks a second, lag from slot to publication and each
  stage's p50 and p99 over the last minute, and per-second series for the charts.
- **This host's processes** (sockets, errors, gap fills): the Prometheus values `/metrics`
  would sum, read in process (`apps.ops.metrics.read`).
- **Sources, shards and workers**: the reports they publish to Redis (`apps.ops.status`).
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

import orjson
import redis
from django.conf import settings

from apps.ingest.metrics import STAGES
from apps.market import keys
from apps.ops import metrics, status
from apps.ops.redis_client import redis_client
from apps.streaming.metrics import ROUTES

WINDOW_S = 60  # the stage latencies, lag percentiles and charts: the last minute
RATE_WINDOW_S = 10  # ticks a second: over the last ten seconds
POLL_MS = 2000  # how often the page asks for new numbers


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values): p99 of 120 batches is the 119th."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _recent_batches(now: float) -> list[dict[str, Any]]:
    """The batch stats whose slot lies in the last WINDOW_S seconds, newest first: a read
    of as many entries as that many seconds of every shard can have written."""
    interval = settings.TICK_INTERVAL or 0.5
    wanted = int(WINDOW_S / interval * settings.MARKETFLUX_SHARDS) + 10
    raw = redis_client().lrange(keys.BATCH_STATS, 0, min(wanted, keys.BATCH_STATS_KEEP) - 1)
    batches = []
    for entry in raw:
        batch = orjson.loads(entry)
        slot = datetime.fromisoformat(batch["scheduled_at"]).timestamp()
        if slot < now - WINDOW_S:
            break
        batch["slot"] = slot
        batches.append(batch)
    return batches


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def ingest_summary(now: float) -> dict[str, Any]:
    """The last minute of tick runs: rate, lag, stage percentiles, and series to chart."""
    batches = _recent_batches(now)
    recent = [b for b in batches if b["slot"] >= now - RATE_WINDOW_S]
    # Slot to publication: the run started `lag_ms` after its slot and took `total_ms`.
    lags = [b["lag_ms"] + b["total_ms"] for b in batches]
    stages: dict[str, dict[str, float | None]] = {}
    for stage in STAGES:
        values = [b["stage_ms"][stage] for b in batches if stage in b["stage_ms"]]
        if stage == "overview":
            values = [b["overview_ms"] for b in batches if b.get("overview_ms") is not None]
        stages[stage] = {"p50": _ms(_percentile(values, 50)), "p99": _ms(_percentile(values, 99))}
    # Per second of slot time, the current one last: ticks stored, and the worst lag of the
    # second's batches.
    first = int(now) - WINDOW_S + 1
    ticks = [0] * WINDOW_S
    worst: list[float | None] = [None] * WINDOW_S
    for batch, lag in zip(batches, lags, strict=True):
        i = int(batch["slot"]) - first
        if 0 <= i < WINDOW_S:
            ticks[i] += batch["stored"]
            worst[i] = lag if worst[i] is None else max(worst[i], lag)
    return {
        "ticks_per_s": round(sum(b["stored"] for b in recent) / RATE_WINDOW_S, 1),
        "batches_per_s": round(len(recent) / RATE_WINDOW_S, 2),
        "batches": len(batches),
        "newest_batch_age_s": round(now - batches[0]["slot"], 1) if batches else None,
        "lag_ms": {"p50": _ms(_percentile(lags, 50)), "p99": _ms(_percentile(lags, 99))},
        "stages_ms": stages,
        "series": {
            "start": first,
            "ticks_per_s": ticks,
            "lag_ms": [_ms(v) for v in worst],
        },
    }


def _counted(readings: metrics.Readings) -> dict[str, Any]:
    """Sockets, errors and gap fills of this host's processes (totals since they started)."""
    sockets = {route: int(readings.total("marketflux_websocket_connections", route=route))
               for route in ROUTES}  # fmt: skip
    http = readings.by("marketflux_http_requests_total", "status")
    errors = {
        "tick_dropped": {
            reason: int(count)
            for reason, count in readings.by("marketflux_tick_dropped_total", "reason").items()
        },
        "tick_retries": int(readings.total("marketflux_tick_retries_total")),
        "ticks_skipped": int(readings.total("marketflux_tick_runs_total", outcome="skipped")),
        "http_5xx": int(sum(count for code, count in http.items() if code.startswith("5"))),
        "redis": {
            error: int(count)
            for error, count in readings.by("marketflux_redis_errors_total", "error").items()
        },
        "flood_closes": int(readings.total("marketflux_websocket_flood_closes_total")),
        "source_malformed": int(readings.total("marketflux_source_malformed_messages_total")),
    }
    errors["total"] = (
        sum(errors["tick_dropped"].values()) + errors["tick_retries"] + errors["http_5xx"]
        + sum(errors["redis"].values()) + errors["source_malformed"]
    )  # fmt: skip
    return {
        "sockets": {"total": sum(sockets.values()), "by_route": sockets},
        "errors": errors,
        "frames_sent": int(readings.total("marketflux_websocket_frames_sent_total")),
        "gaps_filled": {
            source: int(count)
            for source, count in readings.by(
                "marketflux_source_gaps_filled_total", "source"
            ).items()
        },
    }


def _sources(gaps_filled: dict[str, int]) -> list[dict[str, Any]]:
    """Each live source's last report (connected, seconds since its last message) and its
    gap fills."""
    return [
        {
            "name": name,
            "kind": report.get("kind"),
            "connected": bool(report.get("connected")) and not report["stale"],
            "stale": report["stale"],
            "seconds_since_last_message": report.get("seconds_since_last_message"),
            "messages_per_s": report.get("messages_per_s"),
            "reconnects": report.get("reconnects", 0),
            "gaps_filled": gaps_filled.get(name, 0),
            "last_error": (report.get("last_error") or {}).get("message"),
        }
        for name, report in status.read(status.SOURCES).items()
    ]


def ops_status() -> dict[str, Any]:
    """Everything the status page shows, as one JSON-ready dict (the page's first paint
    and each poll of `/ops/status.json`). A Redis it cannot reach leaves the parts read
    from Redis out and says so, rather than failing the page."""
    now = time.time()
    counted = _counted(metrics.read())
    answer: dict[str, Any] = {
        "at": now,
        "poll_ms": POLL_MS,
        "window_s": WINDOW_S,
        "scope": "this host's processes" if metrics.multiprocess_dir() else "this process",
        **counted,
    }
    try:
        answer["ingest"] = ingest_summary(now)
        answer["sources"] = _sources(counted["gaps_filled"])
        workers = status.read(status.WORKERS)
        answer["workers"] = {"alive": sum(not w["stale"] for w in workers.values()),
                             "known": len(workers)}  # fmt: skip
        answer["shards"] = {
            name: {"status": r.get("status"), "age_s": r["age_s"], "stale": r["stale"]}
            for name, r in status.read(status.PIPELINE).items()
        }
        answer["redis_error"] = None
    except redis.RedisError as error:
        metrics.count_redis_error(error)
        answer.update(ingest=None, sources=[], workers=None, shards={},
                      redis_error=f"Redis unreachable: {type(error).__name__}")  # fmt: skip
    return answer
