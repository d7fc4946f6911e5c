"""The live sources' metrics (docs/operations.md#metrics) against the loopback Alpaca server
(apps/testing/alpaca.py): connected while it streams, its messages and its malformed ones
counted as the connector counts them for /health, a dropped connection counted as a
reconnect and its gap filled from the vendor's history, and, once stopped, no longer
running nor connected."""

from __future__ import annotations

import pytest

from apps.market.models import Tick
from apps.ops.tests.scrape import Scrape, delta, scrape_client
from apps.sources.tests.test_live_faults import (
    KEY,
    KEY_ENV,
    SECRET,
    SECRET_ENV,
    RecordingBackoff,
    alpaca_source,
    connector,
    quote,
    trade,
    waiting,
)
from apps.testing.alpaca import AlpacaServer

pytestmark = pytest.mark.django_db(transaction=True)  # the connector stores on its own thread


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with AlpacaServer(key=KEY, secret=SECRET, batch_size=100) as alpaca:
        yield alpaca


def test_a_source_is_connected_counts_its_messages_and_fills_its_gap(server, fresh_state, client):
    def scrape() -> Scrape:
        return scrape_client(client)

    before = scrape()
    source = alpaca_source(server.stream_url(), server.rest_url)
    server.malformed = True  # before each push: a frame of junk, then a message of junk
    with connector(source, RecordingBackoff()) as running:
        server.wait_subscribed(trades=["AAPL"], timeout=15)
        server.send_trades([trade(1, 100, 187.0, 10), trade(2, 300, 187.5, 5)])  # slot 0
        server.send_quotes([quote(600, 186.9, 187.1)])
        server.send_trades([trade(3, 1100, 187.2, 7)])  # slot 2
        waiting(running, lambda: Tick.objects.count() == 2, "the good trades")

        def reported(check) -> Scrape:
            found: list[Scrape] = []

            def ok() -> bool:
                found[:] = [scrape()]
                state = running.report()
                return bool(check(found[0], state))

            waiting(running, ok, "the source's report")
            return found[0]

        streaming = reported(
            lambda s, state: delta(before, s, "marketflux_source_messages_total",
                                   source="alpaca") == state["messages"] > 0
        )  # fmt: skip
        state = running.report()
        assert streaming.value("marketflux_source_connected", source="alpaca") == 1
        assert streaming.value("marketflux_source_running", source="alpaca") == 1
        # One junk frame a push (3) and 2 junk trades and 1 junk quote: as /health says.
        assert sum(state["malformed"].values()) == 6
        assert delta(before, streaming, "marketflux_source_malformed_messages_total",
                     source="alpaca") == 6  # fmt: skip
        assert streaming.value("marketflux_source_seconds_since_last_message",
                               source="alpaca") < 60  # fmt: skip
        assert streaming.value("marketflux_source_last_message_timestamp_seconds",
                               source="alpaca") > 0  # fmt: skip

        # The connection drops: one reconnect, and the gap since the last trade is read
        # from the vendor's history when it is back.
        server.malformed = False
        server.kill_connections()
        server.wait_subscribed(trades=["AAPL"], timeout=15)
        back = reported(
            lambda s, state: (
                state["connected"]
                and state["last_gap"]
                and "filled_at" in state["last_gap"]
                and s.value("marketflux_source_connected", source="alpaca") == 1
                and delta(before, s, "marketflux_source_gaps_filled_total", source="alpaca") == 1
                and delta(before, s, "marketflux_source_reconnects_total", source="alpaca")
                == state["reconnects"]
            )
        )
        assert delta(before, back, "marketflux_source_reconnects_total", source="alpaca") == 1

    stopped = scrape()
    assert stopped.value("marketflux_source_running", source="alpaca") == 0
    assert stopped.value("marketflux_source_connected", source="alpaca") == 0
