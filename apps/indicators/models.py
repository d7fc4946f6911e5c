"""Stored indicator values: one snapshot per tick."""

from __future__ import annotations

from django.db import models

from apps.market.models import series_symbol_field


class IndicatorSnapshot(models.Model):
    """The indicators (docs/contracts.md#indicators) as they stood after a tick, null before
    warm-up."""

    pk = models.CompositePrimaryKey("symbol", "ts")
    symbol = series_symbol_field()
    ts = models.DateTimeField()
    price = models.FloatField()
    sma_20 = models.FloatField(null=True)
    ema_20 = models.FloatField(null=True)
    rsi_14 = models.FloatField(null=True)
    zscore_20 = models.FloatField(null=True)
    anomaly = models.BooleanField(default=False)
    macd = models.FloatField(null=True)
    macd_signal = models.FloatField(null=True)
    macd_hist = models.FloatField(null=True)
    bb_upper = models.FloatField(null=True)
    bb_middle = models.FloatField(null=True)
    bb_lower = models.FloatField(null=True)

    class Meta:
        ordering = ["symbol", "ts"]

    def __str__(self) -> str:
        return f"{self.symbol_id} {self.ts.isoformat()}"
