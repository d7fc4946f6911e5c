"""What a live feed is to the connector (docs/sources.md#writing-a-source): one class per
vendor protocol, registered in `FEEDS` by the Source kind it serves.

A feed knows its vendor's wire: how to open the stream, authenticate and subscribe, how to
read a frame into trades and quotes, and how to read the vendor's REST history (trades for a
gap, minute bars for a backfill). Reconnecting, conflating, storing, filling gaps and
reporting state are the connector's (apps/sources/live/connector.py), the same for every feed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("marketflux.sources")

HTTP_TIMEOUT = 30.0  # s, each REST request
HTTP_RETRIES = 4  # a 429 or 5xx is tried again this many times, backing off


class FeedError(Exception):
    """The vendor refused us; the message says why, as the vendor put it."""


class AuthFailed(FeedError):
    """Bad or missing credentials: retried only after a long pause (they rarely fix
    themselves, and hammering a vendor's auth gets keys blocked)."""


class ConnectionLimit(FeedError):
    """The vendor allows no more connections for this key (another process holds one)."""


class HistoryError(FeedError):
    """The REST history answered with an error."""


@dataclass(frozen=True)
class Trade:
    symbol: str
    ns: int  # Unix ns
    price: float
    size: int
    id: str = ""  # unique per symbol for the vendor ("" when it gives none)


@dataclass(frozen=True)
class Quote:
    symbol: str
    ns: int
    bid: float
    ask: float
    bid_size: float  # shares
    ask_size: float


@dataclass(frozen=True)
class Bar:
    symbol: str
    ns: int  # the bar's start
    open: float
    high: float
    low: float
    close: float
    volume: int
    trades: int | None


@dataclass
class Parsed:
    """What frames held, and what in them could not be read, by kind."""

    trades: list[Trade] = field(default_factory=list)
    quotes: list[Quote] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)  # the vendor's minute bars
    messages: int = 0
    malformed: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class Credentials:
    key: str
    secret: str = ""

    @classmethod
    def from_env(cls, key_env: str, secret_env: str = "") -> Credentials:
        """Read from the environment; a missing variable is an AuthFailed naming it."""
        names = [n for n in (key_env, secret_env) if n]
        missing = [n for n in names if not os.environ.get(n)]
        if missing:
            raise AuthFailed(f"set {' and '.join(missing)} in the environment")
        return cls(os.environ[key_env], os.environ.get(secret_env, "") if secret_env else "")


@dataclass(frozen=True)
class FeedConfig:
    """A Source's settings, read once (the connector runs off the database's thread)."""

    name: str
    kind: str
    url: str
    rest_url: str
    feed: str
    key_env: str
    secret_env: str


