"""Each metric group against real activity (docs/operations.md#metrics): a live stack (a
Celery worker, Daphne and granian sharing one multiprocess directory) runs real tick tasks
sent through the broker, fires a real alert, serves real sockets; `/metrics` on the WSGI
tier must have moved by what the test did, counted from its side."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from apps.alerts.models import AlertEvent
from apps.ingest.tasks import tick
from apps.market import keys
from apps.market.models import Symbol, Tick
from apps.market.services import symbols_seed
from apps.ops.processes import free_port
from apps.ops.tests.scrape import Scrape, delta, scrape_url
from apps.testing.factories import AlertRuleFactory
from apps.testing.waiting import wait_for
from marketflux_site import serving

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WAIT = 60.0
SYMBOLS = 5  # the default market
STAGES = ("store", "indicators", "snapshots", "alerts", "commit", "hot_state", "publish")


class Stack:
    def __init__(self, web: str, asgi: str) -> None:
        self.web, self.asgi = web, asgi

    def scrape(self) -> Scrape:
        return scrape_url(self.web)

    def until(self, check, what: str) -> Scrape:
        """Scrape until `check(scrape)` holds; that scrape."""
        found: list[Scrape] = []

        def ok() -> bool:
            found[:] = [self.scrape()]
            return bool(check(found[0]))

        wait_for(ok, timeout=WAIT, interval=0.2, what=what)
        return found[0]


@pytest.fixture
def stack(processes, market, redis_client, tmp_path, monkeypatch) -> Stack:
    """A worker (solo pool), Daphne and one granian worker; no beat: the test sends ticks."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "TICK_INTERVAL": "0.5"}
    processes.celery_worker(**shared)
    asgi = processes.daphne("daphne", **shared)
    monkeypatch.setenv("MARKETFLUX_WEB_PROCESSES", "1")
    monkeypatch.setenv("MARKETFLUX_WEB_THREADS", "2")
    port = free_port()
    processes.start("granian", serving.web_command("127.0.0.1", port)[1:], **shared)
    web = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(web), timeout=WAIT, what="granian")
    live = Stack(web, asgi)
    live.until(lambda s: s.value("marketflux_celery_workers") == 1, "the worker's heartbeat")
    return live


def _answers(base: str) -> bool:
    try:
        return requests.get(f"{base}/health", timeout=1).ok
    except requests.RequestException:
        return False


def recent_slots(count: int) -> list[float]:
    """The `count` newest half-second slots, oldest first (all well within 20 intervals)."""
    now = time.time()
    newest = now - now % 0.5
    return [newest - 0.5 * n for n in range(count, 0, -1)]


def send_tick(slot: float, **options) -> None:
    tick.apply_async(kwargs={"shard": 0, "shards": 1, "scheduled_ts": slot}, **options)


def runs(scrape: Scrape, outcome: str) -> float:
    return scrape.value("marketflux_tick_runs_total", outcome=outcome)


