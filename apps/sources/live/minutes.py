"""The vendor's minute bars held against the trades received (docs/sources.md#reconnects-and-gaps).

A disconnection is one way to lose trades; a vendor dropping a slow client's messages, or a
frame lost between its servers, is another, and the stream says nothing of it. Both vendors
send each minute's bar (Polygon/Massive `AM`, Alpaca `b`) with its volume: a minute whose
bar holds more volume than the trades received for it lost some, and the connector reads it
again from the vendor's trade history (the trade ids keep what it had from counting twice).
"""

from __future__ import annotations

MINUTE_NS = 60_000_000_000


class MinuteCheck:
    """The volume of the trades received, per symbol and minute, against the vendor's bars.

    A minute is checked only while the conflator still knows its trade ids (`keep_ns`), so
    that reading it again cannot count a trade twice, and only if every trade of it was
    counted here: not the minute a first connection opened in, nor one before a gap's start
    (trades of those were stored by an earlier run, or not received at all)."""

    def __init__(self, keep_ns: int) -> None:
        self.keep_ns = keep_ns
        self.checked_from_ns = 0  # minutes that began earlier are not checked
        self._volume: dict[int, dict[str, int]] = {}  # minute -> symbol -> volume received

    def start(self, resume_ns: int | None, now_ns: int) -> None:
        """A connection opened at `now_ns`; the trades since `resume_ns` (None: none) are
        being read from the history. Minutes from the first whole one after are checked."""
        since = now_ns if resume_ns is None else resume_ns
        self.checked_from_ns = max(self.checked_from_ns, -(-since // MINUTE_NS) * MINUTE_NS)

    def count(self, symbol: str, ns: int, size: int) -> None:
        minute = self._volume.get(ns // MINUTE_NS)
        if minute is None:
            minute = self._volume[ns // MINUTE_NS] = {}
        minute[symbol] = minute.get(symbol, 0) + size

    def short(self, symbol: str, start_ns: int, volume: int) -> bool:
        """Whether the vendor's bar of the minute starting at `start_ns` holds more volume
        than the trades received for it."""
        if start_ns < self.checked_from_ns or start_ns % MINUTE_NS:
            return False
        return self._volume.get(start_ns // MINUTE_NS, {}).get(symbol, 0) < volume

    def forget_before(self, now_ns: int) -> None:
        """Drop the minutes older than `keep_ns`; they are no longer checked."""
        horizon = -(-(now_ns - self.keep_ns) // MINUTE_NS)
        self.checked_from_ns = max(self.checked_from_ns, horizon * MINUTE_NS)
        for minute in [m for m in self._volume if m < horizon]:
            del self._volume[minute]
