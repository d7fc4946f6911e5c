"""Polling in a test: the test fails, with what it waited for, when time runs out."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from apps.ops.processes import WaitTimeout, wait_until


def wait_for(
    predicate: Callable[[], object], *, timeout: float, interval: float = 0.1, what: str = ""
) -> object:
    """Poll until `predicate` returns something truthy; fail the test after `timeout` s."""
    try:
        return wait_until(
            predicate, timeout=timeout, interval=interval, what=what or f"{predicate}"
        )
    except WaitTimeout as timed_out:
        message = str(timed_out)
    pytest.fail(message)
