"""The alert stage's Prometheus metrics (docs/operations.md#metrics), counted once per
batch with the batch's counts."""

from __future__ import annotations

from apps.ops.metrics import LATENCY_BUCKETS, Counter, Histogram

EVALUATIONS = Counter(
    "marketflux_alert_rule_evaluations_total",
    "Alert rules evaluated: one per active rule of a symbol per new tick of it.",
)
EVENTS = Counter(
    "marketflux_alert_events_total",
    "Alert events fired (stored with their batch).",
)
EVALUATION_SECONDS = Histogram(
    "marketflux_alert_evaluation_duration_seconds",
    "Time of the alert stage for one batch, whether or not any rule applied.",
    buckets=LATENCY_BUCKETS,
)


def evaluated(pairs: int, events: int, seconds: float) -> None:
    """One batch's alert stage: `pairs` (rule, tick) evaluations, `events` fired."""
    EVALUATIONS.inc(pairs)
    EVENTS.inc(events)
    EVALUATION_SECONDS.observe(seconds)
