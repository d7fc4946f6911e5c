"""Fixtures shared by every test: real Redis, real Celery processes, the default market, the
test users. What tests import (helpers, factories) lives in `apps/testing/`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib

from apps.testing.processes import Processes


@pytest.fixture
def redis_client(settings) -> Iterator[redis_lib.Redis]:
    """The real Redis of the test run, emptied before and after the test."""
    from apps.ops.redis_client import redis_client as app_client

    client = app_client()
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def market(db) -> list:
    """The default five symbols, as `seed_symbols` creates them."""
    from apps.market.models import Symbol
    from apps.market.services import symbols_seed

    symbols_seed()
    return list(Symbol.objects.order_by("ticker"))


@pytest.fixture
def reset_simulator_cache() -> Iterator[None]:
    """Forget the prices this process remembers, as a restarted worker would."""
    from apps.ingest import services

    services._last_seen.clear()
    yield
    services._last_seen.clear()


@pytest.fixture
def fresh_state(redis_client) -> Iterator[None]:
    """Empty Redis and a pipeline process whose state store has seen nothing."""
    from apps.indicators.state import store

    store.forget()
    yield
    store.forget()


@pytest.fixture
def alice(db):
    """A signed-up user with the analyst role, who keeps alert rules and API tokens; her
    rules are hers alone (`bob` is the other one). A user in no role only reads
    (docs/security.md#roles)."""
    from apps.accounts import roles
    from apps.testing.factories import UserFactory

    return roles.user_role_set(user=UserFactory(username="alice"), role=roles.ANALYST)


@pytest.fixture
def bob(db):
    from apps.accounts import roles
    from apps.testing.factories import UserFactory

    return roles.user_role_set(user=UserFactory(username="bob"), role=roles.ANALYST)


@pytest.fixture(scope="module")
def module_daphne(django_db_setup, django_db_blocker, tmp_path_factory):
    """One real Daphne for a test module's many sockets: (its URL, its `Processes`, whose
    logs a test can read)."""
    procs = Processes(tmp_path_factory.mktemp("daphne"))
    with django_db_blocker.unblock():
        base = procs.daphne()
    yield base, procs
    procs.stop_all()


@pytest.fixture(scope="module")
def timescale_db(django_db_blocker):
    """Django's connection on a throw-away TimescaleDB (PGlite), migrated and seeded, for
    the module (`apps.testing.timescale.django_on_timescale`)."""
    from apps.testing.timescale import django_on_timescale

    with django_on_timescale(django_db_blocker) as server:
        yield server


@pytest.fixture
def processes(tmp_path) -> Iterator[Processes]:
    """Start real processes (`apps.testing.processes.Processes`); all stopped afterwards."""
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()
