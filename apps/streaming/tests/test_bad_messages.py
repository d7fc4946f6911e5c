"""Bad client messages on `/ws/market` and `/ws/stocks/{symbol}`, generated from the
messages each feed declares (`MARKET_MESSAGES`, `STOCK_MESSAGES` in
`apps/streaming/messages.py`; docs/contracts.md#bad-messages).

Against a real Daphne on a loopback port with the real Redis channel layer; ticks enter
through the real pipeline in this process. For every case: an `error` that names the field
(or the documented close code), then the same socket subscribes and gets a real tick, and
Daphne's output has no traceback.
"""

from __future__ import annotations

import pytest

from apps.streaming.messages import MARKET_MESSAGES, STOCK_MESSAGES
from apps.streaming.tests.badinput import (
    Ticks,
    cases,
    check_log,
    open_socket,
    problems_after,
    read_until,
    reopened,
)

pytestmark = pytest.mark.django_db(transaction=True)

MARKET_CASES = cases(MARKET_MESSAGES)
STOCK_CASES = cases(STOCK_MESSAGES)


@pytest.fixture
def server(module_daphne, market, fresh_state):
    return module_daphne


def errors(received: list[dict]) -> list[dict]:
    return [m for m in received if m.get("type") == "error"]


@pytest.mark.parametrize("case", MARKET_CASES, ids=[c.id for c in MARKET_CASES])
def test_a_bad_market_message_gets_an_error_naming_it_and_the_socket_works_on(server, case):
    base, procs = server
    ticks = Ticks()
    with open_socket(base, "/ws/market") as ws:
        assert [m["type"] for m in read_until(ws, lambda r: r)] == ["overview"]
        assert problems_after(case, ws, errors) == []
        with reopened(base, "/ws/market", ws, case) as still:
            still.send('{"action": "subscribe", "symbols": ["aapl"]}')
            acked = read_until(still, lambda r: any(m["type"] == "subscribed" for m in r))
            assert errors(acked) == []
            assert acked[-1] == {"type": "subscribed", "symbols": ["AAPL"]}
            price = ticks.push()
            got = read_until(still, lambda r: any(m["type"] == "tick" for m in r))
            assert [(m["symbol"], m["price"]) for m in got if m["type"] == "tick"] == [
                ("AAPL", price)
            ]
    check_log(procs)


@pytest.mark.parametrize("case", STOCK_CASES, ids=[c.id for c in STOCK_CASES])
def test_any_message_to_a_stock_feed_gets_an_error_and_the_ticks_go_on(server, case):
    base, procs = server
    ticks = Ticks()
    with open_socket(base, "/ws/stocks/aapl") as ws:
        assert [m["type"] for m in read_until(ws, lambda r: r)] == ["snapshot"]
        problems = problems_after(case, ws, errors)
        assert problems == []
        with reopened(base, "/ws/stocks/AAPL", ws, case) as still:
            price = ticks.push()
            got = read_until(still, lambda r: any(m["type"] == "tick" for m in r))
            assert [(m["symbol"], m["price"]) for m in got] == [("AAPL", price)]
    check_log(procs)
