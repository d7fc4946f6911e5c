"""The tick task on RabbitMQ: real workers and beat with CELERY_BROKER_URL=amqp://, ticks
flowing into PostgreSQL, and a worker killed with SIGKILL in the middle of a batch losing
no slot and counting none twice.

It needs a RabbitMQ (MARKETFLUX_TEST_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672//;
the development and CI machines run one) and is skipped, saying so, only when nothing
answers on its port. Each run has a queue (and exchange) of its own, deleted afterwards,
and its workers unique node names, so runs on one broker do not meet.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import kombu
import pytest
from django.db import connection

from apps.ingest import services
from apps.market import keys
from apps.market.services import symbols_seed
from apps.testing.waiting import wait_for

AMQP_URL = os.environ.get("MARKETFLUX_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
_BROKER = urlsplit(AMQP_URL)
_BROKER_ADDRESS = f"{_BROKER.hostname}:{_BROKER.port or 5672}"


def _broker_answers() -> bool:
    try:
        with socket.create_connection((_BROKER.hostname, _BROKER.port or 5672), timeout=2):
            return True
    except OSError:
        return False


if not _broker_answers():
    pytest.skip(
        f"no AMQP broker answers at {_BROKER_ADDRESS} (set MARKETFLUX_TEST_AMQP_URL)",
        allow_module_level=True,
    )

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

INTERVAL = 0.5
# Enough symbols that a batch is tens of milliseconds long, so the kill lands inside one.
SYMBOLS = [f"RQ{i:03d}" for i in range(400)]


@pytest.fixture
def amqp_queue() -> Iterator[str]:
    """A queue name of this run's own; the queue and its exchange are deleted afterwards.

    A broker that answers but refuses us (credentials, vhost) fails the test here."""
    name = f"marketflux-test-{uuid.uuid4().hex[:12]}"
    with kombu.Connection(AMQP_URL, connect_timeout=5) as conn:
        try:
            conn.ensure_connection(max_retries=1)
        except Exception as exc:  # whatever it is, the message says it
            pytest.fail(f"the AMQP broker at {_BROKER_ADDRESS} answers but refuses us: {exc!r}")
        yield name
        channel = conn.default_channel
        channel.queue_delete(name)
        channel.exchange_delete(name)


def slot_counts() -> list[tuple[datetime, int]]:
    """Each stored slot with its number of ticks, in time order."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT ts, count(*) FROM market_tick GROUP BY ts ORDER BY ts")
        return cursor.fetchall()


def batch_stats(redis_client) -> list[dict]:
    return [json.loads(e) for e in redis_client.lrange(keys.BATCH_STATS, 0, -1)]


def test_ticks_flow_over_rabbitmq_and_a_worker_killed_mid_batch_loses_no_slot(
    redis_client, amqp_queue, processes
):
    symbols_seed(tickers=SYMBOLS)
    env = {
        "CELERY_BROKER_URL": AMQP_URL,
        "CELERY_QUEUE": amqp_queue,
        "TICK_INTERVAL": str(INTERVAL),
    }
    # Two workers, as on two hosts, and beat.
    victim = processes.celery_worker("victim", node=f"victim-{amqp_queue}@%h", **env)
    processes.celery_worker("other", node=f"other-{amqp_queue}@%h", **env)
    processes.celery_beat(**env)
    for name in ("victim", "other"):
        wait_for(lambda: "ready." in processes.log(name), timeout=60,  # noqa: B023
                 what=f"the {name} worker ready")  # fmt: skip
    wait_for(lambda: len(slot_counts()) >= 4, timeout=60, what="ticks over RabbitMQ")
    # From here on, both workers warm: the window the checks below cover. (A worker's first
    # batch builds every symbol's state; a slot may expire behind it, as at any start.)
    window_from = slot_counts()[-1][0]
    skipped_before = int(redis_client.get(keys.TICKS_SKIPPED) or 0)

    # Kill the victim while it holds the shard's lock: in the middle of a run.
    def victim_running() -> dict | None:
        holder = services.tick_lock_holder(0)
        return holder if holder and holder["pid"] == victim.pid else None

    holder = wait_for(victim_running, timeout=30, interval=0.002, what="a run on the victim")
    processes.kill("victim")
    killed_at = time.time()

    # The run it was in comes back to the other worker at once and is done there.
    def rerun_of_the_killed_run() -> dict | None:
        for entry in batch_stats(redis_client):
            if entry["run"] == holder["run"]:
                return entry
        return None

    rerun = wait_for(rerun_of_the_killed_run, timeout=10, what="the killed run done again")
    # A replacement takes over the victim's share; then the other stops (warm shutdown).
    processes.celery_worker("replacement", node=f"replacement-{amqp_queue}@%h", **env)
    wait_for(lambda: "ready." in processes.log("replacement"), timeout=60,
             what="the replacement worker ready")  # fmt: skip
    processes.stop("other")
    replacement_from = time.time()
    wait_for(
        lambda: slot_counts()[-1][0].timestamp() > replacement_from + 2.0,
        timeout=30,
        what="ticks from the replacement alone",
    )
    processes.stop("beat")
    time.sleep(2 * INTERVAL)  # the last slot beat sent is done
    processes.stop("replacement")

    slots = [(ts, count) for ts, count in slot_counts() if ts >= window_from]
    stamps = [ts for ts, _ in slots]
    # Every slot from the first to the last, each with a tick for every symbol: none lost
    # around the kill or at either worker's stop.
    assert stamps[-1].timestamp() > killed_at + 2.0
    expected = [
        stamps[0] + timedelta(seconds=INTERVAL * i)
        for i in range(round((stamps[-1] - stamps[0]).total_seconds() / INTERVAL) + 1)
    ]
    assert stamps == expected
    assert {count for _, count in slots} == {len(SYMBOLS)}
    # The killed run's slot is among them, stored by the run done again in its place.
    assert rerun["scheduled_at"] in {ts.isoformat() for ts in stamps}
    # Nothing twice: one tick per symbol and slot, one indicator snapshot per tick, and
    # each 1-minute bar counts each of its ticks once.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT (symbol_id, ts)) FROM market_tick WHERE ts >= %s",
            [window_from],
        )
        ticks, distinct = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM indicators_indicatorsnapshot WHERE ts >= %s", [window_from]
        )
        (snapshots,) = cursor.fetchone()
        cursor.execute(
            """
            SELECT count(*) FROM market_bar b
            JOIN (SELECT symbol_id, date_bin('1 minute', ts, '2000-01-01') AS m,
                         sum(size) AS volume, count(*) AS trades
                  FROM market_tick GROUP BY 1, 2) t
              ON t.symbol_id = b.symbol_id AND t.m = b.ts AND b.interval = '1m'
            WHERE b.volume <> t.volume OR b.trades <> t.trades
            """
        )
        (miscounted_bars,) = cursor.fetchone()
    assert ticks == distinct == len(stamps) * len(SYMBOLS)
    assert snapshots == ticks
    assert miscounted_bars == 0
    # No run was skipped for a lock the killed worker left behind.
    assert int(redis_client.get(keys.TICKS_SKIPPED) or 0) == skipped_before
