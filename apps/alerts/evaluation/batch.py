"""What stage 5 works on, as columns, and what it answers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Ticks:
    """The batch's new ticks as columns, in time order."""

    symbols: list[str]
    micros: list[int]  # tick times, µs since the epoch
    tick_micros: np.ndarray  # the same times, as an int64 array
    prices: np.ndarray
    values: dict[str, np.ndarray]  # the indicators after each tick, by field
    sizes: list[int]
    prev_micros: dict[str, int | None]  # per symbol, the tick stored before its first here


@dataclass(frozen=True)
class Pairs:
    """The (tick, rule) pairs to evaluate: each tick with every rule of its symbol."""

    tick: np.ndarray  # the tick's position in the batch
    rule: np.ndarray  # the rule's row in the index
    codes: np.ndarray  # the rule's condition
    thresholds: np.ndarray  # the rule's threshold (NaN for none)
    live: np.ndarray  # the rule has not expired by the tick


@dataclass(frozen=True)
class Candidates:
    """The pairs whose condition holds, with the value an event would keep."""

    tick: np.ndarray
    rule: np.ndarray
    value: np.ndarray


@dataclass
class Evaluation:
    """What stage 5 did: the events it stored, and what to write once the batch commits."""

    events: list[dict] = field(default_factory=list)  # messages.alert_event + "owner"
    after_commit: list[list[bytes]] = field(default_factory=list)  # Redis commands
