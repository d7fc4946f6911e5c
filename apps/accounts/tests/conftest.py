"""Fixtures of the API token tests (helpers are in `helpers.py`)."""

from __future__ import annotations

import pytest


@pytest.fixture
def private(settings, redis_client):
    """Market data for signed-in callers and tokens only."""
    settings.MARKETFLUX_PUBLIC_READ = False
