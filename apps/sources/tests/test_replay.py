"""`manage.py replay`: a recorded file through the live pipeline, at a speed, paused and
stopped from the admin. Expected ticks and bars are the hand-worked ones of the import tests
(the same file); alerts are real rules evaluated by the pipeline."""

from __future__ import annotations

import io
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.alerts.models import AlertEvent
from apps.market.models import Source, Symbol, Tick
from apps.sources import files, replay, services
from apps.sources.models import Replay
from apps.sources.tests.test_import_trades import (
    T0,
    TRADES,
    api,
    expected_bars,
    expected_ticks,
    polygon_csv,
    stored_bars,
    stored_ticks,
)
from apps.testing.factories import AlertRuleFactory
from apps.testing.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# The import tests' trades under two tickers of their own: a replay refuses the simulator's.
RENAMED = [("RPLA" if t == "AAPL" else "RPLM", *rest) for t, *rest in TRADES]


def run(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("replay", str(path), "--interval", "1", "--create-symbols", *args,
                 stdout=out, stderr=io.StringIO())  # fmt: skip
    return out.getvalue()


def test_a_replay_at_100x_stores_the_files_slots_and_fires_alerts(fresh_state, tmp_path, alice):
    recorded = Source.objects.create(name="files", kind=Source.FILES)
    for ticker in ("RPLA", "RPLM"):
        Symbol.objects.create(ticker=ticker, name=ticker, exchange="NASDAQ", source=recorded,
                              start_price=100.0)  # fmt: skip
    AlertRuleFactory(owner=alice, symbol_id="RPLA", condition="price_above", threshold=190.9)
    path = polygon_csv(tmp_path / "day.csv", RENAMED)
    said = run(path, "--speed", "100")  # the file spans a minute: about 0.6 s
    assert "9 rows, 5 ticks replayed (5 new)" in said
    assert stored_ticks("RPLA") == expected_ticks("AAPL")
    assert stored_bars("RPLA") == expected_bars("AAPL")
    assert stored_ticks("RPLM") == expected_ticks("MSFT")
    (event,) = AlertEvent.objects.filter(rule__owner=alice)
    assert (event.symbol, event.price, event.ts) == ("RPLA", 191.0, T0 + timedelta(seconds=59))
    price = api("stocks/RPLA/price")  # live: the replayed price is the symbol's price
    assert (price["price"], price["ts"]) == (190.8, (T0 + timedelta(seconds=60)).isoformat()
                                             .replace("+00:00", "Z"))  # fmt: skip
    done = Replay.objects.get()
    assert (done.state, done.ticks, done.stored, done.speed) == ("finished", 5, 5, 100.0)
    # The same file again, as fast as it goes: the same rows, nothing new.
    assert "(0 new)" in run(path, "--speed", "0")
    assert stored_ticks("RPLA") == expected_ticks("AAPL")
    assert stored_bars("RPLA") == expected_bars("AAPL")


def test_the_simulators_symbols_and_an_unsorted_file_are_refused(market, fresh_state, tmp_path):
    with pytest.raises(CommandError, match="AAPL, MSFT: the simulator ticks it"):
        run(polygon_csv(tmp_path / "ours.csv"), "--speed", "0")
    assert not Tick.objects.exists()
    unsorted = [RENAMED[0], RENAMED[8], RENAMED[1]]  # 0.1 s, 30 s, then 0.4 s
    reading = services.Reading(polygon_csv(tmp_path / "unsorted.csv", unsorted),
                               files.FileFormat(batch_rows=1), create_symbols=True)  # fmt: skip
    with pytest.raises(files.FileError, match="line 4: a trade of RPLA earlier"):
        replay.replay(reading, bars=False, interval=1.0, speed=0)
    assert list(Replay.objects.values_list("state", flat=True)) == ["failed", "failed"]


def test_the_admin_pauses_resumes_and_stops_a_replay(fresh_state, tmp_path, admin_client):
    # A minute of one trade a second, at 1x: long enough to pause and stop it.
    rows = [("RPLA", float(s), 100.0 + s / 10, 1, str(s)) for s in range(60)]
    path = polygon_csv(tmp_path / "slow.csv", rows)
    reading = services.Reading(path, files.FileFormat(), create_symbols=True)
    outcome: list = []

    def replaying() -> None:
        try:
            outcome.append(replay.replay(reading, bars=False, interval=1.0, speed=1.0))
        finally:
            connection.close()

    thread = threading.Thread(target=replaying)
    thread.start()
    try:
        wait_for(lambda: Tick.objects.filter(symbol_id="RPLA").count() >= 2, timeout=30,
                 what="the replay's first ticks")  # fmt: skip
        changelist = "/admin/sources/replay/"
        (run_id,) = Replay.objects.values_list("id", flat=True)

        def act(action: str) -> None:
            answer = admin_client.post(changelist, {"action": action, "_selected_action": [run_id]})
            assert answer.status_code == 302

        act("pause")
        wait_for(lambda: _unchanged_for(2.0), timeout=30, what="the replay to hold still")
        assert Replay.objects.get().state == "paused"
        held = Tick.objects.count()
        act("resume")
        wait_for(lambda: Tick.objects.count() > held, timeout=30, what="the replay to go on")
        act("stop")
        thread.join(30)
        assert not thread.is_alive()
    finally:
        Replay.objects.update(state="stopped")
        thread.join(30)
    (done,) = outcome
    assert done.run.state == "stopped"
    assert 2 <= Tick.objects.count() < 60
    assert done.run.ticks == Tick.objects.count()
    listed = admin_client.get("/admin/sources/replay/")
    assert b"slow.csv" in listed.content


def _unchanged_for(seconds: float) -> bool:
    before = Tick.objects.count()
    time.sleep(seconds)
    return Tick.objects.count() == before
