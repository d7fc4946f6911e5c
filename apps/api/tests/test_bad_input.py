"""Bad input on every REST parameter (docs/contracts.md#bad-parameters), generated from the
live OpenAPI schema: every operation the schema lists, ours under /api/v1 and the
Polygon-compatible gateway's alike, and each parameter it declares.

Each query parameter gets an empty value, a blank one, itself twice with two different
values, a value longer than its limit, and bytes that are not UTF-8; each path parameter
a blank, over-long and non-UTF-8 value. The answer must be a JSON 400 that names the
parameter (a path naming nothing may be a JSON 404 instead), never a 500 or an HTML page.
"""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.throttling import SimpleRateThrottle

pytestmark = pytest.mark.django_db

LONG = 10_000  # characters of a "very long" value, or one more than a larger declared limit
NOT_UTF8 = "%FF%FE"  # percent-encoded bytes that are no UTF-8 text
# A real value for each path parameter the schema declares, so the query parameters are
# tried on an answer that would otherwise be a 200. A new path parameter fails the test
# below until it has one here.
PATH_VALUES = {
    "symbol": "AAPL",
    "multiplier": "1",
    "timespan": "minute",
    "from": "2026-01-01",
    "to": "2026-01-02",
    "date": "2026-01-02",
    "id": "1",
}
# Values tried (after the ones the schema suggests) when looking for two that a parameter
# accepts on their own, so that its repeat is refused for being a repeat.
CANDIDATES = ["AAPL", "MSFT", "2026-01-02", "2026-01-03", "1796212805500000000", "stocks"]


