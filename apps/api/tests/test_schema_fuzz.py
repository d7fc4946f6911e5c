"""Property-based fuzzing of the live OpenAPI schema (schemathesis) against a real Daphne.

Every GET operation the schema lists (and every alert endpoint, whatever its method, once
they exist) gets requests that fit the schema and requests that break it; no answer may be
a server error, and every documented answer must match its documented schema.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
import requests
import schemathesis
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from apps.indicators.state import store
from apps.market.pipeline import TickBatch, ingest
from apps.market.services import symbols_seed

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

EXAMPLES = 60  # per operation and mode: under 1,000 requests in all, well under a minute
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# Paths DESIGN.md §5 promises; the fuzz must not pass by fuzzing nothing.
EXPECTED_GET_PATHS = {
    "/api/v1/stocks/",
    "/api/v1/stocks/{symbol}/price/",
    "/api/v1/stocks/{symbol}/history/",
    "/api/v1/stocks/{symbol}/indicators/",
    "/api/v1/stocks/{symbol}/indicators/history/",
    "/api/v1/stocks/{symbol}/bars/",
    "/api/v1/market/overview/",
}
# Real symbols, so generated queries also reach the code paths with data behind them: a warm
# symbol, a symbol with a few ticks (indicators still null), one without any tick.
KNOWN_SYMBOLS = ["AAPL", "aapl", "MSFT", "TSLA", "IDLE"]
INTERVALS = ["1m", "5m", "15m", "1h", "1d"]


def seed_market() -> None:
    symbols_seed(tickers=["IDLE"])
    store.forget()
    now = datetime.now(UTC).replace(microsecond=0)
    rng = np.random.default_rng(1)
    rows = []
    for ticker, count in (("AAPL", 60), ("GOOGL", 60), ("AMZN", 40), ("MSFT", 5), ("TSLA", 1)):
        prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.003, count)))
        rows += [
            (ticker, now - timedelta(seconds=30 * (count - 1 - i)), float(p), 1 + i)
            for i, p in enumerate(prices)
        ]
    ingest(TickBatch.from_rows(rows))


def near_the_data() -> st.SearchStrategy[dict]:
    """Query values around the seeded ticks (the schema's bare `date-time` leads Hypothesis
    to years like 0190 or 6797, which all answer 400): some of them, or none."""
    now = datetime.now(UTC).replace(tzinfo=None)
    stamp = st.builds(
        lambda ts, tz: ts.replace(tzinfo=UTC).astimezone(tz).isoformat().replace("+00:00", "Z"),
        st.datetimes(min_value=now - timedelta(hours=3), max_value=now + timedelta(minutes=10)),
        st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5.5))]),
    )
    near = st.fixed_dictionaries(
        {},
        optional={
            "start": stamp,
            "end": stamp,
            "interval": st.sampled_from(INTERVALS),
            "limit": st.integers(1, 5000).map(str),
        },
    )
    return st.one_of(st.just({}), near, near)


def fuzzed(operation) -> bool:
    return operation.method.upper() == "GET" or operation.path.startswith("/api/v1/alerts")


def has_query_parameters(operation) -> bool:
    return any(True for _ in operation.query)


def test_the_live_schema_survives_fuzzing(market, redis_client, processes):
    seed_market()
    user = get_user_model().objects.create_user("fuzzer")
    token = Token.objects.create(user=user)
    url = processes.daphne(
        MARKETFLUX_THROTTLE_ANON="1000000/min", MARKETFLUX_THROTTLE_USER="1000000/min"
    )
    schema = schemathesis.openapi.from_url(f"{url}/api/schema/", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    selected = [op for op in operations if fuzzed(op)]
    assert {op.path for op in selected if op.method.upper() == "GET"} >= EXPECTED_GET_PATHS

    session = requests.Session()
    headers = {"Authorization": f"Token {token.key}"}  # per-user endpoints need a login
    failures: list[str] = []

    def run(label: str, test) -> None:
        try:
            test()
        except (Exception, BaseExceptionGroup) as error:  # all are reported
            failures.append(f"{label}: {type(error).__name__}\n{str(error)[:1500]}")

    for operation in selected:
        # First each known symbol once, deliberately; then what Hypothesis comes up with.
        for case in deliberate_cases(operation):
            run(
                f"{operation.label} {case.path_parameters} {case.query}",
                lambda case=case: case.call_and_validate(
                    base_url=url, session=session, headers=headers, checks=CHECKS, timeout=30
                ),
            )
        modes = [schemathesis.GenerationMode.POSITIVE]
        if has_query_parameters(operation):
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:
            run(
                f"{operation.label} ({mode.value})",
                fuzzer(operation, mode, base_url=url, session=session, headers=headers),
            )
    assert not failures, "\n\n".join(failures)


def deliberate_cases(operation):
    """One request per known symbol (and per bar interval), default parameters otherwise."""
    symbols = KNOWN_SYMBOLS if "symbol" in operation.path_parameters else [None]
    intervals = INTERVALS if "interval" in operation.query else [None]
    for symbol in symbols:
        for interval in intervals:
            yield operation.Case(
                path_parameters={"symbol": symbol} if symbol else {},
                query={"interval": interval} if interval else {},
            )


def fuzzer(operation, mode, *, base_url: str, session: requests.Session, headers: dict):
    """A Hypothesis test sending `operation` cases of `mode` to the server at `base_url`."""

    declared = {parameter.name for parameter in operation.query}

    @given(
        case=operation.as_strategy(generation_mode=mode),
        symbol=st.sampled_from([None, *KNOWN_SYMBOLS]),  # None: the generated one
        query=near_the_data() if mode.is_positive else st.just({}),
    )
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case, symbol, query):
        if symbol is not None and "symbol" in (case.path_parameters or {}):
            case.path_parameters["symbol"] = symbol
        if query.keys() & declared:
            case.query = {**(case.query or {}), **{k: query[k] for k in query.keys() & declared}}
        case.call_and_validate(base_url=base_url, session=session, headers=headers,
                               checks=CHECKS, timeout=30)  # fmt: skip

    return fuzz
