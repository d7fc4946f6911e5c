"""Market data: the symbols we track, their ticks and their OHLCV bars."""

from __future__ import annotations

import re

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from apps.market.constants import BAR_INTERVALS, DEFAULT_ANOMALY_THRESHOLD

# What a ticker may be, everywhere one comes in (admin, pipeline, API paths, WebSocket paths).
TICKER_REGEX = r"^[A-Z][A-Z0-9.\-]{0,15}$"
TICKER_PATTERN = re.compile(TICKER_REGEX)
ticker_validator = RegexValidator(
    TICKER_REGEX,
    "A ticker is 1-16 upper-case letters, digits, '.' or '-', starting with a letter.",
)


class Symbol(models.Model):
    """A tradable instrument, with the parameters the simulator uses for it."""

    ticker = models.CharField(max_length=16, primary_key=True, validators=[ticker_validator])
    name = models.CharField(max_length=100)
    exchange = models.CharField(max_length=32, db_index=True)
    sector = models.CharField(max_length=64, blank=True, db_index=True)
    active = models.BooleanField(default=True, db_index=True)
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
    """One trade print: a price and size at the tick's scheduled time, and the best bid and
    offer standing then (null, all four, for a source that carries no quotes)."""

    pk = models.CompositePrimaryKey("symbol", "ts")
    symbol = series_symbol_field()
    ts = models.DateTimeField()
    price = models.FloatField()
    size = models.IntegerField()
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
