"""Every Redis key the market app and its pipeline use, defined once."""

from __future__ import annotations

PREFIX = "mf"


def tick_lock(shard: int) -> str:
    """Held while a tick task runs for a shard, so runs never overlap."""
    return f"{PREFIX}:lock:tick:{shard}"


TICKS_SKIPPED = f"{PREFIX}:stats:ticks_skipped"  # counter: runs skipped because one was going
TICKS_EXPIRED = f"{PREFIX}:stats:ticks_expired"  # counter: runs dropped as too late
BATCH_STATS = f"{PREFIX}:stats:batches"  # list (newest first) of per-batch JSON timings
BATCH_STATS_KEEP = 1000
