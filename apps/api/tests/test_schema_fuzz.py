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
from auditlog.models import LogEntry as AuditEntry
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from apps.accounts import roles, tokens
from apps.accounts.audit import entries_for
from apps.alerts.models import AlertEvent, AlertRule
from apps.indicators.state import store
from apps.ingest.pipeline import TickBatch, ingest
from apps.market.services import symbols_seed

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

EXAMPLES = 60  # per operation and mode: under 1,000 requests in all, well under a minute
# Daphne (Twisted) drops a connection whose request line is longer than this, before any of
# our code runs. A value just over a long declared maxLength (the gateway's `tickers`, 8,192
# characters), in characters that percent-encode to 9 or 12 bytes each, makes such a line.
REQUEST_LINE_MAX = 16_384
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# Paths docs/contracts.md#rest-api promises; the fuzz must not pass by fuzzing nothing.
EXPECTED_GET_PATHS = {
    "/api/v1/stocks/",
    "/api/v1/stocks/{symbol}/price/",
    "/api/v1/stocks/{symbol}/history/",
    "/api/v1/stocks/{symbol}/indicators/",
    "/api/v1/stocks/{symbol}/indicators/history/",
    "/api/v1/stocks/{symbol}/bars/",
    "/api/v1/market/overview/",
    # The Polygon-compatible gateway (docs/polygon.md), at the root.
    "/v2/aggs/ticker/{symbol}/range/{multiplier}/{timespan}/{from}/{to}",
    "/v2/aggs/ticker/{symbol}/prev",
    "/v2/aggs/grouped/locale/us/market/stocks/{date}",
    "/v2/last/trade/{symbol}",
    "/v2/last/nbbo/{symbol}",
    "/v3/trades/{symbol}",
    "/v3/reference/tickers",
    "/v3/reference/tickers/{symbol}",
    "/v2/snapshot/locale/us/markets/stocks/tickers",
    "/v2/snapshot/locale/us/markets/stocks/tickers/{symbol}",
    "/v1/indicators/sma/{symbol}",
    "/v1/indicators/ema/{symbol}",
    "/v1/indicators/rsi/{symbol}",
    "/v1/indicators/macd/{symbol}",
}
# Real symbols, so generated queries also reach the code paths with data behind them: a warm
# symbol, a symbol with a few ticks (indicators still null), one without any tick.
KNOWN_SYMBOLS = ["AAPL", "aapl", "MSFT", "TSLA", "IDLE"]
INTERVALS = ["1m", "5m", "15m", "1h", "1d"]
# The gateway's other path parameters, for the deliberate requests: a range around the data.
GATEWAY_PATH = {"multiplier": 1, "timespan": "minute", "from": "2020-01-01", "to": "2199-01-01",
                "date": datetime.now(UTC).date().isoformat()}  # fmt: skip
EXPECTED_ALERT_OPERATIONS = {
    ("GET", "/api/v1/alerts/rules/"),
    ("POST", "/api/v1/alerts/rules/"),
    ("GET", "/api/v1/alerts/rules/{id}/"),
    ("PUT", "/api/v1/alerts/rules/{id}/"),
    ("PATCH", "/api/v1/alerts/rules/{id}/"),
    ("DELETE", "/api/v1/alerts/rules/{id}/"),
    ("GET", "/api/v1/alerts/events/"),
    ("GET", "/api/v1/alerts/events/{id}/"),
    ("POST", "/api/v1/alerts/events/{id}/acknowledge/"),
    ("POST", "/api/v1/alerts/events/acknowledge/"),
}
# Rule bodies that are valid, so the fuzz also reaches the code that stores a rule.
VALID_RULES = [
    {"symbol": "aapl", "condition": "price_above", "threshold": 200},
    {"symbol": "*", "condition": "rsi_below", "threshold": 30, "frequency": "every_time",
     "cooldown_seconds": 60, "message": "{symbol} RSI {value}"},
    {"symbol": "TSLA", "condition": "change_pct_up", "threshold": 2, "window_seconds": 300,
     "expires_at": "2199-01-01T00:00:00+05:00"},
    {"symbol": "MSFT", "condition": "anomaly", "threshold": None, "active": False},
]  # fmt: skip


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


