"""Times as the database keeps them: microseconds since the Unix epoch, and bar buckets.

One place for the arithmetic that the pipeline, alert evaluation, backfill, the bar roll-up,
the selectors and the binary COPY encoder share, so they cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # PostgreSQL's binary timestamps count from it
# Bars of every interval align here, as `date_bin(..., TIMESTAMPTZ '2000-01-01 00:00:00+00')`
# does in the SQL: a 1d bar starts at midnight UTC.
BUCKET_ORIGIN = POSTGRES_EPOCH


def epoch_micros(ts: datetime) -> int:
    """Integer microseconds from the Unix epoch to a timezone-aware `ts`, exactly."""
    delta = ts - UNIX_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def floor_to(ts: datetime, step: timedelta) -> datetime:
    """The start (in UTC) of the `step`-long bucket that holds the timezone-aware `ts`."""
    return BUCKET_ORIGIN + ((ts - BUCKET_ORIGIN) // step) * step
