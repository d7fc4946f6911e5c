"""The pipeline's Prometheus metrics (docs/operations.md#metrics): counted once per batch
with the batch's counts, never per tick.

Mode `live` is the tick task's and the live sources' batches; `history` is an import
(`ingest(live=False)`), which is counted but not timed: its batch sizes would swamp the
live latencies.
"""

from __future__ import annotations

import time

from apps.ops.metrics import LATENCY_BUCKETS, Counter, Histogram, sample_db_pool

BATCHES = Counter(
    "marketflux_pipeline_batches_total", "Tick batches run through the pipeline.", ["mode"]
)
TICKS_RECEIVED = Counter(
    "marketflux_pipeline_ticks_received_total",
    "Ticks handed to the pipeline (before repeats and ticks already stored are skipped).",
    ["mode"],
)
TICKS_STORED = Counter(
    "marketflux_pipeline_ticks_stored_total",
    "New ticks the pipeline stored (a replayed batch adds none).",
    ["mode"],
)
BATCH_SECONDS = Histogram(
    "marketflux_pipeline_batch_duration_seconds",
    "Time of one live batch through the pipeline, validation to publication.",
    buckets=LATENCY_BUCKETS,
)
STAGE_SECONDS = Histogram(
    "marketflux_pipeline_stage_duration_seconds",
    "Time of each pipeline stage of a live batch (store, indicators, snapshots, alerts, "
    "commit, hot_state, publish; overview when the batch's run sent the market overview).",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
PUBLISH_LAG = Histogram(
    "marketflux_pipeline_publish_lag_seconds",
    "From a batch's newest tick slot to the end of its publication to the channel groups.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
TICK_RUNS = Counter(
    "marketflux_tick_runs_total",
    "Runs of the tick task (market.tick) by outcome: ok, skipped (the shard's lock was "
    "held), empty (no active symbol).",
    ["outcome"],
)
TICK_RETRIES = Counter(
    "marketflux_tick_retries_total",
    "Tick runs retried after a database or Redis error, by exception class.",
    ["error"],
)
TICK_DROPPED = Counter(
    "marketflux_tick_dropped_total",
    "Tick tasks whose slot was never stored: too_late (started over 20 intervals after "
    "their slot), expired (Celery discarded them past their one-interval expiry), failed "
    "(a database or Redis error on the last of their retries).",
    ["reason"],
)


# Every label value known in advance is there from the start, at 0: a rate over a counter
# that appears only when it first moves would miss that first move.
STAGES = ("store", "indicators", "snapshots", "alerts", "commit", "hot_state", "publish",
          "overview")  # fmt: skip
for _mode in ("live", "history"):
    for _counter in (BATCHES, TICKS_RECEIVED, TICKS_STORED):
        _counter.labels(_mode)
for _stage in STAGES:
    STAGE_SECONDS.labels(_stage)
for _outcome in ("ok", "skipped", "empty"):
    TICK_RUNS.labels(_outcome)
for _reason in ("too_late", "expired", "failed"):
    TICK_DROPPED.labels(_reason)
for _error in ("OperationalError", "InterfaceError", "ConnectionError", "TimeoutError"):
    TICK_RETRIES.labels(_error)


def batch_done(received: int, stored: int, stage_ms: dict[str, float], *, live: bool,
               seconds: float) -> None:  # fmt: skip
    """One `ingest` call finished: its counts, and for a live batch its timings."""
    mode = "live" if live else "history"
    BATCHES.labels(mode).inc()
    TICKS_RECEIVED.labels(mode).inc(received)
    TICKS_STORED.labels(mode).inc(stored)
    if live:
        BATCH_SECONDS.observe(seconds)
        for stage, ms in stage_ms.items():
            STAGE_SECONDS.labels(stage).observe(ms / 1000.0)
    sample_db_pool()


def published(newest_tick_micros: int) -> None:
    """A live batch is out: how long after its newest tick's slot."""
    PUBLISH_LAG.observe(max(0.0, time.time() - newest_tick_micros / 1e6))
