"""Answer shapes of the gateway, for the OpenAPI schema only (docs/polygon.md): the views
build plain dicts, and a test checks every answer against these."""

from __future__ import annotations

from rest_framework import serializers


class Envelope(serializers.Serializer):
    status = serializers.CharField()
    request_id = serializers.CharField()


class Paged(Envelope):
    next_url = serializers.CharField(
        required=False, help_text="The next page; absent on the last page."
    )


class AggSerializer(serializers.Serializer):
    o = serializers.FloatField()
    h = serializers.FloatField()
    l = serializers.FloatField()  # noqa: E741  (the vendor's name)
    c = serializers.FloatField()
    v = serializers.IntegerField()
    vw = serializers.FloatField(help_text="(h + l + c) / 3: no VWAP is stored.")
    n = serializers.IntegerField()
    t = serializers.IntegerField(help_text="Window start, Unix ms.")


class TickerAggSerializer(AggSerializer):
    T = serializers.CharField()


class AggsSerializer(Paged):
    ticker = serializers.CharField()
    adjusted = serializers.BooleanField()
    queryCount = serializers.IntegerField()
    resultsCount = serializers.IntegerField()
    count = serializers.IntegerField()
    results = AggSerializer(many=True)


class TickerAggsSerializer(Envelope):
    ticker = serializers.CharField(required=False)
    adjusted = serializers.BooleanField()
    queryCount = serializers.IntegerField()
    resultsCount = serializers.IntegerField()
    count = serializers.IntegerField()
    results = TickerAggSerializer(many=True)


class LastTradeResultSerializer(serializers.Serializer):
    T = serializers.CharField()
    t = serializers.IntegerField(help_text="SIP time, Unix ns.")
    y = serializers.IntegerField(help_text="Participant time, Unix ns (= t).")
    q = serializers.IntegerField()
    i = serializers.CharField()
    p = serializers.FloatField()
    s = serializers.IntegerField()
    x = serializers.IntegerField()
    z = serializers.IntegerField()
    c = serializers.ListField(child=serializers.IntegerField())


class LastTradeSerializer(Envelope):
    results = LastTradeResultSerializer()


class LastQuoteResultSerializer(serializers.Serializer):
    T = serializers.CharField()
    t = serializers.IntegerField(help_text="SIP time, Unix ns: the trade the quote stood at.")
    y = serializers.IntegerField(help_text="Participant time, Unix ns (= t).")
    q = serializers.IntegerField()
    p = serializers.FloatField(help_text="Bid price.")
    s = serializers.IntegerField(help_text="Bid size, in round lots of 100 shares.")
    x = serializers.IntegerField(help_text="Bid exchange (the symbol's own).")
    P = serializers.FloatField(help_text="Ask price.")
    S = serializers.IntegerField(help_text="Ask size, in round lots of 100 shares.")
    X = serializers.IntegerField(help_text="Ask exchange (the symbol's own).")
    z = serializers.IntegerField()
    c = serializers.ListField(child=serializers.IntegerField())
    i = serializers.ListField(child=serializers.IntegerField())


class LastQuoteSerializer(Envelope):
    results = LastQuoteResultSerializer()


class TradeSerializer(serializers.Serializer):
    price = serializers.FloatField()
    size = serializers.IntegerField()
    sip_timestamp = serializers.IntegerField(help_text="Unix ns.")
    participant_timestamp = serializers.IntegerField(help_text="Unix ns (= sip_timestamp).")
    sequence_number = serializers.IntegerField()
    exchange = serializers.IntegerField()
    id = serializers.CharField()
    conditions = serializers.ListField(child=serializers.IntegerField())
    tape = serializers.IntegerField()


class TradesSerializer(Paged):
    results = TradeSerializer(many=True)


class TickerSerializer(serializers.Serializer):
    ticker = serializers.CharField()
    name = serializers.CharField()
    market = serializers.CharField()
    locale = serializers.CharField()
    primary_exchange = serializers.CharField()
    type = serializers.CharField()
    active = serializers.BooleanField()
    currency_name = serializers.CharField()
    last_updated_utc = serializers.CharField()


class TickersSerializer(Paged):
    count = serializers.IntegerField()
    results = TickerSerializer(many=True)


class TickerDetailsResultSerializer(TickerSerializer):
    description = serializers.CharField()
    sic_description = serializers.CharField()
    list_date = serializers.CharField()


class TickerDetailsSerializer(Envelope):
    results = TickerDetailsResultSerializer()


class MinuteSnapshotSerializer(AggSerializer):
    av = serializers.IntegerField(help_text="The UTC day's volume so far.")


class TickerSnapshotSerializer(serializers.Serializer):
    """Every part but `ticker` is left out when it has no data (never null)."""

    ticker = serializers.CharField()
    todaysChange = serializers.FloatField(
        required=False, help_text="Last trade's price minus prevDay's close."
    )
    todaysChangePerc = serializers.FloatField(
        required=False, help_text="todaysChange as a percentage of prevDay's close."
    )
    updated = serializers.IntegerField(required=False, help_text="Last trade's time, Unix ns.")
    lastTrade = LastTradeResultSerializer(required=False)
    lastQuote = LastQuoteResultSerializer(required=False)
    day = AggSerializer(required=False, help_text="Today's UTC day so far.")
    min = MinuteSnapshotSerializer(required=False, help_text="Today's newest minute.")
    prevDay = AggSerializer(required=False, help_text="The latest whole day in the past week.")


class SnapshotAllSerializer(Envelope):
    count = serializers.IntegerField()
    tickers = TickerSnapshotSerializer(many=True)


class SnapshotTickerSerializer(Envelope):
    ticker = TickerSnapshotSerializer()


class IndicatorValueSerializer(serializers.Serializer):
    timestamp = serializers.IntegerField(help_text="The bar's window start, Unix ms.")
    value = serializers.FloatField()


class MACDValueSerializer(IndicatorValueSerializer):
    signal = serializers.FloatField()
    histogram = serializers.FloatField()


class UnderlyingSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="The aggregates the values were computed over.")
    aggregates = AggSerializer(
        many=True, required=False, help_text="Those aggregates, with expand_underlying=true."
    )


class IndicatorResultsSerializer(serializers.Serializer):
    underlying = UnderlyingSerializer()
    values = IndicatorValueSerializer(many=True)


class MACDResultsSerializer(serializers.Serializer):
    underlying = UnderlyingSerializer()
    values = MACDValueSerializer(many=True)


class IndicatorAnswerSerializer(Envelope):
    results = IndicatorResultsSerializer()


class MACDAnswerSerializer(Envelope):
    results = MACDResultsSerializer()


class ErrorSerializer(Envelope):
    error = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="On a 400: each bad parameter and what is wrong with it.",
    )
