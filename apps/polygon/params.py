"""Query and path values as the vendor's clients send them, checked: a bad value of a known
parameter is a 400 naming it; unknown parameters are ignored (docs/polygon.md)."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import date, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

from rest_framework.exceptions import ValidationError

from apps.polygon.constants import EARLIEST, LATEST

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INTEGER = re.compile(r"^-?\d{1,20}$")


def bad(name: str, message: str) -> ValidationError:
    return ValidationError({name: [message]})


def text(params: dict, name: str) -> str:
    """A string the database can hold: no NUL character."""
    if "\x00" in params[name]:
        raise bad(name, "must not contain a NUL character.")
    return params[name]


def integer(params: dict, name: str, *, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not _INTEGER.match(raw) or not low <= int(raw) <= high:
        raise bad(name, f"must be a whole number from {low} to {high}.")
    return int(raw)


def choice(params: dict, name: str, choices: tuple[str, ...], *, default: str) -> str:
    raw = params.get(name)
    if raw is None:
        return default
    if raw.lower() not in choices:
        raise bad(name, f"must be one of {', '.join(choices)}.")
    return raw.lower()


def boolean(params: dict, name: str, *, default: bool | None) -> bool | None:
    raw = params.get(name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false"):
        raise bad(name, "must be true or false.")
    return raw.lower() == "true"


def day(raw: str, name: str) -> date:
    """A `YYYY-MM-DD` date between 1970 and 2200."""
    try:
        value = date.fromisoformat(raw) if _DATE.match(raw) else None
    except ValueError:
        value = None
    if value is None or not EARLIEST.date() <= value < LATEST.date():
        raise bad(name, "must be a date YYYY-MM-DD from 1970 to 2199.")
    return value


def midnight(value: date) -> datetime:
    return datetime(value.year, value.month, value.day, tzinfo=EARLIEST.tzinfo)


def instant(raw: str, name: str, *, unit: str) -> tuple[datetime, bool]:
    """A date (its midnight UTC) or a whole number of `unit`s (`ms` or `ns`) since the Unix
    epoch, and whether it was a date. Nanoseconds are kept to the microsecond the database
    stores; callers that must round one way use `ns_bound`."""
    if _INTEGER.match(raw):
        number = int(raw)
        micros = number * 1000 if unit == "ms" else number // 1000
        if 0 <= micros < (LATEST - EARLIEST) // timedelta(microseconds=1):
            return EARLIEST + timedelta(microseconds=micros), False
        raise bad(name, f"must be a date YYYY-MM-DD or Unix {unit} from 1970 to 2199.")
    if _DATE.match(raw):
        return midnight(day(raw, name)), True
    raise bad(name, f"must be a date YYYY-MM-DD or Unix {unit} from 1970 to 2199.")


def ns_of(ts: datetime) -> int:
    delta = ts - EARLIEST
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000


def ms_of(ts: datetime) -> int:
    return ns_of(ts) // 1_000_000


# Cursors: the whole query of the next page, so `next_url` carries all its state.


def cursor_encode(query: dict) -> str:
    return base64.urlsafe_b64encode(urlencode(query).encode()).decode().rstrip("=")


def cursor_decode(raw: str) -> dict:
    try:
        padded = raw + "=" * (-len(raw) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise bad("cursor", "is not a cursor this server gave.") from exc


def query_of(request) -> dict:
    """The query parameters, or the ones a `cursor` carries (which then replace them)."""
    params = request.query_params.dict()
    if "cursor" in params:
        return cursor_decode(params["cursor"])
    return params


_NS_CEILING = ns_of(LATEST)


def nanos(raw: str, name: str) -> tuple[int, bool]:
    """A date (its midnight UTC) or Unix nanoseconds, as nanoseconds; and whether a date."""
    if _INTEGER.match(raw) and 0 <= int(raw) < _NS_CEILING:
        return int(raw), False
    if _DATE.match(raw):
        return ns_of(midnight(day(raw, name))), True
    raise bad(name, "must be a date YYYY-MM-DD or Unix nanoseconds from 1970 to 2199.")


def from_micros(micros: int) -> datetime:
    return EARLIEST + timedelta(microseconds=micros)
