"""The Celery app, and the one place every periodic task is declared with its schedule."""

from __future__ import annotations

import gc
import math
import os
import time
from datetime import timedelta

from celery import Celery, schedules, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketflux_site.settings")

app = Celery("marketflux")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class GridSchedule(schedules.schedule):
    """Due once per slot of a fixed wall-clock grid (0.0 s, 0.5 s, 1.0 s, ...).

    Celery's plain interval schedule re-arms from the moment it last ran, so it drifts
    and now and then skips a slot; tick timestamps are grid slots, so the grid must hold.
    """

    def is_due(self, last_run_at):
        interval = self.run_every.total_seconds()
        now = self.now().timestamp()
        current_slot = math.floor(now / interval)
        last_slot = math.floor(self.maybe_make_aware(last_run_at).timestamp() / interval)
        next_in = (current_slot + 1) * interval - now
        return schedules.schedstate(current_slot > last_slot, next_in)

    def __reduce__(self):
        return self.__class__, (self.run_every, self.relative, self.nowfun)


def beat_schedule(*, tick_interval: float, shards: int) -> dict:
    entries = {
        f"market-tick-shard-{shard}": {
            "task": "market.tick",
            "schedule": GridSchedule(timedelta(seconds=tick_interval)),
            "kwargs": {"shard": shard, "shards": shards},
            # A tick not started within one interval is stale: drop it, never replay a burst.
            "options": {"expires": tick_interval},
        }
        for shard in range(shards)
    }
    entries["market-rollup"] = {
        "task": "market.rollup",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    }
    entries["market-prune"] = {
        "task": "market.prune",
        "schedule": timedelta(hours=1),
    }
    # Audit entries past MARKETFLUX_AUDIT_RETENTION_DAYS (apps/accounts/audit.py).
    entries["accounts-audit-prune"] = {
        "task": "accounts.audit_prune",
        "schedule": timedelta(days=1),
    }
    return entries


@app.on_after_configure.connect
def _install_beat_schedule(sender: Celery, **kwargs) -> None:
    from django.conf import settings

    sender.conf.beat_schedule = beat_schedule(
        tick_interval=settings.TICK_INTERVAL, shards=settings.MARKETFLUX_SHARDS
    )


@signals.worker_init.connect
def _require_timescale(**kwargs) -> None:
    """Refuse to start on a database without TimescaleDB when the deployment demands it."""
    from django.db import connection

    from apps.market import timescale

    try:
        timescale.require_if_configured(connection)
    except timescale.TimescaleRequiredError as exc:
        raise SystemExit(f"marketflux: {exc}") from exc  # Celery logs other errors and goes on
    finally:
        connection.close()


@signals.worker_init.connect
@signals.worker_process_init.connect
def freeze_startup_objects(**kwargs) -> None:
    """Leave what start-up created (modules, classes, settings) out of garbage collection.

    A 5,000-symbol batch keeps tens of thousands of dicts and lists alive until it ends, so
    the collector runs full collections in the middle of it, and each walked every object
    loaded at start-up: about a quarter of the batch's time (bench/pipeline.py). Frozen
    objects are never collected, which is what start-up objects are for anyway. The parent
    freezes before it forks the pool, each child again after its own start-up.
    """
    gc.freeze()


@signals.worker_process_shutdown.connect
def _forget_process_metrics(**kwargs) -> None:
    """A pool child exits: its live gauges (its database pool's) go with it; a child killed
    outright is forgotten at the next scrape instead (docs/operations.md#metrics)."""
    from apps.ops import metrics

    metrics.process_exited()


# Celery's lines for every task (received, succeeded) and every beat send: at two ticks a
# second, about 277 lines a minute at INFO, which scroll `make run`'s banner away within
# seconds. They show at DEBUG (`--loglevel DEBUG`); everything else keeps its level.
PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")


@signals.after_setup_logger.connect
def _per_task_lines_at_debug(loglevel: int | str | None = None, **kwargs) -> None:
    import logging

    level = logging.getLevelName(loglevel) if isinstance(loglevel, str) else loglevel
    if level is None or level > logging.DEBUG:
        for name in PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


HEARTBEAT_EVERY = 2.0  # s; /ready counts a worker whose report is under 10 s old


@signals.worker_ready.connect
def _start_heartbeat(sender=None, **kwargs) -> None:
    """Report this worker alive every few seconds (`apps.ops.status`, kind "worker"), for
    `/ready`: Celery's own heartbeats are events only a monitor listening on the broker
    sees, and a broadcast ping from every probe would cost each worker a reply."""
    import logging
    import socket
    import threading

    import redis

    from apps.ops import status

    log = logging.getLogger("marketflux.worker")

    name = getattr(sender, "hostname", None) or f"{socket.gethostname()}:{os.getpid()}"

    def beat() -> None:
        while True:
            try:
                status.publish(status.WORKERS, name, {"pid": os.getpid()})
            except redis.RedisError as error:  # the next beat tries again; /ready says so
                log.debug("heartbeat not reported: %s", error)
            time.sleep(HEARTBEAT_EVERY)

    threading.Thread(target=beat, name="marketflux-heartbeat", daemon=True).start()
