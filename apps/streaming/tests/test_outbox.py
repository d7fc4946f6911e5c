"""What waits to go out on one socket: nothing lost for a client that keeps up, only the
newest tick per symbol for one that does not, and a gate that follows the write buffer."""

from __future__ import annotations

import asyncio

from apps.streaming.outbox import Outbox, SocketFlow


def tick(symbol: str, n: int) -> dict:
    return {"type": "tick", "symbol": symbol, "ts": f"2026-03-02T14:30:{n:02d}Z", "price": n}


def overview(n: int) -> dict:
    return {"type": "overview", "ts": f"2026-03-02T14:30:{n:02d}Z", "symbols": []}


def ticks_of(messages: list[dict]) -> list[tuple[str, int]]:
    return [(m["symbol"], m["price"]) for m in messages if m["type"] == "tick"]


def test_with_the_gate_open_every_tick_goes_out_in_order():
    outbox = Outbox()
    outbox.add_ticks([tick("AAPL", 1), tick("MSFT", 1), tick("AAPL", 2)], coalesce=False)
    outbox.add_ticks([tick("AAPL", 3), tick("MSFT", 2)], coalesce=False)
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
    outbox.add_ticks([tick("AAPL", 1), tick("MSFT", 1), tick("AAPL", 2)], coalesce=True)
    outbox.add_ticks([tick("AAPL", 3), tick("TSLA", 1)], coalesce=True)
    outbox.add_ticks([tick("MSFT", 2)], coalesce=True)
    out = outbox.take()
    assert sorted(ticks_of(out)) == [("AAPL", 3), ("MSFT", 2), ("TSLA", 1)]
    assert outbox.dropped == 3  # AAPL 1 and 2, MSFT 1


def test_ticks_queued_while_the_client_kept_up_give_way_once_it_falls_behind():
    outbox = Outbox()
    outbox.add_ticks([tick("AAPL", 1), tick("AAPL", 2), tick("MSFT", 1)], coalesce=False)
    outbox.add_ticks([tick("AAPL", 3)], coalesce=True)
    assert sorted(ticks_of(outbox.take())) == [("AAPL", 3), ("MSFT", 1)]
    assert outbox.dropped == 2


def test_dropped_counts_add_up_over_drains():
    outbox = Outbox()
    for n in range(10):
        outbox.add_ticks([tick("AAPL", n)], coalesce=True)
    assert ticks_of(outbox.take()) == [("AAPL", 9)]
    for n in range(10, 15):
        outbox.add_ticks([tick("AAPL", n)], coalesce=True)
    assert ticks_of(outbox.take()) == [("AAPL", 14)]
    assert outbox.dropped == 9 + 4


def test_a_slow_client_holds_at_most_one_tick_per_symbol_however_many_arrive():
    outbox = Outbox()
    symbols = [f"S{i:03d}" for i in range(300)]
    for n in range(200):
        outbox.add_ticks([tick(s, n) for s in symbols], coalesce=True)
    out = outbox.take()
    assert len(out) == 300
    assert {p for _, p in ticks_of(out)} == {199}
    assert outbox.dropped == 300 * 199


def test_the_overview_is_replaced_not_accumulated():
    outbox = Outbox()
    for n in range(5):
        outbox.replace(overview(n))
    out = outbox.take()
    assert out == [overview(4)]
    assert outbox.dropped == 0


def test_answers_are_never_dropped_even_while_ticks_are_coalesced():
    outbox = Outbox()
    answers = [{"type": "subscribed", "symbols": ["AAPL"]}, {"type": "error", "message": "x"}]
    outbox.add(answers[0])
    outbox.add_ticks([tick("AAPL", 1)], coalesce=True)
    outbox.add_ticks([tick("AAPL", 2)], coalesce=True)
    outbox.add(answers[1])
    outbox.replace(overview(1))
    out = outbox.take()
    assert [m for m in out if m["type"] in ("subscribed", "error")] == answers
    assert [m for m in out if m["type"] == "overview"] == [overview(1)]
    assert ticks_of(out) == [("AAPL", 2)]


def test_ready_is_set_while_something_waits_and_cleared_by_take():
    outbox = Outbox()
    assert not outbox.ready.is_set()
    outbox.add_ticks([], coalesce=False)
    assert not outbox.ready.is_set()  # nothing queued, nothing to wake the sender for
    outbox.add_ticks([tick("AAPL", 1)], coalesce=False)
    assert outbox.ready.is_set()
    outbox.take()
    assert not outbox.ready.is_set()
    outbox.replace(overview(1))
    assert outbox.ready.is_set()
    outbox.take()
    outbox.add({"type": "error", "message": "x"})
    assert outbox.ready.is_set()


async def test_the_gate_holds_writers_while_paused_and_lets_them_go_on_resume():
    gate = SocketFlow()
    assert gate.is_open
    await asyncio.wait_for(gate.wait(), timeout=5)  # open: does not block

    gate.pauseProducing()  # Twisted: the write buffer is full
    assert not gate.is_open
    waiter = asyncio.ensure_future(gate.wait())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiter.done()

    gate.resumeProducing()  # Twisted: the buffer drained
    assert gate.is_open
    await asyncio.wait_for(waiter, timeout=5)

    gate.pauseProducing()
    gate.pauseProducing()
    gate.resumeProducing()
    assert gate.is_open


async def test_a_stopped_connection_never_leaves_a_writer_waiting():
    gate = SocketFlow()
    gate.pauseProducing()
    waiter = asyncio.ensure_future(gate.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    gate.stopProducing()
    await asyncio.wait_for(waiter, timeout=5)


def test_off_daphne_the_gate_stays_open():
    async def send(message: dict) -> None:
        pass

    gate = SocketFlow.attach(send)
    assert gate.is_open
