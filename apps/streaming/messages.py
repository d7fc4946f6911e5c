"""The WebSocket envelopes (docs/contracts.md#websocket): the first message of a symbol
feed, subscription acknowledgements and errors. The market shapes inside them come from
`apps.market.messages`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from apps.market.messages import NO_INDICATORS, price
from apps.market.models import TICKER_PATTERN


def snapshot(symbol: str, hot: Mapping | None, history: list[dict]) -> dict:
    """First message on /ws/stocks/{symbol}: where the symbol stands and its recent ticks."""
    hot = hot or {}
    return {
        "type": "snapshot",
        **price(symbol, hot),
        "indicators": hot.get("indicators") or NO_INDICATORS,
        "history": history,
    }


def subscribed(symbols: list[str], every: float = 0.0) -> dict:
    """The answer to a /ws/market subscription change; `every` only when conflated."""
    return {"type": "subscribed", "symbols": symbols, **({"every": every} if every else {})}


def error(message: str, **details: object) -> dict:
    """An `error` answer: what was wrong (`field` names the field of the client's message,
    `symbols` the unknown symbols)."""
    return {"type": "error", "message": message, **details}


# What clients may send (docs/contracts.md#bad-messages). Each feed declares its messages
# here as data: the consumers validate through `read_message` and the generated test
# (`tests/test_bad_messages.py`) sends bad values of every field declared.

TICKERS = "tickers"  # a list of tickers (any case) or "*", or the string "*"
SECONDS = "seconds"  # a JSON number
TEXT = "text"  # a JSON string, not blank
KEY = "key"  # an API key: a JSON string the consumer checks (a bad one may close the socket)


@dataclass(frozen=True)
class Field:
    """One field of a client message: its JSON type and whether it must be there."""

    kind: str
    required: bool = True
    rule: str = ""  # what the error says a bad value must be, after the field's name


# /ws/market: {"action": ..., **fields}
MARKET_MESSAGES: dict[str, dict[str, Field]] = {
    "subscribe": {"symbols": Field(TICKERS), "every": Field(SECONDS, required=False)},
    "unsubscribe": {"symbols": Field(TICKERS)},
}
# /ws/stocks/{symbol} takes no messages.
STOCK_MESSAGES: dict[str, dict[str, Field]] = {}
MAX_MESSAGE_BYTES = 64 * 1024  # larger client messages are refused unread
SHOWN_CHARS = 32  # an error quotes at most this much of a bad value


class BadMessage(ValueError):
    """A client message that breaks its feed's declaration; `field` names the field."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def shown(value: object) -> str:
    """A bad value as an error quotes it: JSON, cut to `SHOWN_CHARS`."""
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _no_repeats(pairs: list[tuple[str, object]]) -> dict:
    names = [name for name, _ in pairs]
    for name in names:
        if names.count(name) > 1:
            raise BadMessage(f"{shown(name)} is given twice", name)
    return dict(pairs)


def read_message(
    text: str | None, data: bytes | None, declared: Mapping[str, Mapping[str, Field]]
) -> tuple[str, dict]:
    """The action and fields of a client frame, checked against its feed's declaration;
    `BadMessage` naming what is wrong. Values are checked for their JSON type here, and for
    their meaning (known tickers, a period's range) by the consumer."""
    if text is None:
        raise BadMessage("binary frames are not read: send each message as JSON text")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise BadMessage(f"message too large: {size} bytes, the limit is {MAX_MESSAGE_BYTES}")
    try:
        request = orjson.loads(text)  # depth-limited, strict UTF-8, no NaN
        if isinstance(request, dict):  # again, to see a repeated field orjson folds away
            request = json.loads(text, object_pairs_hook=_no_repeats)
    except (orjson.JSONDecodeError, RecursionError):
        raise BadMessage("malformed JSON") from None
    if not declared:
        raise BadMessage("this feed takes no messages")
    actions = " or ".join(f'"{a}"' for a in declared)
    if not isinstance(request, dict):
        raise BadMessage(f'unknown action: send a JSON object with "action": {actions}', "action")
    if "action" not in request:
        raise BadMessage(f'"action" is missing: {actions}', "action")
    action = request.pop("action")
    if not isinstance(action, str) or action not in declared:
        raise BadMessage(f'unknown action {shown(action)}: "action" is {actions}', "action")
    fields = declared[action]
    for name in request:
        if name not in fields:
            takers = [f'"{a}"' for a, f in declared.items() if name in f]
            rule = f"goes with {' or '.join(takers)} only" if takers else "is not a field"
            raise BadMessage(f"{shown(name)} {rule}", name)
    for name, field in fields.items():
        if name not in request:
            if field.required:
                raise BadMessage(f'"{name}" is missing', name)
            continue
        value = request[name]
        if field.kind == TEXT and not (isinstance(value, str) and value.strip()):
            raise BadMessage(f'"{name}" must be {field.rule or "a string, not blank"}', name)
        if field.kind == TICKERS:
            request[name] = tickers(name, value)
    return action, request


def tickers(name: str, value: object) -> list[str]:
    """A `symbols` value as upper-case tickers (with "*" for every symbol)."""
    if value == "*":
        value = ["*"]
    if not (isinstance(value, list) and all(isinstance(s, str) for s in value)):
        raise BadMessage(f'"{name}" must be a list of tickers, or "*"', name)
    for item in value:
        if item != "*" and not is_ticker(item):
            raise BadMessage(f'"{name}": {shown(item)} is not a ticker', name)
    return [s.upper() for s in value]


def is_ticker(text: str) -> bool:
    """Whether `text` is a ticker in any case (ASCII only: "ß".upper() is "SS")."""
    return text.isascii() and TICKER_PATTERN.fullmatch(text.upper()) is not None
