"""TimescaleDB as an upgrade, never a fork (docs/operations.md#timescaledb).

The same models and queries run on plain PostgreSQL; when the extension is available the
migrations turn the time-series tables into hypertables with compression, retention and
continuous aggregates for the longer bar intervals.
"""

from __future__ import annotations

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper

from apps.market.constants import CONTINUOUS_AGGREGATE_VIEWS

MISSING_MESSAGE = (
    "MARKETFLUX_REQUIRE_TIMESCALE=1 but the timescaledb extension is not available on this "
    "PostgreSQL server. Use a TimescaleDB server (the timescale/timescaledb image) or set "
    "MARKETFLUX_REQUIRE_TIMESCALE=0 to run on plain PostgreSQL."
)


class TimescaleRequiredError(RuntimeError):
    pass


def _scalar(connection: BaseDatabaseWrapper, sql: str) -> object:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
    return row[0] if row else None


def available(connection: BaseDatabaseWrapper) -> bool:
    """The server could load the extension (whether or not it is created yet)."""
    return bool(
        _scalar(
            connection, "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
        )
    )


def installed(connection: BaseDatabaseWrapper, *, refresh: bool = False) -> bool:
    """The extension is created in this database (asked once per connection object)."""
    cached = getattr(connection, "_marketflux_timescale", None)
    if cached is None or refresh:
        cached = bool(
            _scalar(connection, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
        )
        connection._marketflux_timescale = cached
    return cached


def require_if_configured(connection: BaseDatabaseWrapper) -> None:
    if settings.MARKETFLUX_REQUIRE_TIMESCALE and not available(connection):
        raise TimescaleRequiredError(MISSING_MESSAGE)


def aggregate_view(interval: str) -> str | None:
    return CONTINUOUS_AGGREGATE_VIEWS.get(interval)


# Compression lags far enough behind the present that the pipeline never writes into a
# compressed chunk (bars are upserted for the current minute; backfills may go further).
_TIME_SERIES = {
    # table: (chunk interval, compress after, segment by, order by)
    "market_tick": ("1 day", "1 day", "symbol_id", "ts DESC"),
    "market_bar": ("7 days", "7 days", "symbol_id, interval", "ts DESC"),
    "indicators_indicatorsnapshot": ("1 day", "1 day", "symbol_id", "ts DESC"),
}

_AGGREGATE_SQL = """
CREATE MATERIALIZED VIEW IF NOT EXISTS {view}
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT symbol_id,
       time_bucket(INTERVAL '{bucket}', ts) AS ts,
       first(open, ts) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, ts) AS close,
       sum(volume)::bigint AS volume,
       sum(trades)::bigint AS trades
FROM market_bar
WHERE interval = '1m'
GROUP BY symbol_id, time_bucket(INTERVAL '{bucket}', ts)
WITH NO DATA
"""
_AGGREGATE_BUCKETS = {"5m": "5 minutes", "15m": "15 minutes", "1h": "1 hour", "1d": "1 day"}


def _execute(connection: BaseDatabaseWrapper, sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def create_extension(connection: BaseDatabaseWrapper) -> bool:
    """Create the extension where it is available; returns whether Timescale is in use."""
    require_if_configured(connection)
    if not available(connection):
        return False
    _execute(connection, "CREATE EXTENSION IF NOT EXISTS timescaledb")
    installed(connection, refresh=True)
    return True


def make_hypertable(connection: BaseDatabaseWrapper, table: str) -> None:
    chunk, _, segment_by, order_by = _TIME_SERIES[table]
    _execute(
        connection,
        "SELECT create_hypertable(%s::regclass, by_range('ts', %s::interval),"
        " migrate_data => true, if_not_exists => true)",
        [table, chunk],
    )
    _execute(
        connection,
        f"ALTER TABLE {table} SET (timescaledb.compress,"
        f" timescaledb.compress_segmentby = '{segment_by}',"
        f" timescaledb.compress_orderby = '{order_by}')",
    )


def create_bar_aggregates(connection: BaseDatabaseWrapper) -> None:
    for interval, bucket in _AGGREGATE_BUCKETS.items():
        view = CONTINUOUS_AGGREGATE_VIEWS[interval]
        _execute(connection, _AGGREGATE_SQL.format(view=view, bucket=bucket))


def apply_policies(connection: BaseDatabaseWrapper) -> None:
    """(Re)apply compression, retention and refresh policies from the current settings."""
    if not installed(connection, refresh=True):
        return
    tick_days = settings.MARKETFLUX_TICK_RETENTION_DAYS
    bar_days = settings.MARKETFLUX_BAR_RETENTION_DAYS
    for table, (_, compress_after, _, _) in _TIME_SERIES.items():
        _execute(
            connection, "SELECT remove_compression_policy(%s::regclass, if_exists => true)", [table]
        )
        _execute(
            connection,
            "SELECT add_compression_policy(%s::regclass, %s::interval)",
            [table, compress_after],
        )
        _execute(
            connection, "SELECT remove_retention_policy(%s::regclass, if_exists => true)", [table]
        )
        days = bar_days if table == "market_bar" else tick_days
        if days:
            _execute(
                connection,
                "SELECT add_retention_policy(%s::regclass, %s::interval)",
                [table, f"{days} days"],
            )
    for interval, bucket in _AGGREGATE_BUCKETS.items():
        view = CONTINUOUS_AGGREGATE_VIEWS[interval]
        _execute(
            connection,
            "SELECT remove_continuous_aggregate_policy(%s::regclass, if_exists => true)",
            [view],
        )
        # Refresh recent buckets often; real-time aggregation covers the rest up to now.
        _execute(
            connection,
            "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s::interval,"
            " end_offset => %s::interval, schedule_interval => %s::interval)",
            [view, "3 days" if interval == "1d" else "1 day", bucket, "1 minute"],
        )
