"""Every REST operation's query string checked against the parameters its OpenAPI
operation declares, before the view reads it (docs/contracts.md#bad-parameters).

Why here, once: each view reads its parameters its own way (DRF serializers, django-filter,
the paginator, the gateway's `params`), and Django's `QueryDict` hides what they cannot
see: a repeated parameter (`.get` takes the last value), bytes that are not UTF-8 (replaced
by U+FFFD) and an empty value (django-filter and the paginator read it as "not given"). So
the raw query string is read here, one parameter at a time, and a declared parameter that
is repeated, empty, blank, over its length, not UTF-8 or holding a NUL is a 400 naming it.
Parameters an operation does not declare are left to the view (the gateway ignores them),
but bytes that are not UTF-8 are refused wherever they are.

The declared parameters come from drf-spectacular, the generator `/api/schema/` uses, built
once per process on the first request that has a query string (a tenth of a second), so
the check and the published schema cannot drift apart. A request without a query string
costs one test of an empty string.
"""

from __future__ import annotations

import threading
from urllib.parse import unquote_to_bytes

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.request import Request

# A value longer than this is refused unless its parameter's schema declares a maxLength;
# apps/api/schema.py publishes it as every string query parameter's default maxLength.
QUERY_VALUE_MAX = 256

_lock = threading.Lock()
_declared: dict | None = None  # (URL pattern's view function, method) -> {name: parameter}


def _build() -> dict:
    """Every operation's query parameters, from the same generator as `/api/schema/`."""
    from drf_spectacular.generators import SchemaGenerator

    generator = SchemaGenerator()
    schema = generator.get_schema(request=None, public=True)
    table = {}
    for path, _regex, method, callback in generator.endpoints:
        view = generator.create_view(callback, method)
        key = generator.coerce_path(path, method, view)
        key = key if key.startswith("/") else f"/{key}"
        operation = schema["paths"].get(key, {}).get(method.lower())
        if operation is not None:
            table[(callback, method)] = {
                p["name"]: p for p in operation.get("parameters", ()) if p["in"] == "query"
            }
    return table


def declared_parameters(callback, method: str) -> dict[str, dict]:
    """The query parameters the schema declares for `callback` answering `method`."""
    global _declared
    if _declared is None:
        with _lock:
            if _declared is None:
                _declared = _build()
    if method == "HEAD":
        method = "GET"
    return _declared.get((callback, method), {})


def _decoded(raw: bytes) -> str | None:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _raw_bytes(query_string: str) -> bytes:
    """The query string's bytes: WSGI hands them over as latin-1 (PEP 3333), ASGI as UTF-8."""
    try:
        return query_string.encode("latin-1")
    except UnicodeEncodeError:
        return query_string.encode("utf-8")


def problems(query_string: str, parameters: dict[str, dict]) -> dict[str, list[str]]:
    """What is wrong with each parameter of `query_string`, by name (empty if nothing is).

    Raises ParseError when a parameter's name itself is not UTF-8 (there is no name to give).
    """
    errors: dict[str, list[str]] = {}
    seen: set[str] = set()
    for pair in _raw_bytes(query_string).split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name = _decoded(raw_name)
        if name is None:
            raise ParseError("A query parameter's name is not valid UTF-8.")
        value = _decoded(raw_value)
        if value is None:
            errors.setdefault(name, []).append("is not valid UTF-8.")
            continue
        parameter = parameters.get(name)
        if parameter is None:
            continue  # not this operation's: the view ignores it
        wrong = []
        if name in seen and parameter["schema"].get("type") != "array":
            wrong.append("was given more than once; give it once.")
        seen.add(name)
        if value == "":
            if not parameter.get("allowEmptyValue"):
                wrong.append("may not be empty; leave it out to get its default.")
        elif not value.strip():
            wrong.append("may not be blank.")
        elif len(value) > parameter["schema"].get("maxLength", QUERY_VALUE_MAX):
            limit = parameter["schema"].get("maxLength", QUERY_VALUE_MAX)
            wrong.append(f"is longer than {limit} characters.")
        elif "\x00" in value:
            wrong.append("must not contain a NUL character.")
        for message in wrong:
            if message not in errors.get(name, ()):
                errors.setdefault(name, []).append(message)
    return errors


def check_query(request: Request) -> None:
    """Raise a 400 naming each bad parameter of the request's query string, if any."""
    query_string = request.META.get("QUERY_STRING")
    if not query_string:
        return
    match = request._request.resolver_match
    parameters = declared_parameters(match.func, request.method) if match else {}
    errors = problems(query_string, parameters)
    if errors:
        raise ValidationError(errors)


class CheckedQuery:
    """Mixed into every API view: `check_query` runs after authentication, permissions and
    throttles (a refused caller learns nothing, a flood of bad requests is still throttled),
    before the handler reads a parameter."""

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        check_query(request)
