"""Every Redis key MarketFlux uses, defined once (other modules import them from here)."""

from __future__ import annotations

PREFIX = "mf"


def tick_lock(shard: int) -> str:
    """Held while a tick task runs for a shard, so runs never overlap."""
    return f"{PREFIX}:lock:tick:{shard}"


TICKS_SKIPPED = f"{PREFIX}:stats:ticks_skipped"  # counter: runs skipped because one was going
TICKS_EXPIRED = f"{PREFIX}:stats:ticks_expired"  # counter: runs dropped as too late
WS_TICKS_DROPPED = f"{PREFIX}:stats:ws_ticks_dropped"  # counter: ticks coalesced away
BATCH_STATS = f"{PREFIX}:stats:batches"  # list (newest first) of per-batch JSON timings
BATCH_STATS_KEEP = 1000

# Hot state: the latest tick, session and indicators of a symbol (JSON), for "latest" reads.
HOT_PREFIX = f"{PREFIX}:hot:"


def hot(symbol: str) -> str:
    return f"{HOT_PREFIX}{symbol}"


def rollup_watermark(interval: str) -> str:
    """Epoch seconds up to which closed `interval` buckets are rolled up (plain PostgreSQL)."""
    return f"{PREFIX}:rollup:{interval}"


def throttle(scope: str, client: str) -> str:
    """Requests of one API client in the current throttle window."""
    return f"{PREFIX}:throttle:{scope}:{client}"


# Pipeline state per symbol (indicator engine + session), so any worker can continue.
# hash: symbol -> bytes; the version in the name changes with the layout of the bytes, so a
# state left by an older release is never misread (it is rebuilt instead).
PIPELINE_STATE = f"{PREFIX}:pipeline:state:v2"
# A new random token when stored history changes under running workers (a backfill of the
# current day): each worker then drops the states it holds and rebuilds them.
PIPELINE_STATE_VERSION = f"{PREFIX}:pipeline:state_version"
# At most one overview a second goes to the market group: held for a second once sent.
OVERVIEW_DUE = f"{PREFIX}:streaming:overview_sent"
# Symbols someone watches over /ws/stocks/{symbol}: hash symbol -> open sockets.
WATCHED_SYMBOLS = f"{PREFIX}:streaming:watched"

# Alerts: a new random token on every rule change, so workers reload their rule index.
ALERT_RULES_VERSION = f"{PREFIX}:alerts:rules_version"
# Per symbol, what crossings compare with: the last evaluated tick's price, SMA and EMA.
ALERT_PREVIOUS = f"{PREFIX}:alerts:previous"  # hash: symbol -> packed values
# Per symbol, when each of its rules last fired (for cooldown and once per bar): hash
# symbol -> packed array of (rule id int64, tick time in epoch microseconds int64).
ALERT_FIRED = f"{PREFIX}:alerts:fired"


# A backfill started from the admin (`apps.market.services.backfill_job_start`): hash of
# state, tickers, days, done, total, rows, error; kept a day after its last change.
BACKFILL_JOB_TTL = 24 * 3600


def backfill_job(job: str) -> str:
    return f"{PREFIX}:backfill:{job}"


def source_backfill(source: str) -> str:
    """`manage.py backfill --source` (apps/sources/backfill.py): hash symbol -> JSON list of
    [from, to) ranges of the vendor's history already stored, so a stopped run resumes."""
    return f"{PREFIX}:sources:backfill:{source}"