def test_batches_stages_lag_drops_and_table_rows_move_with_the_tick_tasks(stack, redis_client):
    before = stack.scrape()
    ticks_before = Tick.objects.count()

    slots = recent_slots(4)
    for slot in slots:
        send_tick(slot)
    after = stack.until(lambda s: runs(s, "ok") - runs(before, "ok") == 4, "4 tick runs")
    stored = Tick.objects.count() - ticks_before
    assert stored == 4 * SYMBOLS

    assert delta(before, after, "marketflux_pipeline_batches_total", mode="live") == 4
    assert delta(before, after, "marketflux_pipeline_ticks_received_total", mode="live") == stored
    assert delta(before, after, "marketflux_pipeline_ticks_stored_total", mode="live") == stored
    assert delta(before, after, "marketflux_pipeline_batch_duration_seconds_count") == 4
    assert delta(before, after, "marketflux_pipeline_publish_lag_seconds_count") == 4
    for stage in STAGES:
        count = "marketflux_pipeline_stage_duration_seconds_count"
        assert delta(before, after, count, stage=stage) == 4, stage
    # The lag of a slot sent at once is under the 20 intervals a tick may be late.
    lag = delta(before, after, "marketflux_pipeline_publish_lag_seconds_sum")
    assert 0 < lag < 4 * 10

    # A replay of a stored slot: a run and a batch, no tick stored.
    send_tick(slots[-1])
    replay = stack.until(lambda s: runs(s, "ok") - runs(after, "ok") == 1, "the replay")
    assert delta(after, replay, "marketflux_pipeline_batches_total", mode="live") == 1
    assert delta(after, replay, "marketflux_pipeline_ticks_received_total", mode="live") == 5
    assert delta(after, replay, "marketflux_pipeline_ticks_stored_total", mode="live") == 0
    assert Tick.objects.count() - ticks_before == stored

    # Dropped: one started a minute after its slot, one Celery discarded past its expiry.
    dropped = "marketflux_tick_dropped_total"
    send_tick(time.time() - 60)
    send_tick(recent_slots(1)[0], expires=datetime.now(UTC) - timedelta(seconds=5))
    late = stack.until(
        lambda s: (
            delta(replay, s, dropped, reason="too_late") == 1
            and delta(replay, s, dropped, reason="expired") == 1
        ),
        "a tick too late and one expired",
    )
    assert runs(late, "ok") == runs(replay, "ok")

    # Skipped: the shard's lock is held by another run.
    redis_client.set(keys.tick_lock(0), json.dumps({"run": "another"}), px=20_000)
    send_tick(recent_slots(1)[0])
    stack.until(lambda s: runs(s, "skipped") - runs(late, "skipped") == 1, "a skipped run")
    redis_client.delete(keys.tick_lock(0))

    # Rows per table: the statistics' estimate follows the rows the batches stored.
    table = "marketflux_db_table_rows"
    stack.until(
        lambda s: (
            delta(before, s, table, table="market_tick") == stored
            and delta(before, s, table, table="indicators_indicatorsnapshot") == stored
        ),
        f"{stored} more rows of ticks and snapshots",
    )
    pool = after.labelled("marketflux_db_pool_connections")
    assert {p["state"] for p in pool} == {"in_use", "idle", "waiting"}
    assert after.value("marketflux_db_pool_connections", state="waiting") == 0


def test_a_real_alert_counts_its_evaluations_event_and_time(stack, alice):
    AlertRuleFactory(owner=alice, symbol_id="AAPL", condition="price_above", threshold=1.0)
    before = stack.scrape()
    send_tick(recent_slots(1)[0])
    after = stack.until(lambda s: runs(s, "ok") - runs(before, "ok") == 1, "the tick run")
    assert AlertEvent.objects.count() == 1
    # One rule of AAPL, one AAPL tick: one evaluation, one event.
    assert delta(before, after, "marketflux_alert_rule_evaluations_total") == 1
    assert delta(before, after, "marketflux_alert_events_total") == 1
    assert delta(before, after, "marketflux_alert_evaluation_duration_seconds_count") == 1


def _ws(base: str, path: str):
    url = base.replace("http://", "ws://", 1) + path
    return connect(url, proxy=None, max_size=None, open_timeout=WAIT)


def _frames_until_quiet(ws, quiet: float = 1.5) -> list:
    frames = []
    while True:
        try:
            frames.append(json.loads(ws.recv(timeout=quiet)))
        except TimeoutError:
            return frames


