"""Market data: the symbols we track, their ticks and their OHLCV bars."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from apps.market.constants import BAR_INTERVALS, DEFAULT_ANOMALY_THRESHOLD

# What a ticker may be, everywhere one comes in (admin, pipeline, API paths, WebSocket paths).
TICKER_REGEX = r"^[A-Z][A-Z0-9.\-]{0,15}$"
TICKER_PATTERN = re.compile(TICKER_REGEX)


def calendar_validator(value: str) -> None:
    from apps.market.sessions import calendar_names

    if value and value not in calendar_names():
        raise ValidationError(
            f"{value!r} is no exchange calendar: use a code such as XNYS, XNAS or XLON"
            " (exchange_calendars' names), or leave it empty for the UTC day."
        )


env_name_validator = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$", "An environment variable's name: letters, digits and _."
)
ticker_validator = RegexValidator(
    TICKER_REGEX,
    "A ticker is 1-16 upper-case letters, digits, '.' or '-', starting with a letter.",
)


class Source(models.Model):
    """Where a symbol's trades come from, when not from the simulator (docs/sources.md): a
    `files` source's symbols get their ticks from recorded files (`import_trades`); a
    vendor's (`polygon`, `alpaca`) from its live feed, through `manage.py run_sources`.

    Credentials never live here: `key_env` and `secret_env` name the environment variables
    of the `run_sources` process that hold them."""

    FILES, POLYGON, ALPACA = "files", "polygon", "alpaca"
    KIND_CHOICES = [
        (FILES, "Recorded files"),
        (POLYGON, "Polygon/Massive live feed"),
        (ALPACA, "Alpaca market data v2 live feed"),
    ]
    LIVE_KINDS = (POLYGON, ALPACA)
    # Where each vendor's feed and history are, unless a source names others.
    DEFAULT_URLS = {
        POLYGON: ("wss://socket.massive.com/stocks", "https://api.massive.com"),
        ALPACA: ("wss://stream.data.alpaca.markets/v2/{feed}", "https://data.alpaca.markets"),
    }
    DEFAULT_KEY_ENV = {POLYGON: ("MASSIVE_API_KEY", ""),
                       ALPACA: ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY")}  # fmt: skip
    FEED_CHOICES = [("iex", "IEX"), ("sip", "SIP (all US exchanges)")]

    name = models.SlugField(max_length=32, primary_key=True)
    kind = models.CharField(max_length=16, choices=KIND_CHOICES)
    description = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(
        default=True, help_text="A live source's feed runs (in `run_sources`) only when enabled."
    )
    url = models.CharField(
        max_length=300, blank=True, help_text="The live feed's WebSocket URL. Empty: the vendor's."
    )
    rest_url = models.CharField(
        max_length=300,
        blank=True,
        help_text="The vendor's REST base URL, for gaps and backfill. Empty: the vendor's.",
    )
    feed = models.CharField(
        max_length=8, blank=True, choices=FEED_CHOICES, help_text="Alpaca only. Empty: iex."
    )
    key_env = models.CharField(
        max_length=64,
        blank=True,
        validators=[env_name_validator],
        help_text="The environment variable that holds the API key. Empty: the vendor's usual.",
    )
    secret_env = models.CharField(
        max_length=64,
        blank=True,
        validators=[env_name_validator],
        help_text="Alpaca only: the variable that holds the secret. Empty: APCA_API_SECRET_KEY.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def live(self) -> bool:
        return self.kind in self.LIVE_KINDS

    def stream_url(self) -> str:
        feed = self.feed or "iex"
        return self.url or self.DEFAULT_URLS[self.kind][0].format(feed=feed)

    def history_url(self) -> str:
        return (self.rest_url or self.DEFAULT_URLS[self.kind][1]).rstrip("/")

    def credential_names(self) -> tuple[str, str]:
        """The environment variables of the key and (Alpaca) the secret."""
        key, secret = self.DEFAULT_KEY_ENV.get(self.kind, ("", ""))
        return self.key_env or key, self.secret_env or secret


class Symbol(models.Model):
    """A tradable instrument, with the parameters the simulator uses for it."""

    ticker = models.CharField(max_length=16, primary_key=True, validators=[ticker_validator])
    name = models.CharField(max_length=100)
    exchange = models.CharField(max_length=32, db_index=True)
    sector = models.CharField(max_length=64, blank=True, db_index=True)
    active = models.BooleanField(default=True, db_index=True)
    source = models.ForeignKey(
        Source,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="symbols",
        help_text="Where its trades come from. Empty: the simulator ticks it. A symbol of"
        " another source is never simulated.",
    )
    calendar = models.CharField(
        max_length=16,
        blank=True,
        default="",
        validators=[calendar_validator],
        help_text="The exchange calendar its sessions follow (XNYS, XNAS, XLON, ...). Empty:"
        " around the clock, a session per UTC day (the simulator's).",
    )
    extended_hours = models.BooleanField(
        default=False,
        help_text="With a calendar: a session is the whole local day of each trading day,"
        " pre- and post-market included, instead of the regular open to close.",
    )
    start_price = models.FloatField(
        validators=[MinValueValidator(0.0001)], help_text="Simulator price when no tick exists."
    )
    drift = models.FloatField(default=0.05, help_text="Simulator annual drift (0.05 = 5 %).")
    volatility = models.FloatField(
        default=0.25,
        validators=[MinValueValidator(0.0)],
        help_text="Simulator annual volatility (0.25 = 25 %).",
    )
    jump_rate = models.FloatField(
        default=12.0,
        validators=[MinValueValidator(0.0)],
        help_text="Simulator price jumps per day, on average.",
    )
    anomaly_threshold = models.FloatField(
        default=DEFAULT_ANOMALY_THRESHOLD,
        validators=[MinValueValidator(0.0)],
        help_text="|z-score| at or above which a tick is flagged as an anomaly.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["ticker"]

    def __str__(self) -> str:
        return self.ticker


def series_symbol_field() -> models.ForeignKey:
    """The symbol column of a time-series table (the first part of its composite key).

    No index of its own (the key leads with it) and no database constraint: per-row checks
    were a quarter of the ingest commit. The pipeline rejects unknown symbols itself, and
    deleting a Symbol still deletes its rows (Django cascades).
    """
    return models.ForeignKey(
        Symbol, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )


class Tick(models.Model):
    """One slot of a symbol's trading at the slot's start: one trade (the simulator's), or
    a source's trades of the slot conflated (docs/sources.md#conflation), whose first,
    highest and lowest prices and count it keeps so that bars stay exact (null for one
    trade: its price is all four). With the best bid and offer standing then (null, all
    four, for a source that carries no quotes)."""

    pk = models.CompositePrimaryKey("symbol", "ts")
    symbol = series_symbol_field()
    ts = models.DateTimeField()
    price = models.FloatField(help_text="The slot's last trade price.")
    size = models.IntegerField(help_text="Shares traded in the slot.")
    open = models.FloatField(null=True, help_text="The slot's first trade price.")
    high = models.FloatField(null=True)
    low = models.FloatField(null=True)
    trades = models.IntegerField(null=True, help_text="Trades conflated into the tick.")
    bid = models.FloatField(null=True)
    ask = models.FloatField(null=True)
    bid_size = models.IntegerField(null=True)
    ask_size = models.IntegerField(null=True)

    class Meta:
        # The composite primary key (symbol, ts) is the index "last N ticks of a symbol" uses.
        ordering = ["symbol", "ts"]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.ts.isoformat()} {self.price}"


class Bar(models.Model):
    """An OHLCV candle. The pipeline writes 1-minute bars; longer ones are derived."""

    INTERVAL_CHOICES = [(name, name) for name in BAR_INTERVALS]

    pk = models.CompositePrimaryKey("symbol", "interval", "ts")
    symbol = series_symbol_field()
    interval = models.CharField(max_length=3, choices=INTERVAL_CHOICES)
    ts = models.DateTimeField(help_text="Start of the bucket.")
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    volume = models.BigIntegerField()
    trades = models.IntegerField()
    last_tick_at = models.DateTimeField(
        null=True,
        editable=False,
        help_text=(
            "Time of the newest tick in the bar, kept by the pipeline on 1-minute bars (null"
            " where unknown: backfilled and derived bars). It tells the pipeline which tick"
            " a symbol's indicator state must have seen last without a search of the ticks."
        ),
    )

    class Meta:
        ordering = ["symbol", "interval", "ts"]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.interval} {self.ts.isoformat()}"
