"""TimescaleDB for real: every migration on PGlite with the timescaledb extension.

PGlite serves one database over one connection, so these tests point Django's default
connection at it directly instead of going through pytest-django's test database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from apps.ingest.pipeline import TickBatch, ingest
from apps.market import selectors, timescale
from apps.market.models import Bar, Tick
from apps.testing import BASE_DIR
from apps.testing.processes import database_url_of_test_db

pytestmark = pytest.mark.timescale

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def rows(sql: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_migrations_make_hypertables_with_compression(timescale_db):
    assert timescale.installed(connection)
    hypertables = dict(
        rows("SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables")
    )
    assert hypertables == {
        "market_tick": True,
        "market_bar": True,
        "indicators_indicatorsnapshot": True,
    }
    segment_by = rows(
        "SELECT hypertable_name, attname FROM timescaledb_information.compression_settings"
        " WHERE segmentby_column_index IS NOT NULL ORDER BY 1, segmentby_column_index"
    )
    assert ("market_tick", "symbol_id") in segment_by


def test_policies_follow_the_retention_settings(timescale_db):
    jobs = rows(
        "SELECT proc_name, hypertable_name, config->>'drop_after' FROM timescaledb_information.jobs"
        " WHERE proc_name IN ('policy_retention', 'policy_compression',"
        " 'policy_refresh_continuous_aggregate')"
    )
    retention = {table: drop for proc, table, drop in jobs if proc == "policy_retention"}
    assert retention == {"market_tick": "7 days", "indicators_indicatorsnapshot": "7 days"}
    compressed = {table for proc, table, _ in jobs if proc == "policy_compression"}
    assert compressed == {"market_tick", "market_bar", "indicators_indicatorsnapshot"}
    refreshed = {table for proc, table, _ in jobs if proc == "policy_refresh_continuous_aggregate"}
    assert refreshed == {"market_bar_5m", "market_bar_15m", "market_bar_1h", "market_bar_1d"}


def test_continuous_aggregates_exist_for_the_longer_bars(timescale_db):
    views = dict(
        rows(
            "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"
        )
    )
    assert views == {
        "market_bar_5m": False,
        "market_bar_15m": False,
        "market_bar_1h": False,
        "market_bar_1d": False,
    }


def test_ticks_written_through_the_pipeline_read_back_as_1m_and_1h_bars(timescale_db, fresh_state):
    # 90 minutes of ticks, one every 30 s, price = minute index + 100, size 10.
    batch = TickBatch.from_rows(
        [("AAPL", T0 + timedelta(seconds=30 * i), 100.0 + i // 2, 10) for i in range(180)]
    )
    result = ingest(batch)
    assert result.stored == 180
    assert ingest(batch).stored == 0  # idempotent on TimescaleDB too
    assert Tick.objects.filter(symbol_id="AAPL").count() == 180
    assert Bar.objects.filter(symbol_id="AAPL", interval="1m").count() == 90

    minutes = selectors.bars_for_range(
        symbol="AAPL", interval="1m", limit=5000, start=T0, end=T0 + timedelta(hours=2)
    )
    assert len(minutes) == 90
    assert (minutes[3].open, minutes[3].close, minutes[3].volume, minutes[3].trades) == (
        103.0, 103.0, 20, 2,
    )  # fmt: skip

    hours = selectors.bars_for_range(
        symbol="AAPL", interval="1h", limit=10, start=T0, end=T0 + timedelta(hours=2)
    )
    assert [(h.ts, h.open, h.high, h.low, h.close, h.volume, h.trades) for h in hours] == [
        (T0, 100.0, 159.0, 100.0, 159.0, 1200, 120),
        (T0 + timedelta(hours=1), 160.0, 189.0, 160.0, 189.0, 600, 60),
    ]
    # The aggregate answers the same as date_bin over the 1-minute bars would.
    assert rows("SELECT count(*) FROM market_bar_1h WHERE symbol_id = 'AAPL'") == [(2,)]


def test_snapshots_are_stored_on_the_hypertable(timescale_db, fresh_state):
    assert rows("SELECT count(*) FROM indicators_indicatorsnapshot WHERE symbol_id = 'AAPL'") == [
        (180,)
    ]


def test_require_timescale_stops_migrate_on_plain_postgresql(db):
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        env={**os.environ, "DATABASE_URL": database_url_of_test_db(),
             "MARKETFLUX_REQUIRE_TIMESCALE": "1"},
        capture_output=True, text=True, cwd=BASE_DIR,
    )  # fmt: skip
    assert result.returncode != 0
    assert "timescaledb extension is not available" in result.stderr


def test_require_timescale_stops_a_worker_from_starting_on_plain_postgresql(db):
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "marketflux_site", "worker", "--pool", "solo"],
        env={**os.environ, "DATABASE_URL": database_url_of_test_db(),
             "MARKETFLUX_REQUIRE_TIMESCALE": "1"},
        capture_output=True, text=True, cwd=BASE_DIR, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "timescaledb extension is not available" in result.stderr + result.stdout