def test_sockets_frames_lag_and_flood_closes_are_counted(stack):
    connections = "marketflux_websocket_connections"
    before = stack.scrape()
    received = 0
    with (
        _ws(stack.asgi, "/ws/market") as one,
        _ws(stack.asgi, "/ws/market/") as two,
        _ws(stack.asgi, "/ws/stocks/AAPL") as aapl,
    ):
        opened = stack.until(
            lambda s: (
                s.value(connections, route="/ws/market") == 2
                and s.value(connections, route="/ws/stocks/{symbol}") == 1
            ),
            "three open sockets, by route",
        )
        assert not [c for c in opened.labelled(connections) if "AAPL" in c["route"]]
        for ws in (one, two):
            ws.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
        received += sum(len(_frames_until_quiet(ws)) for ws in (one, two, aapl))
        for slot in recent_slots(3):
            send_tick(slot)
        stack.until(lambda s: runs(s, "ok") - runs(before, "ok") == 3, "3 tick runs")
        ticks = 0
        for ws in (one, two, aapl):
            frames = _frames_until_quiet(ws)
            received += len(frames)
            for frame in frames:
                for message in frame if isinstance(frame, list) else [frame]:
                    ticks += message.get("type") == "tick"
        assert ticks == 2 * 3 * SYMBOLS + 3  # both market sockets every tick; AAPL's 3
    closed = stack.until(
        lambda s: (
            s.value(connections, route="/ws/market") == 0
            and s.value(connections, route="/ws/stocks/{symbol}") == 0
        ),
        "the sockets closed",
    )
    # Every frame the clients read, and no more, was counted as sent.
    assert delta(before, closed, "marketflux_websocket_frames_sent_total") == received
    # Daphne got 3 market batches; each one's lag was measured once.
    assert delta(before, closed, "marketflux_websocket_delivery_lag_seconds_count") == 3

    with _ws(stack.asgi, "/ws/market") as flooder:
        _frames_until_quiet(flooder, quiet=0.5)
        with contextlib.suppress(ConnectionClosed):
            for _ in range(30):  # over the limit of twenty a second
                flooder.send(json.dumps({"action": "subscribe", "symbols": ["AAPL"]}))
            _frames_until_quiet(flooder)
    flooded = stack.until(
        lambda s: (
            s.value(connections, route="/ws/market") == 0
            and delta(closed, s, "marketflux_websocket_flood_closes_total", route="/ws/market") == 1
        ),
        "one flood close",
    )
    assert delta(closed, flooded, "marketflux_websocket_flood_closes_total",
                 route="/ws/stocks/{symbol}") == 0  # fmt: skip


def test_a_client_that_does_not_read_is_paused_and_its_ticks_coalesced(
    processes, redis_client, tmp_path
):
    """Daphne's view of a client that stops reading: its writes pause and its ticks are
    coalesced; the coalesced count is what the socket reports dropped when it closes."""
    import socket

    from apps.streaming.tests.test_live_feed import Pusher

    symbols_seed(tickers=[f"MP{i:03d}" for i in range(300)])
    pusher = Pusher(list(Symbol.objects.values_list("ticker", flat=True)))
    directory = tmp_path / "metrics"
    directory.mkdir()
    asgi = processes.daphne("daphne", PROMETHEUS_MULTIPROC_DIR=str(directory))
    before = scrape_url(asgi)

    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", int(asgi.rsplit(":", 1)[1])))
    url = asgi.replace("http://", "ws://", 1) + "/ws/market"
    with connect(url, sock=raw, proxy=None, max_size=None, max_queue=1, ping_interval=None,
                 open_timeout=WAIT) as slow:  # fmt: skip
        slow.send(json.dumps({"action": "subscribe", "symbols": ["*"]}))
        pushed = 0
        while pushed < 400:
            pusher.push(10)
            pushed += 10
            now = scrape_url(asgi)
            if (
                delta(before, now, "marketflux_websocket_backpressure_pauses_total") >= 1
                and delta(before, now, "marketflux_websocket_ticks_coalesced_total") > 0
            ):
                break
        assert pushed < 400, "the server never held the slow client back"
    dropped = wait_for(lambda: int(redis_client.get(keys.WS_TICKS_DROPPED) or 0), timeout=WAIT,
                       what="the dropped count")  # fmt: skip
    after = scrape_url(asgi)
    assert delta(before, after, "marketflux_websocket_ticks_coalesced_total") == dropped
    assert delta(before, after, "marketflux_websocket_backpressure_pauses_total") >= 1
