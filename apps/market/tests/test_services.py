"""Seeding the market and splitting it into shards."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from apps.market.models import Symbol
from apps.market.selectors import active_symbols_for_shard

pytestmark = pytest.mark.django_db


def test_seed_symbols_is_idempotent_and_keeps_admin_edits(db):
    call_command("seed_symbols")
    Symbol.objects.filter(ticker="AAPL").update(name="Edited")
    call_command("seed_symbols")
    assert sorted(Symbol.objects.values_list("ticker", flat=True)) == [
        "AAPL", "AMZN", "GOOGL", "MSFT", "TSLA",
    ]  # fmt: skip
    assert Symbol.objects.get(ticker="AAPL").name == "Edited"


def test_seed_symbols_takes_extra_tickers(db):
    call_command("seed_symbols", "nvda")
    nvda = Symbol.objects.get(ticker="NVDA")
    assert nvda.active
    assert nvda.start_price > 0


def test_shards_split_the_symbols_without_overlap(market):
    shards = [active_symbols_for_shard(shard=i, shards=3) for i in range(3)]
    tickers = [s.ticker for shard in shards for s in shard]
    assert sorted(tickers) == sorted(s.ticker for s in market)
