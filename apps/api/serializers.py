"""Query parameters and answer shapes of the API.

Answers are built by `apps.market.messages`, the module the WebSocket feed uses too, so
a field has the same name and format on both doors; the answer serializers here describe
those shapes for the OpenAPI schema (a test checks every answer against the schema).
Query serializers validate parameters, so a bad one is a 400 naming it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from apps.market.constants import BAR_INTERVALS

LIMIT_MAX = 5000
# Bars are asked for between these; outside them date arithmetic would overflow.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class LimitQuery(serializers.Serializer):
    limit = serializers.IntegerField(
        min_value=1, max_value=LIMIT_MAX, default=120, help_text="How many, newest last."
    )


class BarsQuery(serializers.Serializer):
    interval = serializers.ChoiceField(choices=list(BAR_INTERVALS), default="1m")
    limit = serializers.IntegerField(min_value=1, max_value=LIMIT_MAX, default=500)
    start = serializers.DateTimeField(
        required=False,
        help_text="First bucket start (ISO 8601; UTC when no offset is given), 1970 to 2200.",
    )
    end = serializers.DateTimeField(
        required=False,
        help_text="Buckets start before this (ISO 8601), 1970 to 2200. Default: now.",
    )

    def _in_range(self, value: datetime) -> datetime:
        if not EARLIEST <= value < LATEST:
            raise serializers.ValidationError(
                f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}."
            )
        return value

    validate_start = _in_range
    validate_end = _in_range

    def validate(self, attrs: dict) -> dict:
        start, end = attrs.get("start"), attrs.get("end")
        if start and end and start > end:
            raise serializers.ValidationError({"start": ["start must not be after end."]})
        return attrs


# Answer shapes (schema only; see the module docstring).


class IndicatorFields(serializers.Serializer):
    sma_20 = serializers.FloatField(allow_null=True)
    ema_20 = serializers.FloatField(allow_null=True)
    rsi_14 = serializers.FloatField(allow_null=True)
    zscore_20 = serializers.FloatField(allow_null=True)
    anomaly = serializers.BooleanField()
    macd = serializers.FloatField(allow_null=True)
    macd_signal = serializers.FloatField(allow_null=True)
    macd_hist = serializers.FloatField(allow_null=True)
    bb_upper = serializers.FloatField(allow_null=True)
    bb_middle = serializers.FloatField(allow_null=True)
    bb_lower = serializers.FloatField(allow_null=True)


class StockSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    name = serializers.CharField()
    exchange = serializers.CharField()
    sector = serializers.CharField()
    active = serializers.BooleanField()
    price = serializers.FloatField(allow_null=True)
    change = serializers.FloatField(allow_null=True)
    change_pct = serializers.FloatField(allow_null=True)
    volume = serializers.IntegerField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


class PriceSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    price = serializers.FloatField(allow_null=True)
    ts = serializers.DateTimeField(allow_null=True)
    change = serializers.FloatField(allow_null=True, help_text="Price minus the UTC day's open.")
    change_pct = serializers.FloatField(allow_null=True)
    volume = serializers.IntegerField(allow_null=True, help_text="Traded size this UTC day.")


class IndicatorsSerializer(IndicatorFields):
    symbol = serializers.CharField()
    ts = serializers.DateTimeField(allow_null=True)
    price = serializers.FloatField(allow_null=True)
    anomaly_threshold = serializers.FloatField()


class HistoryTickSerializer(serializers.Serializer):
    ts = serializers.DateTimeField()
    price = serializers.FloatField()
    size = serializers.IntegerField()
    bid = serializers.FloatField(allow_null=True, help_text="Best bid when the trade printed.")
    ask = serializers.FloatField(allow_null=True, help_text="Best offer when the trade printed.")
    bid_size = serializers.IntegerField(allow_null=True, help_text="Shares bid.")
    ask_size = serializers.IntegerField(allow_null=True, help_text="Shares offered.")


class CandleSerializer(serializers.Serializer):
    ts = serializers.DateTimeField(help_text="Bucket start.")
    open = serializers.FloatField()
    high = serializers.FloatField()
    low = serializers.FloatField()
    close = serializers.FloatField()
    volume = serializers.IntegerField()
    trades = serializers.IntegerField()


class SnapshotSerializer(IndicatorFields):
    ts = serializers.DateTimeField()
    price = serializers.FloatField()


def series_of(name: str, item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """`{"symbol", "count", "results": [...]}`, the shape of every series answer."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "symbol": serializers.CharField(),
            "count": serializers.IntegerField(),
            "results": item(many=True),
        },
    )


HistorySerializer = series_of("History", HistoryTickSerializer)
BarsSerializer = series_of("Bars", CandleSerializer)
IndicatorHistorySerializer = series_of("IndicatorHistory", SnapshotSerializer)


class OverviewSymbolSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    price = serializers.FloatField(allow_null=True)
    change_pct = serializers.FloatField(allow_null=True)
    volume = serializers.IntegerField(allow_null=True)
    rsi_14 = serializers.FloatField(allow_null=True)
    anomaly = serializers.BooleanField()


# One object, though `market/overview` is a viewset's list route (which the schema would
# otherwise answer with an array of them).
@extend_schema_serializer(many=False)
class OverviewSerializer(serializers.Serializer):
    ts = serializers.DateTimeField()
    symbols = OverviewSymbolSerializer(many=True)
    advancers = serializers.IntegerField()
    decliners = serializers.IntegerField()
    top_gainers = OverviewSymbolSerializer(many=True)
    top_losers = OverviewSymbolSerializer(many=True)
    anomalies = OverviewSymbolSerializer(many=True)


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(allow_null=True, read_only=True)
    created = serializers.DateTimeField(allow_null=True, read_only=True)
