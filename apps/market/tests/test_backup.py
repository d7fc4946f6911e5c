"""`manage.py backup` of a live stack (Celery worker and beat ticking, an alert rule firing)
and `manage.py restore` of it into a new database: everything the dump's moment held comes
back equal: ticks, bars, snapshots, rules and events. The dump is one snapshot, so the
restored ticks are exactly the source's up to the newest restored one."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.alerts.models import AlertEvent, AlertRule
from apps.market import backup
from apps.market.models import Tick
from apps.testing.factories import UserFactory
from apps.testing.waiting import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TICKS = "SELECT symbol_id, ts, price, size, bid, ask FROM market_tick"
SNAPSHOTS = (
    "SELECT symbol_id, ts, price, sma_20, ema_20, rsi_14, anomaly FROM indicators_indicatorsnapshot"
)
BARS = "SELECT symbol_id, interval, ts, open, high, low, close, volume, trades FROM market_bar"
RULES = "SELECT id, owner_id, symbol_id, condition, threshold, message FROM alerts_alertrule"
EVENTS = "SELECT rule_id, symbol, ts, price, value, message FROM alerts_alertevent"


def rows(conninfo: str, sql: str, *params: object) -> set[tuple]:
    with psycopg.connect(conninfo) as conn:
        return set(conn.execute(sql, params).fetchall())


@pytest.fixture
def restored_db():
    name = f"{connection.settings_dict['NAME']}_restored"
    yield name
    with psycopg.connect(backup._conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_dump_of_a_live_stack_restores_equal(
    market, fresh_state, processes, tmp_path: Path, restored_db: str
):
    owner = UserFactory(username="ada")
    AlertRule.objects.create(
        owner=owner, symbol_id="AAPL", condition="price_above", threshold=0.01,
        frequency="every_time", message="{symbol}",
    )  # fmt: skip
    processes.celery_worker(TICK_INTERVAL="0.5")
    processes.celery_beat(TICK_INTERVAL="0.5")
    wait_for(lambda: AlertEvent.objects.count() >= 3 and Tick.objects.count() >= 30,
             timeout=90, what="ticks and alert events from the live stack")  # fmt: skip

    dump = tmp_path / "live.dump"
    call_command("backup", str(dump))  # while the worker goes on writing
    processes.stop_all()  # the source stops moving; the dump's moment is behind it
    call_command("restore", str(dump), create=restored_db)

    source = backup._conninfo(connection.settings_dict["NAME"])
    copy = backup._conninfo(restored_db)
    restored_ticks = rows(copy, TICKS)
    assert len(restored_ticks) >= 30
    newest = max(ts for _, ts, *_ in restored_ticks)
    # One snapshot: every tick up to the newest restored one, and none after it.
    assert restored_ticks == rows(source, f"{TICKS} WHERE ts <= %s", newest)
    assert rows(copy, SNAPSHOTS) == rows(source, f"{SNAPSHOTS} WHERE ts <= %s", newest)
    # The 1-minute bars of every minute the dump saw whole; the newest may have grown since
    # (and longer bars with it).
    whole = newest.replace(second=0, microsecond=0)
    assert rows(copy, f"{BARS} WHERE ts < %s", whole) == rows(
        source, f"{BARS} WHERE ts < %s", whole
    )
    assert rows(copy, RULES) == rows(source, RULES)
    events = rows(copy, EVENTS)
    assert len(events) >= 3
    assert events == rows(source, f"{EVENTS} WHERE ts <= %s", newest)


def test_restore_refuses_a_database_that_holds_tables_and_a_file_that_is_no_dump(
    db, tmp_path: Path, restored_db: str
):
    dump = tmp_path / "empty.dump"
    call_command("backup", str(dump))
    with pytest.raises(CommandError, match=r"is not empty \(\d+ tables\)"):
        call_command("restore", str(dump))  # DATABASE_URL's: the test database, migrated
    not_a_dump = tmp_path / "notes.txt"
    not_a_dump.write_text("hello")
    with pytest.raises(CommandError, match="not a pg_dump custom-format file"):
        call_command("restore", str(not_a_dump), create=restored_db)
    with pytest.raises(CommandError, match="exists already"):
        call_command("restore", str(dump), create=restored_db)  # made by the call before
    with pytest.raises(CommandError, match="no dump at"):
        call_command("restore", str(tmp_path / "missing.dump"))
