"""A live stack (Celery worker and beat) on a PostgreSQL and a Redis of its own, each killed
with SIGKILL once and started again: afterwards ticks flow, no slot is stored twice or in
part, the only slots missing are those of the outages, and the bars and snapshots agree
with the ticks (docs/operations.md#outages-of-redis-and-postgresql)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from apps.ops.embedded import EmbeddedPostgres, EmbeddedRedis
from apps.testing import BASE_DIR
from apps.testing.processes import Processes
from apps.testing.waiting import wait_for

pytestmark = pytest.mark.worker

INTERVAL = 0.5  # s, the tick interval
DOWN = 3.0  # s each server stays dead
SYMBOLS = 5  # the default market seed_symbols makes
# After a server comes back, a slot may still be lost: a tick task that waited out the
# outage is dropped once it is 20 intervals late (apps/ingest/tasks.py), and the worker's
# broker connection (Redis) takes its own backoff to come back.
SETTLE = timedelta(seconds=20 * INTERVAL + 5)


def newest_tick(url: str) -> datetime | None:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return conn.execute("SELECT max(ts) FROM market_tick").fetchone()[0]
    except psycopg.OperationalError:
        return None


def flowing_after(url: str, moment: datetime) -> bool:
    newest = newest_tick(url)
    return newest is not None and newest > moment + timedelta(seconds=2 * INTERVAL)


def kill(server: EmbeddedPostgres | EmbeddedRedis) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(10)
    server.proc = None


def restart(server: EmbeddedPostgres | EmbeddedRedis) -> None:
    """Start it again on its port; a killed PostgreSQL's orphaned backends may hold its
    shared memory for a moment, and it refuses to start until they are gone."""
    for attempt in range(20):
        try:
            server.start()
            return
        except RuntimeError:
            if attempt == 19:
                raise
            time.sleep(0.5)


def test_killing_redis_then_postgres_loses_only_their_outages(tmp_path: Path):
    # Durable, as deployed: with the test suite's fsync and synchronous commit off, a killed
    # PostgreSQL may lose commits it had acknowledged, which no deployment allows.
    pg = EmbeddedPostgres(tmp_path / "pg", durable=True, database="outages")
    rd = EmbeddedRedis(tmp_path / "redis", durable=False)
    processes = Processes(tmp_path)
    try:
        url, redis_url = pg.start(), rd.start()
        env = {"DATABASE_URL": url, "REDIS_URL": redis_url, "TICK_INTERVAL": str(INTERVAL),
               "CELERY_BROKER_URL": redis_url}  # fmt: skip
        for command in (["migrate", "--noinput"], ["seed_symbols"]):
            subprocess.run(
                [sys.executable, "manage.py", *command], cwd=BASE_DIR,
                env={**processes.env(), **env}, check=True, capture_output=True,
            )  # fmt: skip
        processes.celery_worker(**env)
        processes.celery_beat(**env)
        started = datetime.now(UTC)
        wait_for(lambda: flowing_after(url, started), timeout=60, what="ticks flowing")

        outages = []
        for server in (rd, pg):
            killed = datetime.now(UTC)
            kill(server)
            time.sleep(DOWN)
            restart(server)
            back = datetime.now(UTC)
            outages.append((killed, back))
            wait_for(lambda b=back: flowing_after(url, b), timeout=60,
                     what=f"ticks flowing after {type(server).__name__} came back")  # fmt: skip
        time.sleep(3 * INTERVAL)
        processes.stop_all()

        with psycopg.connect(url) as conn:
            slots = conn.execute(
                "SELECT ts, count(*) FROM market_tick GROUP BY ts ORDER BY ts"
            ).fetchall()
            bars_off = conn.execute(
                """SELECT b.symbol_id, b.ts FROM market_bar b
                   JOIN LATERAL (
                       SELECT sum(t.size) AS volume, count(*) AS n, max(t.price) AS high,
                              min(t.price) AS low,
                              (array_agg(t.price ORDER BY t.ts))[1] AS open,
                              (array_agg(t.price ORDER BY t.ts DESC))[1] AS close
                       FROM market_tick t
                       WHERE t.symbol_id = b.symbol_id AND t.ts >= b.ts
                         AND t.ts < b.ts + interval '1 minute'
                   ) t ON true
                   WHERE b.interval = '1m' AND (b.volume, b.trades, b.high, b.low, b.open,
                         b.close) IS DISTINCT FROM (t.volume, t.n, t.high, t.low, t.open,
                         t.close)"""
            ).fetchall()
            ticks_without_snapshot = conn.execute(
                """SELECT count(*) FROM market_tick t WHERE NOT EXISTS (
                       SELECT 1 FROM indicators_indicatorsnapshot s
                       WHERE s.symbol_id = t.symbol_id AND s.ts = t.ts)"""
            ).fetchone()[0]
            snapshots, ticks = conn.execute(
                "SELECT (SELECT count(*) FROM indicators_indicatorsnapshot),"
                " (SELECT count(*) FROM market_tick)"
            ).fetchone()
    finally:
        processes.stop_all()
        rd.stop()
        pg.stop()

    assert {count for _, count in slots} == {SYMBOLS}, "every stored slot holds every symbol"
    stored = [ts for ts, _ in slots]
    step = timedelta(seconds=INTERVAL)
    missing = [
        stored[i] + k * step
        for i in range(len(stored) - 1)
        for k in range(1, round((stored[i + 1] - stored[i]) / step))
    ]
    outside = [
        ts for ts in missing
        if not any(killed - step <= ts <= back + SETTLE for killed, back in outages)
    ]  # fmt: skip
    assert outside == [], f"slots lost outside the outages {outages}"
    assert bars_off == [], "1-minute bars that differ from their ticks"
    assert ticks_without_snapshot == 0
    assert snapshots == ticks
