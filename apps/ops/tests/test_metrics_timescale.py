"""The storage metrics on a real TimescaleDB (PGlite with the extension; docs/operations.md
#timescaledb): the build says TimescaleDB is on, a batch of another day adds a chunk to
each hypertable, its rows show in the estimate once analysed, and a compressed chunk is
counted as compressed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from apps.ingest.pipeline import TickBatch, ingest
from apps.ops.tests.scrape import delta, scrape_client

pytestmark = pytest.mark.timescale

DAY = datetime(2026, 2, 10, 15, 0, tzinfo=UTC)  # a day no other test writes (1-day chunks)
CHUNKS = "marketflux_timescaledb_chunks"


def test_chunks_compression_and_rows_on_timescaledb(timescale_db, fresh_state, client):
    before = scrape_client(client)
    (build,) = before.labelled("marketflux_build_info")
    assert build["timescaledb"] == "true"

    rows = [(ticker, DAY + timedelta(seconds=30 * i), 100.0 + i, 10)
            for ticker in ("AAPL", "MSFT") for i in range(20)]  # fmt: skip
    assert ingest(TickBatch.from_rows(rows)).stored == 40
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE market_tick")
    stored = scrape_client(client)
    for table in ("market_tick", "indicators_indicatorsnapshot", "market_bar"):
        assert delta(before, stored, CHUNKS, hypertable=table, compressed="false") == 1, table
    ticks = stored.value("marketflux_db_table_rows", table="market_tick")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM market_tick")
        assert ticks == cursor.fetchone()[0]

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT compress_chunk(c) FROM show_chunks('market_tick', older_than => %s,"
            " newer_than => %s) c",
            [DAY + timedelta(days=1), DAY - timedelta(days=1)],
        )
        assert len(cursor.fetchall()) == 1
    compressed = scrape_client(client)
    assert delta(stored, compressed, CHUNKS, hypertable="market_tick", compressed="true") == 1
    assert delta(stored, compressed, CHUNKS, hypertable="market_tick", compressed="false") == -1
