"""Replays (docs/sources.md#replay): a recorded file driven through the live pipeline.

The file's ticks (trades conflated, or bars) go out slot by slot at the file's own pace
times `speed`, through `ingest(batch)` as live ticks: stored, pushed to the WebSocket feeds,
alerts evaluated, the overview sent, as if the market were trading. The ticks are those an
import of the file stores, so a replay is deterministic: the same file and speed store the
same rows, and a second replay of it stores nothing new. The run is a `Replay` row, which
the admin pauses, resumes and stops; the run reads it at least every POLL seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import transaction
from django.utils import timezone

from apps.ingest.pipeline import TickBatch, ingest
from apps.ingest.services import publish_overview_if_due
from apps.market.models import Symbol
from apps.ops.timestamps import floor_to
from apps.sources import files
from apps.sources.models import Replay
from apps.sources.services import ImportResult, Reading, bar_ticks, trade_ticks

POLL = 0.5  # seconds between reads of the run's state (pause, resume, stop)
_NEXT = {  # the admin's actions: to which state a run may go, from which
    Replay.PAUSED: (Replay.RUNNING,),
    Replay.RUNNING: (Replay.PAUSED,),
    Replay.STOPPED: (Replay.RUNNING, Replay.PAUSED),
}


def control(*, ids: list[int], state: str) -> int:
    """Pause, resume or stop runs; a run that ended stays as it ended. Returns how many
    changed."""
    changed = 0
    with transaction.atomic():  # one save per run, not one UPDATE: each is audited
        for run in Replay.objects.select_for_update().filter(id__in=ids, state__in=_NEXT[state]):
            run.state = state
            run.save(update_fields=["state", "updated_at"])
            changed += 1
    return changed


@dataclass
class Outcome:
    """What a replay did: its run, what it read, and each slot's lag behind its time (ms;
    empty at speed 0, where nothing waits)."""

    run: Replay
    result: ImportResult
    lags_ms: list[float] = field(default_factory=list)


class _Pacer:
    """Waits for each slot's time at the run's speed, and follows the admin: a pause stops
    the clock (the replay resumes where it was, not in a rush to catch up), a stop ends it."""

    def __init__(self, run: Replay, *, clock: Callable[[], float], sleep: Callable) -> None:
        self.run, self.clock, self.sleep = run, clock, sleep
        self.start: float | None = None  # wall time of the file's first slot
        self.polled = float("-inf")
        self.state = Replay.RUNNING

    def poll(self, progress: dict) -> str:
        """The run's state, read (and the progress written) at most every POLL seconds."""
        now = self.clock()
        if now - self.polled >= POLL:
            self.polled = now
            Replay.objects.filter(pk=self.run.pk).update(**progress, updated_at=timezone.now())
            self.state = Replay.objects.values_list("state", flat=True).get(pk=self.run.pk)
        return self.state

    def wait(self, offset: float, progress: dict) -> float | None:
        """Wait until `offset` seconds of file time have passed at the speed; the lag (s)
        behind that time, or None if the run was stopped."""
        speed = self.run.speed
        if self.start is None:
            self.start = self.clock()
        while True:
            state = self.poll(progress)
            if state == Replay.STOPPED:
                return None
            if state == Replay.PAUSED:
                paused = self.clock()
                self.sleep(POLL)
                self.start += self.clock() - paused  # the clock stands still while paused
                continue
            now = self.clock()
            due = now if speed == 0 else self.start + offset / speed
            if now >= due:
                return now - due
            self.sleep(min(due - now, POLL))


def replay(
    reading: Reading,
    *,
    bars: bool,
    interval: float,
    speed: float,
    shift_to_now: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Replay a file of trades (or `bars`) at `speed` times real time (0: as fast as the
    pipeline goes); `shift_to_now` moves the file's first tick to the current minute."""
    if speed < 0:
        raise ValueError("the speed must be 0 (as fast as possible) or more")
    result = ImportResult()
    ticks = (bar_ticks(reading, result=result, in_time_order=True) if bars
             else trade_ticks(reading, interval_ns=round(interval * 1e9), result=result,
                              in_time_order=True))  # fmt: skip
    run = Replay.objects.create(file=str(reading.path), speed=speed, shift=timedelta(0))
    outcome = Outcome(run, result)
    pacer = _Pacer(run, clock=clock, sleep=sleep)
    first: datetime | None = None
    shift = timedelta(0)
    try:
        for batch in _slots(ticks, result):
            if first is None:
                first = batch.ts[0]
                if shift_to_now:
                    minute = timedelta(minutes=1)
                    shift = floor_to(datetime.now(UTC), minute) - floor_to(first, minute)
                    Replay.objects.filter(pk=run.pk).update(shift=shift)
            progress = {"ticks": result.ticks, "stored": result.stored,
                        "lag_ms": max(outcome.lags_ms, default=0.0)}  # fmt: skip
            lag = pacer.wait((batch.ts[0] - first).total_seconds(), progress)
            if lag is None:
                break
            if speed:
                outcome.lags_ms.append(lag * 1e3)
            live = ingest(_shifted(batch, shift))
            publish_overview_if_due(live.states)
            result.ticks += len(batch)
            result.stored += live.stored
            Replay.objects.filter(pk=run.pk).update(position=batch.ts[0] + shift)
    except Exception as exc:
        Replay.objects.filter(pk=run.pk).update(state=Replay.FAILED, error=str(exc))
        raise
    final = {"ticks": result.ticks, "stored": result.stored,
             "lag_ms": max(outcome.lags_ms, default=0.0)}  # fmt: skip
    Replay.objects.filter(pk=run.pk).update(**final)
    Replay.objects.filter(pk=run.pk, state__in=(Replay.RUNNING, Replay.PAUSED)).update(
        state=Replay.FINISHED
    )
    run.refresh_from_db()
    return outcome


def _slots(ticks: Iterator[TickBatch], result: ImportResult) -> Iterator[TickBatch]:
    """Each slot's ticks (every symbol's ticks of one time) as one batch, in time order;
    the file's symbols must not be the simulator's (two writers of one symbol)."""
    checked: set[str] = set()
    for batch in ticks:
        new = result.symbols - checked
        simulated = sorted(
            Symbol.objects.filter(ticker__in=new, source__isnull=True).values_list(
                "ticker", flat=True
            )
        )
        if simulated:
            raise files.FileError(
                f"{', '.join(simulated)}: the simulator ticks it: give it a source in the admin"
                " (its Symbol page) or replay into other symbols (--create-symbols)"
            )
        checked |= new
        stamps = np.array([ts.timestamp() for ts in batch.ts])
        order = np.argsort(stamps, kind="stable")
        bounds = np.flatnonzero(np.diff(stamps[order])) + 1
        for rows in np.split(order, bounds):
            yield _take(batch, rows)


def _take(batch: TickBatch, rows: np.ndarray) -> TickBatch:
    return TickBatch(
        symbols=[batch.symbols[i] for i in rows], ts=[batch.ts[i] for i in rows],
        prices=batch.prices[rows], sizes=batch.sizes[rows],
        quotes=None if batch.quotes is None else batch.quotes.take(rows),
        slots=None if batch.slots is None else batch.slots.take(rows),
    )  # fmt: skip


def _shifted(batch: TickBatch, shift: timedelta) -> TickBatch:
    if not shift:
        return batch
    return TickBatch(symbols=batch.symbols, ts=[ts + shift for ts in batch.ts],
                     prices=batch.prices, sizes=batch.sizes, quotes=batch.quotes,
                     slots=batch.slots)  # fmt: skip