def seed_alerts(user, other) -> dict[str, list[int]]:
    """Rules, events and API tokens of the fuzzing user (and one of someone else's each,
    which must 404)."""
    rules = [
        AlertRule.objects.create(owner=user, symbol_id=symbol, condition="price_above",
                                 threshold=100.0)
        for symbol in ["AAPL", "MSFT", "TSLA", "AAPL", "GOOGL", None]
    ]  # fmt: skip
    theirs = AlertRule.objects.create(owner=other, symbol_id="AAPL", condition="anomaly")
    now = datetime.now(UTC)
    events = [
        AlertEvent.objects.create(
            rule=rule, owner=rule.owner, symbol=rule.symbol_id or "AAPL",
            ts=now - timedelta(minutes=i), condition=rule.condition, price=101.0, value=101.0,
            message="fired", acknowledged=i % 2 == 0,
        )
        for i, rule in enumerate([*rules, theirs])
    ]  # fmt: skip
    mine = [tokens.api_token_create(user=user, name=f"t{i}", scopes=["read"])[0] for i in range(2)]
    their_token, _ = tokens.api_token_create(user=other, name="theirs", scopes=["read"])
    return {
        "rules": [r.pk for r in rules] + [theirs.pk, 0],
        "events": [e.pk for e in events] + [0],
        "tokens": [t.pk for t in mine] + [their_token.pk, 0],
    }


def label_operation(label: str) -> tuple[str, str]:
    """(method, path) of a run's label ("POST /api/v1/alerts/rules/ {...}")."""
    method, path = label.split()[:2]
    return method, path


def ids_for(operation, ids: dict[str, list[int]]) -> list[int] | None:
    """The ids worth putting in `operation`'s path: real ones, another user's, a missing one."""
    if "id" not in operation.path_parameters:
        return None
    if "/tokens/" in operation.path:
        return ids["tokens"]
    return ids["events" if "/events/" in operation.path else "rules"]


def fuzzed(operation) -> bool:
    return operation.method.upper() == "GET" or operation.path.startswith("/api/v1/alerts")


def has_query_parameters(operation) -> bool:
    return any(True for _ in operation.query)


