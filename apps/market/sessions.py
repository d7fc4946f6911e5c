"""Trading sessions (docs/contracts.md#sessions): which session a tick belongs to, where each
session starts and ends, and how it is labelled, per symbol.

A symbol without a calendar trades around the clock and its session is the UTC day (the
simulator's, as crypto markets keep it). A symbol with an exchange calendar (`XNYS`, `XNAS`,
`XLON`, ... as `exchange_calendars` names them) has that exchange's sessions: its trading
days only, each from the regular open to the close (early closes included), or with
`extended_hours` the whole local day of each trading day, pre- and post-market included.
A trade outside every session (after hours without `extended_hours`, a holiday) is stored
like any other but belongs to no session: it counts in no daily bar and no session volume.

Sessions are numbered by their date (days since 1970-01-01, the local date for an exchange)
and labelled by its local midnight, as the vendors label their daily bars; a range of dates
selects them by date. Times are
integer microseconds since the epoch, as the pipeline keeps them: the tick path asks
`session_of` for every tick, so the current session's bounds are kept at hand.
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import numpy as np

DAY_US = 86_400_000_000
_EPOCH_DATE = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UTC_DAY = ""  # the key of the around-the-clock clock
CALENDAR_START = "1990-01-01"  # sessions are known from here (or the calendar's own start)


class Clock:
    """The sessions of one calendar. This base is the UTC day, every day."""

    key = UTC_DAY
    tz = ZoneInfo("UTC")

    def session_of(self, us: int) -> int | None:
        """The session a time belongs to, or None outside every session."""
        return us // DAY_US

    def at_or_before(self, us: int) -> int | None:
        """The session holding `us`, else the latest one before it."""
        return us // DAY_US

    def window(self, day: int) -> tuple[int, int]:
        """[start, end) of a session, in µs."""
        return day * DAY_US, (day + 1) * DAY_US

    def previous(self, day: int) -> int | None:
        return day - 1

    def sessions_dated(self, start_us: int, end_us: int) -> list[int]:
        """The sessions whose date, taken as a UTC midnight, falls in [start, end): what a
        range of dates (a UTC day, a month, `from`/`to` of a request) means for daily bars
        wherever the exchange is."""
        return list(range(-(-start_us // DAY_US), -(-end_us // DAY_US)))

    def label(self, day: int) -> datetime:
        """A session's label: its date's midnight where it trades, as an aware UTC time."""
        return self.midnight(_EPOCH_DATE + timedelta(days=day))

    def midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(0), self.tz).astimezone(UTC)

    def local_date(self, day: int) -> date:
        return _EPOCH_DATE + timedelta(days=day)


class ExchangeClock(Clock):
    """An exchange's sessions, from `exchange_calendars`."""

    def __init__(self, calendar: str, *, extended: bool) -> None:
        import exchange_calendars  # ~0.3 s to import: only where a symbol names a calendar

        try:
            exchange = exchange_calendars.get_calendar(calendar, start=CALENDAR_START)
        except ValueError:  # the calendar starts later than CALENDAR_START
            exchange = exchange_calendars.get_calendar(calendar)
        self.key = key_of(calendar, extended)
        self.tz = ZoneInfo(str(exchange.tz))
        dates = [d.date() for d in exchange.sessions]
        self.days = np.array([(d - _EPOCH_DATE).days for d in dates], dtype=np.int64)
        midnights = [_micros(datetime.combine(d, time(0), self.tz)) for d in dates]
        if extended:
            self.starts = np.array(midnights, dtype=np.int64)
            ends = [_micros(datetime.combine(d + timedelta(days=1), time(0), self.tz))
                    for d in dates]  # fmt: skip
            self.ends = np.array(ends, dtype=np.int64)
        else:
            self.starts, self.ends = (_utc_micros(t) for t in (exchange.opens, exchange.closes))
        self._current = (0, 0, -1)  # start, end, day of the last session found

    def session_of(self, us: int) -> int | None:
        start, end, day = self._current
        if start <= us < end:
            return day
        i = int(np.searchsorted(self.starts, us, side="right")) - 1
        if i < 0 or us >= self.ends[i]:
            return None
        self._current = (int(self.starts[i]), int(self.ends[i]), int(self.days[i]))
        return int(self.days[i])

    def at_or_before(self, us: int) -> int | None:
        i = int(np.searchsorted(self.starts, us, side="right")) - 1
        return int(self.days[i]) if i >= 0 else None

    def window(self, day: int) -> tuple[int, int]:
        i = self._index(day)
        return int(self.starts[i]), int(self.ends[i])

    def previous(self, day: int) -> int | None:
        i = self._index(day)
        return int(self.days[i - 1]) if i > 0 else None

    def sessions_dated(self, start_us: int, end_us: int) -> list[int]:
        first = int(np.searchsorted(self.days, -(-start_us // DAY_US), side="left"))
        last = int(np.searchsorted(self.days, -(-end_us // DAY_US), side="left"))
        return self.days[first:last].tolist()

    def _index(self, day: int) -> int:
        i = bisect.bisect_left(self.days, day)
        if i == len(self.days) or self.days[i] != day:
            raise KeyError(f"{self.key}: no session on {self.local_date(day)}")
        return i


def key_of(calendar: str, extended: bool) -> str:
    """A symbol's clock: "" (the UTC day), "XNYS" or, with extended hours, "XNYS+ext"."""
    return f"{calendar}+ext" if calendar and extended else calendar


@cache
def clock(key: str) -> Clock:
    """The clock of a key (`key_of`), built once per process."""
    if key == UTC_DAY:
        return Clock()
    calendar, _, extended = key.partition("+")
    return ExchangeClock(calendar, extended=extended == "ext")


def clocks_of(tickers: list[str]) -> dict[str, Clock]:
    """Each symbol's clock, from the Symbol table (a ticker not in it: the UTC day)."""
    from apps.market.models import Symbol

    rows = Symbol.objects.filter(ticker__in=tickers).values_list(
        "ticker", "calendar", "extended_hours"
    )
    found = {ticker: clock(key_of(calendar, extended)) for ticker, calendar, extended in rows}
    return {ticker: found.get(ticker) or clock(UTC_DAY) for ticker in tickers}


def calendar_names() -> list[str]:
    """Every calendar `exchange_calendars` knows, for validation and the admin."""
    import exchange_calendars

    return sorted(exchange_calendars.get_calendar_names(include_aliases=True))


def _micros(ts: datetime) -> int:
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _utc_micros(times) -> np.ndarray:
    """A pandas Series of aware times as µs since the epoch."""
    return times.dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)
