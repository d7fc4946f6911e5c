"""The ASGI process's sockets are kept out of the collector's full passes once settled, and
what closed sockets leave in reference cycles is freed once enough of them have closed."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from apps.streaming import heap


class Connection:
    """Stands for a socket's objects: a reference cycle, as Twisted's transport and
    protocol make."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(heap, "SETTLE", 0.05)
    monkeypatch.setattr(heap, "MIN_CHURN", 2)
    monkeypatch.setattr(heap, "CHURN", 0.5)
    yield
    gc.unfreeze()


async def test_settled_sockets_are_frozen_and_their_garbage_freed_after_churn(quick):
    freezer = heap.Freezer(asyncio.get_running_loop())
    connections = [Connection() for _ in range(4)]
    for _ in connections:
        freezer.opened()
    assert freezer.frozen == 0  # nothing before they settle
    await asyncio.sleep(0.2)
    assert freezer.frozen == 4
    assert gc.get_freeze_count() > 0

    # Two connections close: frozen, their cycle survives a full pass.
    gone = [weakref.ref(c) for c in connections[:2]]
    del connections[:2]
    freezer.closed()
    gc.collect()
    assert all(ref() is not None for ref in gone)

    # The second closes: half of those frozen, the planned pass frees them.
    freezer.closed()
    assert all(ref() is None for ref in gone)
    assert freezer.closed_frozen == 0
    assert gc.get_freeze_count() > 0  # frozen again after the pass
    assert all(c.me is c for c in connections)  # the open ones untouched


async def test_a_burst_of_connects_is_frozen_once_it_has_settled(quick):
    freezer = heap.Freezer(asyncio.get_running_loop())
    freezer.opened()
    await asyncio.sleep(0.03)
    freezer.opened()  # within SETTLE of the first: the freeze waits for this one too
    await asyncio.sleep(0.03)
    assert freezer.frozen == 0
    await asyncio.sleep(0.1)
    assert freezer.frozen == 2
    # A socket that opened and closed before any freeze counts as no churn.
    freezer.opened()
    freezer.closed()
    assert freezer.closed_frozen == 0
    assert freezer.open == 2
