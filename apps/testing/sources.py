"""A live source's connector run by a test: on an event loop of its own thread, stopped
(with what it holds stored) on the way out."""

from __future__ import annotations

import asyncio
import threading
import time

from apps.market.models import Source
from apps.sources.live.connector import Backoff, Connector, Store
from apps.sources.live.runner import feed_config, make_feed

WAIT = 30.0


class RunningConnector:
    """`with RunningConnector(source, ["AAPL"]) as running:` ... `running.state`."""

    def __init__(self, source: Source, symbols: list[str], *, interval: float = 0.5,
                 late_after: float = 0.3, backoff: Backoff | None = None) -> None:  # fmt: skip
        self.store = Store()
        self.connector = Connector(
            make_feed(feed_config(source)), symbols, store=self.store, interval=interval,
            late_after=late_after, backoff=backoff or Backoff(base=0.2, cap=1.0, refused=1.0),
        )  # fmt: skip
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="connector", daemon=True)
        self.task: asyncio.Task | None = None

    @property
    def state(self):
        return self.connector.state

    def report(self) -> dict:
        return self.connector.state.report(time.time())

    def __enter__(self) -> RunningConnector:
        self.thread.start()

        async def start() -> asyncio.Task:
            return asyncio.create_task(self.connector.run())

        self.task = asyncio.run_coroutine_threadsafe(start(), self.loop).result(WAIT)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Cancel the connector (it stores what it holds), then close its thread."""
        if self.task is None:
            return
        task, self.task = self.task, None

        async def cancel() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(WAIT)
        self.store.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()
