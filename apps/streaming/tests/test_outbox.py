"""What waits to go out on one socket: nothing lost for a client that keeps up, only the
newest tick per symbol for one that does not, and a gate that follows the write buffer."""

from __future__ import annotations

import asyncio

import orjson

from apps.streaming.outbox import KEEP, LATEST, TICK, Item, Outbox, SocketFlow


def _tick(symbol: str, n: int) -> dict:
    return {"type": "tick", "symbol": symbol, "ts": f"2026-03-02T14:30:{n:02d}Z", "price": n}


def tick(symbol: str, n: int) -> Item:
    message = _tick(symbol, n)
    return Item(symbol, orjson.dumps(message), TICK, message)


def overview(n: int) -> Item:
    message = {"type": "overview", "ts": f"2026-03-02T14:30:{n:02d}Z", "symbols": []}
    return Item("overview", orjson.dumps(message), LATEST)


def answer(message: dict) -> Item:
    return Item(None, orjson.dumps(message), KEEP)


def decoded(items: list[Item]) -> list[dict]:
    return [orjson.loads(i.data) for i in items]


def ticks_of(items: list[Item]) -> list[tuple[str, int]]:
    return [(m["symbol"], m["price"]) for m in decoded(items) if m["type"] == "tick"]


def test_with_the_gate_open_every_tick_goes_out_in_order():
    outbox = Outbox()
    outbox.add([tick("AAPL", 1), tick("MSFT", 1), tick("AAPL", 2)], coalesce=False)
    outbox.add([tick("AAPL", 3), tick("MSFT", 2)], coalesce=False)
    out = outbox.take()
    assert sorted(ticks_of(out)) == [
        ("AAPL", 1),
        ("AAPL", 2),
        ("AAPL", 3),
        ("MSFT", 1),
        ("MSFT", 2),
    ]
    # Each symbol's ticks keep their order.
    assert [p for s, p in ticks_of(out) if s == "AAPL"] == [1, 2, 3]
    assert outbox.dropped == 0
    assert outbox.take() == []


def test_coalescing_keeps_only_the_newest_tick_of_each_symbol_and_counts_the_rest():
    outbox = Outbox()
    outbox.add([tick("AAPL", 1), tick("MSFT", 1), tick("AAPL", 2)], coalesce=True)
    outbox.add([tick("AAPL", 3), tick("TSLA", 1)], coalesce=True)
    outbox.add([tick("MSFT", 2)], coalesce=True)
    out = outbox.take()
    assert sorted(ticks_of(out)) == [("AAPL", 3), ("MSFT", 2), ("TSLA", 1)]
    assert outbox.dropped == 3  # AAPL 1 and 2, MSFT 1


def test_ticks_queued_while_the_client_kept_up_give_way_once_it_falls_behind():
    outbox = Outbox()
    outbox.add([tick("AAPL", 1), tick("AAPL", 2), tick("MSFT", 1)], coalesce=False)
    outbox.add([tick("AAPL", 3)], coalesce=True)
    assert sorted(ticks_of(outbox.take())) == [("AAPL", 3), ("MSFT", 1)]
    assert outbox.dropped == 2


def test_dropped_counts_add_up_over_drains():
    outbox = Outbox()
    for n in range(10):
        outbox.add([tick("AAPL", n)], coalesce=True)
    assert ticks_of(outbox.take()) == [("AAPL", 9)]
    for n in range(10, 15):
        outbox.add([tick("AAPL", n)], coalesce=True)
    assert ticks_of(outbox.take()) == [("AAPL", 14)]
    assert outbox.dropped == 9 + 4


def test_a_slow_client_holds_at_most_one_tick_per_symbol_however_many_arrive():
    outbox = Outbox()
    symbols = [f"S{i:03d}" for i in range(300)]
    for n in range(200):
        outbox.add([tick(s, n) for s in symbols], coalesce=True)
    out = outbox.take()
    assert len(out) == 300
    assert {p for _, p in ticks_of(out)} == {199}
    assert outbox.dropped == 300 * 199


def test_the_overview_is_replaced_not_accumulated():
    outbox = Outbox()
    for n in range(5):
        outbox.add([overview(n)], coalesce=False)
    out = outbox.take()
    assert decoded(out) == decoded([overview(4)])
    assert outbox.dropped == 0


def test_answers_are_never_dropped_even_while_ticks_are_coalesced():
    outbox = Outbox()
    answers = [{"type": "subscribed", "symbols": ["AAPL"]}, {"type": "error", "message": "x"}]
    outbox.add([answer(answers[0])], coalesce=True)
    outbox.add([tick("AAPL", 1)], coalesce=True)
    outbox.add([tick("AAPL", 2)], coalesce=True)
    outbox.add([answer(answers[1])], coalesce=True)
    outbox.add([overview(1)], coalesce=True)
    out = decoded(outbox.take())
    # Answers first, in order, then the overview, then the ticks.
    assert [m["type"] for m in out] == ["subscribed", "error", "overview", "tick"]
    assert out[:2] == answers
    assert out[3]["price"] == 2


def test_an_outbox_is_empty_until_something_waits_and_again_after_take():
    outbox = Outbox()
    assert not outbox
    outbox.add([], coalesce=False)
    assert not outbox
    outbox.add([tick("AAPL", 1)], coalesce=False)
    assert outbox
    outbox.take()
    assert not outbox
    outbox.add([overview(1)], coalesce=False)
    assert outbox
    outbox.take()
    outbox.add([answer({"type": "error", "message": "x"})], coalesce=False)
    assert outbox


async def test_the_gate_closes_while_paused_and_calls_back_on_resume():
    gate = SocketFlow()
    resumed = asyncio.Event()
    gate.on_resume = resumed.set
    assert gate.is_open

    gate.pauseProducing()  # Twisted: the write buffer is full
    assert not gate.is_open
    for _ in range(5):
        await asyncio.sleep(0)
    assert not resumed.is_set()

    gate.resumeProducing()  # Twisted: the buffer drained
    assert gate.is_open
    await asyncio.wait_for(resumed.wait(), timeout=5)

    gate.pauseProducing()
    gate.pauseProducing()
    gate.resumeProducing()
    assert gate.is_open


async def test_a_stopped_connection_leaves_the_gate_open():
    gate = SocketFlow()
    gate.pauseProducing()
    gate.stopProducing()
    assert gate.is_open


def test_off_daphne_the_gate_stays_open():
    async def send(message: dict) -> None:
        pass

    gate = SocketFlow.attach(send)
    assert gate.is_open
    assert not gate.attached