def test_the_live_schema_survives_fuzzing(market, redis_client, processes):
    seed_market()
    # An analyst: the role that keeps alert rules (docs/security.md#roles).
    user = roles.user_role_set(
        user=get_user_model().objects.create_user("fuzzer"), role=roles.ANALYST
    )
    token = Token.objects.create(user=user)
    url = processes.daphne(
        MARKETFLUX_THROTTLE_ANON="1000000/min", MARKETFLUX_THROTTLE_USER="1000000/min"
    )
    schema = schemathesis.openapi.from_url(f"{url}/api/schema/", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    selected = [op for op in operations if fuzzed(op)]
    assert {op.path for op in selected if op.method.upper() == "GET"} >= EXPECTED_GET_PATHS
    assert {(op.method.upper(), op.path) for op in selected} >= EXPECTED_ALERT_OPERATIONS
    ids = seed_alerts(user, get_user_model().objects.create_user("someone-else"))

    session = requests.Session()
    headers = {"Authorization": f"Token {token.key}"}  # per-user endpoints need a login
    failures: list[str] = []

    succeeded: set[tuple[str, str]] = set()  # alert operations that answered a 2xx

    def run(label: str, test) -> None:
        try:
            response = test()
        except (Exception, BaseExceptionGroup) as error:  # all are reported
            failures.append(f"{label}: {type(error).__name__}\n{str(error)[:1500]}")
            return
        if response is not None and response.status_code < 300:
            succeeded.add(label_operation(label))

    for operation in selected:
        # First each known symbol once, deliberately; then what Hypothesis comes up with.
        for case in deliberate_cases(operation, ids):
            run(
                f"{operation.label} {case.path_parameters} {case.query} {case.body}",
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
                fuzzer(operation, mode, ids, base_url=url, session=session, headers=headers),
            )
    assert not failures, "\n\n".join(failures)
    # Every alert operation was reached with data behind it at least once, not only refused.
    assert succeeded >= EXPECTED_ALERT_OPERATIONS
    made = set(
        entries_for("alerts.AlertRule")
        .filter(additional_data__door="api")
        .values_list("action", flat=True)
    )
    assert made == {AuditEntry.Action.CREATE, AuditEntry.Action.UPDATE, AuditEntry.Action.DELETE}


def deliberate_cases(operation, ids: dict[str, list[int]]):
    """One request per known symbol (and per bar interval), default parameters otherwise;
    for alert endpoints, each seeded id (the last rule left for DELETE) and valid bodies."""
    if operation.path.startswith("/api/v1/alerts"):
        yield from deliberate_alert_cases(operation, ids)
        return
    if "id" in operation.path_parameters:  # /api/v1/tokens/{id}/: each seeded id
        for path_id in ids_for(operation, ids):
            yield operation.Case(path_parameters={"id": path_id})
        return
    symbols = KNOWN_SYMBOLS if "symbol" in operation.path_parameters else [None]
    intervals = INTERVALS if "interval" in operation.query else [None]
    others = {k: v for k, v in GATEWAY_PATH.items() if k in operation.path_parameters}
    for symbol in symbols:
        for interval in intervals:
            yield operation.Case(
                path_parameters={"symbol": symbol, **others} if symbol else others,
                query={"interval": interval} if interval else {},
            )


def deliberate_alert_cases(operation, ids: dict[str, list[int]]):
    method = operation.method.upper()
    path_ids = ids_for(operation, ids) or [None]
    if method == "DELETE":
        path_ids = path_ids[-3:]  # the last own rule, someone else's, a missing one
    bodies: list = [None]
    if operation.path.endswith("/events/acknowledge/"):
        bodies = [{"ids": ids["events"]}, {"ids": [1]}]
    elif method in ("POST", "PUT") and "rules" in operation.path:
        bodies = VALID_RULES
    elif method == "PATCH":
        bodies = [{"active": False}, {"threshold": 150.5}, {"symbol": "*"}]
    for path_id in path_ids:
        for body in bodies:
            kwargs = {"path_parameters": {"id": path_id} if path_id is not None else {}}
            if body is not None:
                kwargs.update(body=body, media_type="application/json")
            yield operation.Case(**kwargs)


def fuzzer(operation, mode, ids: dict, *, base_url: str, session: requests.Session, headers: dict):
    """A Hypothesis test sending `operation` cases of `mode` to the server at `base_url`."""

    declared = {parameter.name for parameter in operation.query}
    path_ids = ids_for(operation, ids)
    own_id = st.sampled_from([None, *path_ids]) if path_ids else st.just(None)

    @given(
        case=operation.as_strategy(generation_mode=mode),
        symbol=st.sampled_from([None, *KNOWN_SYMBOLS, "*"]),  # None: the generated one
        query=near_the_data() if mode.is_positive else st.just({}),
        path_id=own_id,  # None: the generated one
    )
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case, symbol, query, path_id):
        if symbol is not None and "symbol" in (case.path_parameters or {}):
            case.path_parameters["symbol"] = symbol.replace("*", "AAPL")
        if symbol is not None and isinstance(case.body, dict) and "symbol" in case.body:
            case.body["symbol"] = symbol  # a rule body naming a real symbol (or "*")
        if path_id is not None and "id" in (case.path_parameters or {}):
            case.path_parameters["id"] = path_id
        if query.keys() & declared:
            case.query = {**(case.query or {}), **{k: query[k] for k in query.keys() & declared}}
        sent = case.as_transport_kwargs(base_url=base_url)
        line = requests.Request("GET", sent["url"], params=sent.get("params")).prepare().url
        assume(len(line) < REQUEST_LINE_MAX - 100)  # room for the method, version, host
        case.call_and_validate(base_url=base_url, session=session, headers=headers,
                               checks=CHECKS, timeout=30)  # fmt: skip

    return fuzz
