"""`manage.py run_sources`: every enabled live Source's connector in one process (the
`sources` process of `make run` and of docker-compose).

It reads the sources and their symbols every few seconds, so a source added, changed,
disabled or given other symbols in the admin is started, restarted or stopped without
restarting the process. A connector that fails in a way it does not handle is logged and
started again at the next reading; it never takes the others down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from django.conf import settings

from apps.market.models import Source, Symbol
from apps.ops import status
from apps.sources.live.alpaca import AlpacaFeed
from apps.sources.live.connector import Backoff, Connector, Store
from apps.sources.live.feeds import Feed, FeedConfig
from apps.sources.live.polygon import PolygonFeed

log = logging.getLogger("marketflux.sources")

# One class per live kind (docs/sources.md#writing-a-source): a new vendor is a Feed
# subclass, a Source kind, and a line here.
FEEDS: dict[str, type[Feed]] = {Source.POLYGON: PolygonFeed, Source.ALPACA: AlpacaFeed}
RELOAD_EVERY = 5.0  # s


def feed_config(source: Source) -> FeedConfig:
    key_env, secret_env = source.credential_names()
    return FeedConfig(
        name=source.name, kind=source.kind, url=source.stream_url(),
        rest_url=source.history_url(), feed=source.feed or "iex", key_env=key_env,
        secret_env=secret_env,
    )  # fmt: skip


def make_feed(config: FeedConfig) -> Feed:
    return FEEDS[config.kind](config)


def configured(names: list[str] | None = None) -> dict[str, tuple[FeedConfig, tuple[str, ...]]]:
    """Each enabled live source (or those named) with its active symbols."""
    sources = Source.objects.filter(kind__in=list(FEEDS), enabled=True)
    if names:
        sources = sources.filter(name__in=names)
    found = {}
    for source in sources:
        symbols = Symbol.objects.filter(source=source, active=True).order_by("ticker")
        found[source.name] = (feed_config(source), tuple(symbols.values_list("ticker", flat=True)))
    return found


class Runner:
    """Keeps a connector running for each configured source."""

    def __init__(self, names: list[str] | None = None, *, late_after: float | None = None):
        self.names = names
        self.late_after = (
            settings.MARKETFLUX_SOURCE_LATE_AFTER if late_after is None else late_after
        )
        self.store = Store()
        self.running: dict[str, tuple[tuple, asyncio.Task]] = {}

    async def run(self) -> None:
        try:
            while True:
                wanted = await self.store.call("reading the sources", configured, self.names)
                await self._apply(wanted)
                await asyncio.sleep(RELOAD_EVERY)
        finally:
            tasks = [task for _, task in self.running.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # each flushes what it holds
            self.store.close()

    async def _apply(self, wanted: dict[str, tuple[FeedConfig, tuple[str, ...]]]) -> None:
        for name, (signature, task) in list(self.running.items()):
            if task.done() and not task.cancelled() and task.exception() is not None:
                log.error("%s: connector failed; starting it again", name,
                          exc_info=task.exception())  # fmt: skip
            if wanted.get(name) != signature or task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                del self.running[name]
                if name not in wanted:
                    await asyncio.to_thread(status.forget, status.SOURCES, name)
                    log.info("%s: stopped (disabled, removed or without symbols)", name)
        for name, signature in wanted.items():
            config, symbols = signature
            if name in self.running or not symbols:
                continue
            most = settings.MARKETFLUX_SOURCE_RECONNECT_MAX
            connector = Connector(make_feed(config), list(symbols), store=self.store,
                                  interval=settings.TICK_INTERVAL or 0.5,
                                  late_after=self.late_after,
                                  backoff=Backoff(cap=most, refused=most))  # fmt: skip
            task = asyncio.create_task(connector.run(), name=f"source-{name}")
            self.running[name] = (signature, task)
            log.info("%s: started (%s, %d symbols)", name, config.kind, len(symbols))


def run(names: list[str] | None = None) -> None:
    """Run until SIGTERM or Ctrl-C; on either, every connector stores what it holds."""

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await Runner(names).run()

    asyncio.run(main())
