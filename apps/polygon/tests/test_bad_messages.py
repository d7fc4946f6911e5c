"""Bad client messages on the gateway's `/stocks`, generated from the messages it declares
(`STOCKS_MESSAGES` in `apps/polygon/messages.py`; docs/contracts.md#bad-messages).

Against a real Daphne with the real Redis channel layer (public read on, as by default);
ticks enter through the real pipeline in this process. For every case: an `error` status
that names the field (or the documented close), then the same socket authenticates,
subscribes and gets a real `T` trade, and Daphne's output has no traceback.
"""

from __future__ import annotations

import json

import pytest

from apps.polygon.messages import STOCKS_MESSAGES
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

CASES = cases(STOCKS_MESSAGES)


@pytest.fixture
def server(module_daphne, market, fresh_state):
    return module_daphne


def errors(received: list[dict]) -> list[dict]:
    return [m for m in received if m.get("ev") == "status" and m["status"] == "error"]


def statuses(received: list[dict]) -> list[tuple[str, str]]:
    return [(m["status"], m["message"]) for m in received if m.get("ev") == "status"]


def answer(ws, message: dict) -> list[tuple[str, str]]:
    ws.send(json.dumps(message))
    return statuses(read_until(ws, statuses))


def authenticate(ws) -> None:
    assert answer(ws, {"action": "auth", "params": "any-key"}) == [
        ("auth_success", "authenticated")
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_gateway_message_gets_an_error_naming_it_and_the_socket_works_on(server, case):
    base, procs = server
    ticks = Ticks()
    with open_socket(base, "/stocks") as ws:
        assert [s for s, _ in statuses(read_until(ws, lambda r: r))] == ["connected"]
        authenticated = case.action in ("subscribe", "unsubscribe")
        if authenticated:
            authenticate(ws)
        assert problems_after(case, ws, errors, field_key=False) == []  # vendor statuses
        with reopened(base, "/stocks", ws, case) as still:
            if still is not ws or not authenticated:
                authenticate(still)
            assert answer(still, {"action": "subscribe", "params": "T.aapl"}) == [
                ("success", "subscribed to: T.AAPL")
            ]
            price = ticks.push()
            got = read_until(still, lambda r: any(m["ev"] == "T" for m in r))
            assert [(m["sym"], m["p"]) for m in got if m["ev"] == "T"] == [("AAPL", price)]
    check_log(procs)


def test_topics_that_are_only_commas_get_an_error_naming_params(server):
    base, procs = server
    with open_socket(base, "/stocks") as ws:
        read_until(ws, lambda r: r)
        authenticate(ws)
        for params in (",", " , ,"):
            ((state, message),) = answer(ws, {"action": "subscribe", "params": params})
            assert state == "error"
            assert "params" in message
    check_log(procs)