@pytest.fixture
def api(client, market, alice, redis_client, monkeypatch):
    """A client signed in by token (the alert endpoints need one; the gateway reads it too),
    with throttles far above the thousands of requests sent here."""
    rates = {"anon": "1000000/min", "user": "1000000/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {Token.objects.create(user=alice).key}"
    return client


def operations(client) -> list[tuple[str, str, dict]]:
    """(method, path, operation) of every operation in the served schema."""
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


def query_parameters(operation: dict) -> list[dict]:
    return [p for p in operation.get("parameters", ()) if p["in"] == "query"]


def url(path: str, values: dict[str, str] | None = None) -> str:
    """The path with each `{name}` filled: from `values`, else PATH_VALUES."""
    for name, value in {**PATH_VALUES, **(values or {})}.items():
        path = path.replace("{" + name + "}", value)
    return path


def call(client, method: str, target: str):
    return getattr(client, method.lower())(target)


def names(response, name: str) -> bool:
    """Whether a 400's JSON names `name` as DRF does (`{name: [...]}`) or the gateway
    (`errors: {name: [...]}` beside its `error` text)."""
    body = response.json()
    return name in body or name in (body.get("errors") or {})


def problem(response, name: str, *, statuses: tuple[int, ...] = (400,)) -> str | None:
    """What is wrong with a refusal of a bad `name`, or None if it is as promised."""
    text = response.content.decode("utf-8", "replace")
    if response.status_code not in statuses:
        return f"status {response.status_code}: {text[:200]}"
    if not response["Content-Type"].startswith("application/json"):
        return f"not JSON ({response['Content-Type']}): {text[:200]}"
    if "Traceback" in text:
        return f"a traceback: {text[:200]}"
    if response.status_code == 400 and not names(response, name):
        return f"the 400 does not name {name!r}: {text[:200]}"
    return None


def suggested(parameter: dict) -> list[str]:
    """Values the parameter's schema suggests are good ones."""
    schema = parameter["schema"]
    if "enum" in schema:
        return [str(v) for v in schema["enum"]]
    if schema.get("type") == "boolean":
        return ["true", "false"]
    if schema.get("type") == "integer":
        low = max(int(schema.get("minimum", 2)), 2)
        return [str(low), str(low + 1)]
    if schema.get("format") == "date-time":
        return ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
    return []


def two_values(client, method: str, target: str, name: str, parameter: dict) -> list[str]:
    """Two different values the parameter accepts on its own (not a 400), or as near as
    the candidates get."""
    accepted, tried = [], []
    for value in dict.fromkeys([*suggested(parameter), *CANDIDATES]):
        tried.append(value)
        if call(client, method, f"{target}?{name}={value}").status_code != 400:
            accepted.append(value)
            if len(accepted) == 2:
                return accepted
    return (accepted + tried)[:2]


def test_every_query_parameter_refuses_bad_input_naming_it(api):
    found = operations(api)
    assert len(found) >= 30, "the schema lists the API and the gateway"
    failures: list[str] = []
    tried = 0
    for method, path, operation in found:
        declared = query_parameters(operation)
        if not declared:
            continue
        target = url(path)
        baseline = call(api, method, target)
        assert baseline.status_code < 400, (method, target, baseline.content[:300])
        for parameter in declared:
            name = parameter["name"]
            limit = parameter["schema"].get("maxLength", 0)
            first, second = two_values(api, method, target, name, parameter)
            cases = {
                "blank": f"{name}=%20%20",
                "repeated": f"{name}={first}&{name}={second}",
                "very long": f"{name}={'x' * max(LONG, limit + 1)}",
                "not UTF-8": f"{name}={NOT_UTF8}",
            }
            if not parameter.get("allowEmptyValue"):
                cases["empty"] = f"{name}="
            for case, query in cases.items():
                tried += 1
                wrong = problem(call(api, method, f"{target}?{query}"), name)
                if wrong:
                    failures.append(f"{method} {path} {case} {name}: {wrong}")
    assert tried >= 250, tried  # the walk reached the parameters, not nothing
    assert not failures, "\n".join(failures)


def test_every_path_parameter_refuses_bad_input(api):
    """A path parameter naming nothing is a JSON 404; a malformed one a 400 naming it."""
    failures: list[str] = []
    for method, path, operation in operations(api):
        for parameter in operation.get("parameters", ()):
            if parameter["in"] != "path":
                continue
            name = parameter["name"]
            assert name in PATH_VALUES, f"{path}: no value for the path parameter {name!r}"
            for case, value in {
                "blank": "%20%20",
                "very long": "x" * LONG,
                "not UTF-8": NOT_UTF8,
            }.items():
                response = call(api, method, url(path, {name: value}))
                wrong = problem(response, name, statuses=(400, 404))
                if wrong:
                    failures.append(f"{method} {path} {case} {name}: {wrong}")
    assert not failures, "\n".join(failures)


def test_every_operation_with_query_parameters_documents_its_400(api):
    undocumented = [
        f"{method} {path}"
        for method, path, operation in operations(api)
        if query_parameters(operation) and "400" not in operation["responses"]
    ]
    assert not undocumented


def test_a_bad_parameter_name_or_an_unknown_parameter(api):
    """A name that is not UTF-8 is a 400 too; a well-formed unknown parameter is ignored,
    repeated or empty (the gateway's clients send some of their own)."""
    response = api.get(f"/api/v1/stocks/AAPL/history?{NOT_UTF8}=1")
    assert response.status_code == 400
    assert "detail" in response.json()
    response = api.get("/v3/reference/tickers?include_otc=&include_otc=false")
    assert response.status_code == 200, response.content[:300]


def test_an_empty_tickers_is_every_active_symbol(api):
    """The gateway's one empty value that means "not given": the vendor's client sends
    `tickers=` for an empty list (docs/polygon.md#snapshots)."""
    path = "/v2/snapshot/locale/us/markets/stocks/tickers"
    everything = api.get(path).json()
    empty = api.get(f"{path}?tickers=").json()
    assert empty["count"] == everything["count"] == 5
    assert [t["ticker"] for t in empty["tickers"]] == [t["ticker"] for t in everything["tickers"]]