class Feed(ABC):
    """One vendor's stream and history protocol."""

    # The most symbols one subscribe message names (vendors cap a frame's size).
    SUBSCRIBE_CHUNK = 400
    # s: the longest the vendor may take to send each handshake message (a test shortens it).
    HANDSHAKE_TIMEOUT = 10.0

    def __init__(self, config: FeedConfig) -> None:
        self.config = config
        self._session: requests.Session | None = None

    def credentials(self) -> Credentials:
        return Credentials.from_env(self.config.key_env, self.config.secret_env)

    # --- the stream ---

    def connect_headers(self) -> dict[str, str]:
        return {}

    @abstractmethod
    async def handshake(self, ws: Any, credentials: Credentials) -> None:
        """Read the greeting, authenticate; AuthFailed, ConnectionLimit or FeedError if the
        vendor refuses."""

    async def receive(self, ws: Any, what: str) -> str | bytes:
        """The next handshake frame; a vendor that sends nothing in time or hangs up is an
        error that says what was awaited, not a bare TimeoutError or close code."""
        try:
            async with asyncio.timeout(self.HANDSHAKE_TIMEOUT):
                return await ws.recv()
        except TimeoutError:
            raise TimeoutError(f"{self.config.url} sent no {what} message within "
                               f"{self.HANDSHAKE_TIMEOUT:g} s") from None  # fmt: skip
        except ConnectionClosed as closed:
            raise FeedError(f"{self.config.url} closed the connection before its {what} "
                            f"message ({closed})") from None  # fmt: skip

    @abstractmethod
    def subscribe_messages(self, symbols: list[str]) -> list[str | bytes]:
        """The frames that subscribe to the symbols' trades, quotes and minute bars."""

    @abstractmethod
    def parse(self, frame: str | bytes, symbols: frozenset[str], into: Parsed) -> None:
        """Read one frame into trades, quotes and minute bars. A message that cannot be
        read is counted in `into.malformed` by kind, never raised; ConnectionLimit or
        FeedError when the vendor says stop."""

    # --- the REST history ---

    @abstractmethod
    def history_trades(self, symbols: list[str], start_ns: int, end_ns: int) -> Iterator[Trade]:
        """The vendor's trades of the symbols from start to end (both included)."""

    @abstractmethod
    def history_bars(self, symbol: str, start: datetime, end: datetime) -> Iterator[Bar]:
        """The vendor's 1-minute bars of a symbol that start in [start, end)."""

    def _get(self, url: str, params: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
        """GET JSON, trying a 429 or 5xx again after the vendor's Retry-After or a growing
        pause; any other error is a HistoryError with the vendor's words."""
        if self._session is None:
            self._session = requests.Session()
        for attempt in range(HTTP_RETRIES + 1):
            answer = self._session.get(url, params=params, headers=headers, timeout=HTTP_TIMEOUT)
            if answer.status_code == 429 or answer.status_code >= 500:
                if attempt < HTTP_RETRIES:
                    wait = _retry_after(answer.headers.get("Retry-After"), 2.0**attempt)
                    log.warning("%s: %s answered %s; trying again in %.1f s",
                                self.config.name, url, answer.status_code, wait)  # fmt: skip
                    time.sleep(wait)
                    continue
            if answer.status_code != 200:
                raise HistoryError(
                    f"{url} answered {answer.status_code}: {answer.text[:300].strip()}"
                )
            return answer.json()
        raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(header: str | None, default: float) -> float:
    try:
        return min(60.0, max(0.0, float(header))) if header else default
    except ValueError:
        return default


_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def rfc3339_ns(text: str) -> int:
    """Unix ns of an RFC 3339 time with up to 9 fractional digits (Python's datetime keeps
    only 6); ValueError if it is not one."""
    match = _RFC3339.match(text)
    if not match:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole, fraction, zone = match.groups()
    seconds = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return int(seconds.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def positive_number(value: Any) -> bool:
    return type(value) in (int, float) and value > 0 and value == value and value < 1e12


Handler = Callable[[dict, frozenset[str], "Parsed"], None]


def dispatch(messages: Any, kind_key: str, handlers: dict[str, Handler],
             symbols: frozenset[str], into: Parsed) -> None:  # fmt: skip
    """Each message of a decoded frame to the handler of its kind (`kind_key`: the field
    that names it); a frame that is not an array, or a message without a kind, is
    malformed; kinds without a handler (statuses, subscriptions) are passed over."""
    if not isinstance(messages, list):
        into.malformed["frame that is not an array"] += 1
        return
    for message in messages:
        into.messages += 1
        kind = message.get(kind_key) if isinstance(message, dict) else None
        if kind is None:
            into.malformed[f"message without {kind_key}"] += 1
        elif (handle := handlers.get(kind)) is not None:
            handle(message, symbols, into)


def whole_volume(value: Any) -> bool:
    return (type(value) is int or (type(value) is float and value.is_integer())) and (
        0 <= value < 2**53
    )


def whole_size(value: Any) -> bool:
    return (type(value) is int or (type(value) is float and value.is_integer())) and (
        1 <= value <= 2**31 - 1
    )
