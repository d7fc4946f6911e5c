"""The people of the role tests and what `apps/accounts/roles.py`'s table says each may do.

`WHO` is every kind of caller: anonymous, a signed-in user in no group, one in a group that
grants nothing, one of each role, and a superuser. `allowed` turns the role table into the
expected answer of every door, so the matrices assert the table, not a second copy of it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.accounts import roles
from apps.indicators.state import store
from apps.ingest.pipeline import TickBatch, ingest

ANONYMOUS, ROLELESS, NOBODY, SUPERUSER = "anonymous", "roleless", "nobody", "superuser"
WHO = [ANONYMOUS, ROLELESS, NOBODY, *roles.ROLES, SUPERUSER]
PUBLIC = [True, False]
PUBLIC_IDS = ["public", "private"]

NOW = datetime.now(UTC).replace(microsecond=0)
# Half an hour of AAPL and MSFT, every 30 s: enough for every indicator and a few bars.
ROWS = [
    (ticker, NOW - timedelta(seconds=30 * (60 - i)), base + i / 8, 10 + i)
    for i in range(61)
    for ticker, base in (("AAPL", 100.0), ("MSFT", 300.0))
]
LAST_AAPL_PRICE = ROWS[-2][2]


def actions_of(who: str) -> set[str]:
    """What the role table grants `who`, before MARKETFLUX_PUBLIC_READ."""
    if who in (ANONYMOUS, NOBODY):
        return set()
    if who == SUPERUSER:
        return set(roles.ACTIONS)
    if who == ROLELESS:
        return set(roles.ROLES[roles.ROLELESS])
    return set(roles.ROLES[who])


def allowed(who: str, action: str, public: bool) -> bool:
    """docs/security.md#roles: public read lets everyone read the market; else the table."""
    return (action == roles.READ_MARKET and public) or action in actions_of(who)


def make_user(who: str, name: str | None = None):
    """A user of that kind (None for anonymous), put in their role as `manage.py role` does."""
    users = get_user_model().objects
    name = name or who
    if who == ANONYMOUS:
        return None
    if who == SUPERUSER:
        return users.create_superuser(name, f"{name}@example.com", None)
    user = users.create_user(name)
    if who == NOBODY:
        user.groups.add(Group.objects.get_or_create(name="nobody")[0])
    elif who != ROLELESS:
        roles.user_role_set(user=user, role=who)
    return user


@pytest.fixture
def person() -> Callable:
    return make_user


@pytest.fixture
def market_data(market, redis_client):
    """The default symbols, and AAPL and MSFT with half an hour of ticks through the real
    pipeline (hot state, bars, indicators)."""
    store.forget()
    ingest(TickBatch.from_rows(ROWS))
    yield
    store.forget()


@pytest.fixture
def private(settings, redis_client):
    """Market data for signed-in callers and tokens only (the API token tests)."""
    settings.MARKETFLUX_PUBLIC_READ = False
