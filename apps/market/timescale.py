"""TimescaleDB as an upgrade, never a fork (DESIGN.md §6).

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


def installed(connection: BaseDatabaseWrapper) -> bool:
    """The extension is created in this database."""
    return bool(
        _scalar(connection, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
    )


def require_if_configured(connection: BaseDatabaseWrapper) -> None:
    if settings.MARKETFLUX_REQUIRE_TIMESCALE and not available(connection):
        raise TimescaleRequiredError(MISSING_MESSAGE)


def aggregate_view(interval: str) -> str | None:
    return CONTINUOUS_AGGREGATE_VIEWS.get(interval)
